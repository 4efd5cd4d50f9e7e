"""A research project proposal's life: a staff member or a verified healthcare professional
drafts it and submits it; staff screen it, return it, reject it, or send it to the registries
that decide on it (one decision thread each); the proposer or staff may withdraw it; once the
decisions are closed it becomes an active project (or is not feasible), later completed or
closed.

Every status change goes through :func:`_change_status`, which locks the proposal's row and
re-reads it before checking the transition, and records who changed it, when and why: a
double-click records one change and the second click is told nothing was changed.

Functions take the session, the acting person and ``now`` and never commit; the caller commits
once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import Role, User
from engage.consent.readability import ReadingLevel, reading_level
from engage.registries.models import Registry
from engage.topics.models import Topic
from governance import rules
from governance.chain import append_event, lock_proposal
from governance.errors import (
    InvalidProposal,
    InvalidTransition,
    NotAllowed,
    ReasonRequired,
    TextTooLong,
)
from governance.models import (
    DecisionEventKind,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ProposalStatusChange,
    ThreadStatus,
)
from governance.proposal_details import ProposalDetails as ProposalDetails  # re-exported
from governance.proposal_details import apply_details, check_details

MAX_REASON_LENGTH = 4000
# Topic.proposal_reference's size.
TOPIC_REFERENCE_LENGTH = 80


# Who may do what ------------------------------------------------------------------------------
def can_propose(user: User) -> bool:
    """Staff, and healthcare professionals whose email and professional details are confirmed,
    may draft proposals."""
    return user.is_staff or (
        user.role == Role.CLINICIAN
        and user.clinician_verified_at is not None
        and user.email_verified_at is not None
    )


def _require_proposer_role(user: User) -> None:
    if can_propose(user):
        return
    if user.role != Role.CLINICIAN:
        raise NotAllowed(
            "Only coordination-centre staff and verified healthcare professionals can propose "
            "research projects."
        )
    if user.email_verified_at is None:
        raise NotAllowed("Confirm your email address before proposing a research project.")
    raise NotAllowed(
        "Staff must confirm your professional details before you can propose a research project."
    )


def _require_staff(user: User | None) -> None:
    if user is None or not user.is_staff:
        raise NotAllowed("Only coordination-centre staff can do this.")


def _require_proposer_or_staff(user: User, proposal: Proposal) -> None:
    if not (user.is_staff or user.id == proposal.proposer_id):
        raise NotAllowed("Only the proposer or coordination-centre staff can do this.")


def _required_reason(reason: str | None, why: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired(f"Give a reason {why}.")
    if len(reason) > MAX_REASON_LENGTH:
        raise TextTooLong(f"Keep the reason under {MAX_REASON_LENGTH} characters.")
    return reason


def _optional_reason(reason: str | None) -> str | None:
    reason = (reason or "").strip() or None
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise TextTooLong(f"Keep the reason under {MAX_REASON_LENGTH} characters.")
    return reason


def plain_summary_level(proposal: Proposal) -> ReadingLevel:
    """The reading level of the plain-language summary, graded in its language."""
    return reading_level(proposal.plain_summary, proposal.language)


# Drafting -------------------------------------------------------------------------------------
def create_draft(
    session: Session, actor: User, details: ProposalDetails, now: datetime
) -> Proposal:
    """Staff or a verified healthcare professional drafts a proposal (status DRAFT).

    :raises NotAllowed: ``actor`` may not propose (see :func:`can_propose`).
    :raises InvalidProposal: a detail is missing, too long, or refers to a consent scope not in
        the published form, a missing or retired variable, or a topic not adopted; or the
        deadline is less than a day away.
    """
    _require_proposer_role(actor)
    checked = check_details(session, details, now)
    proposal = Proposal(proposer_id=actor.id, status=ProposalStatus.DRAFT, created_at=now)
    session.add(proposal)
    apply_details(session, proposal, checked, now)
    _record_change(session, actor, proposal, None, ProposalStatus.DRAFT, now, None)
    return proposal


def update_draft(
    session: Session, actor: User, proposal: Proposal, details: ProposalDetails, now: datetime
) -> None:
    """The proposer or staff change a draft or a returned proposal's details.

    :raises NotAllowed: ``actor`` is neither the proposer nor staff.
    :raises InvalidTransition: the proposal is no longer a draft or returned.
    :raises InvalidProposal: as for :func:`create_draft`.
    """
    _require_proposer_or_staff(actor, proposal)
    # Locked and re-read first: a submission or screening arriving now waits for this edit.
    lock_proposal(session, proposal.id)
    session.refresh(proposal)
    if proposal.status not in (ProposalStatus.DRAFT, ProposalStatus.RETURNED):
        raise InvalidTransition(
            f"The proposal is “{proposal.status.label.lower()}”: only a draft or a proposal "
            "returned to its proposer can be changed."
        )
    apply_details(session, proposal, check_details(session, details, now), now)


# Status changes -------------------------------------------------------------------------------
def _record_change(
    session: Session,
    actor: User | None,
    proposal: Proposal,
    from_status: ProposalStatus | None,
    to_status: ProposalStatus,
    now: datetime,
    reason: str | None,
) -> ProposalStatusChange:
    change = ProposalStatusChange(
        proposal_id=proposal.id,
        from_status=from_status,
        to_status=to_status,
        actor_id=actor.id if actor else None,
        reason=reason,
        created_at=now,
    )
    session.add(change)
    proposal.status = to_status
    proposal.updated_at = now
    return change


def _change_status(
    session: Session,
    actor: User | None,
    proposal: Proposal,
    to_status: ProposalStatus,
    now: datetime,
    reason: str | None,
    *,
    withdrawing: bool = False,
    check: Callable[[Proposal], None] | None = None,
) -> ProposalStatusChange:
    """Move ``proposal`` to ``to_status`` and record the change.

    The row is locked and re-read before the status is checked, so concurrent changes queue
    and each sees the one before: the second of two identical clicks is refused.

    :param withdrawing: apply the withdrawal rule instead of ``rules.PROPOSAL_TRANSITIONS``.
    :param check: further checks of the re-read proposal, run before anything is written.
    """
    lock_proposal(session, proposal.id)
    session.refresh(proposal)
    from_status = proposal.status
    if from_status == to_status:
        raise InvalidTransition(
            f"The proposal is already “{from_status.label.lower()}”, so nothing was changed."
        )
    allowed = (
        from_status in rules.WITHDRAWABLE_STATUSES
        if withdrawing
        else to_status in rules.PROPOSAL_TRANSITIONS.get(from_status, frozenset())
    )
    if not allowed:
        raise InvalidTransition(
            f"A proposal that is “{from_status.label.lower()}” cannot become "
            f"“{to_status.label.lower()}”."
        )
    if check is not None:
        check(proposal)
    change = _record_change(session, actor, proposal, from_status, to_status, now, reason)
    if to_status == ProposalStatus.ACTIVE:
        link_topic(session, proposal)
    session.flush()
    return change


def link_topic(session: Session, proposal: Proposal) -> None:
    """Name the project on the research topic it answers (shown on the topic's page)."""
    if proposal.topic_id is None:
        return
    topic = session.get(Topic, proposal.topic_id)
    if topic is not None:
        reference = f"Project {proposal.id}: {proposal.title}"
        topic.proposal_reference = reference[:TOPIC_REFERENCE_LENGTH]


def set_status(
    session: Session,
    actor: User | None,
    proposal: Proposal,
    to_status: ProposalStatus,
    now: datetime,
    reason: str | None = None,
) -> ProposalStatusChange:
    """Staff (or the scheduler, ``actor`` None) move a proposal one step along
    ``rules.PROPOSAL_TRANSITIONS``, e.g. closing decisions into ACTIVE or NOT_FEASIBLE.

    Sending needs the registries (:func:`send_to_registries`) and withdrawing its own rule
    (:func:`withdraw`), so neither goes through here.

    :raises NotAllowed: ``actor`` is a person but not staff.
    :raises InvalidTransition: the step is not allowed from the proposal's status now.
    """
    if actor is not None:
        _require_staff(actor)
    if to_status in (ProposalStatus.SENT, ProposalStatus.WITHDRAWN):
        raise InvalidTransition(
            f"A proposal becomes “{to_status.label.lower()}” only through its own step."
        )
    return _change_status(session, actor, proposal, to_status, now, _optional_reason(reason))


def submit(session: Session, proposer: User, proposal: Proposal, now: datetime) -> None:
    """The proposer submits a draft (or a returned proposal) for screening by staff."""
    if proposer.id != proposal.proposer_id:
        raise NotAllowed("Only the proposer can submit this proposal.")
    _change_status(session, proposer, proposal, ProposalStatus.SUBMITTED, now, None)


def return_to_proposer(
    session: Session, staff: User, proposal: Proposal, reason: str | None, now: datetime
) -> None:
    """Staff return a submitted or screened proposal to its proposer to change.

    :raises ReasonRequired: no reason the proposer can read was given.
    """
    _require_staff(staff)
    reason = _required_reason(reason, "the proposer can act on")
    _change_status(session, staff, proposal, ProposalStatus.RETURNED, now, reason)


def start_screening(session: Session, staff: User, proposal: Proposal, now: datetime) -> None:
    """Staff take a submitted proposal into screening."""
    _require_staff(staff)
    _change_status(session, staff, proposal, ProposalStatus.SCREENING, now, None)


def reject(
    session: Session, staff: User, proposal: Proposal, reason: str | None, now: datetime
) -> None:
    """Staff decline a proposal under screening (final).

    :raises ReasonRequired: no reason the proposer can read was given.
    """
    _require_staff(staff)
    reason = _required_reason(reason, "the proposer can read")
    _change_status(session, staff, proposal, ProposalStatus.REJECTED, now, reason)


def _chosen_registries(session: Session, registry_ids: list[int]) -> list[Registry]:
    wanted = list(dict.fromkeys(registry_ids))
    if not wanted:
        raise InvalidProposal("Choose at least one registry to send the proposal to.")
    registries = list(
        session.scalars(sa.select(Registry).where(Registry.id.in_(wanted)).order_by(Registry.id))
    )
    if len(registries) != len(wanted):
        raise InvalidProposal("One of the chosen registries does not exist.")
    retired = [registry.name for registry in registries if not registry.is_active]
    if retired:
        raise InvalidProposal(
            f"{', '.join(retired)} no longer take{'s' if len(retired) == 1 else ''} part in "
            "the network; choose active registries."
        )
    return registries


def send_to_registries(
    session: Session, staff: User, proposal: Proposal, registry_ids: list[int], now: datetime
) -> list[DecisionThread]:
    """Staff send a screened proposal to the chosen registries: one decision thread each
    (deadline: the proposal's), each opened with a SENT event in the proposal's chain.

    :raises InvalidProposal: no registry chosen, one is unknown or retired, or the decision
        deadline has passed.
    :raises InvalidTransition: the proposal is not being screened (e.g. already sent).
    """
    _require_staff(staff)
    registries = _chosen_registries(session, registry_ids)

    def deadline_ahead(current: Proposal) -> None:
        if current.decision_deadline <= now:
            raise InvalidProposal(
                "The decision deadline has passed: return the proposal to its proposer for a "
                "new one before sending it."
            )

    _change_status(session, staff, proposal, ProposalStatus.SENT, now, None, check=deadline_ahead)
    proposal.sent_at = now
    threads = [
        DecisionThread(
            proposal_id=proposal.id,
            registry_id=registry.id,
            status=ThreadStatus.SENT,
            deadline=proposal.decision_deadline,
            created_at=now,
            updated_at=now,
        )
        for registry in registries
    ]
    session.add_all(threads)
    session.flush()
    for thread in threads:
        append_event(session, thread, DecisionEventKind.SENT, actor_id=staff.id, text=None, now=now)
    return threads


def extend_deadline(
    session: Session,
    staff: User,
    thread: DecisionThread,
    new_deadline: datetime,
    reason: str | None,
    now: datetime,
) -> None:
    """Staff give one registry more time to decide; the extension is an event in the chain.

    :raises ReasonRequired: no reason was given.
    :raises InvalidTransition: the registry has already decided (or the proposal is no longer
        out for decisions).
    :raises InvalidProposal: the new deadline is not later than the current one and than now.
    """
    _require_staff(staff)
    reason = _required_reason(reason, "for the extension")
    if new_deadline.tzinfo is None:
        raise InvalidProposal("Give the new deadline with its time zone.")
    # Locked and re-read first: a decision or the expiry job arriving now waits, and the checks
    # below see the thread as it is.
    lock_proposal(session, thread.proposal_id)
    session.refresh(thread)
    proposal = session.get(Proposal, thread.proposal_id)
    session.refresh(proposal)
    if thread.status not in rules.OPEN_THREAD_STATUSES:
        raise InvalidTransition(
            f"This registry's decision is already “{thread.status.label.lower()}”, so its "
            "deadline cannot change."
        )
    if proposal.status != ProposalStatus.SENT:
        raise InvalidTransition(
            f"The proposal is “{proposal.status.label.lower()}”, so no deadline can change."
        )
    if new_deadline <= thread.deadline or new_deadline <= now:
        raise InvalidProposal(
            f"Choose a deadline later than the current one ({thread.deadline:%d %B %Y %H:%M} UTC)."
        )
    thread.deadline = new_deadline
    thread.updated_at = now
    append_event(
        session,
        thread,
        DecisionEventKind.DEADLINE_EXTENDED,
        actor_id=staff.id,
        text=f"New deadline: {new_deadline:%Y-%m-%d %H:%M} UTC. {reason}",
        now=now,
    )


def withdraw(
    session: Session, actor: User, proposal: Proposal, reason: str | None, now: datetime
) -> None:
    """The proposer or staff withdraw a proposal before it becomes a project. Open decision
    threads are left as they are (their history stays); the proposal is WITHDRAWN.

    :raises ReasonRequired: no reason was given.
    :raises InvalidTransition: the proposal is already a project, closed or withdrawn.
    """
    _require_proposer_or_staff(actor, proposal)
    reason = _required_reason(reason, "for withdrawing")
    _change_status(
        session, actor, proposal, ProposalStatus.WITHDRAWN, now, reason, withdrawing=True
    )


def complete(
    session: Session, staff: User, proposal: Proposal, now: datetime, reason: str | None = None
) -> None:
    """Staff mark an active project completed."""
    _require_staff(staff)
    _change_status(
        session, staff, proposal, ProposalStatus.COMPLETED, now, _optional_reason(reason)
    )


def close(
    session: Session, staff: User, proposal: Proposal, now: datetime, reason: str | None = None
) -> None:
    """Staff close an active project without completing it (e.g. stopped early)."""
    _require_staff(staff)
    _change_status(session, staff, proposal, ProposalStatus.CLOSED, now, _optional_reason(reason))
