"""The campaign pages through HTTP: staff only; the editor with its refusals; the preview; a
test send landing in the mailbox; scheduling in a time zone or on a recurrence; pause, resume
and cancel (a double click changes once); and the progress the page polls."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role, User
from engage.timeutil import utcnow
from newsletters import campaigns, sending
from newsletters.campaigns import CampaignDetails
from newsletters.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    CampaignStatusChange,
    Delivery,
    DeliveryStatus,
    ProviderEvent,
    ProviderEventKind,
    Send,
    SendStatus,
)
from tests.conftest import PASSWORD, post_form, sign_in, totp_code_for
from tests.newsletters.support import make_list, subscribe_email

BASE = "/staff/newsletters/campaigns"


def text(response) -> str:
    return response.get_data(as_text=True)


def follow(client, response) -> str:
    """The page a redirect leads to (with its flashed message)."""
    assert response.status_code == 303, text(response)
    return text(client.get(response.headers["Location"]))


def future_year() -> int:
    return utcnow().year + 1


def spring_change() -> str:
    """Next year's last Sunday of March: Europe's clocks skip 02:00–03:00 that night."""
    day = datetime(future_year(), 3, 31, tzinfo=UTC)
    return (day - timedelta(days=(day.weekday() + 1) % 7)).strftime("%Y-%m-%d")


def campaign_data(list_ids, **changes):
    data = {
        "kind": "research_update",
        "subject": "Spring research news",
        "preheader": "What the network learned",
        "body": "Dear {name},\n\nThe **fatigue** study has started.",
        "list_ids": [str(i) for i in list_ids],
    }
    data.update(changes)
    return data


def status_changes(session, campaign_id: int, to_status: str) -> int:
    session.expire_all()
    return session.scalar(
        sa.select(sa.func.count())
        .select_from(CampaignStatusChange)
        .where(
            CampaignStatusChange.campaign_id == campaign_id,
            CampaignStatusChange.to_status == to_status,
        )
    )


@pytest.fixture
def staff(make_user) -> User:
    return make_user(Role.STAFF, display_name="Stina Staff", email="stina@example.org")


@pytest.fixture
def signed_in_staff(client, staff) -> User:
    sign_in(client, staff)
    return staff


@pytest.fixture
def research(session):
    """A public list with two confirmed readers."""
    mailing_list = make_list(session, "Research updates")
    subscribe_email(session, "ana@example.org", [mailing_list], name="Ana")
    subscribe_email(session, "bo@example.org", [mailing_list], name="Bo")
    session.commit()
    return mailing_list


@pytest.fixture
def draft(session, staff, research) -> Campaign:
    actor = session.get(User, staff.id)
    campaign = campaigns.create_campaign(
        session,
        actor,
        CampaignDetails(
            kind=CampaignKind.RESEARCH_UPDATE,
            subject="Spring research news",
            preheader="",
            body_markdown="Dear {name},\n\n<script>alert('x')</script>**News** for you.",
            list_ids=[research.id],
        ),
        utcnow(),
    )
    session.commit()
    return campaign


def start_sending(session, campaign: Campaign) -> Send:
    """Make ``campaign`` due and run the scheduler's start job."""
    session.expire_all()
    found = session.get(Campaign, campaign.id)
    found.status = CampaignStatus.SCHEDULED
    found.next_run_at = utcnow() - timedelta(minutes=1)
    session.commit()
    sending.start_due(session, utcnow(), {})
    session.commit()
    return session.scalar(sa.select(Send).where(Send.campaign_id == campaign.id))


# Who may use the pages -------------------------------------------------------------------------
def _pages(campaign_id: int) -> list[tuple[str, str]]:
    one = f"{BASE}/{campaign_id}"
    return [
        ("GET", BASE),
        ("GET", f"{BASE}/new"),
        ("POST", f"{BASE}/new"),
        ("GET", one),
        ("GET", f"{one}/edit"),
        ("POST", f"{one}/edit"),
        ("GET", f"{one}/preview"),
        ("GET", f"{one}/progress"),
        ("GET", f"{one}/schedule"),
        ("POST", f"{one}/schedule"),
        ("POST", f"{one}/test-send"),
        ("POST", f"{one}/unschedule"),
        ("POST", f"{one}/pause"),
        ("POST", f"{one}/resume"),
        ("POST", f"{one}/cancel"),
    ]


