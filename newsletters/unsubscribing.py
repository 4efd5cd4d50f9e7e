"""Unsubscribing: one-click links (no sign-in, the signed token is the proof) and taking a
subscriber off every list. Immediate: a send under way skips them from its next batch, which
re-checks subscriptions just before it goes out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from newsletters.models import MailingList, Subscriber, Subscription, SubscriptionStatus
from newsletters.tokens import read_unsubscribe_token


def _secret(secret_key: str | None) -> str:
    return secret_key or current_app.config["SECRET_KEY"]


@dataclass(frozen=True)
class Unsubscription:
    """Where an unsubscribe link stands."""

    subscriber_id: int
    list_id: int
    # None when the list no longer exists.
    list_name: str | None
    # Whether the subscriber was on the list (before this unsubscribe, if it was one).
    was_subscribed: bool
    # Whether the subscriber has an account (their preferences page can then help).
    has_account: bool


def read_unsubscribe(
    session: Session, token: str, *, secret_key: str | None = None
) -> Unsubscription:
    """What an unsubscribe link names (changes nothing). :raises BadToken: not ours."""
    named = read_unsubscribe_token(_secret(secret_key), token)
    row = session.execute(
        sa.select(MailingList.name, Subscription.status, Subscriber.user_id)
        .select_from(MailingList)
        .outerjoin(
            Subscription,
            (Subscription.list_id == MailingList.id)
            & (Subscription.subscriber_id == named.subscriber_id),
        )
        .outerjoin(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(MailingList.id == named.list_id)
    ).first()
    return Unsubscription(
        named.subscriber_id,
        named.list_id,
        row.name if row else None,
        bool(row and row.status is not None and row.status != SubscriptionStatus.UNSUBSCRIBED),
        bool(row and row.user_id is not None),
    )


def unsubscribe(
    session: Session, token: str, now: datetime, *, secret_key: str | None = None
) -> Unsubscription:
    """Take the subscriber off the list the link names, at once; doing it again (or for a
    list they are not on) changes nothing. Works without signing in: the link is the proof.

    :raises BadToken: the token was altered or forged (nothing changes).
    """
    named = read_unsubscribe(session, token, secret_key=secret_key)
    session.execute(
        sa.update(Subscription)
        .where(
            Subscription.subscriber_id == named.subscriber_id,
            Subscription.list_id == named.list_id,
            Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
        )
        .values(status=SubscriptionStatus.UNSUBSCRIBED, unsubscribed_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return named


def unsubscribe_all(session: Session, subscriber_id: int, now: datetime) -> int:
    """Take the subscriber off every list; returns how many subscriptions ended."""
    result = session.execute(
        sa.update(Subscription)
        .where(
            Subscription.subscriber_id == subscriber_id,
            Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
        )
        .values(status=SubscriptionStatus.UNSUBSCRIBED, unsubscribed_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount or 0
