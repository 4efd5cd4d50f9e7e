"""Campaign services without HTTP: drafting and editing, scheduling in a time zone or on a
recurrence, the state machine (pause, resume, cancel; edits refused once sending started),
test sends, the preview, and the read-side counts of progress and provider events."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role, User
from engage.db import Database
from engage.outbox import OutboxMessage
from engage.timeutil import utcnow
from newsletters import campaigns, queries, sending
from newsletters.campaigns import CampaignDetails, EmptyAudience
from newsletters.errors import InvalidState, NewsletterError
from newsletters.models import (
    Campaign,
    CampaignKind,
    CampaignList,
    CampaignStatus,
    CampaignStatusChange,
    Delivery,
    DeliveryStatus,
    ListVisibility,
    ProviderEvent,
    ProviderEventKind,
    Send,
    SendStatus,
)
from newsletters.schedule import InvalidSchedule
from newsletters.tokens import read_unsubscribe_token
from tests.newsletters.support import make_list, subscribe_email

SECRET = "testing-secret-key-not-for-production"


def wall(*parts: int) -> datetime:
    """A wall-clock time without a zone, as a datetime-local input gives it."""
    return datetime(*parts)  # noqa: DTZ001 - naive on purpose


def soon() -> datetime:
    """A wall-clock time a month ahead, in UTC."""
    return (utcnow() + timedelta(days=30)).replace(tzinfo=None, second=0, microsecond=0)


def details(list_ids, **changes) -> CampaignDetails:
    values = {
        "kind": CampaignKind.RESEARCH_UPDATE,
        "subject": "Spring research news",
        "preheader": "What the network learned",
        "body_markdown": "Dear {name},\n\nThe **fatigue** study has started.",
        "list_ids": list_ids,
        "audience": {},
    }
    values.update(changes)
    return CampaignDetails(**values)


def changes_of(session, campaign_id: int) -> list[tuple[str | None, str]]:
    session.expire_all()
    return [
        (row.from_status, row.to_status)
        for row in session.scalars(
            sa.select(CampaignStatusChange)
            .where(CampaignStatusChange.campaign_id == campaign_id)
            .order_by(CampaignStatusChange.id)
        )
    ]


@pytest.fixture
def staff(make_user, session) -> User:
    person = make_user(Role.STAFF, display_name="Stina Staff")
    return session.get(User, person.id)


@pytest.fixture
def research(session):
    """A public list with three confirmed readers."""
    mailing_list = make_list(session, "Research updates")
    for name in ("ana", "bo", "cy"):
        subscribe_email(session, f"{name}@example.org", [mailing_list], name=name.title())
    session.commit()
    return mailing_list


@pytest.fixture
def draft(session, staff, research) -> Campaign:
    campaign = campaigns.create_campaign(session, staff, details([research.id]), utcnow())
    session.commit()
    return campaign


def start_sending(session, campaign: Campaign) -> Send:
    """Make ``campaign`` due and run the scheduler's start job, as the scheduler would."""
    campaign.status = CampaignStatus.SCHEDULED
    campaign.next_run_at = utcnow() - timedelta(minutes=1)
    session.commit()
    sending.start_due(session, utcnow(), {})
    session.commit()
    send = session.scalar(sa.select(Send).where(Send.campaign_id == campaign.id))
    assert send is not None and send.status == SendStatus.SENDING
    return send


# Drafting ----------------------------------------------------------------------------------------
def test_a_draft_is_saved_with_its_lists_audience_and_history(session, staff, research):
    other = make_list(session, "Progress reports", visibility=ListVisibility.ACCOUNTS)
    audience = {"roles": ["participant", "clinician"], "countries": ["se"], "languages": []}
    campaign = campaigns.create_campaign(
        session, staff, details([research.id, other.id], audience=audience), utcnow()
    )
    session.commit()

    session.expire_all()
    saved = session.get(Campaign, campaign.id)
    assert saved.status == CampaignStatus.DRAFT
    assert saved.subject == "Spring research news"
    assert saved.created_by_id == staff.id
    assert saved.audience == {"roles": ["clinician", "participant"], "countries": ["SE"]}
    assert campaigns.list_ids_of(session, campaign.id) == sorted([research.id, other.id])
    assert changes_of(session, campaign.id) == [(None, "draft")]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"list_ids": []}, "Choose at least one mailing list."),
        ({"list_ids": [987654]}, "no longer exists"),
        ({"subject": "   "}, "Give the campaign a subject."),
        ({"body_markdown": ""}, "Write the newsletter's text."),
        ({"subject": "x" * 201}, "at most 200 characters"),
        ({"audience": {"roles": ["staff"]}}, "staff are not an audience"),
        ({"audience": {"countries": ["XX"]}}, "Choose countries from the list."),
        ({"audience": {"registry_ids": [424242]}}, "active registries"),
        ({"audience": {"colour": ["blue"]}}, "parts we do not know"),
    ],
)
def test_a_draft_with_bad_details_is_refused_and_nothing_saved(
    session, staff, research, change, message
):
    change = dict(change)
    list_ids = change.pop("list_ids", [research.id])
    with pytest.raises(NewsletterError) as refused:
        campaigns.create_campaign(session, staff, details(list_ids, **change), utcnow())
    session.rollback()
    assert message in refused.value.message
    assert session.scalar(sa.select(sa.func.count()).select_from(Campaign)) == 0


