"""Suppressed addresses: who receives no newsletter at all.

An address is suppressed by the provider's events (a bounce, a drop, a spam report, an
unsubscribe through the provider; see :mod:`newsletters.events`) or by staff. Audiences skip
suppressed addresses when they are frozen, and delivery asks :func:`suppressed_among` again just
before each batch goes out. Addresses are compared lower-cased.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engage import audit
from newsletters.errors import NotFound
from newsletters.models import Suppression, SuppressionReason

PAGE_SIZE = 50


class SuppressionAction(enum.StrEnum):
    """Audit-log actions of staff changing suppressions (at most 40 characters each)."""

    ADDED = "newsletter_suppression_added"
    REMOVED = "newsletter_suppression_removed"


def normalise(email: str) -> str:
    """The form addresses are stored and compared in: trimmed and lower-cased."""
    return email.strip().lower()


def staff_source(actor_id: int) -> str:
    """The ``source`` of a suppression staff added."""
    return f"staff:{actor_id}"


def is_suppressed(session: Session, email: str) -> bool:
    """Whether ``email`` receives no newsletter."""
    return (
        session.scalar(sa.select(Suppression.email).where(Suppression.email == normalise(email)))
        is not None
    )


def suppressed_among(session: Session, emails: Iterable[str]) -> set[str]:
    """The addresses among ``emails`` that are suppressed, lower-cased (one statement; meant
    for one delivery batch of up to a thousand addresses)."""
    wanted = {normalise(email) for email in emails if email}
    if not wanted:
        return set()
    return set(session.scalars(sa.select(Suppression.email).where(Suppression.email.in_(wanted))))


def add_suppression(
    session: Session, email: str, reason: SuppressionReason, source: str, now: datetime
) -> bool:
    """Suppress ``email`` for ``reason``; True when it was new, False when it was already
    suppressed (the first reason is kept). Safe when two requests add it at once.

    :param source: what caused it: the provider's event id, or :func:`staff_source`.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(Suppression)
        .values(email=normalise(email), reason=reason, source=source[:120], created_at=now)
        .on_conflict_do_nothing(index_elements=["email"])
        .returning(Suppression.email)
    )
    return session.execute(statement).scalar() is not None


def suppress_by_staff(session: Session, actor: Any, email: str, now: datetime) -> bool:
    """Staff suppress ``email`` by hand (reason "manual"); False when it was already
    suppressed (nothing changes then). The change is in the audit log."""
    added = add_suppression(session, email, SuppressionReason.MANUAL, staff_source(actor.id), now)
    if added:
        audit.record(
            session,
            SuppressionAction.ADDED,
            now=now,
            actor_id=actor.id,
            target="newsletter-suppression",
            reason=SuppressionReason.MANUAL.value,
        )
    return added


def remove_suppression(session: Session, actor: Any, email: str, now: datetime) -> Suppression:
    """Staff let ``email`` receive newsletters again (its subscriptions are unchanged: someone
    who unsubscribed stays unsubscribed). Raises ``NotFound`` when it is not suppressed. The
    change is in the audit log (with the reason it had, not the address)."""
    row = session.scalar(
        sa.select(Suppression).where(Suppression.email == normalise(email)).with_for_update()
    )
    if row is None:
        raise NotFound("That address is not suppressed (someone may have removed it already).")
    session.delete(row)
    audit.record(
        session,
        SuppressionAction.REMOVED,
        now=now,
        actor_id=actor.id,
        target="newsletter-suppression",
        reason=row.reason.value,
    )
    session.flush()
    return row


@dataclass(frozen=True)
class SuppressionPage:
    """One page of suppressed addresses, newest first."""

    rows: list[Suppression]
    page: int
    has_next: bool
    total: int


def suppression_page(session: Session, page: int, per_page: int = PAGE_SIZE) -> SuppressionPage:
    """Page ``page`` (from 1) of suppressed addresses, newest first, and how many there are."""
    page = max(page, 1)
    rows = list(
        session.scalars(
            sa.select(Suppression)
            .order_by(Suppression.created_at.desc(), Suppression.email)
            .offset((page - 1) * per_page)
            .limit(per_page + 1)
        )
    )
    total = session.scalar(sa.select(sa.func.count()).select_from(Suppression)) or 0
    return SuppressionPage(
        rows=rows[:per_page], page=page, has_next=len(rows) > per_page, total=total
    )
