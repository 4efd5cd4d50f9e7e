"""Consent pages for people with tremor, low vision, fatigue or poor concentration: nothing
that cannot be undone happens on one tap, focus comes back to the choice that changed and the
result is announced, the dashboard is grouped and plain, and no consent page is wider than a
320 px screen.

The HTTP tests read the pages as the test client gets them; the browser tests (``page``,
``live_server``: ``tests/fixtures_browser.py``) check focus, announcements and reflow in
headless Chromium, where axe-core also checks every page loaded.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from engage.accounts.models import Role, User
from engage.consent import decisions, page_queries, queries, versions
from engage.consent.models import ConsentReceipt, Decision, ErasureRequest
from engage.consent.seed import FIRST_FORM
from engage.timeutil import utcnow
from tests.browser_support import browser_sign_in as _sign_in
from tests.conftest import post_form, sign_in
from tests.consent_support import (
    STATE_FIELD,
    VERSION_FIELD,
    issuer,
    join,
    ledger_size,
    publish,
)

ERROR_SUMMARY = re.compile(r'<div class="error-summary".*?</div>', re.S)


@pytest.fixture
def staff(make_user):
    return make_user(Role.STAFF)


@pytest.fixture
def me(client, as_role, session, staff):
    """A participant signed in on ``client``, on the published seed form (no decisions yet)."""
    publish(session, staff)
    return as_role(Role.PARTICIPANT)


def page_state(client, url):
    """The version id and state token the forms of the page at ``url`` carry."""
    page = client.get(url).get_data(as_text=True)
    return {
        "version_id": VERSION_FIELD.search(page).group(1),
        "state": STATE_FIELD.search(page).group(1),
    }


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden inputs of a page (the confirmation form's), without the CSRF token."""
    return {
        name: value
        for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page)
        if name != "csrf_token"
    }


def erasure_requests(session) -> int:
    session.expire_all()
    return session.scalar(sa.select(sa.func.count()).select_from(ErasureRequest))


def decision_of(session, person, code):
    """``person``'s current decision on scope ``code``."""
    session.expire_all()
    rows = page_queries.dashboard(session, person.id).rows
    choice = next(row.choice for row in rows if row.scope.code == code)
    return choice.decision if choice else None


# Leaving: choose, read what happens, then confirm ------------------------------------------------
CONSEQUENCES = {
    "stop_contact": (
        "Stop contacting me",
        [
            "We will stop contacting you.",
            "Recontact me about surveys",
            "You keep taking part.",
        ],
    ),
    "stop_use": (
        "Leave the programme",
        [
            "You leave the programme.",
            "Every choice you allow will be withdrawn",
            "Share my registry records with the network",
            "Your data will not be used in any new project",
            "Data already used in finished analyses cannot be taken back out of them.",
            "Your registry keeps your records: leaving does not erase them.",
        ],
    ),
    "erase": (
        "Leave and ask for my data to be erased",
        [
            "You leave the programme.",
            "Every choice you allow will be withdrawn",
            "Data already used in finished analyses cannot be taken back out of them.",
            "Your request to erase your data goes to the coordination centre (the team that "
            "runs Engage).",
            "A registry is a collection of health data about people with MS",
        ],
    ),
}


@pytest.mark.parametrize("option", list(CONSEQUENCES))
def test_choosing_how_to_leave_changes_nothing_until_it_is_confirmed(
    app, client, session, me, option
):
    join(app, session, me, SURVEY_RECONTACT=True)
    dashboard = client.get("/consent").get_data(as_text=True)
    assert 'href="/consent/leave">Leave the programme or stop contact</a>' in dashboard
    assert 'name="option"' not in dashboard  # no way to leave from the dashboard in one tap
    before = ledger_size(session)

    chosen = post_form(
        client, "/consent/leave", {**page_state(client, "/consent/leave"), "option": option}
    )
    assert chosen.status_code == 200
    assert ledger_size(session) == before and erasure_requests(session) == 0
    assert decision_of(session, me, "SHARE_RECORDS") == Decision.PERMIT
    page = chosen.get_data(as_text=True)
    button, consequences = CONSEQUENCES[option]
    assert "Nothing has changed yet." in page
    text = re.sub(r"\s+", " ", page)
    for consequence in consequences:
        assert consequence in text, consequence
    assert re.search(rf'<button type="submit" class="button button-danger">{button}</button>', page)
    assert '<a href="/consent">Cancel and go back to my consent</a>' in page
    assert 'action="/consent/leave/confirm"' in page

    confirmed = post_form(client, "/consent/leave/confirm", hidden_fields(page))
    assert confirmed.status_code == 303
    assert ledger_size(session) > before
    assert erasure_requests(session) == (1 if option == "erase" else 0)
    contact_now = decision_of(session, me, "SURVEY_RECONTACT")
    assert contact_now == Decision.WITHDRAW
    share_now = decision_of(session, me, "SHARE_RECORDS")
    assert share_now == (Decision.PERMIT if option == "stop_contact" else Decision.WITHDRAW)


