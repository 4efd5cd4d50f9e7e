"""Recording SendGrid's events (the Event Webhook) about newsletter deliveries.

Each event names its delivery by the ``delivery_id`` (and ``send_id``) custom arguments delivery
put in the personalization; SendGrid copies them into the event's top level. What an event does:

- it is stored once, by SendGrid's ``sg_event_id`` (SendGrid retries a batch for 24 hours, and
  two retries may arrive at once): the insert skips ids already stored, on both databases;
- ``processed`` settles a delivery whose outcome was unknown (or still claimed) as accepted, and
  ``dropped`` settles an unknown one as failed: the provider's word is the only safe way to
  settle them (DESIGN.md, "Newsletters and delivery");
- bounces, drops, spam reports and unsubscribes suppress the delivery's address (never the
  address the event carries: only ids are trusted), and an unsubscribe also ends the
  recipient's subscription to the list the delivery went out on;
- sends with new bounces or spam reports are handed to the circuit breaker.

An event that cannot be read, names an unknown kind or a delivery that does not exist is
ignored and counted: SendGrid would retry a refused batch for a day, to no avail.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletters import breaker
from newsletters.models import (
    Delivery,
    DeliveryStatus,
    ProviderEvent,
    ProviderEventKind,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from newsletters.suppressions import add_suppression

log = logging.getLogger(__name__)

# The largest id an integer column holds (a larger one would overflow PostgreSQL's integer).
MAX_ID = 2**31 - 1
# Statements are cut into chunks of this many rows (SQLite and PostgreSQL cap bound parameters).
CHUNK = 500
REASON_LENGTH = 300
PROCESSED_NOTE = "settled by the provider's processed event"

# What each kind of event suppresses the address for. A "bounce" of type "blocked" is the
# receiving server refusing the sender for now (reputation, rate), not a dead address: it is
# recorded (and counts for the breaker) but suppresses nothing.
SUPPRESSING = {
    ProviderEventKind.BOUNCE: SuppressionReason.BOUNCE,
    ProviderEventKind.DROPPED: SuppressionReason.DROPPED,
    ProviderEventKind.SPAM_REPORT: SuppressionReason.SPAM_REPORT,
    ProviderEventKind.UNSUBSCRIBE: SuppressionReason.UNSUBSCRIBED,
    ProviderEventKind.GROUP_UNSUBSCRIBE: SuppressionReason.UNSUBSCRIBED,
}
# Events that raise a send's bounce or spam-report rate.
ALARMING = frozenset({ProviderEventKind.BOUNCE, ProviderEventKind.SPAM_REPORT})
# A provider's reason may quote the address ("550 <jane@example.org>: no such user").
ADDRESS = re.compile(r"[^\s<>\"'(),;:@]+@[^\s<>\"'(),;:@]+")


@dataclass
class Summary:
    """What one batch of events came to."""

    recorded: int = 0
    # Already stored (a retried batch), or repeated within the batch.
    duplicates: int = 0
    # Unreadable, of a kind not tracked, or about a delivery that does not exist.
    ignored: int = 0
    # Sends the circuit breaker paused because of these events.
    paused_send_ids: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The counts, as the webhook answers them."""
        return {"recorded": self.recorded, "duplicates": self.duplicates, "ignored": self.ignored}


@dataclass(frozen=True)
class ParsedEvent:
    """The parts of one SendGrid event that Engage keeps."""

    provider_event_id: str
    kind: ProviderEventKind
    delivery_id: int
    # The send named in the event's custom arguments (None when absent).
    send_id: int | None
    occurred_at: datetime
    # The provider's reason (bounce, drop) or response (deferral), addresses masked.
    reason: str
    # A bounce's type: "bounce" or "blocked" ("" for other events).
    bounce_type: str
    # The X-Message-Id of the request that carried the message ("" when absent): SendGrid's
    # sg_message_id is that id followed by "." and a suffix of its own.
    message_id: str = ""


class KnownDelivery(NamedTuple):
    """A delivery an event named, as read once for the whole batch."""

    id: int
    send_id: int
    subscriber_id: int
    list_id: int
    email: str
    status: DeliveryStatus