@pytest.mark.parametrize(
    "role", [Role.PARTICIPANT, Role.CLINICIAN, Role.CUSTODIAN, Role.ORGANISATION]
)
def test_other_roles_get_403_and_nothing_changes(client, as_role, session, draft, role):
    as_role(role)
    for method, url in _pages(draft.id):
        response = post_form(client, url) if method == "POST" else client.get(url)
        assert response.status_code == 403, (method, url)
    session.expire_all()
    assert session.get(Campaign, draft.id).status == CampaignStatus.DRAFT


def test_visitors_are_sent_to_sign_in(client, draft):
    for method, url in _pages(draft.id):
        response = post_form(client, url) if method == "POST" else client.get(url)
        assert response.status_code == 302, (method, url)
        assert response.headers["Location"].startswith("/sign-in?next=")


# The list and the editor -------------------------------------------------------------------------
def test_staff_write_a_campaign_and_find_it_in_the_list(client, signed_in_staff, session, research):
    form = client.get(f"{BASE}/new")
    assert form.status_code == 200
    assert '<label for="list_ids-0">Research updates (public)</label>' in text(form)
    assert '<label for="countries">' in text(form)

    response = post_form(
        client,
        f"{BASE}/new",
        campaign_data([research.id], roles=["participant"], languages=["en", "sv"]),
    )
    page = follow(client, response)
    assert "The draft is saved." in page
    assert "Spring research news" in page

    saved = session.scalar(sa.select(Campaign))
    assert saved.status == CampaignStatus.DRAFT
    assert saved.audience == {"roles": ["participant"], "languages": ["en", "sv"]}
    listing = text(client.get(BASE))
    assert "Spring research news" in listing and "Draft" in listing


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"subject": ""}, "Give the campaign a subject."),
        ({"list_ids": []}, "Choose at least one mailing list."),
        ({"list_ids": ["abc"]}, "Choose at least one mailing list."),
        ({"list_ids": ["99999999"]}, "Choose among the options listed"),
        ({"kind": "spam"}, "Choose among the options listed"),
        ({"countries": ["ZZ"]}, "Choose among the options listed"),
        ({"roles": ["staff"]}, "Choose among the options listed"),
        ({"body": "x" * 50_001}, "at most 50,000 characters"),
        ({"subject": "nul\x00byte"}, "NUL character"),
    ],
)
def test_bad_input_is_shown_next_to_the_form_and_nothing_saved(
    client, signed_in_staff, session, research, changes, error
):
    response = post_form(client, f"{BASE}/new", {**campaign_data([research.id]), **changes})
    assert response.status_code == 400
    assert error in text(response)
    assert 'aria-describedby="' in text(response)
    assert session.scalar(sa.select(sa.func.count()).select_from(Campaign)) == 0


def test_editing_while_sending_is_refused_with_the_message(
    client, signed_in_staff, session, draft, research
):
    start_sending(session, draft)
    page = client.get(f"{BASE}/{draft.id}/edit")
    assert "This campaign is being sent; it can no longer be edited" in follow(client, page)

    response = post_form(
        client, f"{BASE}/{draft.id}/edit", campaign_data([research.id], subject="Changed")
    )
    assert response.status_code == 409
    assert "This campaign is being sent; it can no longer be edited" in text(response)
    assert 'value="Changed"' in text(response)  # what was typed is kept
    session.expire_all()
    assert session.get(Campaign, draft.id).subject == "Spring research news"


def test_a_draft_is_edited(client, signed_in_staff, session, draft, research):
    form = text(client.get(f"{BASE}/{draft.id}/edit"))
    assert 'value="Spring research news"' in form
    response = post_form(
        client, f"{BASE}/{draft.id}/edit", campaign_data([research.id], subject="Summer news")
    )
    assert "Saved." in follow(client, response)
    session.expire_all()
    assert session.get(Campaign, draft.id).subject == "Summer news"


