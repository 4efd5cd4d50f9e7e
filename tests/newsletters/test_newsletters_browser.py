"""End to end in headless Chromium: a visitor signs up for a newsletter and confirms it from the
emailed link; staff write, preview and schedule a campaign for that list; the start job and a
delivery worker send it; the campaign page shows it sent; the subscriber unsubscribes from the
link in the newsletter. All through visible labels, roles and links, as people would.

Fixtures (``browser``, ``live_server``, ``page``, ``page_problems``) are in
``tests/fixtures_browser.py``; browser tests run on SQLite only.
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from engage.accounts.models import Role
from engage.db import Database
from engage.timeutil import utcnow
from newsletters import delivery, lists, sending
from newsletters.models import Subscriber, Subscription, SubscriptionStatus
from tests.conftest import PASSWORD, totp_code_for
from tests.fixtures_browser import PageProblems

pytestmark = pytest.mark.browser

READER = "sam.lind@example.org"
SUBJECT = "Spring news from the MS network"
TIMEZONE = "Europe/Stockholm"
FORM_SHOWN_AGAIN = frozenset({400})


def _nav(page: Page):
    """The site's main navigation."""
    return page.get_by_role("navigation", name="Main")


def _status(page: Page, text: str):
    """A flash message (announced as a status) containing ``text``."""
    return page.get_by_role("status").filter(has_text=text)


def _heading(page: Page, text: str) -> None:
    """The page's one h1 reads ``text``, and the page meets the accessibility basics: every
    form control has a label and every aria-describedby names an element that exists."""
    expect(page.get_by_role("heading", level=1)).to_have_text(text)
    expect(page.locator("h1")).to_have_count(1)
    expect(page.get_by_role("main")).to_have_count(1)
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type="hidden"]), select, textarea')]
                  .filter((element) => element.labels.length === 0)
                  .map((element) => element.outerHTML)"""
    )
    assert unlabelled == [], f"form controls without a label on {page.url}: {unlabelled}"
    dangling = page.evaluate(
        """() => [...document.querySelectorAll('[aria-describedby]')].flatMap((element) =>
              (element.getAttribute('aria-describedby') || '').split(/\\s+/)
                .filter((id) => id && !document.getElementById(id))
                .map((id) => `${element.outerHTML.slice(0, 80)} names missing #${id}`))"""
    )
    assert dangling == [], f"aria-describedby names nothing on {page.url}: {dangling}"
    levels = page.evaluate(
        "() => [...document.querySelectorAll('main h1, main h2, main h3, main h4')]"
        ".map((h) => Number(h.tagName[1]))"
    )
    skips = [(a, b) for a, b in zip(levels, levels[1:], strict=False) if b > a + 1]
    assert skips == [], f"headings skip a level on {page.url}: {levels}"


def _subscription_status(app) -> SubscriptionStatus:
    """The reader's subscription to Research updates, as the database has it."""
    session = Database.new_session(app)
    try:
        return session.scalar(
            sa.select(Subscription.status)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscriber.email == READER)
        )
    finally:
        session.close()


def _run_the_scheduler_jobs(app, after: timedelta) -> None:
    """What the scheduler process would do ``after`` from now: start the due campaign, then
    one delivery worker sends its emails."""
    later = utcnow() + after
    session = Database.new_session(app)
    try:
        outcome = sending.start_due(session, later, app.config)
        session.commit()
    finally:
        session.close()
    assert outcome.startswith("started 1 send(s)"), outcome
    report = delivery.deliver(app, now=later)
    assert report.accepted == 1, report.summary()


