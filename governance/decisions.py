"""Each registry's decision on a proposal: its custodians open it for review, ask the proposer
for information, approve (with or without conditions) or decline, and may later withdraw an
approval; the proposer answers questions and accepts or refuses conditions; the scheduler
expires threads nobody decided by their deadline.

Every step is appended to the proposal's hash chain (:func:`governance.chain.append_event`)
and recorded in the audit log. Each function locks the proposal and re-reads the thread before
checking anything, so two custodians deciding at once record exactly one decision and the other
is told that nothing was changed. Functions take the session, the acting person and ``now``
explicitly and never commit; the caller commits once (or rolls back on a domain error, though
nothing has been added to the session by then).
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from engage import audit
from engage.accounts.models import User
from engage.security import is_custodian_of
from governance import chain
from governance.errors import (
    DeadlinePassed,
    InvalidTransition,
    NotAllowed,
    ReasonRequired,
    TextTooLong,
)
from governance.models import (
    DecisionEvent,
    DecisionEventKind,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ThreadStatus,
)
from governance.rules import APPROVING_THREAD_STATUSES, OPEN_THREAD_STATUSES

# Long enough for a considered reason or a list of conditions; longer text belongs in a document.
MAX_TEXT_LENGTH = 5_000
# While the proposal is in these statuses a registry that approved may take its approval back.
WITHDRAWABLE_APPROVAL_PROPOSAL_STATUSES = frozenset(
    {ProposalStatus.SENT, ProposalStatus.DECISIONS_CLOSED, ProposalStatus.ACTIVE}
)
# The proposer answers a registry's conditions while its decision counts: decisions may have
# closed (the proposal then waits for the answer) or the project may already be active.
CONDITIONS_ANSWERABLE_PROPOSAL_STATUSES = frozenset(
    {ProposalStatus.SENT, ProposalStatus.DECISIONS_CLOSED, ProposalStatus.ACTIVE}
)
# The scheduler expires open threads of these proposals (a closing job that closes decisions
# first still expires the stragglers).
EXPIRABLE_PROPOSAL_STATUSES = frozenset({ProposalStatus.SENT, ProposalStatus.DECISIONS_CLOSED})


class DecisionAction(enum.StrEnum):
    """Audit-log actions of decision threads (at most 40 characters each)."""

    OPENED = "governance_thread_opened"
    INFO_REQUESTED = "governance_info_requested"
    INFO_ANSWERED = "governance_info_answered"
    APPROVED = "governance_approved"
    CONDITIONS_SET = "governance_conditions_set"
    CONDITIONS_ACCEPTED = "governance_conditions_accepted"
    CONDITIONS_REFUSED = "governance_conditions_refused"
    DECLINED = "governance_declined"
    APPROVAL_WITHDRAWN = "governance_approval_withdrawn"
    EXPIRED = "governance_thread_expired"


# Helpers -----------------------------------------------------------------------------------
def clean_text(text: str | None, what: str) -> str:
    """``text`` stripped, or a domain error when it is empty or too long.

    :param what: how the person knows the text, e.g. "a reason for declining".
    """
    cleaned = (text or "").strip()
    if not cleaned:
        raise ReasonRequired(f"Please write {what}.")
    if len(cleaned) > MAX_TEXT_LENGTH:
        raise TextTooLong(
            f"Please shorten {what} to at most {MAX_TEXT_LENGTH:,} characters "
            f"(it has {len(cleaned):,})."
        )
    return cleaned


def effective_deadline(thread: DecisionThread, now: datetime) -> datetime:
    """The thread's deadline as of ``now``: while it is paused the clock stands still, so the
    deadline moves on by the time paused so far."""
    if thread.paused_since is None:
        return thread.deadline
    return thread.deadline + max(now - thread.paused_since, timedelta(0))


def _lock(session: Session, thread: DecisionThread) -> Proposal:
    """Lock the thread's proposal and re-read both, so the checks that follow see the state
    they have now (a concurrent step on this proposal has committed or waits for us)."""
    chain.lock_proposal(session, thread.proposal_id)
    session.refresh(thread)
    proposal = session.get(Proposal, thread.proposal_id, populate_existing=True)
    assert proposal is not None  # the foreign key guarantees it
    return proposal


def _require_custodian(actor: User, thread: DecisionThread) -> None:
    if not is_custodian_of(actor, thread.registry_id):
        raise NotAllowed("Only an approved data custodian of this registry can decide for it.")


def _require_proposer(actor: User, proposal: Proposal) -> None:
    if proposal.proposer_id != actor.id:
        raise NotAllowed("Only the person who made this proposal can do this.")


def _require_decisions_open(proposal: Proposal) -> None:
    if proposal.status != ProposalStatus.SENT:
        raise InvalidTransition(
            f"Decisions on this proposal are closed (it is now “{proposal.status.label}”); "
            "nothing was changed."
        )


def _require_status(
    thread: DecisionThread, allowed: Collection[ThreadStatus], refusal: str
) -> None:
    """Refuse unless the thread is in one of ``allowed``; an expired thread says so."""
    if thread.status in allowed:
        return
    if thread.status == ThreadStatus.EXPIRED:
        raise DeadlinePassed(
            "This registry's deadline passed without a decision, so the thread is closed; "
            "nothing was changed."
        )
    raise InvalidTransition(
        f"{refusal} This registry's thread is “{thread.status.label}”; nothing was changed."
    )


def _require_before_deadline(thread: DecisionThread, now: datetime) -> None:
    if now >= effective_deadline(thread, now):
        raise DeadlinePassed(
            f"This registry's deadline passed on {thread.deadline:%d %B %Y at %H:%M} UTC, so "
            "the thread is closed to decisions; nothing was changed."
        )


def _open_thread_for_custodian(
    session: Session,
    actor: User,
    thread: DecisionThread,
    now: datetime,
    allowed: Collection[ThreadStatus],
    refusal: str,
) -> Proposal:
    """The checks every custodian step before the deadline shares, in the order people
    understand: who they are, whether decisions are open, the thread's state, the deadline."""
    _require_custodian(actor, thread)
    proposal = _lock(session, thread)
    _require_decisions_open(proposal)
    _require_status(thread, allowed, refusal)
    _require_before_deadline(thread, now)
    return proposal