def test_an_archived_list_takes_no_new_campaign(session, staff, research):
    research.is_archived = True
    session.commit()
    with pytest.raises(NewsletterError, match="archived mailing list"):
        campaigns.create_campaign(session, staff, details([research.id]), utcnow())


def test_a_draft_can_be_changed(session, staff, draft, research):
    other = make_list(session, "Survey alerts")
    campaigns.update_campaign(
        session,
        staff,
        draft,
        details([other.id], subject="New subject", kind=CampaignKind.SURVEY_ALERT),
        utcnow(),
    )
    session.commit()
    session.expire_all()
    saved = session.get(Campaign, draft.id)
    assert (saved.subject, saved.kind) == ("New subject", CampaignKind.SURVEY_ALERT)
    assert campaigns.list_ids_of(session, draft.id) == [other.id]


def test_editing_while_sending_is_refused_and_changes_nothing(session, staff, draft, research):
    start_sending(session, draft)
    with pytest.raises(InvalidState) as refused:
        campaigns.update_campaign(
            session, staff, draft, details([research.id], subject="Changed"), utcnow()
        )
    session.rollback()
    assert refused.value.message.startswith(
        "This campaign is being sent; it can no longer be edited"
    )
    session.expire_all()
    assert session.get(Campaign, draft.id).subject == "Spring research news"


def test_editing_a_scheduled_campaign_may_not_empty_its_audience(session, staff, draft, research):
    campaigns.schedule_once(session, staff, draft, soon(), "UTC", utcnow())
    session.commit()
    with pytest.raises(EmptyAudience, match="Nobody would receive this campaign"):
        campaigns.update_campaign(
            session,
            staff,
            draft,
            details([research.id], audience={"languages": ["sv"]}),
            utcnow(),
        )
    session.rollback()
    session.expire_all()
    assert session.get(Campaign, draft.id).audience == {}


# Scheduling --------------------------------------------------------------------------------------
def test_nine_in_stockholm_in_winter_is_scheduled_for_eight_utc(session, staff, draft):
    now = datetime(2029, 12, 1, 12, 0, tzinfo=UTC)
    campaigns.schedule_once(session, staff, draft, wall(2030, 1, 15, 9, 0), "Europe/Stockholm", now)
    session.commit()
    session.expire_all()
    saved = session.get(Campaign, draft.id)
    assert saved.status == CampaignStatus.SCHEDULED
    assert saved.next_run_at == saved.send_at == datetime(2030, 1, 15, 8, 0, tzinfo=UTC)
    assert saved.timezone == "Europe/Stockholm"
    assert changes_of(session, draft.id)[-1] == ("draft", "scheduled")


def test_a_time_in_the_past_is_refused(session, staff, draft):
    with pytest.raises(InvalidSchedule, match="Choose a time in the future"):
        campaigns.schedule_once(session, staff, draft, wall(2020, 1, 1, 9, 0), "UTC", utcnow())
    session.rollback()
    session.expire_all()
    assert session.get(Campaign, draft.id).status == CampaignStatus.DRAFT


def test_a_time_the_clocks_skip_is_refused(session, staff, draft):
    now = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidSchedule, match="does not exist in Europe/Stockholm"):
        campaigns.schedule_once(
            session, staff, draft, wall(2030, 3, 31, 2, 30), "Europe/Stockholm", now
        )


def test_an_empty_audience_cannot_be_scheduled(session, staff, research):
    empty = make_list(session, "Nobody here")
    campaign = campaigns.create_campaign(session, staff, details([empty.id]), utcnow())
    session.commit()
    with pytest.raises(EmptyAudience) as refused:
        campaigns.schedule_once(session, staff, campaign, soon(), "UTC", utcnow())
    assert refused.value.message.startswith("Nobody would receive this campaign:")
    session.rollback()
    session.expire_all()
    assert session.get(Campaign, campaign.id).status == CampaignStatus.DRAFT