def test_a_visitor_subscribes_staff_schedule_a_campaign_it_is_sent_and_they_unsubscribe(
    page: Page, app, live_server, mailbox, make_user, page_problems: PageProblems
):
    session = Database.new_session(app)
    try:
        lists.ensure_default_lists(session, utcnow())
        session.commit()
    finally:
        session.close()
    staff = make_user(Role.STAFF, display_name="Stina Staff")

    # A visitor signs up from the link in the footer, and confirms from the emailed link.
    page.goto("/")
    page.get_by_role("contentinfo").get_by_role("link", name="Get our newsletters by email").click()
    _heading(page, "Sign up for our newsletters")
    page.get_by_label("Your name").fill("Sam Lind")
    page.get_by_label("Email address").fill(READER)
    page.get_by_label("Preferred language").select_option(label="Svenska (Swedish)")
    page.get_by_label("Research updates").check()
    page.get_by_role("button", name="Sign up").click()
    _heading(page, "Check your email")
    assert _subscription_status(app) == SubscriptionStatus.PENDING

    link = mailbox.last_to(READER).link("/newsletters/confirm/")
    assert link.startswith(live_server.url), "the emailed link must point at this server"
    page.goto(link)
    _heading(page, "Confirm your subscription")
    expect(page.get_by_role("listitem").filter(has_text="Research updates")).to_be_visible()
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(_status(page, "Thank you: your subscription is confirmed.")).to_be_visible()
    _heading(page, "Your subscription is confirmed")
    assert _subscription_status(app) == SubscriptionStatus.CONFIRMED

    # Staff write the campaign, preview it and schedule it a couple of minutes from now.
    _nav(page).get_by_role("link", name="Sign in").click()
    page.get_by_label("Email address").fill(staff.email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Code from your authenticator app").fill(totp_code_for(staff.email))
    page.get_by_role("button", name="Continue").click()
    expect(_status(page, "Welcome, Stina Staff")).to_be_visible()
    _nav(page).get_by_role("link", name="Newsletters", exact=True).click()
    _heading(page, "Newsletter campaigns")
    page.get_by_role("link", name="Write a new campaign").click()
    _heading(page, "New campaign")
    page.get_by_label("Research update", exact=True).check()
    page.get_by_label("Subject").fill(SUBJECT)
    page.get_by_label("Preheader (optional)").fill("Three studies need you")
    page.get_by_label("Text of the newsletter").fill(
        "Dear {name},\n\nThree **new studies** are looking for people with MS."
    )
    page.get_by_label("Research updates (public)").check()
    page.get_by_role("button", name="Save the draft").click()
    expect(_status(page, "The draft is saved.")).to_be_visible()
    _heading(page, SUBJECT)
    expect(page.get_by_text("Draft", exact=True)).to_be_visible()

    page.get_by_role("link", name="Preview the newsletter").click()
    _heading(page, f"Preview: {SUBJECT}")
    email = page.get_by_role("region", name="The email")
    expect(email.get_by_text("Dear Alex,")).to_be_visible()
    expect(email.locator("strong")).to_have_text("new studies")
    page.get_by_role("link", name="Back to the campaign").click()

    page.get_by_role("link", name="Schedule the campaign").click()
    _heading(page, f"Schedule “{SUBJECT}”")
    expect(page.get_by_text("1 person would receive it")).to_be_visible()
    page.get_by_label("Once, at a date and time").check()
    send_at = (utcnow() + timedelta(minutes=2)).astimezone(ZoneInfo(TIMEZONE))
    page.get_by_label("Date and time (for once)").fill(send_at.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Time zone").select_option(label="Europe / Stockholm")
    page.get_by_role("button", name="Schedule the campaign").click()
    expect(
        _status(page, f"the next send is on {send_at:%d %B %Y at %H:%M} ({TIMEZONE})")
    ).to_be_visible()
    expect(page.get_by_text("Scheduled", exact=True)).to_be_visible()

    # The scheduler's start job and a delivery worker run once the time has come.
    _run_the_scheduler_jobs(app, after=timedelta(minutes=5))

    page.reload()
    _heading(page, SUBJECT)
    expect(page.get_by_text("Sent", exact=True).first).to_be_visible()
    sends = page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Send of"))
    row = sends.get_by_role("row").nth(1)
    expect(row.get_by_role("cell").nth(1)).to_have_text("Sent")
    expect(row.get_by_role("cell").nth(2)).to_have_text("1")  # the audience
    expect(row.get_by_role("cell").nth(3)).to_have_text("1")  # sent
    expect(row.get_by_role("cell").nth(4)).to_have_text("0")  # failed
    _nav(page).get_by_role("button", name="Sign out").click()
    expect(_status(page, "You are signed out.")).to_be_visible()

    # The newsletter arrived, personalised, with a working unsubscribe link.
    # (Files are named by Message-ID, so the mailbox's order is not the order of sending.)
    (newsletter,) = [m for m in mailbox.to(READER) if m.subject == SUBJECT]
    assert "Dear Sam Lind," in newsletter.text
    assert newsletter.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = newsletter.link("/newsletters/unsubscribe/")
    assert unsubscribe.startswith(live_server.url)
    assert unsubscribe in newsletter.headers["List-Unsubscribe"]
    page.goto(unsubscribe)
    _heading(page, "Unsubscribe from “Research updates”")
    assert _subscription_status(app) == SubscriptionStatus.CONFIRMED  # opening changes nothing
    page.get_by_role("button", name="Unsubscribe from “Research updates”").click()
    expect(_status(page, "You are unsubscribed from “Research updates”.")).to_be_visible()
    _heading(page, "You are unsubscribed")
    assert _subscription_status(app) == SubscriptionStatus.UNSUBSCRIBED
    page_problems.assert_none()