def _resume_clock(thread: DecisionThread, now: datetime) -> None:
    """End a pause: the deadline moves on by the time the registry waited."""
    if thread.paused_since is not None:
        thread.deadline = effective_deadline(thread, now)
        thread.paused_since = None


def _record(
    session: Session,
    thread: DecisionThread,
    kind: DecisionEventKind,
    to_status: ThreadStatus,
    action: DecisionAction,
    *,
    actor: User | None,
    text: str | None,
    now: datetime,
    is_decision: bool,
) -> DecisionEvent:
    """Append the event, move the thread to ``to_status`` and write the audit event."""
    event = chain.append_event(
        session, thread, kind, actor_id=actor.id if actor else None, text=text, now=now
    )
    from_status = thread.status
    thread.status = to_status
    thread.updated_at = now
    if is_decision:
        thread.decided_at = now
    # Texts stay in the decision chain only: the audit log keeps facts, not what people wrote.
    audit.record(
        session,
        action,
        now=now,
        actor_id=actor.id if actor else None,
        target=f"proposal:{thread.proposal_id}",
        registry_id=thread.registry_id,
        thread_id=thread.id,
        from_status=str(from_status),
        to_status=str(to_status),
    )
    session.flush()
    return event


# Custodians ------------------------------------------------------------------------------
def open_for_review(
    session: Session, actor: User, thread: DecisionThread, now: datetime
) -> DecisionEvent:
    """A custodian starts reviewing the proposal for their registry (SENT → IN_REVIEW).

    :raises NotAllowed: ``actor`` is not an approved custodian of the thread's registry.
    :raises InvalidTransition: decisions are closed or the thread was already opened.
    :raises DeadlinePassed: the registry's deadline has passed.
    """
    _open_thread_for_custodian(
        session, actor, thread, now, {ThreadStatus.SENT}, "Only a newly sent proposal is opened."
    )
    return _record(
        session,
        thread,
        DecisionEventKind.OPENED,
        ThreadStatus.IN_REVIEW,
        DecisionAction.OPENED,
        actor=actor,
        text=None,
        now=now,
        is_decision=False,
    )