def test_a_recurring_campaign_gets_its_first_occurrence(session, staff, draft):
    now = datetime(2030, 1, 16, 12, 0, tzinfo=UTC)  # a Wednesday
    campaigns.schedule_recurring(session, staff, draft, "  0  9 * * mon ", "Europe/Paris", now)
    session.commit()
    session.expire_all()
    saved = session.get(Campaign, draft.id)
    assert saved.status == CampaignStatus.SCHEDULED
    assert saved.cron == "0 9 * * mon"
    assert saved.send_at is None
    assert saved.next_run_at == datetime(2030, 1, 21, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("61 * * * *", "The minute must be 0–59"),
        ("*/5 * * * *", "at most once an hour"),
        ("0 9 30 2 *", "never comes round"),
    ],
)
def test_bad_recurrences_are_refused(session, staff, draft, cron, message):
    with pytest.raises(InvalidSchedule, match=message):
        campaigns.schedule_recurring(session, staff, draft, cron, "UTC", utcnow())
    session.rollback()
    session.expire_all()
    assert session.get(Campaign, draft.id).status == CampaignStatus.DRAFT


def test_rescheduling_is_logged_and_unscheduling_makes_a_draft(session, staff, draft):
    now = datetime(2029, 12, 1, tzinfo=UTC)
    campaigns.schedule_once(session, staff, draft, wall(2030, 1, 15, 9, 0), "UTC", now)
    campaigns.schedule_recurring(session, staff, draft, "0 8 1 * *", "UTC", now)
    campaigns.unschedule(session, staff, draft, now)
    session.commit()
    session.expire_all()
    saved = session.get(Campaign, draft.id)
    assert (saved.status, saved.next_run_at) == (CampaignStatus.DRAFT, None)
    assert changes_of(session, draft.id) == [
        (None, "draft"),
        ("draft", "scheduled"),
        ("scheduled", "scheduled"),
        ("scheduled", "draft"),
    ]
    with pytest.raises(InvalidState, match="not scheduled"):
        campaigns.unschedule(session, staff, saved, now)


def test_a_sending_campaign_cannot_be_scheduled_again(session, staff, draft):
    start_sending(session, draft)
    with pytest.raises(InvalidState, match="only a draft or a scheduled campaign"):
        campaigns.schedule_recurring(session, staff, draft, "0 9 * * mon", "UTC", utcnow())


# Pause, resume, cancel ---------------------------------------------------------------------------
def test_pause_and_resume_change_campaign_and_send_once_each(session, staff, draft):
    send = start_sending(session, draft)
    before = len(changes_of(session, draft.id))

    campaigns.pause(session, staff, draft, utcnow(), "Wrong link in the text")
    session.commit()
    with pytest.raises(InvalidState, match="already paused"):
        campaigns.pause(session, staff, draft, utcnow())
    session.rollback()

    session.expire_all()
    assert session.get(Campaign, draft.id).status == CampaignStatus.PAUSED
    assert session.get(Send, send.id).status == SendStatus.PAUSED
    assert changes_of(session, draft.id)[before:] == [
        ("sending", "paused"),
        ("send:sending", "send:paused"),
    ]
    reason = session.scalar(
        sa.select(CampaignStatusChange.reason).where(CampaignStatusChange.to_status == "paused")
    )
    assert reason == "Wrong link in the text"

    campaigns.resume(session, staff, draft, utcnow())
    session.commit()
    with pytest.raises(InvalidState, match="already being sent"):
        campaigns.resume(session, staff, draft, utcnow())
    session.rollback()
    session.expire_all()
    assert session.get(Campaign, draft.id).status == CampaignStatus.SENDING
    assert session.get(Send, send.id).status == SendStatus.SENDING
    assert changes_of(session, draft.id)[before + 2 :] == [
        ("paused", "sending"),
        ("send:paused", "send:sending"),
    ]


