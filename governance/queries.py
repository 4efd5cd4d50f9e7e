"""What governance lets others read about decision threads: a proposal's decision matrix, the
blind view each registry's custodians get, a registry's inbox and staff's list of threads
running out of time.

Blind review: a registry does not see how the others decided until its own thread is decided
(or expired), so no registry's decision leans on another's. Even then it sees only their
status and when they decided, never their reasons, conditions or questions.

Every function here runs a fixed number of SQL statements, whatever the number of threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.registries.models import Registry
from engage.roles import Role
from engage.security import is_approved_custodian
from governance.decisions import effective_deadline
from governance.errors import NotAllowed
from governance.models import (
    DecisionEvent,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ThreadStatus,
)
from governance.rules import DECIDED_THREAD_STATUSES, OPEN_THREAD_STATUSES

# Open threads whose deadline is this close are listed as overdue too, so staff can nudge.
OVERDUE_WARNING = timedelta(days=1)


@dataclass(frozen=True)
class MatrixRow:
    """One registry's thread on a proposal, as staff see it."""

    thread_id: int
    registry_id: int
    registry_code: str
    registry_name: str
    status: ThreadStatus
    deadline: datetime
    # Set while the registry waits for the proposer's answer.
    paused_since: datetime | None
    decided_at: datetime | None


@dataclass(frozen=True)
class OtherDecision:
    """Another registry's decision as a custodian may see it: no texts, no deadlines."""

    registry_id: int
    registry_code: str
    registry_name: str
    status: ThreadStatus
    decided_at: datetime | None


@dataclass
class ThreadView:
    """What one person sees of a proposal's decisions."""

    # The viewer's own registry's thread, with its events (texts included); None for staff.
    thread: DecisionThread | None = None
    events: list[DecisionEvent] = field(default_factory=list)
    # The other registries' decisions (custodians) or the whole matrix (staff, the proposer).
    others: list[OtherDecision] | list[MatrixRow] = field(default_factory=list)
    # False while blind review hides the other registries from this custodian.
    others_visible: bool = False


def _matrix_rows(session: Session, proposal_id: int) -> list[tuple[DecisionThread, Registry]]:
    return [
        (row.DecisionThread, row.Registry)
        for row in session.execute(
            sa.select(DecisionThread, Registry)
            .join(Registry, Registry.id == DecisionThread.registry_id)
            .where(DecisionThread.proposal_id == proposal_id)
            .order_by(Registry.name, Registry.id)
        )
    ]


def _matrix_row(thread: DecisionThread, registry: Registry) -> MatrixRow:
    return MatrixRow(
        thread_id=thread.id,
        registry_id=registry.id,
        registry_code=registry.code,
        registry_name=registry.name,
        status=thread.status,
        deadline=thread.deadline,
        paused_since=thread.paused_since,
        decided_at=thread.decided_at,
    )


def matrix(session: Session, proposal: Proposal) -> list[MatrixRow]:
    """Every registry's thread on ``proposal``, by registry name (for staff: the caller checks
    the viewer may see it all). One statement."""
    return [_matrix_row(t, r) for t, r in _matrix_rows(session, proposal.id)]


def sees_others(thread: DecisionThread) -> bool:
    """True once the thread's registry may see how the others decided: it has decided, or
    its deadline decided for it."""
    return thread.status in DECIDED_THREAD_STATUSES


def thread_view(session: Session, viewer: User, proposal: Proposal) -> ThreadView:
    """What ``viewer`` may see of the decisions on ``proposal`` (two statements at most).

    Staff and the proposer see the whole matrix. An approved custodian of a registry the
    proposal was sent to sees their own thread and its events, and the other registries'
    status and decision time only once their own thread is decided or expired.

    :raises NotAllowed: anyone else (a custodian of another registry, a pending custodian).
    """
    rows = _matrix_rows(session, proposal.id)
    if viewer.role == Role.STAFF or viewer.id == proposal.proposer_id:
        return ThreadView(others=[_matrix_row(t, r) for t, r in rows], others_visible=True)
    own = next(
        (
            thread
            for thread, _registry in rows
            if is_approved_custodian(viewer) and thread.registry_id == viewer.custodian_registry_id
        ),
        None,
    )
    if own is None:
        raise NotAllowed("Only custodians of the registries this proposal was sent to can see it.")
    events = list(
        session.scalars(
            sa.select(DecisionEvent)
            .where(DecisionEvent.thread_id == own.id)
            .order_by(DecisionEvent.seq)
        )
    )
    if not sees_others(own):
        return ThreadView(thread=own, events=events)
    others = [
        OtherDecision(
            registry_id=registry.id,
            registry_code=registry.code,
            registry_name=registry.name,
            status=thread.status,
            decided_at=thread.decided_at,
        )
        for thread, registry in rows
        if thread.id != own.id
    ]
    return ThreadView(thread=own, events=events, others=others, others_visible=True)