def test_an_unknown_campaign_is_404(client, signed_in_staff):
    assert client.get(f"{BASE}/424242").status_code == 404
    assert post_form(client, f"{BASE}/424242/pause").status_code == 404


# Preview and test send ---------------------------------------------------------------------------
def test_the_preview_shows_sanitised_html_and_never_the_script(client, signed_in_staff, draft):
    page = text(client.get(f"{BASE}/{draft.id}/preview"))
    assert "<script>alert" not in page
    assert "&lt;script" not in page
    assert "Dear Alex," in page
    assert "<strong>News</strong> for you." in page
    assert "the script tag was removed" in page
    assert "<pre" in page and "Unsubscribe from this list" in page


def test_a_test_send_lands_in_the_mailbox_once(client, signed_in_staff, draft, mailbox):
    first = post_form(client, f"{BASE}/{draft.id}/test-send")
    assert "A test copy is on its way to your address." in follow(client, first)
    second = post_form(client, f"{BASE}/{draft.id}/test-send")
    assert "already sent to you" in follow(client, second)

    messages = mailbox.to("stina@example.org")
    assert len(messages) == 1
    message = messages[0]
    assert message.subject == "[Test] Spring research news"
    assert "Dear Stina Staff," in message.text
    assert "<script" not in message.html
    assert message.headers["List-Unsubscribe"].startswith(
        "<http://engage.test/newsletters/unsubscribe/"
    )
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# Scheduling --------------------------------------------------------------------------------------
def test_scheduling_nine_in_stockholm_in_winter(client, signed_in_staff, session, draft):
    page = client.get(f"{BASE}/{draft.id}/schedule")
    assert "2 people would receive it" in text(page)
    year = future_year()
    response = post_form(
        client,
        f"{BASE}/{draft.id}/schedule",
        {"how": "once", "send_at": f"{year}-01-15T09:00", "timezone": "Europe/Stockholm"},
    )
    assert f"Scheduled: the next send is on 15 January {year} at 09:00" in follow(client, response)
    session.expire_all()
    saved = session.get(Campaign, draft.id)
    assert saved.status == CampaignStatus.SCHEDULED
    assert saved.next_run_at == datetime(year, 1, 15, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "field", "error"),
    [
        ({"how": "once", "send_at": "2020-01-15T09:00"}, "send_at", "Choose a time in the future"),
        ({"how": "once", "send_at": "{spring_change}T02:30", "timezone": "Europe/Stockholm"},
         "send_at", "does not exist in Europe/Stockholm"),
        ({"how": "once", "send_at": "soon"}, "send_at", "Give the date and time as on a calendar"),
        ({"how": "once", "send_at": ""}, "send_at", "Give the date and time it goes out."),
        ({"how": "recurring", "cron": "61 * * * *"}, "cron", "The minute must be 0–59"),
        ({"how": "recurring", "cron": "* * * * *"}, "cron", "at most once an hour"),
        ({"how": "recurring", "cron": "0 9 * * mon", "timezone": "Mars/Base"}, "timezone",
         "Choose a time zone from the list."),
        ({"how": "sometimes"}, "how", "Choose among the options listed"),
    ],
)
def test_a_bad_schedule_is_refused_beside_its_field(
    client, signed_in_staff, session, draft, data, field, error
):
    data = {"timezone": "UTC", **data}
    data["send_at"] = data.get("send_at", "").replace("{spring_change}", spring_change())
    response = post_form(client, f"{BASE}/{draft.id}/schedule", data)
    assert response.status_code == 400
    page = text(response)
    match = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page, re.S)
    assert match and error in match.group(1), page
    session.expire_all()
    assert session.get(Campaign, draft.id).status == CampaignStatus.DRAFT


def test_an_empty_audience_is_not_scheduled(client, signed_in_staff, session, staff):
    empty = make_list(session, "Nobody here")
    session.commit()
    actor = session.get(User, staff.id)
    campaign = campaigns.create_campaign(
        session,
        actor,
        CampaignDetails(CampaignKind.SURVEY_ALERT, "Survey", "", "Please answer.", [empty.id]),
        utcnow(),
    )
    session.commit()
    response = post_form(
        client, f"{BASE}/{campaign.id}/schedule", {"how": "recurring", "cron": "0 9 * * mon",
                                                    "timezone": "UTC"}
    )
    assert response.status_code == 400
    assert "Nobody would receive this campaign:" in text(response)
    session.expire_all()
    assert session.get(Campaign, campaign.id).status == CampaignStatus.DRAFT