def test_leaving_without_choosing_points_to_the_first_option(app, client, session, me):
    join(app, session, me)
    response = post_form(client, "/consent/leave", page_state(client, "/consent/leave"))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    summary = ERROR_SUMMARY.search(page).group(0)
    assert '<a href="#option-0">Choose what you would like us to do.</a>' in summary
    assert 'id="option-0" name="option"' in page
    assert "Cancel and go back to my consent" in page


def test_a_confirmation_from_an_out_of_date_page_is_refused_and_a_double_click_is_calm(
    app, client, session, me
):
    join(app, session, me, GENOMIC_DATA=True)
    old = post_form(
        client, "/consent/leave", {**page_state(client, "/consent/leave"), "option": "stop_use"}
    )
    stale = hidden_fields(old.get_data(as_text=True))
    join(app, session, me)  # another tab withdrew the genomic data meanwhile
    before = ledger_size(session)
    refused = post_form(client, "/consent/leave/confirm", stale)
    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    assert "Your consent changed since this page was opened" in page
    assert 'class="error-summary" role="alert"' in page  # focused and read out on load
    assert "<h1>Leave the programme or stop contact</h1>" in page  # the options, to try again
    assert ledger_size(session) == before

    fresh = post_form(
        client, "/consent/leave", {**page_state(client, "/consent/leave"), "option": "stop_use"}
    )
    confirmation = hidden_fields(fresh.get_data(as_text=True))
    first = post_form(client, "/consent/leave/confirm", confirmation)
    again = post_form(client, "/consent/leave/confirm", confirmation)
    assert (first.status_code, again.status_code) == (303, 303)
    assert "you have left the programme" in client.get(again.headers["Location"]).get_data(
        as_text=True
    )


# Withdrawing everything optional: the list first --------------------------------------------------
def test_withdrawing_everything_optional_lists_exactly_what_will_be_withdrawn(
    app, client, session, me
):
    join(app, session, me, GENOMIC_DATA=True, IMAGING_DATA=True, TRIAL_CONTACT=True)
    dashboard = client.get("/consent").get_data(as_text=True)
    assert 'href="/consent/withdraw-optional">Withdraw everything optional</a>' in dashboard
    assert 'action="/consent/withdraw-optional"' not in dashboard
    before = ledger_size(session)

    page = client.get("/consent/withdraw-optional").get_data(as_text=True)
    assert ledger_size(session) == before
    listed = re.search(r"These 3 choices will be withdrawn</h2>\s*<ul>(.*?)</ul>", page, re.S)
    assert re.findall(r"<li>(.*?)</li>", listed.group(1)) == [
        "Include my genomic data",
        "Include my imaging data",
        "Contact me about clinical trials",
    ]
    assert '<button type="submit" class="button">Withdraw these 3 choices</button>' in page
    assert '<a href="/consent">Cancel and go back to my consent</a>' in page
    assert "You keep taking part in the programme" in page

    response = post_form(
        client, "/consent/withdraw-optional", page_state(client, "/consent/withdraw-optional")
    )
    assert response.status_code == 303
    assert ledger_size(session) == before + 3
    page = client.get("/consent/withdraw-optional").get_data(as_text=True)
    assert "there is nothing to withdraw" in page and "<button" not in page.split("<main")[1]


def test_withdrawing_the_only_optional_choice_says_so(app, client, session, me):
    join(app, session, me, IMAGING_DATA=True)
    page = client.get("/consent/withdraw-optional").get_data(as_text=True)
    assert "This choice will be withdrawn" in page
    assert ">Withdraw this choice</button>" in page


