"""Closing a priority-setting round: at its closing time the scheduler's ``rounds.close_due``
job tallies the current ballots and publishes the result with the anonymised ballot file.

A round is closed exactly once, however many schedulers or ``engage scheduler run-job``
processes run at the same moment: the run that locks the round's row closes it (on PostgreSQL
the others skip it, ``SKIP LOCKED``), and ``closed_at`` is checked again under that lock. The
result, the ballot file and ``closed_at`` are written in one transaction with the audit event.

A ballot being saved just before the closing time holds the round's lock too
(``engage.rounds.ballots.cast_ballot``): the closing waits for it (or, in the job, leaves the
round for the next minute's run), so every ballot saved in time is counted.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.db import lock_rows, savepoint
from engage.rounds import tally
from engage.rounds.audit_actions import RoundAction, target
from engage.rounds.models import Ballot, PriorityRound, ShortlistItem

log = logging.getLogger(__name__)

# Rounds closed per run at most; the rest wait for the next minute.
MAX_ROUNDS_PER_RUN = 50


def due_round_ids(session: Session, now: datetime) -> list[int]:
    """Ids of rounds past their closing time and not yet closed, soonest first."""
    return list(
        session.scalars(
            sa.select(PriorityRound.id)
            .where(PriorityRound.closed_at.is_(None), PriorityRound.closes_at <= now)
            .order_by(PriorityRound.closes_at, PriorityRound.id)
            .limit(MAX_ROUNDS_PER_RUN)
        )
    )


def _claim(session: Session, round_id: int, *, skip_locked: bool) -> PriorityRound | None:
    """Lock the round's row and re-read it; None when it does not exist, or (``skip_locked``,
    PostgreSQL) when another transaction holds it."""
    if skip_locked and session.get_bind().dialect.name == "postgresql":
        locked = session.scalar(
            sa.select(PriorityRound.id)
            .where(PriorityRound.id == round_id)
            .with_for_update(key_share=True, skip_locked=True)
        )
        if locked is None:
            return None
    else:
        # SQLite has no row locks: its one write lock serialises the closings.
        lock_rows(session, PriorityRound, [round_id])
    return session.get(PriorityRound, round_id, populate_existing=True)


def shortlist_ids(session: Session, round_id: int) -> list[int]:
    """The topic ids on a round's shortlist, in the order they were added."""
    return list(
        session.scalars(
            sa.select(ShortlistItem.topic_id)
            .where(ShortlistItem.round_id == round_id)
            .order_by(ShortlistItem.added_at, ShortlistItem.id)
        )
    )


def counted_ballots(session: Session, round_id: int) -> list[tally.CountedBallot]:
    """The round's current ballots (each person's latest save), anonymous, by ballot id."""
    # The rankings come as text, parsed here, and sorted in Python: for 100,000 ballots that
    # is several times faster than the JSON type's per-row processing and a sort on the server.
    rows = session.execute(
        sa.select(Ballot.ballot_uid, Ballot.group_code, sa.cast(Ballot.ranking, sa.Text)).where(
            Ballot.round_id == round_id
        )
    ).all()
    rows.sort(key=lambda row: row[0])
    return [
        tally.CountedBallot(ballot_uid=uid, group_code=group, ranking=tuple(json.loads(ranking)))
        for uid, group, ranking in rows
    ]


def _close(session: Session, round_: PriorityRound, now: datetime) -> None:
    """Tally the locked round and store its result, ballot file and closing time."""
    shortlist = shortlist_ids(session, round_.id)
    ballots = counted_ballots(session, round_.id)
    result = tally.tally(
        max_ranks=round_.max_ranks, groups=round_.groups, shortlist=shortlist, ballots=ballots
    )
    round_.result = result.to_json()
    round_.ballot_file = tally.ballot_file(
        round_id=round_.id,
        title=round_.title,
        max_ranks=round_.max_ranks,
        groups=round_.groups,
        shortlist=shortlist,
        ballots=ballots,
        result=result,
    )
    round_.closed_at = now
    audit.record(
        session,
        RoundAction.CLOSED,
        now=now,
        target=target(round_.id),
        ballots=len(ballots),
        by_group={group.code: group.ballots for group in result.groups},
        shortlist=len(shortlist),
        topics_ranked=len(result.combined),
    )


def close_round(session: Session, round_id: int, now: datetime) -> bool:
    """Close round ``round_id`` if its closing time has come and nobody closed it yet; return
    whether this call closed it. Waits for a transaction holding the round (a ballot being
    saved, another closing) and then checks again.

    :raises ValueError: a stored ballot the tally refuses (the services never store one).
    """
    return _close_locked(session, round_id, now, skip_locked=False)


def _close_locked(session: Session, round_id: int, now: datetime, *, skip_locked: bool) -> bool:
    round_ = _claim(session, round_id, skip_locked=skip_locked)
    if round_ is None or round_.closed_at is not None or now < round_.closes_at:
        return False
    _close(session, round_, now)
    session.flush()
    return True


def close_due(session: Session, now: datetime) -> list[int]:
    """Close every round whose closing time has come; return the ids this call closed.

    A round another run is closing at this moment is skipped (that run closes it). A round
    whose tally fails is rolled back alone and logged, so it cannot stop the others.
    """
    closed = []
    for round_id in due_round_ids(session, now):
        try:
            with savepoint(session):
                if _close_locked(session, round_id, now, skip_locked=True):
                    closed.append(round_id)
        except ValueError:
            log.exception("round %s could not be tallied", round_id)
    return closed


def close_due_job(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """The ``rounds.close_due`` tick: close and tally the rounds whose time is up."""
    closed = close_due(session, now)
    if not closed:
        return "no round to close"
    return f"closed {len(closed)} round(s): " + ", ".join(str(round_id) for round_id in closed)
