"""Newsletters' part of the data rights (see ``engage.accounts.data_rights``): a person's
subscriptions and the newsletters sent to them, and what deleting their account does to them.

The person is found as the account's subscriber and as any sign-up without an account made
with the account's address (both are theirs). Deleting the account unsubscribes them from every
list at once, skips copies still queued, and replaces the address and name every copy and
sign-up holds with a placeholder that can never receive mail; the copies themselves stay, so
each send's counts stay right.

Suppressions are keyed by the plain address and compared with plain addresses, so a hash of
the address could never match anything: the person's suppressions are deleted with the rest.
Nothing can be sent to the address afterwards anyway (no subscriber holds it), a new sign-up
needs the emailed confirmation again, and the provider keeps its own suppression list.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.data_rights import DataRights, iso
from engage.accounts.models import User
from newsletters.models import (
    Delivery,
    DeliveryStatus,
    MailingList,
    ProviderEvent,
    Send,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)

SKIPPED_REASON = "the subscriber deleted their account"
ERASED_DOMAIN = "@deleted.invalid"


def _subscriber_ids(user: User) -> sa.Select[tuple[int]]:
    """The account's subscriber and any sign-up without an account at its address."""
    return sa.select(Subscriber.id).where(
        sa.or_(Subscriber.user_id == user.id, Subscriber.email == user.email.strip().lower())
    )


def export_newsletters(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> dict[str, Any]:
    """Subscriptions (with or without the account) and every newsletter copy sent or queued
    for the person: one statement each."""
    subscriptions = session.execute(
        sa.select(Subscription, MailingList.name, Subscriber.user_id)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(Subscription.subscriber_id.in_(_subscriber_ids(user)))
        .order_by(Subscription.created_at, Subscription.id)
    ).all()
    copies = session.execute(
        sa.select(
            Delivery.email,
            Delivery.status,
            Delivery.accepted_at,
            Send.subject,
            Send.started_at,
            MailingList.name,
        )
        .join(Send, Send.id == Delivery.send_id)
        .outerjoin(MailingList, MailingList.id == Delivery.list_id)
        .where(Delivery.subscriber_id.in_(_subscriber_ids(user)))
        .order_by(Send.started_at, Delivery.id)
    ).all()
    return {
        "subscriptions": [
            {
                "list": list_name,
                "with_account": holder is not None,
                "status": subscription.status.label,
                "source": subscription.source,
                "subscribed_at": iso(subscription.created_at),
                "confirmed_at": iso(subscription.confirmed_at),
                "unsubscribed_at": iso(subscription.unsubscribed_at),
            }
            for subscription, list_name, holder in subscriptions
        ],
        "newsletters_sent": [
            {
                "subject": row.subject,
                "list": row.name,
                "to": row.email,
                "status": row.status.label,
                "sending_started_at": iso(row.started_at),
                "accepted_by_provider_at": iso(row.accepted_at),
            }
            for row in copies
        ],
    }


def erase_newsletters(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> str | None:
    """Unsubscribe the person from everything, skip queued copies, and replace the address and
    name that copies and sign-ups hold; delete the address's suppressions."""
    address = user.email.strip().lower()
    ids = list(session.scalars(_subscriber_ids(user)))
    removed_suppressions = session.execute(
        sa.delete(Suppression).where(Suppression.email == address)
    ).rowcount
    if not ids:
        return "Newsletters: the address's suppression removed." if removed_suppressions else None
    ended = session.execute(
        sa.update(Subscription)
        .where(
            Subscription.subscriber_id.in_(ids),
            Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
        )
        .values(status=SubscriptionStatus.UNSUBSCRIBED, unsubscribed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    skipped = session.execute(
        sa.update(Delivery)
        .where(Delivery.subscriber_id.in_(ids), Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.SKIPPED, last_error=SKIPPED_REASON)
        .execution_options(synchronize_session=False)
    ).rowcount
    # Provider messages about a bounce may quote the address.
    session.execute(
        sa.update(Delivery)
        .where(Delivery.subscriber_id.in_(ids), Delivery.last_error.contains(address))
        .values(last_error="(removed: it named a deleted account's address)")
        .execution_options(synchronize_session=False)
    )
    session.execute(
        sa.update(ProviderEvent)
        .where(
            ProviderEvent.delivery_id.in_(
                sa.select(Delivery.id).where(Delivery.subscriber_id.in_(ids))
            ),
            ProviderEvent.reason.contains(address),
        )
        .values(reason="")
        .execution_options(synchronize_session=False)
    )
    # Unique per send (and per sign-up): the row's own id keeps each placeholder distinct.
    session.execute(
        sa.update(Delivery)
        .where(Delivery.subscriber_id.in_(ids))
        .values(
            email=sa.literal("erased-copy-")
            + sa.cast(Delivery.id, sa.String)
            + sa.literal(ERASED_DOMAIN),
            name="",
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        sa.update(Subscriber)
        .where(Subscriber.id.in_(ids), Subscriber.email.is_not(None))
        .values(
            email=sa.literal("erased-subscriber-")
            + sa.cast(Subscriber.id, sa.String)
            + sa.literal(ERASED_DOMAIN),
            name=None,
        )
        .execution_options(synchronize_session=False)
    )
    session.execute(
        sa.update(Subscriber)
        .where(Subscriber.id.in_(ids))
        .values(name=None)
        .execution_options(synchronize_session=False)
    )
    return (
        f"Newsletters: {ended} subscription(s) ended, {skipped} queued copy(ies) skipped, "
        "addresses on past copies replaced."
    )


def register(rights: DataRights) -> None:
    """Add newsletters' section and eraser (called by the composition root)."""
    rights.add_exporter("newsletters", export_newsletters)
    rights.add_eraser("newsletters", erase_newsletters)