def test_cancel_skips_the_queued_emails_and_leaves_the_rest(session, staff, draft):
    send = start_sending(session, draft)
    rows = list(session.scalars(sa.select(Delivery).where(Delivery.send_id == send.id)))
    rows[0].status = DeliveryStatus.ACCEPTED
    rows[1].status = DeliveryStatus.CLAIMED
    session.commit()

    skipped = campaigns.cancel(session, staff, draft, utcnow(), "")
    session.commit()
    with pytest.raises(InvalidState, match="already cancelled"):
        campaigns.cancel(session, staff, draft, utcnow())
    session.rollback()

    assert skipped == 1
    session.expire_all()
    assert session.get(Campaign, draft.id).status == CampaignStatus.CANCELLED
    assert session.get(Campaign, draft.id).next_run_at is None
    assert session.get(Send, send.id).status == SendStatus.CANCELLED
    after = {
        row.id: (row.status, row.last_error)
        for row in session.scalars(sa.select(Delivery).where(Delivery.send_id == send.id))
    }
    assert after[rows[0].id] == (DeliveryStatus.ACCEPTED, None)
    assert after[rows[1].id] == (DeliveryStatus.CLAIMED, None)
    assert after[rows[2].id] == (DeliveryStatus.SKIPPED, "campaign cancelled")
    cancelled = ("cancelled", "send:cancelled")
    assert [c for c in changes_of(session, draft.id) if c[1] in cancelled] == [
        ("send:sending", "send:cancelled"),
        ("sending", "cancelled"),
    ]


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (CampaignStatus.DRAFT, "nothing to cancel"),
        (CampaignStatus.SENT, "has been sent"),
    ],
)
def test_cancel_is_refused_where_it_makes_no_sense(session, staff, draft, status, message):
    draft.status = status
    session.commit()
    with pytest.raises(InvalidState, match=message):
        campaigns.cancel(session, staff, draft, utcnow())


def test_pausing_a_draft_is_refused(session, staff, draft):
    with pytest.raises(InvalidState, match="only a campaign that is being sent can be paused"):
        campaigns.pause(session, staff, draft, utcnow())


def test_two_staff_pausing_at_once_pause_once(app, session, staff, draft):
    """The second waits for the first one's lock and then hears it is already paused."""
    start_sending(session, draft)
    first_locked = threading.Event()
    outcomes: dict[str, str] = {}

    def first() -> None:
        own = Database.new_session(app)
        try:
            campaigns.pause(own, own.get(User, staff.id), own.get(Campaign, draft.id), utcnow())
            first_locked.set()
            threading.Event().wait(0.3)
            own.commit()
            outcomes["first"] = "paused"
        finally:
            own.close()

    def second() -> None:
        first_locked.wait(5)
        own = Database.new_session(app)
        try:
            campaigns.pause(own, own.get(User, staff.id), own.get(Campaign, draft.id), utcnow())
            own.commit()
            outcomes["second"] = "paused"
        except InvalidState as refused:
            own.rollback()
            outcomes["second"] = refused.message
        finally:
            own.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)

    assert outcomes == {"first": "paused", "second": "This campaign is already paused."}
    assert [c for c in changes_of(session, draft.id) if c[1] == "paused"] == [
        ("sending", "paused")
    ]


# Test send and preview ---------------------------------------------------------------------------
def test_a_test_send_is_queued_once_per_version(app, session, staff, draft, research):
    assert campaigns.test_send(session, staff, draft, utcnow()) is True
    session.commit()
    assert campaigns.test_send(session, staff, draft, utcnow()) is False
    session.commit()
    campaigns.update_campaign(
        session, staff, draft, details([research.id], subject="Corrected"), utcnow()
    )
    session.commit()
    assert campaigns.test_send(session, staff, draft, utcnow()) is True
    session.commit()

    rows = list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))
    assert [(row.kind, row.user_id, row.payload) for row in rows] == [
        ("newsletter_test", staff.id, {"campaign_id": draft.id}),
        ("newsletter_test", staff.id, {"campaign_id": draft.id}),
    ]


def test_a_test_send_looks_like_the_real_newsletter(app, session, staff, draft, research):
    campaigns.test_send(session, staff, draft, utcnow())
    session.commit()
    row = session.scalar(sa.select(OutboxMessage))
    with app.app_context():
        message = campaigns.render_test_send(session, row)

    assert message.to == staff.email
    assert message.subject == "[Test] Spring research news"
    assert "Dear Stina Staff," in message.text
    assert "<strong>fatigue</strong>" in message.html
    assert "Stina Staff" in message.html
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = message.headers["List-Unsubscribe"].strip("<>").split(">")[0]
    assert link.startswith("http://engage.test/newsletters/unsubscribe/")
    token = read_unsubscribe_token(SECRET, link.rsplit("/", 1)[1])
    assert token.list_id == research.id


def test_a_test_send_needs_a_confirmed_address(make_user, session, draft):
    unconfirmed = session.get(User, make_user(Role.STAFF, email_verified=False).id)
    with pytest.raises(NewsletterError, match="Confirm your email address first"):
        campaigns.test_send(session, unconfirmed, draft, utcnow())