# Focus back to the choice that changed ------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "decision", "message"),
    [
        (False, "permit", "Saved. You now allow: Include my imaging data."),
        (True, "deny", "Saved. You no longer allow: Include my imaging data."),
        (None, "deny", "Saved. You do not allow: Include my imaging data."),
    ],
)
def test_after_a_change_the_dashboard_returns_to_that_choice_and_names_it(
    app, client, session, me, start, decision, message
):
    if start is not None:
        join(app, session, me, IMAGING_DATA=start)
    data = {**page_state(client, "/consent"), "scope": "IMAGING_DATA", "decision": decision}
    response = post_form(client, "/consent/choice", data)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/consent#scope-IMAGING_DATA")
    page = client.get(urlsplit(response.headers["Location"]).path).get_data(as_text=True)
    assert f"{message} Your receipt for this change is in your consent history." in page
    assert re.search(
        r'<li class="consent-row" id="scope-IMAGING_DATA" '
        r'aria-labelledby="scope-IMAGING_DATA-title" data-return-focus>',
        page,
    )
    assert '<h4 id="scope-IMAGING_DATA-title">Include my imaging data</h4>' in page

    if decision == "permit":
        again = post_form(client, "/consent/choice", {**data, **page_state(client, "/consent")})
        assert again.headers["Location"].endswith("/consent#scope-IMAGING_DATA")
        assert "Nothing changed: that was already your choice for Include my imaging data." in (
            client.get("/consent").get_data(as_text=True)
        )


def test_a_refused_change_says_why_in_a_summary_that_takes_focus(app, client, session, me):
    join(app, session, me)
    stale = page_state(client, "/consent")
    join(app, session, me, GENOMIC_DATA=True)
    response = post_form(
        client, "/consent/choice", {**stale, "scope": "IMAGING_DATA", "decision": "permit"}
    )
    assert response.status_code == 409
    summary = ERROR_SUMMARY.search(response.get_data(as_text=True)).group(0)
    assert 'role="alert" tabindex="-1"' in summary and "Nothing was changed" in summary
    assert "Your consent changed since this page was opened" in summary
    assert "<a " not in summary  # the form has no field to go to


# A calmer dashboard ------------------------------------------------------------------------------
def test_the_dashboard_groups_the_choices_and_explains_the_downloads(app, client, session, me):
    join(app, session, me, GENOMIC_DATA=True)
    page = client.get("/consent").get_data(as_text=True)
    assert "You take part in the programme. Nothing needs your decision now." in page
    assert "You allow 1 of the 6 optional choices." in page
    headings = re.findall(r'<h3 id="group-(\w+)">([^<]+)</h3>', page)
    assert headings == [
        ("purpose", "What your data may be used for"),
        ("data_category", "Which kinds of data are included"),
        ("contact", "How we may contact you"),
    ]
    rows = re.findall(r'<li class="consent-row" id="scope-(\w+)"', page)
    assert len(rows) == 8
    buttons = re.findall(r'aria-label="((?:Allow|Withdraw|Do not allow): [^"]+)">', page)
    assert "Withdraw: Include my genomic data" in buttons
    assert "Allow: Include my imaging data" in buttons
    assert len(buttons) == 6  # one per optional choice; required ones lead to leaving
    assert "on version 1 of the form" not in page and page.count("You last changed") == 1
    assert "Download your consent history as a file for computers (JSON)" in page
    assert "FHIR, a standard format for health records" in page


# Receipts and form versions: wide tables scroll in a named region, codes sit in details ---------
def _region_labelled_by_caption(page: str) -> None:
    region = re.search(
        r'<div class="table-scroll" role="region" aria-labelledby="([\w-]+)" tabindex="0">\s*'
        r'<table class="data-table[\w -]*">\s*<caption id="([\w-]+)"',
        page,
    )
    assert region and region.group(1) == region.group(2)


def test_the_receipt_puts_codes_under_technical_details(app, client, session, me):
    join(app, session, me)
    receipt_id = session.scalar(sa.select(ConsentReceipt.id))
    page = client.get(f"/consent/receipts/{receipt_id}").get_data(as_text=True)
    _region_labelled_by_caption(page)
    technical = page[page.index("<summary>Technical details</summary>") :]
    for label, sentence in (
        ("Jurisdiction", "Where the data protection law that covers this receipt applies."),
        ("Your pseudonymous id", "A code that stands for you in research records instead"),
        ("Fingerprint of the form's text (SHA-256)", "A code that shows the text of the form"),
        ("Signature", "A code that proves this receipt was not changed."),
    ):
        assert f"<dt>{label}</dt>" in technical and sentence in technical
    main_part = page[: page.index("<summary>Technical details</summary>")]
    assert "Jurisdiction" not in main_part and "SHA-256" not in main_part
    assert "The organisation responsible for your data under data protection law." in main_part


def test_the_staff_version_page_scrolls_its_table_and_folds_the_fingerprint(
    client, session, staff, me
):
    staff_client = client.application.test_client()
    sign_in(staff_client, staff)
    forms = staff_client.get("/staff/consent/forms").get_data(as_text=True)
    _region_labelled_by_caption(forms)
    version_id = queries.current_version(session).id
    page = staff_client.get(f"/staff/consent/forms/{version_id}").get_data(as_text=True)
    _region_labelled_by_caption(page)
    technical = page[page.index("<summary>Technical details</summary>") :]
    assert "Fingerprint of the full text (SHA-256)" in technical
    assert "A code that shows the text was not changed since it was published." in technical
    public = client.get("/consent/forms/1").get_data(as_text=True)
    assert "SHA-256" in public[public.index("<summary>Technical details</summary>") :]


