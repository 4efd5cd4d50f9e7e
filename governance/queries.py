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
from engage.topics.models import Topic, TopicStatus
from governance.decisions import effective_deadline
from governance.errors import NotAllowed
from governance.models import (
    CatalogueVariable,
    DecisionEvent,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ProposalStatusChange,
    ProposalVariable,
    ThreadStatus,
)
from governance.rules import (
    APPROVING_THREAD_STATUSES,
    DECIDED_THREAD_STATUSES,
    OPEN_THREAD_STATUSES,
    PUBLIC_PROJECT_STATUSES,
)

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


# Rows of one page of a registry's inbox (the page's cost stays the same as a registry's
# history grows; the API lists them all).
INBOX_PAGE_SIZE = 50


def registry_inbox(
    session: Session,
    registry_id: int,
    now: datetime,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[InboxEntry]:
    """The registry's decision threads with their proposals' titles: open ones first, each
    group by deadline. One statement.

    :param limit: at most this many (a page; None: all of them), after skipping ``offset``.
    """
    is_open = DecisionThread.status.in_(OPEN_THREAD_STATUSES)
    query = (
        sa.select(DecisionThread, Proposal.title, Proposal.status.label("proposal_status"))
        .join(Proposal, Proposal.id == DecisionThread.proposal_id)
        .where(DecisionThread.registry_id == registry_id)
        .order_by(sa.case((is_open, 0), else_=1), DecisionThread.deadline, DecisionThread.id)
    )
    if limit is not None:
        query = query.limit(limit).offset(max(offset, 0))
    rows = session.execute(query)
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


# For the staff pages ----------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusChangeRow:
    """One step of a proposal's status history, with the name of who took it."""

    from_status: ProposalStatus | None
    to_status: ProposalStatus
    # None when the scheduler took the step.
    actor_name: str | None
    reason: str | None
    created_at: datetime


def status_history(session: Session, proposal: Proposal) -> list[StatusChangeRow]:
    """``proposal``'s status changes, oldest first, with their actors' names. One statement."""
    rows = session.execute(
        sa.select(ProposalStatusChange, User.display_name)
        .outerjoin(User, User.id == ProposalStatusChange.actor_id)
        .where(ProposalStatusChange.proposal_id == proposal.id)
        .order_by(ProposalStatusChange.created_at, ProposalStatusChange.id)
    )
    return [
        StatusChangeRow(
            from_status=row.ProposalStatusChange.from_status,
            to_status=row.ProposalStatusChange.to_status,
            actor_name=row.display_name,
            reason=row.ProposalStatusChange.reason,
            created_at=row.ProposalStatusChange.created_at,
        )
        for row in rows
    ]


def proposals_for_staff(session: Session) -> list[Proposal]:
    """Every proposal, most recently changed first (staff group them by status). One
    statement."""
    return list(
        session.scalars(
            sa.select(Proposal).order_by(Proposal.updated_at.desc(), Proposal.id.desc())
        )
    )


def adopted_topics(session: Session) -> list[tuple[int, str]]:
    """(id, title) of the research topics adopted for research, by title: the topics a
    proposal may answer. One statement."""
    return [
        (row.id, row.title)
        for row in session.execute(
            sa.select(Topic.id, Topic.title)
            .where(Topic.status == TopicStatus.ADOPTED)
            .order_by(Topic.title, Topic.id)
        )
    ]


# For the custodian, proposer and public pages ---------------------------------------------------
def registry_by_code(session: Session, code: str) -> Registry | None:
    """The registry whose code is ``code`` (as written in its address), or None."""
    return session.scalars(sa.select(Registry).where(Registry.code == code)).first()


def registry_thread(session: Session, proposal_id: int, registry_id: int) -> DecisionThread | None:
    """The registry's decision thread on the proposal, or None if it was not sent there."""
    return session.scalars(
        sa.select(DecisionThread).where(
            DecisionThread.proposal_id == proposal_id,
            DecisionThread.registry_id == registry_id,
        )
    ).first()


def requested_variables(session: Session, proposal: Proposal) -> list[CatalogueVariable]:
    """The catalogue variables ``proposal`` requests (retired ones included), by domain and
    name. One statement."""
    return list(
        session.scalars(
            sa.select(CatalogueVariable)
            .join(ProposalVariable, ProposalVariable.variable_id == CatalogueVariable.id)
            .where(ProposalVariable.proposal_id == proposal.id)
            .order_by(CatalogueVariable.domain, CatalogueVariable.name, CatalogueVariable.id)
        )
    )


def thread_events(session: Session, proposal: Proposal) -> dict[int, list[DecisionEvent]]:
    """Every thread's events on ``proposal``, by thread id, in chain order (for the proposer
    and staff, who see the whole matrix). One statement."""
    grouped: dict[int, list[DecisionEvent]] = {}
    for event in session.scalars(
        sa.select(DecisionEvent)
        .where(DecisionEvent.proposal_id == proposal.id)
        .order_by(DecisionEvent.seq)
    ):
        grouped.setdefault(event.thread_id, []).append(event)
    return grouped


def proposals_by(session: Session, proposer_id: int) -> list[Proposal]:
    """The proposals ``proposer_id`` made, most recently changed first. One statement."""
    return list(
        session.scalars(
            sa.select(Proposal)
            .where(Proposal.proposer_id == proposer_id)
            .order_by(Proposal.updated_at.desc(), Proposal.id.desc())
        )
    )


@dataclass(frozen=True)
class PublicProject:
    """A project as the public register shows it: no people, no decisions' texts."""

    proposal_id: int
    title: str
    plain_summary: str
    language: str
    status: ProposalStatus
    # Names of the registries taking part (their threads approve), by name.
    registries: list[str]
    topic_id: int | None
    topic_title: str | None


def public_projects(session: Session) -> list[PublicProject]:
    """Active and completed projects, newest first, with their participating registries and
    the research topic each answers. Two statements."""
    rows = session.execute(
        sa.select(Proposal, Topic.title.label("topic_title"))
        .outerjoin(Topic, Topic.id == Proposal.topic_id)
        .where(Proposal.status.in_(PUBLIC_PROJECT_STATUSES))
        .order_by(Proposal.sent_at.desc(), Proposal.id.desc())
    ).all()
    ids = [row.Proposal.id for row in rows]
    taking_part: dict[int, list[str]] = {}
    for proposal_id, name in session.execute(
        sa.select(DecisionThread.proposal_id, Registry.name)
        .join(Registry, Registry.id == DecisionThread.registry_id)
        .where(
            DecisionThread.proposal_id.in_(ids),
            DecisionThread.status.in_(APPROVING_THREAD_STATUSES),
        )
        .order_by(Registry.name, Registry.id)
    ):
        taking_part.setdefault(proposal_id, []).append(name)
    return [
        PublicProject(
            proposal_id=row.Proposal.id,
            title=row.Proposal.title,
            plain_summary=row.Proposal.plain_summary,
            language=row.Proposal.language,
            status=row.Proposal.status,
            registries=taking_part.get(row.Proposal.id, []),
            topic_id=row.Proposal.topic_id,
            topic_title=row.topic_title,
        )
        for row in rows
    ]


def proposal_titles(session: Session, proposal_ids: set[int]) -> dict[int, str]:
    """The titles of ``proposal_ids``, by id. One statement (none for no ids)."""
    if not proposal_ids:
        return {}
    return {
        row.id: row.title
        for row in session.execute(
            sa.select(Proposal.id, Proposal.title).where(Proposal.id.in_(proposal_ids))
        )
    }
