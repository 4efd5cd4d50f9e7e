"""Settling deliveries whose outcome is unknown when the provider never reported on them.

A batch whose hand-over was cut off (a timeout after the body went out, a worker killed
mid-request) is ``unknown``. SendGrid reports every message it accepted with a ``processed``
event within minutes, and ``newsletters.events`` settles those rows from it; what is still
unknown long after (``NEWSLETTER_UNKNOWN_AFTER_HOURS``, default 24 hours, the provider's own
retry window for events) almost certainly never arrived. Staff then decide, for one send: send
those again, or count them as sent. The decision is recorded in the audit log.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts.models import User
from newsletters.errors import InvalidState
from newsletters.models import Delivery, DeliveryStatus, ProviderEvent, Send, SendStatus
from newsletters.status import change_send_status

UNKNOWN_AFTER_HOURS = 24


class UnknownAction(enum.StrEnum):
    """What staff decided about a send's unreported deliveries (the audit action)."""

    RESEND = "newsletter_unknown_resent"
    COUNT_AS_SENT = "newsletter_unknown_counted_sent"


def _unreported(send_id: int, started_before: datetime) -> list[sa.ColumnElement[bool]]:
    return [
        Delivery.send_id == send_id,
        Delivery.status == DeliveryStatus.UNKNOWN,
        Delivery.claimed_at <= started_before,
        ~sa.exists().where(ProviderEvent.delivery_id == Delivery.id),
    ]


def count_unreported(session: Session, send_id: int, now: datetime, hours: float) -> int:
    """Unknown deliveries of ``send_id`` the provider has not reported on for ``hours``."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Delivery)
            .where(*_unreported(send_id, now - timedelta(hours=hours)))
        )
        or 0
    )


def settle_unreported(
    session: Session,
    actor: User,
    send: Send,
    action: UnknownAction,
    now: datetime,
    *,
    hours: float = UNKNOWN_AFTER_HOURS,
) -> int:
    """Send again (``RESEND``) or count as sent (``COUNT_AS_SENT``) the send's deliveries that
    have been unknown and unreported for ``hours``; returns how many (the caller commits).

    :raises InvalidState: the send was cancelled.
    """
    if send.status == SendStatus.CANCELLED:
        raise InvalidState("This send was cancelled; nothing more will be sent for it.")
    if action == UnknownAction.RESEND:
        values = {
            "status": DeliveryStatus.PENDING,
            "claim_token": None,
            "next_attempt_at": now,
            "last_error": f"sent again by staff: no provider event within {hours:g} hours",
        }
    else:
        values = {
            "status": DeliveryStatus.ACCEPTED,
            "claim_token": None,
            "accepted_at": now,
            "last_error": "counted as sent by staff",
        }
    result = session.execute(
        sa.update(Delivery)
        .where(*_unreported(send.id, now - timedelta(hours=hours)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    count = result.rowcount or 0
    if count:
        if action == UnknownAction.RESEND and send.status == SendStatus.SENT:
            # The send has work again: workers only claim rows of sending sends.
            change_send_status(
                session,
                send,
                SendStatus.SENDING,
                now=now,
                actor_id=actor.id,
                reason=f"{count} unreported message(s) sent again",
            )
            send.finished_at = None
        audit.record(
            session,
            action,
            now=now,
            actor_id=actor.id,
            target=f"newsletter-send:{send.id}",
            deliveries=count,
        )
    return count