def ask_for_information(
    session: Session, actor: User, thread: DecisionThread, question: str, now: datetime
) -> DecisionEvent:
    """A custodian asks the proposer a question; the registry's clock pauses until the answer
    (→ INFO_REQUESTED).

    :raises ReasonRequired: the question is empty.
    :raises InvalidTransition: a question is already waiting for an answer, or the registry
        has decided.
    """
    _require_custodian(actor, thread)
    text = clean_text(question, "your question to the proposer")
    _open_thread_for_custodian(
        session,
        actor,
        thread,
        now,
        {ThreadStatus.SENT, ThreadStatus.IN_REVIEW},
        "A question can be asked only while the registry is reviewing, one at a time.",
    )
    thread.paused_since = now
    return _record(
        session,
        thread,
        DecisionEventKind.INFO_REQUESTED,
        ThreadStatus.INFO_REQUESTED,
        DecisionAction.INFO_REQUESTED,
        actor=actor,
        text=text,
        now=now,
        is_decision=False,
    )


def _decide(
    session: Session,
    actor: User,
    thread: DecisionThread,
    now: datetime,
    *,
    kind: DecisionEventKind,
    to_status: ThreadStatus,
    action: DecisionAction,
    text: str | None,
) -> DecisionEvent:
    """Record a registry's decision from any open status (a pending question lapses: the
    clock resumes first so the thread's deadline keeps the time it waited)."""
    _open_thread_for_custodian(
        session, actor, thread, now, OPEN_THREAD_STATUSES, "This registry has already decided."
    )
    _resume_clock(thread, now)
    return _record(
        session, thread, kind, to_status, action, actor=actor, text=text, now=now, is_decision=True
    )


def approve(session: Session, actor: User, thread: DecisionThread, now: datetime) -> DecisionEvent:
    """A custodian approves the proposal for their registry (→ APPROVED).

    :raises NotAllowed: ``actor`` is not an approved custodian of the thread's registry.
    :raises InvalidTransition: decisions are closed or the registry has already decided.
    :raises DeadlinePassed: the registry's deadline has passed (or the thread expired).
    """
    return _decide(
        session,
        actor,
        thread,
        now,
        kind=DecisionEventKind.APPROVED,
        to_status=ThreadStatus.APPROVED,
        action=DecisionAction.APPROVED,
        text=None,
    )


def approve_with_conditions(
    session: Session, actor: User, thread: DecisionThread, conditions: str, now: datetime
) -> DecisionEvent:
    """A custodian approves on conditions the proposer must accept (→ CONDITIONS_SET).

    :raises ReasonRequired: the conditions are empty.
    """
    _require_custodian(actor, thread)
    text = clean_text(conditions, "the conditions of your approval")
    event = _decide(
        session,
        actor,
        thread,
        now,
        kind=DecisionEventKind.CONDITIONS_SET,
        to_status=ThreadStatus.CONDITIONS_SET,
        action=DecisionAction.CONDITIONS_SET,
        text=text,
    )
    thread.conditions = text
    return event


def decline(
    session: Session, actor: User, thread: DecisionThread, reason: str, now: datetime
) -> DecisionEvent:
    """A custodian declines the proposal for their registry (→ DECLINED); a reason is required.

    :raises ReasonRequired: the reason is empty.
    """
    _require_custodian(actor, thread)
    text = clean_text(reason, "a reason for declining")
    return _decide(
        session,
        actor,
        thread,
        now,
        kind=DecisionEventKind.DECLINED,
        to_status=ThreadStatus.DECLINED,
        action=DecisionAction.DECLINED,
        text=text,
    )


def withdraw_approval(
    session: Session, actor: User, thread: DecisionThread, reason: str, now: datetime
) -> DecisionEvent:
    """A custodian takes back their registry's approval (→ APPROVAL_WITHDRAWN), while the
    proposal is sent, closed to decisions or active; no deadline applies.

    :raises ReasonRequired: the reason is empty.
    :raises InvalidTransition: the registry has not approved, or the project has ended.
    """
    _require_custodian(actor, thread)
    text = clean_text(reason, "a reason for withdrawing the approval")
    proposal = _lock(session, thread)
    if proposal.status not in WITHDRAWABLE_APPROVAL_PROPOSAL_STATUSES:
        raise InvalidTransition(
            f"This proposal is “{proposal.status.label}”: an approval can no longer be "
            "withdrawn; nothing was changed."
        )
    _require_status(thread, APPROVING_THREAD_STATUSES, "Only an approval can be withdrawn.")
    return _record(
        session,
        thread,
        DecisionEventKind.APPROVAL_WITHDRAWN,
        ThreadStatus.APPROVAL_WITHDRAWN,
        DecisionAction.APPROVAL_WITHDRAWN,
        actor=actor,
        text=text,
        now=now,
        is_decision=True,
    )