# Reading events -------------------------------------------------------------------------------
def _as_id(value: Any) -> int | None:
    """A positive database id from an int or a string of digits, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isascii() or not value.isdigit() or len(value) > 10:
            return None
        value = int(value)
    if isinstance(value, int) and 0 < value <= MAX_ID:
        return value
    return None


def _as_moment(value: Any) -> datetime | None:
    """A UTC moment from unix seconds (int, float or digits), else None."""
    if isinstance(value, str):
        value = value.strip()
        if not value.isascii() or not value.isdigit() or len(value) > 12:
            return None
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def masked_reason(text: Any) -> str:
    """The provider's reason as stored: addresses masked, at most 300 characters."""
    if not isinstance(text, str):
        return ""
    return ADDRESS.sub("<address>", text.replace("\x00", ""))[:REASON_LENGTH]


def parse_event(raw: Any) -> ParsedEvent | None:
    """One event of the webhook's batch, or None when it cannot be used (not an object, no
    ``sg_event_id``, a kind Engage does not track, no usable ``delivery_id`` or time)."""
    if not isinstance(raw, dict):
        return None
    event_id = raw.get("sg_event_id")
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 100 or "\x00" in event_id:
        return None
    try:
        kind = ProviderEventKind(raw.get("event"))
    except ValueError:
        return None
    delivery_id = _as_id(raw.get("delivery_id"))
    occurred_at = _as_moment(raw.get("timestamp"))
    send_id = _as_id(raw.get("send_id")) if "send_id" in raw else None
    if delivery_id is None or occurred_at is None or ("send_id" in raw and send_id is None):
        return None
    bounce_type = raw.get("type") if kind == ProviderEventKind.BOUNCE else ""
    message_id = raw.get("sg_message_id")
    message_id = message_id.split(".", 1)[0][:64] if isinstance(message_id, str) else ""
    return ParsedEvent(
        provider_event_id=event_id,
        kind=kind,
        delivery_id=delivery_id,
        send_id=send_id,
        occurred_at=occurred_at,
        reason=masked_reason(raw.get("reason") or raw.get("response")),
        bounce_type=bounce_type if isinstance(bounce_type, str) else "",
        message_id=message_id.replace("\x00", ""),
    )


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _deliveries(session: Session, ids: set[int]) -> dict[int, KnownDelivery]:
    """The deliveries among ``ids`` that exist (one statement per 500 ids)."""
    found: dict[int, KnownDelivery] = {}
    for chunk in _chunks(sorted(ids)):
        rows = session.execute(
            sa.select(
                Delivery.id,
                Delivery.send_id,
                Delivery.subscriber_id,
                Delivery.list_id,
                Delivery.email,
                Delivery.status,
            ).where(Delivery.id.in_(chunk))
        )
        found.update({row.id: KnownDelivery(*row) for row in rows})
    return found


