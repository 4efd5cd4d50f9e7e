"""End to end in headless Chromium: joining, signing in, staff verification, password reset,
accessibility basics and research topics, all through visible labels, roles and links as a new
user would.

Fixtures (``browser``, ``live_server``, ``page``, ``page_problems``) are in
``tests/fixtures_browser.py``; these tests run on SQLite only.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from engage.accounts.models import Role, User
from engage.db import Database
from engage.timeutil import utcnow
from engage.topics import services as topic_services
from engage.topics.models import TopicCategory, TopicStatus
from tests.conftest import PASSWORD, totp_code_for
from tests.fixtures_browser import PageProblems

pytestmark = pytest.mark.browser

NEW_PASSWORD = "quiet river lantern"
FORM_SHOWN_AGAIN = frozenset({400})  # a form with errors is answered with 400 Bad Request


def _nav(page: Page):
    """The site's main navigation."""
    return page.get_by_role("navigation", name="Main")


def _status(page: Page, text: str):
    """A flash message (announced as a status) containing ``text``."""
    return page.get_by_role("status").filter(has_text=text)


def _fill_sign_up(page: Page, *, role: str, name: str, email: str) -> None:
    """Fill the shared part of the sign-up form."""
    page.get_by_label(role).check()
    page.get_by_label("Display name").fill(name)
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the password").fill(NEW_PASSWORD)
    page.get_by_label("Country where you live").select_option(label="Sweden")
    page.get_by_label("Preferred language").select_option(label="Svenska (Swedish)")


def _sign_in(page: Page, email: str, password: str) -> None:
    """Sign in through the form, starting from the nav link (and the code step, if asked)."""
    _nav(page).get_by_role("link", name="Sign in").click()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: urlsplit(url).path != "/sign-in")
    if urlsplit(page.url).path == "/sign-in/two-factor":  # two-step sign-in: the app's code
        page.get_by_label("Code from your authenticator app").fill(totp_code_for(email))
        page.get_by_role("button", name="Continue").click()


def test_a_person_with_ms_joins_confirms_signs_in_edits_profile_and_signs_out(
    page: Page, live_server, mailbox, page_problems: PageProblems
):
    email = "sam.lind@example.org"
    page.goto("/")
    _nav(page).get_by_role("link", name="Join", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Join Engage")

    _fill_sign_up(page, role="I have MS", name="Sam Lind", email=email)
    page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")

    link = mailbox.last_to(email).link("/verify-email/")
    assert link.startswith(live_server.url), "the emailed link must point at this server"
    page.goto(link)
    # The link asks for the password chosen at sign-up, which confirms and signs in.
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm your email address")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Confirm my email address").click()
    expect(_status(page, "your email address is confirmed")).to_be_visible()
    expect(_status(page, "Welcome, Sam Lind")).to_be_visible()
    my_account = _nav(page).get_by_role("link", name="My account")
    expect(my_account).to_be_visible()

    my_account.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("My account")
    page.get_by_label("Display name").fill("Sam Lindqvist")
    page.get_by_role("button", name="Save my profile").click()
    expect(_status(page, "Your profile is saved.")).to_be_visible()
    expect(page.get_by_label("Display name")).to_have_value("Sam Lindqvist")
    expect(page.get_by_label("Country where you live")).to_have_value("SE")

    page.get_by_role("button", name="Sign out").click()
    expect(_status(page, "You are signed out.")).to_be_visible()
    expect(_nav(page).get_by_role("link", name="Sign in")).to_be_visible()
    expect(_nav(page).get_by_role("link", name="My account")).to_have_count(0)
    page_problems.assert_none()