# The proposer ------------------------------------------------------------------------------
def answer_information(
    session: Session, actor: User, thread: DecisionThread, answer: str, now: datetime
) -> DecisionEvent:
    """The proposer answers the registry's question (→ IN_REVIEW); the registry's clock
    resumes, its deadline moved on by the time it waited.

    :raises NotAllowed: ``actor`` did not make the proposal.
    :raises ReasonRequired: the answer is empty.
    :raises InvalidTransition: no question is waiting for an answer, or decisions are closed.
    """
    text = clean_text(answer, "your answer")
    proposal = _lock(session, thread)
    _require_proposer(actor, proposal)
    _require_decisions_open(proposal)
    _require_status(
        thread, {ThreadStatus.INFO_REQUESTED}, "No question from this registry is waiting."
    )
    _resume_clock(thread, now)
    return _record(
        session,
        thread,
        DecisionEventKind.INFO_ANSWERED,
        ThreadStatus.IN_REVIEW,
        DecisionAction.INFO_ANSWERED,
        actor=actor,
        text=text,
        now=now,
        is_decision=False,
    )


def _answer_conditions(
    session: Session,
    actor: User,
    thread: DecisionThread,
    now: datetime,
    *,
    accept: bool,
) -> DecisionEvent:
    proposal = _lock(session, thread)
    _require_proposer(actor, proposal)
    if proposal.status not in CONDITIONS_ANSWERABLE_PROPOSAL_STATUSES:
        raise InvalidTransition(
            f"This proposal is “{proposal.status.label}”: conditions can no longer be answered; "
            "nothing was changed."
        )
    _require_status(
        thread, {ThreadStatus.CONDITIONS_SET}, "This registry has set no conditions to answer."
    )
    # The registry's decision stays dated when it set the conditions (decided_at unchanged).
    return _record(
        session,
        thread,
        DecisionEventKind.CONDITIONS_ACCEPTED if accept else DecisionEventKind.CONDITIONS_REFUSED,
        ThreadStatus.CONDITIONS_ACCEPTED if accept else ThreadStatus.CONDITIONS_REFUSED,
        DecisionAction.CONDITIONS_ACCEPTED if accept else DecisionAction.CONDITIONS_REFUSED,
        actor=actor,
        text=None,
        now=now,
        is_decision=False,
    )


def accept_conditions(
    session: Session, actor: User, thread: DecisionThread, now: datetime
) -> DecisionEvent:
    """The proposer accepts the registry's conditions (CONDITIONS_SET → CONDITIONS_ACCEPTED):
    the registry takes part on them.

    :raises NotAllowed: ``actor`` did not make the proposal.
    :raises InvalidTransition: the registry set no conditions, or the proposal is no longer
        waiting for decisions (withdrawn, rejected, completed…).
    """
    return _answer_conditions(session, actor, thread, now, accept=True)


def refuse_conditions(
    session: Session, actor: User, thread: DecisionThread, now: datetime
) -> DecisionEvent:
    """The proposer refuses the registry's conditions (CONDITIONS_SET → CONDITIONS_REFUSED):
    the registry does not take part.

    :raises NotAllowed: ``actor`` did not make the proposal.
    :raises InvalidTransition: the registry set no conditions, or the proposal is no longer
        waiting for decisions (withdrawn, rejected, completed…).
    """
    return _answer_conditions(session, actor, thread, now, accept=False)


# The scheduler -----------------------------------------------------------------------------
def expire_thread(session: Session, thread: DecisionThread, now: datetime) -> bool:
    """Expire ``thread`` if it is still open, not paused and past its deadline (→ EXPIRED,
    recorded with no actor). Returns whether it expired; calling it again is harmless."""
    proposal = _lock(session, thread)
    if (
        proposal.status not in EXPIRABLE_PROPOSAL_STATUSES
        or thread.status not in OPEN_THREAD_STATUSES
        # A paused registry waits for the proposer: its clock is not running.
        or thread.paused_since is not None
        or now < thread.deadline
    ):
        return False
    _record(
        session,
        thread,
        DecisionEventKind.EXPIRED,
        ThreadStatus.EXPIRED,
        DecisionAction.EXPIRED,
        actor=None,
        text=None,
        now=now,
        is_decision=True,
    )
    return True