def _store(
    session: Session,
    events: list[ParsedEvent],
    deliveries: dict[int, KnownDelivery],
    now: datetime,
) -> set[str]:
    """Insert ``events``, skipping ids already stored; return the ids this call inserted.

    Rows go in ``sg_event_id`` order, so two requests storing the same batch at once wait for
    each other in the same order instead of deadlocking; the second then skips every row.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    inserted: set[str] = set()
    ordered = sorted(events, key=lambda e: e.provider_event_id)
    for chunk in _chunks(ordered):
        statement = (
            insert(ProviderEvent)
            .values(
                [
                    {
                        "provider_event_id": event.provider_event_id,
                        "delivery_id": event.delivery_id,
                        "send_id": deliveries[event.delivery_id].send_id,
                        "kind": event.kind,
                        "reason": event.reason,
                        "occurred_at": event.occurred_at,
                        "received_at": now,
                    }
                    for event in chunk
                ]
            )
            .on_conflict_do_nothing(index_elements=["provider_event_id"])
            .returning(ProviderEvent.provider_event_id)
        )
        inserted.update(session.scalars(statement))
    return inserted


# What events change ---------------------------------------------------------------------------
def _settle(session: Session, event: ParsedEvent, delivery: KnownDelivery) -> None:
    """Settle a delivery whose outcome the worker could not know, from the provider's word.

    Each update re-checks the status it expects, so a worker recording its own answer at the
    same moment is not overwritten.
    """
    table = Delivery.__table__
    if event.kind == ProviderEventKind.PROCESSED and delivery.status in (
        DeliveryStatus.UNKNOWN,
        DeliveryStatus.CLAIMED,
    ):
        session.execute(
            sa.update(table)
            .where(
                table.c.id == delivery.id,
                table.c.status.in_([DeliveryStatus.UNKNOWN, DeliveryStatus.CLAIMED]),
            )
            .values(
                status=DeliveryStatus.ACCEPTED,
                accepted_at=event.occurred_at,
                provider_message_id=sa.func.coalesce(
                    table.c.provider_message_id, event.message_id or None
                ),
                last_error=PROCESSED_NOTE,
            )
        )
    elif event.kind == ProviderEventKind.DROPPED and delivery.status == DeliveryStatus.UNKNOWN:
        note = "dropped by the provider" + (f": {event.reason}" if event.reason else "")
        session.execute(
            sa.update(table)
            .where(table.c.id == delivery.id, table.c.status == DeliveryStatus.UNKNOWN)
            .values(status=DeliveryStatus.FAILED, last_error=note[:500])
        )


def _suppress(session: Session, event: ParsedEvent, delivery: KnownDelivery, now: datetime) -> None:
    reason = SUPPRESSING.get(event.kind)
    if reason is None or event.bounce_type == "blocked":
        return
    add_suppression(session, delivery.email, reason, f"sendgrid:{event.provider_event_id}", now)
    if event.kind == ProviderEventKind.UNSUBSCRIBE:
        # They asked the provider to stop: the list they got it through stops too.
        session.execute(
            sa.update(Subscription)
            .where(
                Subscription.subscriber_id == delivery.subscriber_id,
                Subscription.list_id == delivery.list_id,
                Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
            )
            .values(status=SubscriptionStatus.UNSUBSCRIBED, unsubscribed_at=event.occurred_at)
            .execution_options(synchronize_session=False)
        )


def record_events(
    session: Session,
    events: list[Any],
    now: datetime,
    config: Mapping[str, Any] | None = None,
) -> Summary:
    """Record one webhook batch of SendGrid events and apply what they mean (see the module's
    description); the caller commits.

    :param events: the batch as decoded from JSON (anything unusable in it is ignored).
    :param config: the app's configuration, for the circuit breaker's limits.
    """
    summary = Summary()
    unique: dict[str, ParsedEvent] = {}
    for raw in events:
        event = parse_event(raw)
        if event is None:
            summary.ignored += 1
        elif event.provider_event_id in unique:
            summary.duplicates += 1
        else:
            unique[event.provider_event_id] = event
    deliveries = _deliveries(session, {event.delivery_id for event in unique.values()})
    known = [
        event
        for event in unique.values()
        if event.delivery_id in deliveries
        and event.send_id in (None, deliveries[event.delivery_id].send_id)
    ]
    summary.ignored += len(unique) - len(known)
    inserted = _store(session, known, deliveries, now) if known else set()
    summary.recorded = len(inserted)
    summary.duplicates += len(known) - len(inserted)
    new = sorted(
        (event for event in known if event.provider_event_id in inserted),
        key=lambda e: (e.occurred_at, e.provider_event_id),
    )
    for event in new:
        delivery = deliveries[event.delivery_id]
        _settle(session, event, delivery)
        _suppress(session, event, delivery, now)
    alarming = {deliveries[e.delivery_id].send_id for e in new if e.kind in ALARMING}
    if alarming:
        summary.paused_send_ids = breaker.check_sends(session, alarming, now, config)
    log.info(
        "provider events: %s recorded, %s duplicates, %s ignored",
        summary.recorded,
        summary.duplicates,
        summary.ignored,
    )
    return summary