def test_clinician_sign_up_without_profession_shows_the_error_at_the_field(
    page: Page, mailbox, page_problems: PageProblems, tmp_path: Path
):
    email = "ada.berg@example.org"
    page.goto("/sign-up")
    _fill_sign_up(page, role="I am a healthcare professional", name="Dr Ada Berg", email=email)
    page.get_by_label("Institution").fill("Karolinska University Hospital")
    page.get_by_role("button", name="Create my account").click()

    profession = page.get_by_label("Profession", exact=True)
    expect(profession).to_have_attribute("aria-invalid", "true")
    described_by = (profession.get_attribute("aria-describedby") or "").split()
    error_ids = [i for i in described_by if page.locator(f"#{i}.field-error").count() == 1]
    assert len(error_ids) == 1, f"aria-describedby={described_by} names no error element"
    error = page.locator(f"#{error_ids[0]}")
    expect(error).to_be_visible()
    expect(error).to_contain_text("Enter your profession.")
    expect(profession).to_have_accessible_description(
        "For example neurologist, MS nurse or physiotherapist. Error: Enter your profession."
    )
    expect(page.get_by_role("alert")).to_contain_text("Please correct the following")
    expect(page.get_by_label("Email address")).to_have_value(email)
    expect(page.get_by_label("I am a healthcare professional")).to_be_checked()
    expect(page.get_by_label("Institution")).to_have_value("Karolinska University Hospital")
    page.screenshot(path=tmp_path / "sign-up-with-errors.png", full_page=True)

    profession.fill("Neurologist")
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Create my account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    assert mailbox.last_to(email).subject == "Confirm your email address for Engage"
    page_problems.assert_none(allow_document_statuses=FORM_SHOWN_AGAIN)


def test_staff_find_a_pending_clinician_verify_them_and_see_it_in_the_audit_log(
    page: Page, make_user, page_problems: PageProblems
):
    staff = make_user(Role.STAFF, display_name="Stina Staff")
    clinician = make_user(Role.CLINICIAN, display_name="Dr Ada Lindqvist")
    make_user(Role.CLINICIAN, display_name="Dr Bo Berg")

    page.goto("/")
    _sign_in(page, staff.email, PASSWORD)
    expect(_status(page, "Welcome, Stina Staff")).to_be_visible()

    _nav(page).get_by_role("link", name="People").click()
    page.get_by_label("Name or email contains").fill("lindqvist")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("status").filter(has_text="found")).to_have_text("1 account found.")
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Dr Ada Lindqvist"))
    expect(row).to_contain_text("professional claim to check")

    row.get_by_role("link", name="Dr Ada Lindqvist").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dr Ada Lindqvist")
    claim = page.get_by_role("combobox", name="Professional claim")
    expect(claim).to_have_value("no")
    claim.select_option(label="Verified")
    page.get_by_role("button", name="Save professional claim").click()
    expect(_status(page, "Saved: Dr Ada Lindqvist's professional claim.")).to_be_visible()
    expect(claim).to_have_value("yes")

    _nav(page).get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit log")
    event = page.get_by_role("row").filter(
        has=page.get_by_role("cell", name="clinician verified", exact=True)
    )
    expect(event).to_have_count(1)
    expect(event).to_contain_text(staff.email)
    expect(event).to_contain_text(clinician.email)
    page_problems.assert_none()


