"""The decision ledger: every step of every decision thread is an event in its proposal's hash
chain (``engage.hashchain``), appended under a lock on the proposal, and verified by
``engage audit verify`` through the verifier registered at composition time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
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
from governance.models import DecisionEvent, DecisionEventKind, DecisionThread, Proposal


def event_fields(
    *,
    proposal_id: int,
    thread_id: int,
    seq: int,
    kind: DecisionEventKind | str,
    actor_id: int | None,
    text: str | None,
    occurred_at: datetime,
) -> dict[str, Any]:
    """What an event's hash covers (everything it stores but its id and hashes)."""
    return {
        "proposal_id": proposal_id,
        "thread_id": thread_id,
        "seq": seq,
        "kind": str(kind),
        "actor_id": actor_id,
        "text": text,
        "occurred_at": timestamp(occurred_at),
    }


def append_event(
    session: Session,
    thread: DecisionThread,
    kind: DecisionEventKind,
    *,
    actor_id: int | None,
    text: str | None,
    now: datetime,
) -> DecisionEvent:
    """Append one event to the thread's proposal chain.

    The proposal row is locked first, so concurrent steps on any of its threads queue and each
    chains from the one before (the unique (proposal, seq) constraint is the last word).
    Callers that check the thread's status lock the proposal before reading it, through
    :func:`lock_proposal`, so the check and the append see the same state.
    """
    lock_proposal(session, thread.proposal_id)
    seq, prev_hash = chain_head(
        session,
        DecisionEvent.seq,
        DecisionEvent.hash,
        DecisionEvent.proposal_id == thread.proposal_id,
    )
    fields = event_fields(
        proposal_id=thread.proposal_id,
        thread_id=thread.id,
        seq=seq + 1,
        kind=kind,
        actor_id=actor_id,
        text=text,
        occurred_at=now,
    )
    event = DecisionEvent(
        proposal_id=thread.proposal_id,
        thread_id=thread.id,
        seq=seq + 1,
        kind=kind,
        actor_id=actor_id,
        text=text,
        occurred_at=now,
        prev_hash=prev_hash,
        hash=chain_hash(fields, prev_hash),
    )
    session.add(event)
    session.flush()
    return event


def lock_proposal(session: Session, proposal_id: int) -> None:
    """Lock the proposal's row until the transaction ends (its threads' steps queue here)."""
    lock_rows(session, Proposal, [proposal_id])


def _links(session: Session, proposal_id: int) -> Iterator[ChainLink]:
    for event in session.scalars(
        sa.select(DecisionEvent)
        .where(DecisionEvent.proposal_id == proposal_id)
        .order_by(DecisionEvent.seq)
    ):
        yield ChainLink(
            where=f"decision event {event.id} (proposal {proposal_id}, seq {event.seq})",
            fields=event_fields(
                proposal_id=event.proposal_id,
                thread_id=event.thread_id,
                seq=event.seq,
                kind=event.kind,
                actor_id=event.actor_id,
                text=event.text,
                occurred_at=event.occurred_at,
            ),
            prev_hash=event.prev_hash,
            hash=event.hash,
        )


def verify(session: Session) -> LedgerReport:
    """The decision ledger's verifier: every proposal's chain, in order, with no gap in
    ``seq`` (a deleted event)."""
    report = LedgerReport(checked=0)
    proposal_ids = session.scalars(
        sa.select(DecisionEvent.proposal_id).distinct().order_by(DecisionEvent.proposal_id)
    ).all()
    for proposal_id in proposal_ids:
        verify_numbered_chain(_links(session, proposal_id), report)
        session.expunge_all()
    return report
