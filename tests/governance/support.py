"""Helpers shared by the governance tests: proposals and decision threads made directly with
the models (as if staff had sent them), and what the ledgers hold."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.audit import AuditEvent
from engage.registries.models import Registry
from engage.timeutil import utcnow
from governance import chain
from governance.models import (
    AnalysisMode,
    DecisionEvent,
    DecisionEventKind,
    DecisionThread,
    Proposal,
    ProposalScope,
    ProposalStatus,
    ThreadStatus,
)

DECISION_DAYS = 14


def make_proposal(
    session: Session,
    proposer: User,
    registries: Iterable[Registry],
    *,
    now: datetime | None = None,
    deadline: datetime | None = None,
    scopes: Iterable[str] = (),
    title: str = "Vitamin D and relapse rates",
) -> tuple[Proposal, list[DecisionThread]]:
    """A proposal sent to ``registries``: one SENT thread each, with its SENT event in the
    chain (as sending it does); commits. Returns the proposal and its threads, in order."""
    now = now or utcnow()
    deadline = deadline or now + timedelta(days=DECISION_DAYS)
    proposal = Proposal(
        title=title,
        lead_researcher="Dr Ana Lind",
        institution="Karolinska Institutet",
        sponsor="MS Society",
        plain_summary="Does vitamin D lower the number of relapses?",
        scientific_summary="A retrospective cohort study of vitamin D levels and relapses.",
        language="en",
        analysis_mode=AnalysisMode.FEDERATED,
        ethics_reference="EPN 2026-0001",
        decision_deadline=deadline,
        proposer_id=proposer.id,
        status=ProposalStatus.SENT,
        created_at=now,
        updated_at=now,
        sent_at=now,
    )
    session.add(proposal)
    session.flush()
    session.add_all(ProposalScope(proposal_id=proposal.id, scope_code=code) for code in scopes)
    threads = []
    for registry in registries:
        thread = DecisionThread(
            proposal_id=proposal.id,
            registry_id=registry.id,
            status=ThreadStatus.SENT,
            deadline=deadline,
            created_at=now,
            updated_at=now,
        )
        session.add(thread)
        session.flush()
        chain.append_event(
            session, thread, DecisionEventKind.SENT, actor_id=proposer.id, text=None, now=now
        )
        threads.append(thread)
    session.commit()
    return proposal, threads


def set_proposal_status(session: Session, proposal: Proposal, status: ProposalStatus) -> None:
    """Move the proposal to ``status`` directly (what the lifecycle would do); commits."""
    proposal.status = status
    session.commit()


def events_of(session: Session, thread: DecisionThread) -> list[DecisionEvent]:
    """The thread's events, in chain order."""
    return list(
        session.scalars(
            sa.select(DecisionEvent)
            .where(DecisionEvent.thread_id == thread.id)
            .order_by(DecisionEvent.seq)
        )
    )


def kinds_of(session: Session, thread: DecisionThread) -> list[DecisionEventKind]:
    """The kinds of the thread's events, in chain order."""
    return [event.kind for event in events_of(session, thread)]


def audit_actions(session: Session) -> list[str]:
    """Every governance audit action recorded, oldest first (accounts' own left out)."""
    return list(
        session.scalars(
            sa.select(AuditEvent.action)
            .where(AuditEvent.action.like("governance_%"))
            .order_by(AuditEvent.id)
        )
    )


def ledger_size(session: Session) -> tuple[int, int]:
    """How many decision events and audit events there are."""
    return (
        session.scalar(sa.select(sa.func.count()).select_from(DecisionEvent)) or 0,
        session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) or 0,
    )


@contextmanager
def counting_statements(session: Session) -> Iterator[list[str]]:
    """The SQL statements ``session``'s engine runs inside the block."""
    statements: list[str] = []
    engine = session.get_bind()

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
