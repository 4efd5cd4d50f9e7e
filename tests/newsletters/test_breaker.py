"""The circuit breaker: a send whose bounce or spam-report rate crosses its limit is paused with
its campaign, once, and staff hear about it by email."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from engage import delivery as mail_delivery
from engage.accounts.models import Role, User
from engage.outbox import OutboxMessage
from engage.timeutil import utcnow
from newsletters.breaker import PAUSED_NOTICE, check_sends
from newsletters.events import record_events
from newsletters.models import (
    Campaign,
    CampaignStatus,
    CampaignStatusChange,
    DeliveryStatus,
    Send,
    SendStatus,
)
from tests.newsletters.support_events import many_deliveries
from tests.sendgrid_events import WEBHOOK_PATH, EventSigner, post_events, sendgrid_event


@pytest.fixture
def staff(make_user):
    """Two active staff members, an inactive one and a participant (who is never told)."""
    return [
        make_user(Role.STAFF, email="ops1@example.org"),
        make_user(Role.STAFF, email="ops2@example.org"),
        make_user(Role.STAFF, email="gone@example.org", is_active=False),
        make_user(Role.PARTICIPANT, email="reader@example.org"),
    ]


def _bounce(session, deliveries, kind: str = "bounce"):
    """Record one ``kind`` event for each of ``deliveries`` and commit."""
    summary = record_events(
        session, [sendgrid_event(kind, d, type="bounce") for d in deliveries], utcnow()
    )
    session.commit()
    session.expire_all()
    return summary


def _notices(session) -> list[OutboxMessage]:
    return list(
        session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.kind == PAUSED_NOTICE)
            .order_by(OutboxMessage.user_id)
        )
    )


def _statuses(session, send: Send) -> tuple[SendStatus, CampaignStatus]:
    session.expire_all()
    found = session.get(Send, send.id)
    return found.status, session.get(Campaign, found.campaign_id).status


def test_a_send_past_the_bounce_limit_is_paused_with_its_campaign(session, staff):
    send, deliveries = many_deliveries(session, 200)
    session.commit()

    summary = _bounce(session, deliveries[:11])  # 5.5% of 200

    assert summary.paused_send_ids == [send.id]
    assert _statuses(session, send) == (SendStatus.PAUSED, CampaignStatus.PAUSED)
    reasons = session.scalars(
        sa.select(CampaignStatusChange.reason).where(
            CampaignStatusChange.send_id == send.id,
            CampaignStatusChange.to_status.in_(["paused", "send:paused"]),
        )
    ).all()
    assert reasons == ["Paused automatically: 5.5% of accepted messages bounced (limit 5%)"] * 2


def test_a_rate_exactly_at_the_limit_does_not_pause(session, staff):
    send, deliveries = many_deliveries(session, 200)
    session.commit()

    summary = _bounce(session, deliveries[:10])  # 5% of 200

    assert summary.paused_send_ids == []
    assert _statuses(session, send) == (SendStatus.SENDING, CampaignStatus.SENDING)
    assert _notices(session) == []


def test_too_few_accepted_messages_never_pause(session, staff):
    """Half of 150 bounced, but 150 is below the sample the rate needs to mean something."""
    send, deliveries = many_deliveries(session, 150)
    session.commit()

    summary = _bounce(session, deliveries[:75])

    assert summary.paused_send_ids == []
    assert _statuses(session, send) == (SendStatus.SENDING, CampaignStatus.SENDING)


def test_deliveries_not_yet_accepted_do_not_count_towards_the_sample(session, staff):
    send, deliveries = many_deliveries(session, 250)
    for queued in deliveries[150:]:
        queued.status = DeliveryStatus.PENDING
    session.commit()

    assert _bounce(session, deliveries[:30]).paused_send_ids == []


def test_a_send_past_the_spam_report_limit_is_paused(session, staff):
    send, deliveries = many_deliveries(session, 300)
    session.commit()

    summary = _bounce(session, deliveries[:1], kind="spamreport")  # 0.33% of 300

    assert summary.paused_send_ids == [send.id]
    reason = session.scalar(
        sa.select(CampaignStatusChange.reason).where(
            CampaignStatusChange.to_status == "send:paused"
        )
    )
    assert reason == (
        "Paused automatically: 0.33% of accepted messages were reported as spam (limit 0.3%)"
    )


def test_limits_come_from_the_configuration(app, session, staff):
    send, deliveries = many_deliveries(session, 20)
    session.commit()
    config = {
        "NEWSLETTER_BREAKER_MIN_ACCEPTED": 10,
        "NEWSLETTER_BREAKER_BOUNCE_RATE": 0.1,
        "NEWSLETTER_BREAKER_SPAM_RATE": 0.5,
    }
    record_events(session, [sendgrid_event("bounce", d) for d in deliveries[:3]], utcnow())

    assert check_sends(session, [send.id], utcnow(), config) == [send.id]


def test_repeated_events_of_one_delivery_count_once(session, staff):
    send, deliveries = many_deliveries(session, 200)
    session.commit()

    summary = _bounce(session, [deliveries[0]] * 11 + deliveries[1:10])

    assert summary.paused_send_ids == []


def test_staff_are_emailed_once_and_nobody_else(app, session, staff, mailbox):
    send, deliveries = many_deliveries(session, 200)
    session.commit()

    _bounce(session, deliveries[:20])
    assert check_sends(session, [send.id], utcnow()) == []  # already paused
    session.commit()
    mail_delivery.deliver(app, now=utcnow())

    assert sorted(message.to for message in mailbox.messages) == [
        "ops1@example.org",
        "ops2@example.org",
    ]
    notice = mailbox.last_to("ops1@example.org")
    assert notice.subject == f"Newsletter paused: {send.subject}"
    assert "10% of accepted messages bounced (limit 5%)" in notice.text
    assert "20 bounced" in notice.text
    assert notice.link(f"/staff/newsletters/campaigns/{send.campaign_id}")


def test_staff_who_left_before_the_notice_went_out_are_not_emailed(app, session, staff, mailbox):
    send, deliveries = many_deliveries(session, 200)
    session.commit()
    _bounce(session, deliveries[:20])
    session.execute(sa.update(User).where(User.id == staff[1].id).values(is_active=False))
    session.commit()

    mail_delivery.deliver(app, now=utcnow())

    assert [message.to for message in mailbox.messages] == ["ops1@example.org"]


def test_a_send_that_is_not_sending_is_left_alone(session, staff):
    send, deliveries = many_deliveries(session, 200)
    send.status = SendStatus.CANCELLED
    session.commit()

    assert _bounce(session, deliveries[:50]).paused_send_ids == []
    assert _notices(session) == []


def test_a_send_paused_again_after_staff_resumed_it_emails_staff_again(session, staff):
    send, deliveries = many_deliveries(session, 200)
    session.commit()
    _bounce(session, deliveries[:11])
    resumed = session.get(Send, send.id)
    resumed.status = SendStatus.SENDING
    session.commit()

    assert _bounce(session, deliveries[11:12]).paused_send_ids == [send.id]
    assert len(_notices(session)) == 4  # two staff, two pauses


def test_the_webhook_pauses_a_send_that_crosses_the_limit(app, client, session, staff):
    signer = EventSigner()
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = signer.public_key
    send, deliveries = many_deliveries(session, 200)
    session.commit()

    response = post_events(client, [sendgrid_event("bounce", d) for d in deliveries[:11]], signer)

    assert response.status_code == 200
    assert _statuses(session, send) == (SendStatus.PAUSED, CampaignStatus.PAUSED)
    assert len(_notices(session)) == 2


def test_the_lead_can_check_sends_without_events(session, staff):
    send, _deliveries = many_deliveries(session, 500, status=DeliveryStatus.ACCEPTED)
    session.commit()

    assert check_sends(session, [send.id, send.id + 999], utcnow()) == []


# Two batches at once (PostgreSQL: SQLite has one writer at a time) -------------------------------
def _post_together(app, signer, batches) -> list:
    barrier = threading.Barrier(len(batches))
    answers: list = [None] * len(batches)

    def post(index: int) -> None:
        client = app.test_client()
        body = json.dumps(batches[index])
        headers = {"Content-Type": "application/json", **signer.headers(body)}
        barrier.wait(10)
        answers[index] = client.post(WEBHOOK_PATH, data=body, headers=headers)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session")
@pytest.mark.parametrize("bounces_each", [11, 6], ids=["each-crosses", "only-together"])
def test_batches_crossing_the_limit_at_once_pause_the_send_once(app, session, staff, bounces_each):
    """Each batch alone crosses the limit (11 of 200), or only both together do (6 + 6):
    either way the send is paused once and each staff member emailed once."""
    signer = EventSigner()
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = signer.public_key
    send, deliveries = many_deliveries(session, 200)
    session.commit()
    batches = [
        [sendgrid_event("bounce", d) for d in deliveries[:bounces_each]],
        [sendgrid_event("bounce", d) for d in deliveries[100 : 100 + bounces_each]],
    ]

    answers = _post_together(app, signer, batches)

    assert [answer.status_code for answer in answers] == [200, 200]
    assert _statuses(session, send) == (SendStatus.PAUSED, CampaignStatus.PAUSED)
    pauses = session.scalar(
        sa.select(sa.func.count()).where(
            CampaignStatusChange.send_id == send.id,
            CampaignStatusChange.to_status == "send:paused",
        )
    )
    assert pauses == 1
    assert sorted(n.user_id for n in _notices(session)) == sorted(u.id for u in staff[:2])


def test_a_send_staff_resumed_after_an_automatic_pause_is_not_paused_again(session, staff):
    from newsletters import campaigns

    send, deliveries = many_deliveries(session, 200)
    session.commit()
    _bounce(session, deliveries[:11])
    campaign = session.get(Campaign, session.get(Send, send.id).campaign_id)
    actor = session.get(User, staff[0].id)
    campaigns.resume(session, actor, campaign, utcnow(), "The list was cleaned; go on.")
    session.commit()

    assert _bounce(session, deliveries[11:30]).paused_send_ids == []
    assert _statuses(session, send) == (SendStatus.SENDING, CampaignStatus.SENDING)
    assert len(_notices(session)) == 2  # the first pause only
