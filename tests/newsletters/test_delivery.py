"""Starting a due campaign and delivering it: audience, personal copies, batches, retries."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role
from engage.app import create_app
from engage.db import Database
from engage.timeutil import utcnow
from newsletters import audience, delivery, sending
from newsletters.models import (
    Campaign,
    CampaignStatus,
    CampaignStatusChange,
    Delivery,
    DeliveryStatus,
    ListVisibility,
    Send,
    SendStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from newsletters.tokens import read_unsubscribe_token
from tests import consent_support
from tests.fake_sendgrid import FakeSendGrid
from tests.newsletters.support import make_campaign, make_list, subscribe_email, subscribe_user

NOW = utcnow()


def statuses(session, send_id: int) -> Counter:
    session.expire_all()
    return Counter(
        session.scalars(sa.select(Delivery.status).where(Delivery.send_id == send_id)).all()
    )


def start(session, now=None) -> list[Send]:
    """Run the start job and commit; return the sends it created."""
    before = set(session.scalars(sa.select(Send.id)))
    sending.start_due(session, now or utcnow(), {})
    session.commit()
    return [s for s in session.scalars(sa.select(Send).order_by(Send.id)) if s.id not in before]


@pytest.fixture
def sendgrid_app(app, fake_sendgrid: FakeSendGrid):
    """The app on the same database, sending through the real client to the fake SendGrid."""

    def make(**extra):
        other = create_app(
            {
                "ENGAGE_CONFIG": "testing",
                "DATABASE_URL": app.config["DATABASE_URL"],
                "MAIL_BACKEND": "sendgrid",
                "SENDGRID_API_KEY": "SG.test-key",
                "SENDGRID_API_HOST": fake_sendgrid.url,
                "SENDGRID_TIMEOUT": 1,
                "BASE_URL": "http://engage.test",
                "NEWSLETTER_RETRY_BASE_SECONDS": 0,
                **extra,
            }
        )
        made.append(other)
        return other

    made: list = []
    yield make
    for other in made:
        Database.engine(other).dispose()


@pytest.fixture
def audience_world(app, session, make_user):
    """Two lists; confirmed, pending, unsubscribed and suppressed subscribers; one account."""
    member = make_user(Role.PARTICIPANT, email="carla@example.org", display_name="Carla")
    research = make_list(session, "Research updates")
    progress = make_list(session, "Progress reports", visibility=ListVisibility.ACCOUNTS)
    subscribe_email(session, "ana@example.org", [research], name="Ana")
    subscribe_email(session, "bo@example.org", [research], name="<b>Bo</b>")
    subscribe_email(session, "pending@example.org", [research], status=SubscriptionStatus.PENDING)
    subscribe_email(session, "left@example.org", [research], status=SubscriptionStatus.UNSUBSCRIBED)
    subscribe_email(session, "bounced@example.org", [research])
    session.add(
        Suppression(email="bounced@example.org", reason=SuppressionReason.BOUNCE, created_at=NOW)
    )
    subscribe_user(session, member.id, [research, progress])
    # The same person also signed up publicly with the address of their account.
    subscribe_email(session, "Carla@example.org", [research], name="Carla")
    campaign = make_campaign(
        session,
        [research, progress],
        status=CampaignStatus.SCHEDULED,
        send_at=utcnow() - timedelta(minutes=1),
    )
    session.commit()
    return campaign


def test_a_due_campaign_reaches_each_confirmed_unsuppressed_subscriber_once(
    app, session, audience_world, mailbox
):
    lists = _lists(session, audience_world)
    assert audience.count_audience(session, lists, {}) == 3
    # Staff pages: exact for a small audience; past the limit, the candidate rows as an upper
    # bound (Carla counts three times: on both lists with her account, once without it).
    assert audience.estimate(session, lists, {}) == audience.AudienceEstimate(3, True)
    assert audience.estimate(session, lists, {}, exact_limit=0) == audience.AudienceEstimate(
        5, False
    )
    assert not audience.is_empty(session, lists, {})

    [send] = start(session)
    report = delivery.deliver(app)

    assert send.audience_size == 3
    assert report.accepted == 3
    assert sorted(m.to for m in mailbox.messages) == [
        "ana@example.org",
        "bo@example.org",
        "carla@example.org",
    ]
    assert statuses(session, send.id) == Counter({DeliveryStatus.ACCEPTED: 3})
    session.expire_all()
    assert session.get(Send, send.id).status == SendStatus.SENT
    assert session.get(Campaign, audience_world.id).status == CampaignStatus.SENT
    assert delivery.deliver(app).accepted == 0
    assert len(mailbox.messages) == 3


def _lists(session, campaign) -> list[int]:
    return sending.list_ids_of(session, campaign.id)


def test_each_copy_is_personal_with_its_own_one_click_unsubscribe(
    app, session, audience_world, mailbox
):
    start(session)
    delivery.deliver(app)

    ana = mailbox.last_to("ana@example.org")
    assert "Dear Ana," in ana.text
    assert "Dear Ana," in ana.html
    bo = mailbox.last_to("bo@example.org")
    assert "&lt;b&gt;Bo&lt;/b&gt;" in bo.html and "<b>Bo</b>" not in bo.html
    assert "Dear <b>Bo</b>," in bo.text
    assert ana.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    tokens = set()
    for message in (ana, bo):
        link = message.headers["List-Unsubscribe"].strip("<>").split(">")[0]
        assert link.startswith("http") and "/newsletters/unsubscribe/" in link
        token = link.rsplit("/", 1)[1]
        read_unsubscribe_token(app.config["SECRET_KEY"], token)
        assert message.link("/newsletters/unsubscribe/").endswith(token)
        tokens.add(token)
    assert len(tokens) == 2


def test_the_audience_is_frozen_when_sending_starts(app, session, audience_world, mailbox):
    [send] = start(session)
    research = _lists(session, audience_world)[0]
    subscribe_email(session, "late@example.org", [_list(session, research)])
    session.commit()

    delivery.deliver(app)

    assert "late@example.org" not in [m.to for m in mailbox.messages]
    assert len(mailbox.messages) == 3


def _list(session, list_id):
    from newsletters.models import MailingList

    return session.get(MailingList, list_id)


def test_unsubscribing_or_being_suppressed_after_the_freeze_skips_the_rest(
    app, session, audience_world, mailbox
):
    [send] = start(session)
    ana = session.scalar(
        sa.select(Delivery).where(Delivery.send_id == send.id, Delivery.email == "ana@example.org")
    )
    subscription = session.scalar(
        sa.select(Subscription).where(
            Subscription.subscriber_id == ana.subscriber_id, Subscription.list_id == ana.list_id
        )
    )
    subscription.status = SubscriptionStatus.UNSUBSCRIBED
    session.add(
        Suppression(email="bo@example.org", reason=SuppressionReason.SPAM_REPORT, created_at=NOW)
    )
    session.commit()

    report = delivery.deliver(app)

    assert [m.to for m in mailbox.messages] == ["carla@example.org"]
    assert (report.skipped, report.suppressed, report.accepted) == (1, 1, 1)
    assert statuses(session, send.id) == Counter(
        {
            DeliveryStatus.ACCEPTED: 1,
            DeliveryStatus.SKIPPED: 1,
            DeliveryStatus.SUPPRESSED: 1,
        }
    )


def test_withdrawing_a_lists_consent_scope_mid_send_stops_the_rest(
    app, session, make_user, mailbox
):
    staff = make_user(Role.STAFF)
    people = [make_user(Role.PARTICIPANT, email=f"p{n}@example.org") for n in range(4)]
    never = make_user(Role.PARTICIPANT, email="never@example.org")
    consent_support.publish(session, staff)
    for person in people:
        consent_support.join(app, session, person, SURVEY_RECONTACT=True)
    consent_support.join(app, session, never, SURVEY_RECONTACT=False)
    surveys = make_list(
        session,
        "Survey alerts",
        visibility=ListVisibility.ACCOUNTS,
        required_scope="SURVEY_RECONTACT",
    )
    for person in [*people, never]:
        subscribe_user(session, person.id, [surveys])
    make_campaign(
        session, [surveys], status=CampaignStatus.SCHEDULED, send_at=utcnow() - timedelta(1)
    )
    session.commit()
    [send] = start(session)
    assert send.audience_size == 4  # the one who never permitted it is not in the audience

    app.config["NEWSLETTER_BATCH_SIZE"] = 1
    try:
        delivery.deliver(app, max_batches=1)
        consent_support.decide(app, session, people[3], {"SURVEY_RECONTACT": False})
        delivery.deliver(app)
    finally:
        app.config["NEWSLETTER_BATCH_SIZE"] = 1000

    received = sorted(m.to for m in mailbox.messages)
    assert received == ["p0@example.org", "p1@example.org", "p2@example.org"]
    skipped = session.scalar(
        sa.select(Delivery).where(Delivery.email == "p3@example.org", Delivery.send_id == send.id)
    )
    session.refresh(skipped)
    assert skipped.status == DeliveryStatus.SKIPPED
    assert "consent" in skipped.last_error


def test_one_request_carries_up_to_the_batch_size_with_only_ids_for_the_provider(
    app, session, sendgrid_app, fake_sendgrid
):
    research = make_list(session, "Research updates")
    for n in range(5):
        subscribe_email(session, f"reader{n}@example.org", [research], name=f"Reader {n}")
    campaign = make_campaign(
        session, [research], status=CampaignStatus.SCHEDULED, send_at=utcnow() - timedelta(1)
    )
    session.commit()
    [send] = start(session)

    report = delivery.deliver(sendgrid_app(NEWSLETTER_BATCH_SIZE=2))

    assert (report.requests, report.accepted) == (3, 5)
    bodies = [r.body for r in fake_sendgrid.mail_sends]
    assert [len(b["personalizations"]) for b in bodies] == [2, 2, 1]
    assert bodies[0]["categories"] == ["newsletter", f"campaign-{campaign.id}", f"send-{send.id}"]
    ids = set()
    for body in bodies:
        assert "Reader" not in json.dumps(body["categories"])
        for personalization in body["personalizations"]:
            args = personalization["custom_args"]
            assert set(args) == {"delivery_id", "send_id"} and args["send_id"] == str(send.id)
            ids.add(int(args["delivery_id"]))
            headers = personalization["headers"]
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert "/newsletters/unsubscribe/" in headers["List-Unsubscribe"]
            assert personalization["substitutions"]["-name-"].startswith("Reader ")
    assert len(ids) == 5
    session.expire_all()
    accepted = session.scalars(sa.select(Delivery).where(Delivery.send_id == send.id)).all()
    message_ids = {r.message_id for r in fake_sendgrid.mail_sends}
    assert {d.provider_message_id for d in accepted} == message_ids


def _one_send(session, count: int = 3) -> Send:
    research = make_list(session, "Research updates")
    for n in range(count):
        subscribe_email(session, f"reader{n}@example.org", [research])
    make_campaign(
        session, [research], status=CampaignStatus.SCHEDULED, send_at=utcnow() - timedelta(1)
    )
    session.commit()
    [send] = start(session)
    return send


def test_a_rate_limited_batch_waits_for_the_providers_reset(
    app, session, sendgrid_app, fake_sendgrid
):
    send = _one_send(session)
    fake_sendgrid.enqueue(
        429,
        {"errors": [{"message": "too many requests"}]},
        headers={"X-RateLimit-Reset": str(int(utcnow().timestamp()) + 600)},
    )
    worker = sendgrid_app()

    report = delivery.deliver(worker)

    assert (report.retrying, report.accepted, len(fake_sendgrid.mail_sends)) == (3, 0, 1)
    session.expire_all()
    rows = session.scalars(sa.select(Delivery).where(Delivery.send_id == send.id)).all()
    assert {r.status for r in rows} == {DeliveryStatus.PENDING}
    assert all(r.next_attempt_at >= utcnow() + timedelta(seconds=590) for r in rows)
    assert all(r.attempts == 1 and "429" in r.last_error for r in rows)
    # Not due yet: nothing more is sent until the reset.
    assert delivery.deliver(worker).requests == 0
    later = delivery.deliver(worker, now=utcnow() + timedelta(minutes=11))
    assert later.accepted == 3 and len(fake_sendgrid.mail_sends) == 2


def test_server_errors_are_retried_and_a_refusal_fails_with_its_reason(
    app, session, sendgrid_app, fake_sendgrid
):
    send = _one_send(session, count=4)
    fake_sendgrid.enqueue(500)
    fake_sendgrid.enqueue(503)
    fake_sendgrid.enqueue(400, {"errors": [{"message": "The from address does not match"}]})
    worker = sendgrid_app(NEWSLETTER_BATCH_SIZE=2)

    report = delivery.deliver(worker)  # retries are due at once here (a zero base delay)

    assert (report.retrying, report.failed, report.accepted) == (4, 2, 2)
    assert [r.response_status for r in fake_sendgrid.mail_sends] == [500, 503, 400, 202]
    session.expire_all()
    failed = session.scalars(
        sa.select(Delivery).where(
            Delivery.send_id == send.id, Delivery.status == DeliveryStatus.FAILED
        )
    ).all()
    assert len(failed) == 2
    assert all("The from address does not match" in r.last_error for r in failed)
    assert statuses(session, send.id)[DeliveryStatus.ACCEPTED] == 2


def test_a_timeout_after_sending_leaves_the_batch_unknown_and_never_resends_it(
    app, session, sendgrid_app, fake_sendgrid
):
    send = _one_send(session)
    fake_sendgrid.enqueue(202, delay=2.5)
    worker = sendgrid_app()

    report = delivery.deliver(worker)
    again = delivery.deliver(worker, now=utcnow() + timedelta(hours=2))

    assert (report.unknown, again.requests) == (3, 0)
    assert len(fake_sendgrid.mail_sends) == 1
    assert statuses(session, send.id) == Counter({DeliveryStatus.UNKNOWN: 3})
    session.expire_all()
    assert session.get(Send, send.id).status == SendStatus.SENT


def test_a_paused_send_is_not_claimed_until_it_is_resumed(app, session, audience_world, mailbox):
    [send] = start(session)
    send.status = SendStatus.PAUSED
    session.commit()

    assert delivery.deliver(app).batches == 0
    send.status = SendStatus.SENDING
    session.commit()
    assert delivery.deliver(app).accepted == 3


def test_starting_twice_creates_one_send(app, session, audience_world):
    when = utcnow()
    first = start(session, when)
    # The same occurrence again (e.g. a second scheduler, or the campaign re-scheduled to it).
    campaign = session.get(Campaign, audience_world.id)
    campaign.status = CampaignStatus.SCHEDULED
    campaign.next_run_at = first[0].occurrence_at
    session.commit()
    again = start(session, when)

    assert len(first) == 1 and again == []
    assert session.scalar(sa.select(sa.func.count()).select_from(Send)) == 1
    assert session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 3


def test_an_empty_audience_finishes_at_once(app, session):
    research = make_list(session, "Research updates")
    make_campaign(
        session, [research], status=CampaignStatus.SCHEDULED, send_at=utcnow() - timedelta(1)
    )
    session.commit()

    [send] = start(session)

    assert send.status == SendStatus.SENT and send.audience_size == 0


def test_every_status_change_is_logged(app, session, audience_world):
    [send] = start(session)
    delivery.deliver(app)

    session.expire_all()
    changes = session.scalars(
        sa.select(CampaignStatusChange)
        .where(CampaignStatusChange.campaign_id == audience_world.id)
        .order_by(CampaignStatusChange.id)
    ).all()
    assert [(c.from_status, c.to_status) for c in changes] == [
        (None, "send:sending"),
        ("scheduled", "sending"),
        ("send:sending", "send:sending"),  # the audience is fixed
        ("send:sending", "send:sent"),
        ("sending", "sent"),
    ]
    assert "The audience is fixed: 3 recipient(s)" in [c.reason for c in changes]


def test_unknown_emails_are_settled_by_provider_events_or_by_staff_after_a_day(
    app, session, sendgrid_app, fake_sendgrid, make_user
):
    from engage.accounts.models import User
    from newsletters import events, unknown
    from tests.sendgrid_events import sendgrid_event

    staff = make_user(Role.STAFF)
    send = _one_send(session)
    fake_sendgrid.enqueue(202, delay=2.5)  # answers after the client gave up
    worker = sendgrid_app()
    delivery.deliver(worker)
    first, second, third = session.scalars(
        sa.select(Delivery).where(Delivery.send_id == send.id).order_by(Delivery.id)
    ).all()

    summary = events.record_events(
        session,
        [sendgrid_event("processed", first), sendgrid_event("dropped", second, reason="Bounced")],
        utcnow(),
    )
    session.commit()
    assert summary.recorded == 2
    session.expire_all()
    assert (first.status, second.status, third.status) == (
        DeliveryStatus.ACCEPTED,
        DeliveryStatus.FAILED,
        DeliveryStatus.UNKNOWN,
    )

    actor = session.get(User, staff.id)
    now = utcnow()
    assert (
        unknown.settle_unreported(
            session, actor, session.get(Send, send.id), unknown.UnknownAction.RESEND, now
        )
        == 0
    )  # not a day yet: the provider may still report
    later = now + timedelta(hours=25)
    assert (
        unknown.settle_unreported(
            session, actor, session.get(Send, send.id), unknown.UnknownAction.RESEND, later
        )
        == 1
    )
    session.commit()
    report = delivery.deliver(worker, now=later)

    assert report.accepted == 1
    resent = fake_sendgrid.mail_sends[-1].body["personalizations"]
    assert [p["custom_args"]["delivery_id"] for p in resent] == [str(third.id)]
    assert statuses(session, send.id) == Counter(
        {DeliveryStatus.ACCEPTED: 2, DeliveryStatus.FAILED: 1}
    )


def test_staff_settle_unknown_emails_from_the_campaign_page(
    app, session, client, sendgrid_app, fake_sendgrid, make_user
):
    from tests.conftest import post_form, sign_in

    staff = make_user(Role.STAFF)
    send = _one_send(session)
    fake_sendgrid.enqueue(202, delay=2.5)
    delivery.deliver(sendgrid_app())
    session.execute(
        sa.update(Delivery)
        .where(Delivery.send_id == send.id)
        .values(claimed_at=utcnow() - timedelta(hours=30))
    )
    session.commit()
    sign_in(client, staff)

    page = client.get(f"/staff/newsletters/campaigns/{send.campaign_id}")
    assert "Outcome unknown" in page.get_data(as_text=True)
    empty = post_form(client, f"/staff/newsletters/sends/{send.id}/unknown", {})
    explained = client.get(empty.headers["Location"]).get_data(as_text=True)
    forged = post_form(
        client, f"/staff/newsletters/sends/{send.id}/unknown", {"action": "accepted'; --"}
    )
    assert statuses(session, send.id) == Counter({DeliveryStatus.UNKNOWN: 3})
    answer = post_form(
        client,
        f"/staff/newsletters/sends/{send.id}/unknown",
        {"action": "newsletter_unknown_counted_sent"},
        follow_redirects=True,
    )

    # Nothing chosen, or a choice not offered: explained on the campaign page, where the
    # choice is, and nothing changes.
    assert (empty.status_code, forged.status_code) == (303, 303)
    assert empty.headers["Location"].endswith(f"#unknown-{send.id}")
    assert "Choose what should happen to these emails" in explained
    assert "3 email(s) now count as sent" in answer.get_data(as_text=True)
    assert statuses(session, send.id) == Counter({DeliveryStatus.ACCEPTED: 3})


def test_a_large_audience_is_written_in_chunks_that_delivery_starts_on_and_a_cut_off_freeze_resumes(
    app, session, mailbox
):
    from newsletters import audience as audience_module

    research = make_list(session, "Research updates")
    for n in range(5):
        subscribe_email(session, f"reader{n}@example.org", [research], name=f"Reader {n}")
    campaign = make_campaign(
        session, [research], status=CampaignStatus.SCHEDULED, send_at=utcnow() - timedelta(1)
    )
    session.commit()
    started_at = utcnow()
    send = sending.start_occurrence(session, campaign, started_at)
    session.commit()
    # The first chunk is written and committed; then the freezing process stops (a crash).
    audience_module.freeze_chunk(
        session, send, sending.list_ids_of(session, campaign.id), {}, chunk_ids=2
    )
    session.commit()
    subscribe_email(session, "after-start@example.org", [research])  # confirmed too late
    session.commit()

    early = delivery.deliver(app)  # workers start on what is written
    assert early.accepted == 2
    session.expire_all()
    assert session.get(Send, send.id).status == SendStatus.SENDING  # not finished: freezing

    summary = sending.start_due(session, utcnow(), {"NEWSLETTER_FREEZE_CHUNK_IDS": 2})
    session.commit()
    later = delivery.deliver(app)

    assert "resumed writing 1 audience(s)" in summary
    assert later.accepted == 3
    assert sorted(m.to for m in mailbox.messages) == [f"reader{n}@example.org" for n in range(5)]
    session.expire_all()
    finished = session.get(Send, send.id)
    assert (finished.status, finished.audience_size, finished.is_freezing) == (
        SendStatus.SENT,
        5,
        False,
    )
