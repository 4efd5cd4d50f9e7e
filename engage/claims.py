"""The claim rules every delivery queue follows (the mail outbox, newsletter deliveries).

A queued row carries ``status``, ``next_attempt_at``, ``attempts``, ``claim_token``,
``claimed_at``, ``lease_expires_at`` and ``attempt_started_at``. A worker:

1. **claims** due rows (:func:`claim`) and commits the claim before anything is sent
   (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so workers never share a row; SQLite's single
   writer serialises claims);
2. commits **attempt started** (:func:`mark_attempt_started`, or a queue's own mark for a whole
   batch) just before the hand-over;
3. **records** the outcome under its claim token (:func:`record`), so a worker whose claim
   expired and was settled by someone else changes nothing.

When a lease expires (:func:`expire_stale`), rows never attempted go back to the queue; rows
whose hand-over had started become ``unknown``: they may have been sent, so they are never
re-queued blindly but settled from evidence (a written file, the provider's events) or by staff.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session


def id_in(session: Session, column: Any, ids: Sequence[int]) -> sa.ColumnElement[bool]:
    """``column IN ids``; on PostgreSQL as ``= ANY(array)``, one parameter however many ids
    (a batch of 1,000 would otherwise be 1,000 parameters to send and parse)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.literal(list(ids), postgresql.ARRAY(sa.Integer)))
    return column.in_(list(ids))


@dataclass(frozen=True)
class ClaimStates:
    """The status values a queue uses for the four states the rules speak of."""

    pending: Enum
    claimed: Enum
    unknown: Enum


def lock_due(
    session: Session,
    model: Any,
    states: ClaimStates,
    due: Sequence[sa.ColumnElement[bool]],
    *,
    limit: int,
) -> list[int] | sa.ScalarSelect[Any]:
    """The ids of up to ``limit`` pending rows matching ``due`` (oldest first) for a claim.

    On PostgreSQL the rows are locked (``FOR UPDATE SKIP LOCKED``: another worker's rows are
    skipped, never shared) and their ids returned; lock them in this statement of their own:
    inside an UPDATE's IN (…), PostgreSQL may run a SKIP LOCKED subquery once per row and claim
    far more than ``limit``. On SQLite the query itself is returned, for the claiming UPDATE
    to evaluate once (its single writer serialises claims).
    """
    query = (
        sa.select(model.id)
        .where(model.status == states.pending, *due)
        .order_by(model.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        return list(session.scalars(query.with_for_update(skip_locked=True)))
    return query.scalar_subquery()


def claim(
    session: Session,
    model: Any,
    states: ClaimStates,
    due: Sequence[sa.ColumnElement[bool]],
    *,
    now: datetime,
    lease: timedelta,
    token: str,
    limit: int,
    values: dict[str, Any] | None = None,
    returning: Sequence[Any] = (),
) -> list[Any]:
    """Claim up to ``limit`` pending rows of ``model`` matching ``due`` (oldest id first) for
    ``token``; the caller commits at once.

    :param values: further columns to set on the claimed rows.
    :param returning: columns to return per claimed row (default: the id alone).
    :returns: the claimed ids (or rows of ``returning``), in id order.
    """
    chosen = lock_due(session, model, states, due, limit=limit)
    if isinstance(chosen, list) and not chosen:
        return []
    columns = list(returning) or [model.id]
    result = session.execute(
        sa.update(model)
        .where(chosen_ids(session, model, chosen), model.status == states.pending)
        .values(
            status=states.claimed,
            claim_token=token,
            claimed_at=now,
            lease_expires_at=now + lease,
            # A queue that marks whole batches as started keeps no per-row mark.
            **({"attempt_started_at": None} if hasattr(model, "attempt_started_at") else {}),
            **(values or {}),
        )
        .returning(*columns)
        .execution_options(synchronize_session=False)
    ).all()
    rows = sorted(result, key=lambda row: row[0])
    return [row[0] for row in rows] if not returning else rows


def chosen_ids(
    session: Session, model: Any, chosen: list[int] | sa.ScalarSelect[Any]
) -> sa.ColumnElement[bool]:
    """The condition selecting what :func:`lock_due` chose."""
    if isinstance(chosen, list):
        return id_in(session, model.id, chosen)
    return model.id.in_(chosen)


def mark_attempt_started(
    session: Session, model: Any, states: ClaimStates, token: str, now: datetime, **values: Any
) -> int:
    """Say durably that the hand-over of ``token``'s rows is starting (the caller commits
    before handing over); returns how many rows the claim still holds."""
    result = session.execute(
        sa.update(model)
        .where(model.claim_token == token, model.status == states.claimed)
        .values(attempt_started_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def record(
    session: Session,
    model: Any,
    states: ClaimStates,
    token: str,
    values: dict[str, Any],
    *,
    ids: Iterable[int] | None = None,
) -> int:
    """Record an outcome on the rows ``token`` still holds (claimed, or turned ``unknown``
    while this worker waited), optionally only ``ids``; returns how many rows changed."""
    statement = sa.update(model).where(
        model.claim_token == token, model.status.in_([states.claimed, states.unknown])
    )
    if ids is not None:
        statement = statement.where(id_in(session, model.id, list(ids)))
    result = session.execute(
        statement.values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def release(session: Session, model: Any, states: ClaimStates, token: str, now: datetime) -> int:
    """Hand back ``token``'s rows that were never attempted (a worker told to stop)."""
    result = session.execute(
        sa.update(model)
        .where(
            model.claim_token == token,
            model.status == states.claimed,
            model.attempt_started_at.is_(None),
        )
        .values(status=states.pending, claim_token=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def expire_stale(
    session: Session,
    model: Any,
    states: ClaimStates,
    now: datetime,
    *,
    unknown_reason: str = "the delivering process stopped before recording the outcome",
    attempted: sa.ColumnElement[bool] | None = None,
) -> tuple[int, int]:
    """Settle rows whose claim's lease ran out (their worker died or hung): one never
    attempted goes back to the queue; one whose hand-over had started becomes ``unknown``.

    :param attempted: the condition for "the hand-over had started" (default: the row's own
        ``attempt_started_at`` is set; a queue that marks whole batches passes its own).
    :returns: (rows re-queued, rows now unknown).
    """
    if attempted is None:
        attempted = model.attempt_started_at.is_not(None)
    stale = (model.status == states.claimed, model.lease_expires_at < now)
    requeued = session.execute(
        sa.update(model)
        .where(*stale, ~attempted)
        .values(status=states.pending, claim_token=None, next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )
    unknown = session.execute(
        sa.update(model)
        .where(*stale, attempted)
        .values(status=states.unknown, last_error=unknown_reason)
        .execution_options(synchronize_session=False)
    )
    return requeued.rowcount or 0, unknown.rowcount or 0


def backoff(
    attempts: int,
    *,
    base_seconds: float = 30,
    cap_seconds: float = 3600,
    jitter: bool = False,
    at_least_seconds: float | None = None,
) -> timedelta:
    """How long to wait before attempt ``attempts + 1``: ``base`` doubling per attempt, capped;
    with ``jitter``, a random point in the upper half (so workers retrying together spread
    out); never less than ``at_least_seconds`` (a provider's rate-limit reset)."""
    delay = min(base_seconds * 2 ** max(attempts - 1, 0), cap_seconds)
    if jitter:
        delay = random.uniform(delay / 2, delay)  # noqa: S311 - spreading retries, not secrecy
    if at_least_seconds is not None:
        delay = max(delay, min(at_least_seconds, cap_seconds))
    return timedelta(seconds=delay)