# In the browser: focus, announcements, reflow ---------------------------------------------------

# The elements reaching past a 320 px screen's right edge, to name in a failure.
PAST_THE_EDGE = """[...document.querySelectorAll("body *")]
  .filter((element) => element.getBoundingClientRect().right > 320)
  .map((element) => `${element.tagName}.${element.className}: ${
    (element.innerText || "").slice(0, 40)}`)"""


def _page_width(page: Page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


@pytest.mark.browser
def test_after_withdraw_focus_is_on_the_choice_and_the_result_is_announced(
    app, page: Page, page_problems, session, staff, make_user
):
    publish(session, staff)
    person = make_user(Role.PARTICIPANT)
    join(app, session, person, IMAGING_DATA=True)
    _sign_in(page, person.email)
    page.goto("/consent")
    page.get_by_role("button", name="Withdraw: Include my imaging data").click()
    page.wait_for_url("**/consent#scope-IMAGING_DATA")
    assert page.evaluate("document.activeElement.id") == "scope-IMAGING_DATA"
    expect(page.locator("#announcements")).to_contain_text(
        "Saved. You no longer allow: Include my imaging data.", timeout=1000
    )
    expect(page.get_by_role("button", name="Allow: Include my imaging data")).to_be_visible()
    page_problems.assert_none()


def _consent_world(app, session, staff: User, make_user) -> tuple[User, User, int, int]:
    """A published form, a participant who joined and has a receipt, another who left asking
    for erasure, and a draft version with a scope to edit."""
    publish(session, staff)
    person = make_user(Role.PARTICIPANT, email="a-rather-long-address.for-reflow@example.org")
    join(app, session, person, GENOMIC_DATA=True, IMAGING_DATA=True)
    leaver = make_user(Role.PARTICIPANT, email="someone.who.left.the-programme@example.org")
    join(app, session, leaver)
    decisions.leave_programme(
        session,
        session.get(User, leaver.id),
        decisions.LeaveOption.ERASE,
        version_id=queries.current_version(session).id,
        state=queries.current_state(session, leaver.id),
        now=utcnow(),
        issuer=issuer(app),
    )
    draft = versions.create_draft(session, session.get(User, staff.id), FIRST_FORM, utcnow())
    session.commit()
    scope_id = queries.scopes_of(session, draft.id)[2].id
    return person, leaver, draft.id, scope_id


@pytest.mark.browser
def test_no_consent_page_is_wider_than_a_320_px_screen(
    app, page: Page, page_problems, session, staff, make_user
):
    person, leaver, draft_id, scope_id = _consent_world(app, session, staff, make_user)
    published_id = queries.current_version(session).id
    receipt_id = session.scalar(
        sa.select(ConsentReceipt.id).where(ConsentReceipt.user_id == person.id)
    )
    page.set_viewport_size({"width": 320, "height": 640})
    too_wide = {}

    _sign_in(page, person.email)
    for url in (
        "/consent",
        "/consent/review",
        "/consent/history",
        f"/consent/receipts/{receipt_id}",
        "/consent/forms/1",
        "/consent/withdraw-optional",
        "/consent/leave",
    ):
        page.goto(url)
        if _page_width(page) > 320:
            too_wide[url] = (_page_width(page), page.evaluate(PAST_THE_EDGE))
    page.get_by_label(re.compile("^Ask for my data to be erased")).check()
    page.get_by_role("button", name="Show me what will happen").click()
    expect(
        page.get_by_role("button", name="Leave and ask for my data to be erased")
    ).to_be_visible()
    if _page_width(page) > 320:
        too_wide["leave confirmation"] = (_page_width(page), page.evaluate(PAST_THE_EDGE))
    page.get_by_role("button", name="Sign out").click()

    _sign_in(page, staff.email)
    for url in (
        "/staff/consent/forms",
        f"/staff/consent/forms/{published_id}",
        f"/staff/consent/forms/{draft_id}",
        f"/staff/consent/forms/{draft_id}/edit",
        "/staff/consent/forms/new",
        f"/staff/consent/scopes/{scope_id}/edit",
        f"/staff/consent/participants/{person.id}",
        "/staff/consent/erasure",
    ):
        page.goto(url)
        if _page_width(page) > 320:
            too_wide[url] = (_page_width(page), page.evaluate(PAST_THE_EDGE))
    assert too_wide == {}
    page_problems.assert_none()