@pytest.mark.parametrize("path", ["/", "/sign-up", "/sign-in"], ids=["home", "sign-up", "sign-in"])
def test_public_pages_meet_accessibility_basics(page: Page, page_problems: PageProblems, path):
    page.goto(path)

    expect(page.locator("h1")).to_have_count(1)
    expect(page.get_by_role("main")).to_have_count(1)
    expect(page.get_by_role("banner")).to_have_count(1)
    expect(page.get_by_role("contentinfo")).to_have_count(1)
    expect(_nav(page)).to_have_count(1)
    for tag in ("main", "nav", "header", "footer"):
        assert page.locator(tag).count() >= 1, f"no <{tag}> on {path}"

    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type="hidden"]), select, textarea')]
                  .filter((element) => element.labels.length === 0)
                  .map((element) => element.outerHTML)"""
    )
    assert unlabelled == [], f"form controls without a label on {path}: {unlabelled}"
    aria_faults = page.evaluate(
        """() => [...document.querySelectorAll('[aria-invalid], [aria-describedby]')].flatMap(
              (element) => [
                ...(element.hasAttribute('aria-invalid') ? [element.outerHTML] : []),
                ...(element.getAttribute('aria-describedby') || '').split(/\\s+/)
                  .filter((id) => id && !document.getElementById(id))
                  .map((id) => `${element.id}: aria-describedby names missing #${id}`),
              ])"""
    )
    assert aria_faults == [], f"ARIA states wrong on a fresh {path}: {aria_faults}"

    skip_link = page.get_by_role("link", name="Skip to main content")
    expect(skip_link).not_to_be_in_viewport()
    page.keyboard.press("Tab")
    expect(skip_link).to_be_focused()
    expect(skip_link).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()

    page_problems.assert_none()


def test_forgotten_password_is_reset_from_the_emailed_link(
    page: Page, make_user, mailbox, live_server, page_problems: PageProblems
):
    user = make_user(Role.PARTICIPANT, email="rosa.forgetful@example.org", display_name="Rosa")
    page.goto("/")
    _nav(page).get_by_role("link", name="Sign in").click()
    page.get_by_role("link", name="Forgotten your password?").click()
    page.get_by_label("Email address").fill(user.email)
    page.get_by_role("button", name="Send me a reset link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")

    link = mailbox.last_to(user.email).link("/reset-password/")
    assert link.startswith(live_server.url), "the emailed link must point at this server"
    page.goto(link)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Repeat the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Save my new password").click()
    expect(_status(page, "Your password is changed.")).to_be_visible()

    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(_status(page, "Welcome, Rosa")).to_be_visible()
    page_problems.assert_none()


# Research topics ------------------------------------------------------------------------------
def _topic(app, make_user, title: str, status: TopicStatus = TopicStatus.PUBLISHED) -> int:
    """A topic by a new participant, brought to ``status`` by staff; return its number."""
    author, staff = make_user(Role.PARTICIPANT), make_user(Role.STAFF)
    session = Database.new_session(app)
    try:
        details = topic_services.TopicDetails(
            title=title,
            question="What should research find out?",
            rationale="It matters to many of us.",
            category=TopicCategory.LIFESTYLE,
        )
        topic = topic_services.propose_topic(
            session, session.get(User, author.id), details, utcnow(), max_pending=10
        )
        if status == TopicStatus.PUBLISHED:
            topic_services.change_status(
                session, session.get(User, staff.id), topic, status, utcnow()
            )
        session.commit()
        return topic.id
    finally:
        session.close()


def _sign_out(page: Page) -> None:
    """Sign out from the navigation."""
    _nav(page).get_by_role("button", name="Sign out").click()
    expect(_status(page, "You are signed out.")).to_be_visible()


def _open_topic(page: Page, title: str) -> None:
    """Go to the topic list from the navigation and open ``title``."""
    _nav(page).get_by_role("link", name="Topics").click()
    page.get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)


def test_a_topic_is_proposed_published_supported_and_a_support_withdrawn(
    page: Page, app, make_user, page_problems: PageProblems
):
    existing = "Does vitamin D slow MS progression in adults?"
    _topic(app, make_user, existing)
    author = make_user(Role.PARTICIPANT, display_name="Sam Lind")
    staff = make_user(Role.STAFF, display_name="Stina Staff")
    clinician = make_user(Role.CLINICIAN, clinician_verified=True, display_name="Dr Ada Berg")
    title = "Does vitamin D slow MS progression?"

    page.goto("/")
    _sign_in(page, author.email, PASSWORD)
    expect(_status(page, "Welcome, Sam Lind")).to_be_visible()
    _nav(page).get_by_role("link", name="Topics").click()
    page.get_by_role("link", name="Propose a topic").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Propose a research topic")
    page.get_by_label("Title", exact=True).fill(title)
    page.get_by_label("Research question").fill(
        "Does a daily vitamin D supplement slow disability progression in relapsing MS?"
    )
    page.get_by_label("Why it matters").fill(
        "Many of us take it *without* knowing whether it helps."
    )
    page.get_by_label("Category").select_option(label="Diet, exercise and lifestyle")
    page.get_by_role("button", name="Submit my topic").click()

    duplicates = page.get_by_role("region", name="Possible duplicates")
    expect(duplicates).to_be_visible()
    expect(_status(page, "These published topics have similar titles.")).to_be_visible()
    expect(duplicates.get_by_role("link", name=existing)).to_be_visible()
    expect(page.get_by_label("Title", exact=True)).to_have_value(title)
    page.get_by_label("None of these is my topic: submit it anyway").check()
    page.get_by_role("button", name="Submit my topic").click()
    expect(_status(page, "Thank you: your topic is submitted.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    _sign_out(page)

    _sign_in(page, staff.email, PASSWORD)
    _nav(page).get_by_role("link", name="Moderation").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Topic moderation")
    page.get_by_role("link", name=title, exact=True).click()
    page.get_by_label("New status").select_option(label="Open for support")
    page.get_by_role("button", name="Change status").click()
    expect(_status(page, "The topic is now “open for support”.")).to_be_visible()
    _sign_out(page)

    _sign_in(page, clinician.email, PASSWORD)
    _open_topic(page, title)
    page.get_by_role("button", name="Support this topic").click()
    expect(_status(page, "Thank you for your support.")).to_be_visible()
    _sign_out(page)

    _sign_in(page, author.email, PASSWORD)
    _open_topic(page, title)
    page.get_by_role("button", name="Support this topic").click()
    expect(_status(page, "Thank you for your support.")).to_be_visible()
    chart = page.get_by_role("table", name="Supports by role")
    expect(chart).to_be_visible()
    expect(chart.get_by_role("row", name="People with MS 1")).to_be_visible()
    expect(chart.get_by_role("row", name="Verified healthcare professionals 1")).to_be_visible()
    expect(page.get_by_text("2 supports in all")).to_be_visible()
    expect(page.get_by_text("You support this topic.")).to_be_visible()

    page.get_by_role("button", name="Withdraw my support").click()
    expect(_status(page, "Your support is withdrawn.")).to_be_visible()
    expect(page.get_by_text("1 support in all")).to_be_visible()
    expect(chart.get_by_role("row", name="People with MS 0")).to_be_visible()
    expect(page.get_by_role("button", name="Support this topic")).to_be_visible()
    page_problems.assert_none()


def test_typing_a_title_suggests_published_topics_with_similar_titles(
    page: Page, app, make_user, page_problems: PageProblems
):
    published = "Does vitamin D slow MS progression?"
    hostile = '<img src=x onerror="window.__pwned=1"> Vitamin D and progression'
    published_id = _topic(app, make_user, published)
    _topic(app, make_user, hostile)
    _topic(app, make_user, "Vitamin D and progression, privately", TopicStatus.SUBMITTED)
    author = make_user(Role.ORGANISATION, display_name="MS Society")

    page.goto("/")
    _sign_in(page, author.email, PASSWORD)
    _nav(page).get_by_role("link", name="Topics").click()
    with page.expect_response(lambda response: "/static/topics.js" in response.url) as script:
        page.get_by_role("link", name="Propose a topic").click()
    assert script.value.status == 200
    assert "javascript" in script.value.headers["content-type"]

    title = page.get_by_label("Title", exact=True)
    title.press_sequentially("vitamin D progression", delay=20)
    suggestions = page.locator("#similar-titles")
    expect(suggestions).to_have_attribute("aria-live", "polite")
    suggestion = suggestions.get_by_role("link", name=published, exact=True)
    expect(suggestion).to_be_visible()
    expect(suggestion).to_have_attribute("href", f"/topics/{published_id}")
    expect(suggestions.get_by_role("link", name=hostile, exact=True)).to_be_visible()  # as text
    expect(suggestions.locator("img")).to_have_count(0)
    expect(suggestions).not_to_contain_text("privately")
    assert page.evaluate("() => window.__pwned") is None

    title.fill("MS")  # too short to look up: the suggestions go away
    expect(suggestions.get_by_role("link")).to_have_count(0)
    page_problems.assert_none()
