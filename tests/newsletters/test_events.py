"""What SendGrid's events change: unknown deliveries settled by the provider's word, addresses
suppressed after bounces, drops, spam reports and unsubscribes, and nothing taken from an
event but ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from engage.timeutil import utcnow
from newsletters import suppressions
from newsletters.events import PROCESSED_NOTE, parse_event, record_events
from newsletters.models import (
    Delivery,
    DeliveryStatus,
    ProviderEvent,
    ProviderEventKind,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from tests.newsletters.support import make_list, subscribe_email
from tests.newsletters.support_events import add_deliveries, make_send, one_delivery
from tests.sendgrid_events import sendgrid_event

WHEN = int(datetime(2026, 3, 2, 9, 30, tzinfo=UTC).timestamp())


def _record(session, events):
    summary = record_events(session, events, utcnow())
    session.commit()
    session.expire_all()
    return summary


def _suppression(session, email: str) -> Suppression | None:
    return session.get(Suppression, email)


# Settling deliveries whose outcome was unknown ----------------------------------------------------
@pytest.mark.parametrize("status", [DeliveryStatus.UNKNOWN, DeliveryStatus.CLAIMED])
def test_processed_settles_an_unsettled_delivery_as_accepted(session, status):
    delivery = one_delivery(session, status=status)
    session.commit()

    _record(
        session,
        [
            sendgrid_event(
                "processed",
                delivery,
                timestamp=WHEN,
                sg_message_id="14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            )
        ],
    )

    settled = session.get(Delivery, delivery.id)
    assert settled.status == DeliveryStatus.ACCEPTED
    assert settled.accepted_at == datetime.fromtimestamp(WHEN, UTC)
    assert settled.provider_message_id == "14c5d75ce93"
    assert settled.last_error == PROCESSED_NOTE


def test_processed_leaves_an_accepted_delivery_as_it_was(session):
    delivery = one_delivery(session)
    accepted_at = delivery.accepted_at
    session.commit()

    summary = _record(session, [sendgrid_event("processed", delivery, timestamp=WHEN)])

    assert summary.recorded == 1
    unchanged = session.get(Delivery, delivery.id)
    assert unchanged.status == DeliveryStatus.ACCEPTED
    assert unchanged.accepted_at == accepted_at
    assert unchanged.last_error is None


@pytest.mark.parametrize("status", [DeliveryStatus.PENDING, DeliveryStatus.FAILED])
def test_processed_does_not_touch_a_delivery_that_was_not_handed_over(session, status):
    delivery = one_delivery(session, status=status)
    session.commit()

    _record(session, [sendgrid_event("processed", delivery)])

    assert session.get(Delivery, delivery.id).status == status


def test_dropped_settles_an_unknown_delivery_as_failed_with_the_reason(session):
    delivery = one_delivery(session, status=DeliveryStatus.UNKNOWN)
    session.commit()

    _record(session, [sendgrid_event("dropped", delivery, reason="Bounced Address")])

    failed = session.get(Delivery, delivery.id)
    assert failed.status == DeliveryStatus.FAILED
    assert failed.last_error == "dropped by the provider: Bounced Address"


def test_dropped_after_acceptance_is_recorded_and_the_delivery_stays_accepted(session):
    delivery = one_delivery(session)
    session.commit()

    summary = _record(session, [sendgrid_event("dropped", delivery, reason="Invalid")])

    assert summary.recorded == 1
    assert session.get(Delivery, delivery.id).status == DeliveryStatus.ACCEPTED
    assert session.scalar(sa.select(ProviderEvent.kind)) == ProviderEventKind.DROPPED


def test_processed_before_dropped_in_one_batch_settles_by_the_earlier_event(session):
    delivery = one_delivery(session, status=DeliveryStatus.UNKNOWN)
    session.commit()

    _record(
        session,
        [
            sendgrid_event("dropped", delivery, timestamp=WHEN + 5, reason="Invalid"),
            sendgrid_event("processed", delivery, timestamp=WHEN),
        ],
    )

    assert session.get(Delivery, delivery.id).status == DeliveryStatus.ACCEPTED


# Suppressions ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("bounce", SuppressionReason.BOUNCE),
        ("dropped", SuppressionReason.DROPPED),
        ("spamreport", SuppressionReason.SPAM_REPORT),
        ("unsubscribe", SuppressionReason.UNSUBSCRIBED),
        ("group_unsubscribe", SuppressionReason.UNSUBSCRIBED),
    ],
)
def test_events_that_end_mail_to_an_address_suppress_it(session, kind, reason):
    delivery = one_delivery(session, "Jane.Doe@Example.org")
    session.commit()
    event = sendgrid_event(kind, delivery, type="bounce")

    _record(session, [event])

    suppression = _suppression(session, "jane.doe@example.org")
    assert suppression is not None
    assert suppression.reason == reason
    assert suppression.source == f"sendgrid:{event['sg_event_id']}"
    assert suppressions.is_suppressed(session, "JANE.DOE@example.org")


@pytest.mark.parametrize("kind", ["processed", "delivered", "deferred", "open", "click"])
def test_ordinary_events_suppress_nothing(session, kind):
    delivery = one_delivery(session)
    session.commit()

    _record(session, [sendgrid_event(kind, delivery, response="451 try later")])

    assert not suppressions.is_suppressed(session, delivery.email)


def test_a_blocked_bounce_is_recorded_but_suppresses_nothing(session):
    """The receiving server refused the sender for now, not the address for good."""
    delivery = one_delivery(session)
    session.commit()

    summary = _record(session, [sendgrid_event("bounce", delivery, type="blocked")])

    assert summary.recorded == 1
    assert session.scalar(sa.select(ProviderEvent.kind)) == ProviderEventKind.BOUNCE
    assert not suppressions.is_suppressed(session, delivery.email)


def test_the_address_in_the_event_is_never_trusted(session):
    delivery = one_delivery(session, "jane@example.org")
    session.commit()

    _record(session, [sendgrid_event("bounce", delivery, email="someone-else@example.org")])

    assert suppressions.is_suppressed(session, "jane@example.org")
    assert not suppressions.is_suppressed(session, "someone-else@example.org")


def test_a_second_suppressing_event_keeps_the_first_reason(session):
    delivery = one_delivery(session)
    session.commit()

    _record(session, [sendgrid_event("bounce", delivery, timestamp=WHEN)])
    _record(session, [sendgrid_event("spamreport", delivery, timestamp=WHEN + 60)])

    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 1
    assert _suppression(session, delivery.email).reason == SuppressionReason.BOUNCE


def test_unsubscribe_ends_the_subscription_to_that_list_only(session):
    delivery = one_delivery(session, "jane@example.org")
    other_list = make_list(session, "Survey alerts")
    session.add(
        Subscription(
            subscriber_id=delivery.subscriber_id,
            list_id=other_list.id,
            status=SubscriptionStatus.CONFIRMED,
            source="signup",
            created_at=utcnow(),
            confirmed_at=utcnow(),
        )
    )
    session.commit()

    _record(session, [sendgrid_event("unsubscribe", delivery, timestamp=WHEN)])

    statuses = dict(
        session.execute(
            sa.select(Subscription.list_id, Subscription.status).where(
                Subscription.subscriber_id == delivery.subscriber_id
            )
        ).all()
    )
    assert statuses == {
        delivery.list_id: SubscriptionStatus.UNSUBSCRIBED,
        other_list.id: SubscriptionStatus.CONFIRMED,
    }
    ended = session.scalar(sa.select(Subscription).where(Subscription.list_id == delivery.list_id))
    assert ended.unsubscribed_at == datetime.fromtimestamp(WHEN, UTC)
    assert suppressions.is_suppressed(session, "jane@example.org")


# Storing events ----------------------------------------------------------------------------------
def test_events_are_stored_with_their_time_and_a_masked_reason(session):
    delivery = one_delivery(session, "jane@example.org")
    session.commit()
    reason = "550 5.1.1 <jane@example.org>: Recipient address rejected " + "x" * 400

    _record(session, [sendgrid_event("bounce", delivery, timestamp=WHEN, reason=reason)])

    stored = session.scalar(sa.select(ProviderEvent))
    assert stored.send_id == delivery.send_id
    assert stored.occurred_at == datetime.fromtimestamp(WHEN, UTC)
    assert stored.reason.startswith("550 5.1.1 <<address>>: Recipient address rejected")
    assert "jane" not in stored.reason
    assert len(stored.reason) == 300


def test_recording_a_batch_twice_changes_nothing_the_second_time(session):
    delivery = one_delivery(session, status=DeliveryStatus.UNKNOWN)
    session.commit()
    batch = [
        sendgrid_event("dropped", delivery, reason="Invalid"),
        sendgrid_event("open", delivery),
    ]

    first = _record(session, batch)
    second = _record(session, batch)

    assert first.counts() == {"recorded": 2, "duplicates": 0, "ignored": 0}
    assert second.counts() == {"recorded": 0, "duplicates": 2, "ignored": 0}
    assert session.scalar(sa.select(sa.func.count()).select_from(ProviderEvent)) == 2


def test_a_large_batch_is_recorded_in_few_statements(session):
    send = make_send(session)
    mailing_list = make_list(session, "Big list")
    people = [subscribe_email(session, f"p{n}@example.org", [mailing_list]) for n in range(30)]
    deliveries = add_deliveries(session, send, people, mailing_list)
    session.commit()
    batch = [sendgrid_event("open", d) for d in deliveries for _ in range(40)]

    summary = _record(session, batch)

    assert summary.recorded == 1200
    assert session.scalar(sa.select(sa.func.count()).select_from(ProviderEvent)) == 1200


def test_events_without_a_send_id_are_matched_by_delivery_alone(session):
    delivery = one_delivery(session)
    session.commit()
    event = sendgrid_event("delivered", delivery)
    del event["send_id"]

    assert _record(session, [event]).recorded == 1


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "bounce",
        {"event": "bounce", "delivery_id": "1", "timestamp": WHEN},
        {"sg_event_id": "e", "event": "bounce", "delivery_id": "0", "timestamp": WHEN},
        {"sg_event_id": "e", "event": "bounce", "delivery_id": "-3", "timestamp": WHEN},
        {"sg_event_id": "e", "event": "bounce", "delivery_id": 1.5, "timestamp": WHEN},
        {"sg_event_id": "e", "event": "bounce", "delivery_id": "1", "timestamp": -1},
        {"sg_event_id": "e", "event": "bounce", "delivery_id": "1", "timestamp": 10**20},
        {
            "sg_event_id": "e",
            "event": "bounce",
            "delivery_id": "1",
            "timestamp": WHEN,
            "send_id": "x",
        },
        {"sg_event_id": "e", "event": {"a": 1}, "delivery_id": "1", "timestamp": WHEN},
        {"sg_event_id": "e\x00", "event": "bounce", "delivery_id": "1", "timestamp": WHEN},
        {"sg_event_id": "e", "event": "bounce", "delivery_id": "1", "timestamp": "1" * 13},
    ],
)
def test_unreadable_events_are_not_used(raw):
    assert parse_event(raw) is None


def test_a_readable_event_keeps_only_ids_time_kind_and_reason():
    parsed = parse_event(
        {
            "sg_event_id": "abc",
            "event": "bounce",
            "type": "bounce",
            "delivery_id": "12",
            "send_id": 3,
            "timestamp": WHEN,
            "email": "jane@example.org",
            "reason": "mailbox full",
            "ip": "10.0.0.1",
        }
    )

    assert parsed is not None
    assert (parsed.provider_event_id, parsed.kind, parsed.delivery_id, parsed.send_id) == (
        "abc",
        ProviderEventKind.BOUNCE,
        12,
        3,
    )
    assert parsed.occurred_at == datetime.fromtimestamp(WHEN, UTC)
    assert parsed.reason == "mailbox full"