def test_a_recurring_schedule_and_taking_it_back(client, signed_in_staff, session, draft):
    response = post_form(
        client,
        f"{BASE}/{draft.id}/schedule",
        {"how": "recurring", "cron": "0 9 * * mon", "timezone": "Europe/Paris"},
    )
    page = follow(client, response)
    assert "Scheduled: the next send is on" in page
    assert "<code>0 9 * * mon</code>" in page
    back = post_form(client, f"{BASE}/{draft.id}/unschedule")
    assert "the campaign is a draft again" in follow(client, back)
    session.expire_all()
    assert session.get(Campaign, draft.id).status == CampaignStatus.DRAFT


# Pause, resume, cancel ---------------------------------------------------------------------------
def test_pause_resume_cancel_log_one_change_each_even_when_double_clicked(
    client, signed_in_staff, session, draft
):
    send = start_sending(session, draft)
    url = f"{BASE}/{draft.id}"

    assert "Paused" in follow(client, post_form(client, f"{url}/pause", {"pause-reason": "Typo"}))
    assert "already paused" in follow(client, post_form(client, f"{url}/pause"))
    assert status_changes(session, draft.id, "paused") == 1
    assert session.get(Send, send.id).status == SendStatus.PAUSED

    assert "Resumed" in follow(client, post_form(client, f"{url}/resume"))
    assert "already being sent" in follow(client, post_form(client, f"{url}/resume"))
    assert status_changes(session, draft.id, "sending") == 2  # started, then resumed

    cancelled = follow(client, post_form(client, f"{url}/cancel"))
    assert "2 queued email(s) will not be sent" in cancelled
    assert "already cancelled" in follow(client, post_form(client, f"{url}/cancel"))
    assert status_changes(session, draft.id, "cancelled") == 1
    assert status_changes(session, draft.id, "send:cancelled") == 1
    statuses = session.scalars(sa.select(Delivery.status).where(Delivery.send_id == send.id))
    assert set(statuses) == {DeliveryStatus.SKIPPED}


def test_an_over_long_note_changes_nothing(client, signed_in_staff, session, draft):
    start_sending(session, draft)
    response = post_form(client, f"{BASE}/{draft.id}/pause", {"pause-reason": "x" * 301})
    assert "Use at most 300 characters." in follow(client, response)
    session.expire_all()
    assert session.get(Campaign, draft.id).status == CampaignStatus.SENDING


# Progress ----------------------------------------------------------------------------------------
def _deliveries(session, send: Send, statuses: list[DeliveryStatus]) -> None:
    query = sa.select(Delivery).where(Delivery.send_id == send.id).order_by(Delivery.id)
    rows = list(session.scalars(query))
    for row, status in zip(rows, statuses, strict=True):
        row.status = status
    session.commit()


def test_progress_json_counts_the_deliveries(client, signed_in_staff, session, draft):
    send = start_sending(session, draft)
    _deliveries(session, send, [DeliveryStatus.ACCEPTED, DeliveryStatus.PENDING])

    data = client.get(f"{BASE}/{draft.id}/progress").get_json()
    assert data["active"] is True
    assert data["campaign_status"] == "sending"
    [one] = data["sends"]
    assert one["id"] == send.id
    assert (one["sent"], one["queued"], one["total"], one["handled"]) == (1, 1, 2, 1)
    assert one["summary"].startswith("1 of 2 handled: 1 sent, 1 queued")

    page = text(client.get(f"{BASE}/{draft.id}"))
    assert f'<progress id="progress-{send.id}" max="2" value="1">' in page
    assert 'aria-live="polite"' in page
    assert "newsletter-progress.js" in page
    assert f'<label class="field-label" for="progress-{send.id}">' in page


