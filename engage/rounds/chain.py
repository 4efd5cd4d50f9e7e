"""The ballot ledger: every save of every ballot is an event in its round's hash chain
(``engage.hashchain``), appended under a lock on the round, and verified by ``engage audit
verify`` through the verifier registered at composition time.

Events name ballots by their random ``ballot_uid``, never by person, so the chain can be
published and checked by anyone with the round's ballot file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.db import lock_rows
from engage.hashchain import (
    ChainLink,
    LedgerReport,
    chain_hash,
    chain_head,
    timestamp,
    verify_numbered_chain,
)
from engage.rounds.models import Ballot, BallotEvent, PriorityRound

# Events read from the database at a time while verifying (a round may hold 100,000).
VERIFY_BATCH = 5000


def event_fields(
    *,
    round_id: int,
    seq: int,
    ballot_uid: str,
    group_code: str,
    ranking: Sequence[int],
    cast_at: datetime,
) -> dict[str, Any]:
    """What an event's hash covers (everything it stores but its id and hashes)."""
    return {
        "round_id": round_id,
        "seq": seq,
        "ballot_uid": ballot_uid,
        "group_code": group_code,
        "ranking": [int(topic_id) for topic_id in ranking],
        "cast_at": timestamp(cast_at),
    }


def lock_round(session: Session, round_id: int) -> None:
    """Lock the round's row until the transaction ends (its ballot saves queue here)."""
    lock_rows(session, PriorityRound, [round_id])


def append_event(
    session: Session,
    *,
    round_id: int,
    ballot_uid: str,
    group_code: str,
    ranking: Sequence[int],
    now: datetime,
) -> BallotEvent:
    """Append one save of a ballot to the round's chain.

    The round's row is locked first, so concurrent saves in the round queue and each chains
    from the one before (the unique (round, seq) constraint is the last word). Callers that
    check the round's state lock it before reading, through :func:`lock_round`.
    """
    lock_round(session, round_id)
    seq, prev_hash = chain_head(
        session, BallotEvent.seq, BallotEvent.hash, BallotEvent.round_id == round_id
    )
    fields = event_fields(
        round_id=round_id,
        seq=seq + 1,
        ballot_uid=ballot_uid,
        group_code=group_code,
        ranking=ranking,
        cast_at=now,
    )
    event = BallotEvent(
        round_id=round_id,
        seq=seq + 1,
        ballot_uid=ballot_uid,
        group_code=group_code,
        ranking=list(fields["ranking"]),
        cast_at=now,
        prev_hash=prev_hash,
        hash=chain_hash(fields, prev_hash),
    )
    session.add(event)
    session.flush()
    return event


def _links(session: Session) -> Iterator[tuple[int, ChainLink]]:
    """Every event as a chain link, round by round, oldest first (streamed in batches)."""
    rows = session.execute(
        sa.select(
            BallotEvent.id,
            BallotEvent.round_id,
            BallotEvent.seq,
            BallotEvent.ballot_uid,
            BallotEvent.group_code,
            BallotEvent.ranking,
            BallotEvent.cast_at,
            BallotEvent.prev_hash,
            BallotEvent.hash,
        )
        .order_by(BallotEvent.round_id, BallotEvent.seq)
        .execution_options(yield_per=VERIFY_BATCH)
    )
    for row in rows:
        yield (
            row.round_id,
            ChainLink(
                where=f"ballot event {row.id} (round {row.round_id}, seq {row.seq})",
                fields=event_fields(
                    round_id=row.round_id,
                    seq=row.seq,
                    ballot_uid=row.ballot_uid,
                    group_code=row.group_code,
                    ranking=row.ranking,
                    cast_at=row.cast_at,
                ),
                prev_hash=row.prev_hash,
                hash=row.hash,
            ),
        )


def _check_ballots(session: Session) -> list[str]:
    """Each ballot row must hold its newest event's group and ranking, and count its saves."""
    newest = (
        sa.select(
            BallotEvent.round_id,
            BallotEvent.ballot_uid,
            sa.func.max(BallotEvent.seq).label("seq"),
            sa.func.count().label("saves"),
        )
        .group_by(BallotEvent.round_id, BallotEvent.ballot_uid)
        .subquery()
    )
    rows = session.execute(
        sa.select(
            Ballot.id,
            Ballot.round_id,
            Ballot.group_code,
            Ballot.ranking,
            Ballot.version,
            newest.c.saves,
            BallotEvent.group_code.label("event_group"),
            BallotEvent.ranking.label("event_ranking"),
        )
        .outerjoin(
            newest,
            sa.and_(newest.c.round_id == Ballot.round_id, newest.c.ballot_uid == Ballot.ballot_uid),
        )
        .outerjoin(
            BallotEvent,
            sa.and_(BallotEvent.round_id == newest.c.round_id, BallotEvent.seq == newest.c.seq),
        )
        .order_by(Ballot.id)
        .execution_options(yield_per=VERIFY_BATCH)
    )
    problems = []
    for row in rows:
        where = f"ballot {row.id} (round {row.round_id})"
        if row.saves is None:
            problems.append(f"{where}: no event in the round's chain records it")
            continue
        if row.group_code != row.event_group or list(row.ranking) != list(row.event_ranking):
            problems.append(f"{where}: its ranking or group is not its newest event's")
        if row.version != row.saves:
            problems.append(
                f"{where}: says it was saved {row.version} time(s), the chain records {row.saves}"
            )
    return problems


def verify(session: Session) -> LedgerReport:
    """The ballot ledger's verifier: every round's chain, in order, with no gap in ``seq`` (a
    deleted event), and every ballot row agreeing with its newest event."""
    report = LedgerReport(checked=0)
    # Streamed round by round: a round's chain may be far larger than is worth holding.
    for _round_id, chain in groupby(_links(session), key=itemgetter(0)):
        verify_numbered_chain((link for _, link in chain), report)
    report.problems.extend(_check_ballots(session))
    return report
