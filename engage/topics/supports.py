"""Supporting topics: a person's support (a vote) on an open topic, withdrawing it, the
staff-set budget of open topics one person may support, and the counters' reconciliation.

Functions take the session, the acting person and ``now`` explicitly and never commit; the
caller commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.db import lock_rows, savepoint
from engage.topics.errors import (
    NotSupported,
    SupportBudgetReached,
    SupportClosed,
    require_contributor,
    require_staff,
)
from engage.topics.models import (
    OPEN_STATUSES,
    PUBLIC_STATUSES,
    SupportAction,
    Topic,
    TopicSettings,
    TopicSupport,
    TopicSupportEvent,
)


@dataclass
class SupportOutcome:
    """Whether a support was added now or already existed."""

    created: bool


def _count_supports(session: Session, topic_id: int) -> int:
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(TopicSupport)
            .where(TopicSupport.topic_id == topic_id)
        )
        or 0
    )


def support_budget(session: Session) -> int | None:
    """The staff-set cap on open topics one person may support at once (None: no cap)."""
    return session.scalar(sa.select(TopicSettings.support_budget).where(TopicSettings.id == 1))


def open_support_count(session: Session, user: User) -> int:
    """How many topics open for support ``user`` supports now."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(TopicSupport)
            .join(Topic, Topic.id == TopicSupport.topic_id)
            .where(TopicSupport.user_id == user.id, Topic.status.in_(OPEN_STATUSES))
        )
        or 0
    )


def _open_topic(session: Session, topic_id: int) -> Topic:
    """The topic, locked and read as it is now, if it is open for support.

    A merge or status change in progress finishes first; the checks below see its outcome.
    """
    lock_rows(session, Topic, [topic_id])
    topic = session.get(Topic, topic_id, populate_existing=True)
    if topic is None or topic.is_hidden or topic.status not in PUBLIC_STATUSES:
        raise SupportClosed("This topic is not open for support.")
    if not topic.status.is_open_for_support:
        raise SupportClosed(f"This topic is “{topic.status.label.lower()}”: support is closed.")
    return topic


def support_topic(session: Session, user: User, topic_id: int, now: datetime) -> SupportOutcome:
    """Record ``user``'s support; a repeated or concurrent duplicate changes nothing.

    The person's row is locked first (PostgreSQL), so one person's concurrent requests queue
    and the support budget holds; then the topic's, so a support lands before a concurrent
    merge (which moves it) or after it (refused: the topic is merged). The unique constraint
    is the last word on duplicates.
    """
    require_contributor(user)
    lock_rows(session, User, [user.id])
    topic = _open_topic(session, topic_id)
    exists = session.scalar(
        sa.select(TopicSupport.id).where(
            TopicSupport.topic_id == topic.id, TopicSupport.user_id == user.id
        )
    )
    if exists is not None:
        return SupportOutcome(created=False)
    budget = support_budget(session)
    if budget is not None and open_support_count(session, user) >= budget:
        raise SupportBudgetReached(
            f"You already support {budget} open topics, the most allowed at once. Withdraw one "
            "of your supports to support this topic."
        )
    is_verified_clinician = user.is_verified_clinician
    try:
        with savepoint(session):
            session.add(
                TopicSupport(
                    topic_id=topic.id,
                    user_id=user.id,
                    role=user.role,
                    is_verified_clinician=is_verified_clinician,
                    created_at=now,
                )
            )
    except IntegrityError:
        return SupportOutcome(created=False)
    session.add(
        TopicSupportEvent(
            topic_id=topic.id,
            user_id=user.id,
            action=SupportAction.CAST,
            role=user.role,
            is_verified_clinician=is_verified_clinician,
            created_at=now,
        )
    )
    session.execute(
        sa.update(Topic).where(Topic.id == topic.id).values(support_count=Topic.support_count + 1)
    )
    return SupportOutcome(created=True)


def withdraw_support(session: Session, user: User, topic_id: int, now: datetime) -> None:
    """Remove ``user``'s support while the topic is open."""
    # The topic's row is locked (in ``_open_topic``): a merge cannot move the support
    # between reading it here and deleting it below.
    topic = _open_topic(session, topic_id)
    support = session.scalar(
        sa.select(TopicSupport).where(
            TopicSupport.topic_id == topic.id, TopicSupport.user_id == user.id
        )
    )
    if support is None:
        raise NotSupported("You do not support this topic.")
    deleted = session.execute(sa.delete(TopicSupport).where(TopicSupport.id == support.id)).rowcount
    if deleted != 1:  # a concurrent request withdrew it first
        raise NotSupported("You do not support this topic.")
    session.add(
        TopicSupportEvent(
            topic_id=topic.id,
            user_id=user.id,
            action=SupportAction.WITHDRAWN,
            role=support.role,
            is_verified_clinician=support.is_verified_clinician,
            created_at=now,
        )
    )
    session.execute(
        sa.update(Topic).where(Topic.id == topic.id).values(support_count=Topic.support_count - 1)
    )


def set_support_budget(session: Session, actor: User, budget: int | None, now: datetime) -> None:
    """Staff cap (or uncap, with None) how many open topics one person may support."""
    require_staff(actor)
    settings = session.get(TopicSettings, 1)
    if settings is None:
        session.add(TopicSettings(id=1, support_budget=budget, updated_at=now))
    else:
        settings.support_budget = budget
        settings.updated_at = now


def reconcile_support_counts(session: Session, fix: bool = False) -> list[tuple[int, int, int]]:
    """Compare every topic's counter with its support rows; return (id, counter, rows) mismatches.

    With ``fix``, set the counters to the row counts.
    """
    rows = (
        sa.select(TopicSupport.topic_id, sa.func.count().label("n"))
        .group_by(TopicSupport.topic_id)
        .subquery()
    )
    actual = sa.func.coalesce(rows.c.n, 0)
    mismatches = [
        (topic_id, counter, n)
        for topic_id, counter, n in session.execute(
            sa.select(Topic.id, Topic.support_count, actual)
            .outerjoin(rows, rows.c.topic_id == Topic.id)
            .where(Topic.support_count != actual)
            .order_by(Topic.id)
        )
    ]
    if fix:
        for topic_id, _counter, n in mismatches:
            session.execute(sa.update(Topic).where(Topic.id == topic_id).values(support_count=n))
    return mismatches