@dataclass(frozen=True)
class InboxEntry:
    """One proposal in a registry's inbox."""

    thread_id: int
    proposal_id: int
    proposal_title: str
    proposal_status: ProposalStatus
    status: ThreadStatus
    # The deadline as of ``now`` (a paused clock moves it on).
    deadline: datetime
    is_paused: bool
    decided_at: datetime | None
    is_open: bool
    # Open, not paused, and past the deadline (the scheduler will expire it).
    is_past_deadline: bool


def registry_inbox(session: Session, registry_id: int, now: datetime) -> list[InboxEntry]:
    """The registry's decision threads with their proposals' titles: open ones first, each
    group by deadline. One statement."""
    is_open = DecisionThread.status.in_(OPEN_THREAD_STATUSES)
    rows = session.execute(
        sa.select(DecisionThread, Proposal.title, Proposal.status.label("proposal_status"))
        .join(Proposal, Proposal.id == DecisionThread.proposal_id)
        .where(DecisionThread.registry_id == registry_id)
        .order_by(sa.case((is_open, 0), else_=1), DecisionThread.deadline, DecisionThread.id)
    )
    entries = []
    for row in rows:
        thread: DecisionThread = row.DecisionThread
        thread_open = thread.status in OPEN_THREAD_STATUSES
        entries.append(
            InboxEntry(
                thread_id=thread.id,
                proposal_id=thread.proposal_id,
                proposal_title=row.title,
                proposal_status=row.proposal_status,
                status=thread.status,
                deadline=effective_deadline(thread, now),
                is_paused=thread.paused_since is not None,
                decided_at=thread.decided_at,
                is_open=thread_open,
                is_past_deadline=(
                    thread_open and thread.paused_since is None and now >= thread.deadline
                ),
            )
        )
    return entries


@dataclass(frozen=True)
class OverdueThread:
    """An open thread past its deadline or due within :data:`OVERDUE_WARNING`."""

    thread_id: int
    proposal_id: int
    proposal_title: str
    registry_id: int
    registry_code: str
    registry_name: str
    status: ThreadStatus
    deadline: datetime
    is_past: bool


def overdue(session: Session, now: datetime) -> list[OverdueThread]:
    """For staff: open threads of proposals still collecting decisions whose deadline has
    passed or falls within a day, soonest first. Paused threads are left out: their clock
    stands still while they wait for the proposer. One statement."""
    rows = session.execute(
        sa.select(DecisionThread, Proposal.title, Registry.code, Registry.name)
        .join(Proposal, Proposal.id == DecisionThread.proposal_id)
        .join(Registry, Registry.id == DecisionThread.registry_id)
        .where(
            Proposal.status == ProposalStatus.SENT,
            DecisionThread.status.in_(OPEN_THREAD_STATUSES),
            DecisionThread.paused_since.is_(None),
            DecisionThread.deadline <= now + OVERDUE_WARNING,
        )
        .order_by(DecisionThread.deadline, DecisionThread.id)
    )
    return [
        OverdueThread(
            thread_id=row.DecisionThread.id,
            proposal_id=row.DecisionThread.proposal_id,
            proposal_title=row.title,
            registry_id=row.DecisionThread.registry_id,
            registry_code=row.code,
            registry_name=row.name,
            status=row.DecisionThread.status,
            deadline=row.DecisionThread.deadline,
            is_past=now >= row.DecisionThread.deadline,
        )
        for row in rows
    ]
