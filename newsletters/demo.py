"""Newsletters' demo data, run by ``engage demo seed`` after the core's (the composition root
registers :func:`seed`): the default mailing lists, the demo participant on Research updates
and Progress reports, and the demo clinician on Research updates.

A subscription that is already there (even an unsubscribed one) is left as it is, so seeding
again changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import Role, User
from engage.demo import DEMO_ACCOUNTS
from newsletters.lists import ensure_default_lists, subscriber_for_user
from newsletters.models import Subscription, SubscriptionStatus

# Which demo account is on which default lists.
DEMO_SUBSCRIPTIONS = {
    Role.PARTICIPANT: ("Research updates", "Progress reports"),
    Role.CLINICIAN: ("Research updates",),
}


def seed(session: Session, config: Mapping[str, Any], now: datetime) -> str:
    """Ensure the default lists and the demo accounts' subscriptions (never commits)."""
    lists = {row.name: row for row in ensure_default_lists(session, now)}
    emails = {role: email for role, email, _name, _country in DEMO_ACCOUNTS}
    subscribed = 0
    for role, names in DEMO_SUBSCRIPTIONS.items():
        user = session.scalar(sa.select(User).where(User.email == emails[role]))
        if user is None:
            continue
        subscriber = subscriber_for_user(session, user.id, now, language=user.language)
        existing = set(
            session.scalars(
                sa.select(Subscription.list_id).where(Subscription.subscriber_id == subscriber.id)
            )
        )
        subscribed += len(names)
        for name in names:
            if lists[name].id in existing:
                continue
            session.add(
                Subscription(
                    subscriber_id=subscriber.id,
                    list_id=lists[name].id,
                    status=SubscriptionStatus.CONFIRMED,
                    source="preferences",
                    created_at=now,
                    confirmed_at=now,
                )
            )
    session.flush()
    # The same line on every run (the command's output must not change when seeding again).
    return f"newsletters: {len(lists)} default lists, {subscribed} demo subscriptions"