def test_after_sending_the_page_shows_provider_events(client, signed_in_staff, session, draft):
    send = start_sending(session, draft)
    _deliveries(session, send, [DeliveryStatus.ACCEPTED, DeliveryStatus.ACCEPTED])
    rows = list(session.scalars(sa.select(Delivery).where(Delivery.send_id == send.id)))
    now = utcnow()
    for n, (row, kind) in enumerate(
        [(rows[0], ProviderEventKind.DELIVERED), (rows[1], ProviderEventKind.BOUNCE)]
    ):
        session.add(
            ProviderEvent(
                provider_event_id=f"e{n}",
                delivery_id=row.id,
                send_id=send.id,
                kind=kind,
                occurred_at=now,
                received_at=now,
            )
        )
    session.commit()
    sending.finish_done_sends(session, utcnow())
    session.commit()

    page = text(client.get(f"{BASE}/{draft.id}"))
    assert "<li>Delivered: 1</li>" in page and "<li>Bounced: 1</li>" in page
    assert "newsletter-progress.js" not in page
    data = client.get(f"{BASE}/{draft.id}/progress").get_json()
    assert data["active"] is False and data["campaign_status"] == "sent"


# Every page is readable ---------------------------------------------------------------------------
class _Outline(HTMLParser):
    """Headings, labels and form controls of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.labelled: set[str] = set()
        self.controls: list[str] = []
        self.scripts: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        found = dict(attrs)
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        elif tag == "label" and found.get("for"):
            self.labelled.add(found["for"])
        elif tag in ("select", "textarea", "progress") or (
            tag == "input" and found.get("type") not in ("hidden", "submit")
        ):
            self.controls.append(found.get("id") or f"<{tag} without id>")
        elif tag == "script":
            self.scripts.append(found)


def assert_readable(page: str) -> None:
    """One h1, headings that never skip a level, a label for every control, no inline script."""
    outline = _Outline()
    outline.feed(page)
    assert outline.headings.count(1) == 1, outline.headings
    for before, after in zip(outline.headings, outline.headings[1:], strict=False):
        assert after <= before + 1, outline.headings
    unlabelled = [c for c in outline.controls if c not in outline.labelled]
    assert not unlabelled, unlabelled
    assert all(script.get("src") for script in outline.scripts)


def test_every_campaign_page_is_readable(client, signed_in_staff, session, draft, research):
    one = f"{BASE}/{draft.id}"
    pages = [BASE, f"{BASE}/new", f"{one}/edit", one, f"{one}/preview", f"{one}/schedule"]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_readable(text(response))
    refused = post_form(client, f"{BASE}/new", {"subject": ""})
    assert_readable(text(refused))
    start_sending(session, draft)
    assert_readable(text(client.get(one)))
    campaigns_page = text(client.get(BASE))
    assert "Sending" in campaigns_page


@pytest.mark.browser
def test_the_progress_bar_follows_the_send_without_a_reload(
    app, page, session, staff, draft, page_problems
):
    from playwright.sync_api import expect

    app.config["NEWSLETTER_PROGRESS_INTERVAL_MS"] = 200
    send = start_sending(session, draft)
    page.goto("/sign-in")
    page.get_by_label("Email address").fill(staff.email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Code from your authenticator app").fill(totp_code_for(staff.email))
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("navigation", name="Main")).to_contain_text("Sign out")
    page.goto(f"{BASE}/{draft.id}")
    section = page.locator(f'[data-send-id="{send.id}"]')
    expect(section.locator("[data-progress-summary]")).to_contain_text("0 of 2 handled")
    page.evaluate("() => { window.__sameDocument = true; }")

    _deliveries(session, send, [DeliveryStatus.ACCEPTED, DeliveryStatus.FAILED])
    expect(section.locator("[data-progress-summary]")).to_contain_text("2 of 2 handled: 1 sent")
    expect(section.locator('[data-count="failed"]')).to_have_text("1")
    expect(section.get_by_label("Emails handled so far")).to_have_attribute("value", "2")
    sending.finish_done_sends(session, utcnow())
    session.commit()
    expect(page.locator("[data-progress-note]")).to_contain_text("Sending has finished (sent)")
    assert page.evaluate("() => window.__sameDocument") is True  # no reload happened
    page_problems.assert_none()