def test_the_preview_is_sanitised_and_names_alex(app, session, staff, research):
    body = "Dear {name},\n\n<script>alert('x')</script>\n\n## Results\n\n*Thank you*"
    campaign = campaigns.create_campaign(
        session, staff, details([research.id], body_markdown=body), utcnow()
    )
    with app.app_context():
        preview = queries.render_preview(campaign, base_url="http://engage.test")
    assert "<script" not in preview.body_html
    assert "Dear Alex," in preview.body_html
    assert "<em>Thank you</em>" in preview.body_html
    assert preview.removed_tags == ["h2", "script"]
    assert "Dear Alex," in preview.text
    assert "-name-" not in preview.text and "-unsubscribe_url-" not in preview.text


# Read-side counts --------------------------------------------------------------------------------
def _send_with(session, campaign, statuses: list[DeliveryStatus]) -> Send:
    now = utcnow()
    send = Send(
        campaign_id=campaign.id,
        occurrence_at=now,
        status=SendStatus.SENDING,
        subject=campaign.subject,
        body_markdown=campaign.body_markdown,
        audience_size=len(statuses),
        started_at=now,
    )
    session.add(send)
    session.flush()
    subscribers = [
        subscribe_email(session, f"p{send.id}-{i}@example.org", []) for i in range(len(statuses))
    ]
    list_id = campaigns.list_ids_of(session, campaign.id)[0]
    for subscriber, status in zip(subscribers, statuses, strict=True):
        session.add(
            Delivery(
                send_id=send.id,
                subscriber_id=subscriber.id,
                list_id=list_id,
                email=subscriber.email,
                status=status,
                next_attempt_at=now,
            )
        )
    session.flush()
    return send


def test_progress_and_event_counts_are_grouped_per_send(session, draft):
    s = DeliveryStatus
    first = _send_with(session, draft, [s.PENDING, s.CLAIMED, s.ACCEPTED, s.ACCEPTED, s.FAILED])
    second = _send_with(session, draft, [s.SUPPRESSED, s.SKIPPED, s.UNKNOWN])
    deliveries = list(session.scalars(sa.select(Delivery).where(Delivery.send_id == first.id)))
    now = utcnow()
    for n, (delivery, kind) in enumerate(
        [
            (deliveries[2], ProviderEventKind.DELIVERED),
            (deliveries[2], ProviderEventKind.DELIVERED),  # SendGrid said it twice
            (deliveries[3], ProviderEventKind.BOUNCE),
            (deliveries[3], ProviderEventKind.SPAM_REPORT),
            (deliveries[3], ProviderEventKind.GROUP_UNSUBSCRIBE),
            (deliveries[2], ProviderEventKind.OPEN),
        ]
    ):
        session.add(
            ProviderEvent(
                provider_event_id=f"evt-{n}",
                delivery_id=delivery.id,
                send_id=first.id,
                kind=kind,
                occurred_at=now,
                received_at=now,
            )
        )
    session.commit()

    progress = queries.send_progress(session, [first.id, second.id, 999999])
    assert (progress[first.id].queued, progress[first.id].in_flight) == (1, 1)
    assert (progress[first.id].sent, progress[first.id].failed) == (2, 1)
    assert (progress[first.id].total, progress[first.id].handled) == (5, 3)
    assert progress[first.id].as_dict()["queued"] == 2
    assert (progress[second.id].suppressed, progress[second.id].skipped) == (1, 1)
    assert progress[second.id].unknown == 1
    assert progress[999999].total == 0

    events = queries.event_counts(session, [first.id, second.id])
    assert events[first.id].rows() == [
        ("Delivered", 1),
        ("Bounced", 1),
        ("Dropped", 0),
        ("Reported as spam", 1),
        ("Unsubscribed", 1),
    ]
    assert events[second.id].delivered == 0


def test_the_campaign_list_pages_and_names_lists(session, staff, research):
    for n in range(3):
        campaigns.create_campaign(session, staff, details([research.id], subject=f"N{n}"), utcnow())
    session.commit()
    first = queries.campaign_rows(session, page=1, per_page=2)
    second = queries.campaign_rows(session, page=2, per_page=2)
    assert (first.total, first.pages) == (3, 2)
    assert len(first.rows) == 2 and len(second.rows) == 1
    assert first.rows[0].list_names == ["Research updates"]


def test_history_names_the_staff_member(session, staff, draft):
    history = queries.status_history(session, draft.id)
    assert [(row.to_label, row.actor_name) for row in history] == [("draft", "Stina Staff")]
    assert session.scalar(sa.select(sa.func.count()).select_from(CampaignList)) == 1
