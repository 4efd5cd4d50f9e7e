"""Each registry's decision on a proposal: its custodians alone decide, every step is a chained
event and an audit event, refusals record nothing, and the clock pauses for questions."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import CustodianStatus, Role
from engage.db import Database
from engage.timeutil import utcnow
from governance import chain, decisions
from governance.errors import (
    DeadlinePassed,
    InvalidTransition,
    NotAllowed,
    ReasonRequired,
    TextTooLong,
)
from governance.models import DecisionEvent, DecisionEventKind, ProposalStatus, ThreadStatus
from tests.governance.support import (
    audit_actions,
    events_of,
    kinds_of,
    ledger_size,
    make_proposal,
    set_proposal_status,
)

K = DecisionEventKind


@pytest.fixture(autouse=True)
def chain_verifies(session):
    """Every test ends with a decision ledger that verifies."""
    yield
    session.rollback()
    assert chain.verify(session).problems == []


@pytest.fixture
def staff(make_user):
    return make_user(Role.STAFF)


@pytest.fixture
def north(make_registry):
    return make_registry(code="NORTH", name="Northern MS Registry")


@pytest.fixture
def south(make_registry):
    return make_registry(code="SOUTH", name="Southern MS Registry")


@pytest.fixture
def custodian(make_user, north):
    return make_user(Role.CUSTODIAN, registry=north)


@pytest.fixture
def sent(session, staff, north, south):
    """A proposal by ``staff`` sent to both registries; returns (proposal, north's thread)."""
    proposal, (thread, _south_thread) = make_proposal(session, staff, [north, south])
    return proposal, thread


def later(days: float) -> datetime:
    return utcnow() + timedelta(days=days)


# Happy paths ----------------------------------------------------------------------------------
def test_opening_for_review_is_recorded(session, custodian, sent):
    _proposal, thread = sent
    now = later(1)
    event = decisions.open_for_review(session, custodian, thread, now)
    session.commit()
    assert (thread.status, thread.updated_at, thread.decided_at) == (
        ThreadStatus.IN_REVIEW,
        now,
        None,
    )
    assert (event.kind, event.actor_id) == (K.OPENED, custodian.id)
    assert kinds_of(session, thread) == [K.SENT, K.OPENED]
    assert audit_actions(session) == [decisions.DecisionAction.OPENED]


def test_a_question_pauses_the_clock_and_the_answer_extends_the_deadline(
    session, staff, custodian, sent
):
    _proposal, thread = sent
    deadline = thread.deadline
    asked_at, answered_at = later(2), later(5)
    decisions.open_for_review(session, custodian, thread, later(1))
    decisions.ask_for_information(
        session, custodian, thread, "  Which years of data do you need?  ", asked_at
    )
    session.commit()
    assert (thread.status, thread.paused_since) == (ThreadStatus.INFO_REQUESTED, asked_at)
    assert decisions.effective_deadline(thread, answered_at) == deadline + (answered_at - asked_at)

    decisions.answer_information(session, staff, thread, "2010 to 2025.", answered_at)
    session.commit()
    assert thread.status == ThreadStatus.IN_REVIEW
    assert thread.paused_since is None
    assert thread.deadline == deadline + (answered_at - asked_at)
    events = events_of(session, thread)
    assert [(e.kind, e.text) for e in events[-2:]] == [
        (K.INFO_REQUESTED, "Which years of data do you need?"),
        (K.INFO_ANSWERED, "2010 to 2025."),
    ]
    assert events[-1].actor_id == staff.id


def test_the_proposer_may_answer_after_the_nominal_deadline_while_paused(
    session, staff, custodian, sent
):
    _proposal, thread = sent
    deadline = thread.deadline
    asked_at = deadline - timedelta(days=1)
    decisions.ask_for_information(session, custodian, thread, "Which variables?", asked_at)
    answered_at = deadline + timedelta(days=3)
    decisions.answer_information(session, staff, thread, "EDSS only.", answered_at)
    # One day was left when the question came; one day is left after the answer.
    assert thread.deadline == answered_at + timedelta(days=1)
    decisions.approve(session, custodian, thread, answered_at + timedelta(hours=1))
    session.commit()
    assert thread.status == ThreadStatus.APPROVED


def test_approving_records_the_decision(session, custodian, sent):
    _proposal, thread = sent
    now = later(1)
    decisions.approve(session, custodian, thread, now)
    session.commit()
    assert (thread.status, thread.decided_at, thread.updated_at) == (
        ThreadStatus.APPROVED,
        now,
        now,
    )
    assert kinds_of(session, thread) == [K.SENT, K.APPROVED]
    assert audit_actions(session) == [decisions.DecisionAction.APPROVED]


def test_deciding_while_a_question_waits_resumes_the_clock(session, custodian, sent):
    _proposal, thread = sent
    deadline = thread.deadline
    asked_at, decided_at = later(1), later(3)
    decisions.ask_for_information(session, custodian, thread, "Why pooled?", asked_at)
    decisions.decline(session, custodian, thread, "Not needed after all.", decided_at)
    session.commit()
    assert (thread.status, thread.paused_since) == (ThreadStatus.DECLINED, None)
    assert thread.deadline == deadline + (decided_at - asked_at)


@pytest.mark.parametrize(
    ("accept", "status", "kind"),
    [
        (True, ThreadStatus.CONDITIONS_ACCEPTED, K.CONDITIONS_ACCEPTED),
        (False, ThreadStatus.CONDITIONS_REFUSED, K.CONDITIONS_REFUSED),
    ],
)
def test_conditions_are_set_then_accepted_or_refused_by_the_proposer(
    session, staff, custodian, sent, accept, status, kind
):
    _proposal, thread = sent
    decided_at = later(1)
    decisions.approve_with_conditions(
        session, custodian, thread, " Results shared with us first. ", decided_at
    )
    session.commit()
    assert (thread.status, thread.conditions) == (
        ThreadStatus.CONDITIONS_SET,
        "Results shared with us first.",
    )
    answer = decisions.accept_conditions if accept else decisions.refuse_conditions
    answer(session, staff, thread, later(2))
    session.commit()
    assert thread.status == status
    # The registry's decision keeps its date; the proposer's answer is not the registry's.
    assert thread.decided_at == decided_at
    assert kinds_of(session, thread) == [K.SENT, K.CONDITIONS_SET, kind]


def test_declining_keeps_the_reason_in_the_chain(session, custodian, sent):
    _proposal, thread = sent
    decisions.decline(session, custodian, thread, "  Our ethics board said no.  ", later(1))
    session.commit()
    assert thread.status == ThreadStatus.DECLINED
    assert events_of(session, thread)[-1].text == "Our ethics board said no."


@pytest.mark.parametrize(
    "proposal_status",
    [ProposalStatus.SENT, ProposalStatus.DECISIONS_CLOSED, ProposalStatus.ACTIVE],
)
@pytest.mark.parametrize("with_conditions", [False, True])
def test_an_approval_can_be_withdrawn_until_the_project_ends(
    session, staff, custodian, sent, proposal_status, with_conditions
):
    proposal, thread = sent
    if with_conditions:
        decisions.approve_with_conditions(session, custodian, thread, "Cite us.", later(1))
        decisions.accept_conditions(session, staff, thread, later(2))
    else:
        decisions.approve(session, custodian, thread, later(1))
    session.commit()
    set_proposal_status(session, proposal, proposal_status)
    # No deadline applies to taking an approval back.
    now = thread.deadline + timedelta(days=30)
    decisions.withdraw_approval(session, custodian, thread, "Our funding ended.", now)
    session.commit()
    assert (thread.status, thread.decided_at) == (ThreadStatus.APPROVAL_WITHDRAWN, now)
    assert kinds_of(session, thread)[-1] == K.APPROVAL_WITHDRAWN


def test_the_scheduler_expires_open_threads_at_their_deadline(session, custodian, sent, south):
    _proposal, thread = sent
    assert not decisions.expire_thread(session, thread, thread.deadline - timedelta(seconds=1))
    at = thread.deadline
    assert decisions.expire_thread(session, thread, at)
    session.commit()
    assert (thread.status, thread.decided_at) == (ThreadStatus.EXPIRED, at)
    event = events_of(session, thread)[-1]
    assert (event.kind, event.actor_id) == (K.EXPIRED, None)
    # Calling it again changes nothing.
    assert not decisions.expire_thread(session, thread, at + timedelta(days=1))
    assert kinds_of(session, thread) == [K.SENT, K.EXPIRED]
    assert audit_actions(session) == [decisions.DecisionAction.EXPIRED]


def test_the_scheduler_leaves_paused_and_decided_threads_alone(
    session, staff, custodian, make_user, sent
):
    proposal, thread = sent
    decisions.ask_for_information(session, custodian, thread, "Which years?", later(1))
    session.commit()
    assert not decisions.expire_thread(session, thread, thread.deadline + timedelta(days=5))
    decisions.answer_information(session, staff, thread, "All.", later(2))
    decisions.approve(session, custodian, thread, later(3))
    session.commit()
    assert not decisions.expire_thread(session, thread, thread.deadline + timedelta(days=5))
    assert thread.status == ThreadStatus.APPROVED


# Refusals: nothing is recorded -----------------------------------------------------------------
def _refused(session, thread, error, match, call):
    """``call`` raises ``error``; no event, no audit event, the thread as it was."""
    session.commit()
    before = (ledger_size(session), thread.status, thread.deadline, thread.paused_since)
    with pytest.raises(error, match=match):
        call()
    session.rollback()
    session.refresh(thread)
    assert (ledger_size(session), thread.status, thread.deadline, thread.paused_since) == before


CUSTODIAN_ACTIONS = {
    "open": lambda s, a, t, now: decisions.open_for_review(s, a, t, now),
    "ask": lambda s, a, t, now: decisions.ask_for_information(s, a, t, "Why?", now),
    "approve": lambda s, a, t, now: decisions.approve(s, a, t, now),
    "conditions": lambda s, a, t, now: decisions.approve_with_conditions(s, a, t, "Cite us.", now),
    "decline": lambda s, a, t, now: decisions.decline(s, a, t, "No capacity.", now),
}


@pytest.mark.parametrize("action", sorted(CUSTODIAN_ACTIONS))
@pytest.mark.parametrize("who", ["other registry", "pending", "declined", "staff", "participant"])
def test_only_approved_custodians_of_the_registry_decide(
    session, make_user, south, north, sent, action, who
):
    _proposal, thread = sent
    actor = {
        "other registry": lambda: make_user(Role.CUSTODIAN, registry=south),
        "pending": lambda: make_user(
            Role.CUSTODIAN, registry=north, custodian_status=CustodianStatus.PENDING
        ),
        "declined": lambda: make_user(
            Role.CUSTODIAN, registry=north, custodian_status=CustodianStatus.DECLINED
        ),
        "staff": lambda: make_user(Role.STAFF),
        "participant": lambda: make_user(Role.PARTICIPANT),
    }[who]()
    _refused(
        session,
        thread,
        NotAllowed,
        "Only an approved data custodian of this registry",
        lambda: CUSTODIAN_ACTIONS[action](session, actor, thread, later(1)),
    )


@pytest.mark.parametrize("action", sorted(CUSTODIAN_ACTIONS))
def test_deciding_twice_is_refused(session, custodian, sent, action):
    _proposal, thread = sent
    decisions.approve(session, custodian, thread, later(1))
    _refused(
        session,
        thread,
        InvalidTransition,
        "nothing was changed",
        lambda: CUSTODIAN_ACTIONS[action](session, custodian, thread, later(2)),
    )


@pytest.mark.parametrize("action", sorted(CUSTODIAN_ACTIONS))
def test_nothing_is_decided_after_the_deadline(session, custodian, sent, action):
    _proposal, thread = sent
    # Before the scheduler ran, and after it expired the thread.
    _refused(
        session,
        thread,
        DeadlinePassed,
        "deadline passed",
        lambda: CUSTODIAN_ACTIONS[action](session, custodian, thread, thread.deadline),
    )
    assert decisions.expire_thread(session, thread, thread.deadline)
    _refused(
        session,
        thread,
        DeadlinePassed,
        "deadline passed without a decision",
        lambda: CUSTODIAN_ACTIONS[action](session, custodian, thread, later(1)),
    )


@pytest.mark.parametrize("action", sorted(CUSTODIAN_ACTIONS))
def test_nothing_is_decided_once_decisions_are_closed(session, custodian, sent, action):
    proposal, thread = sent
    set_proposal_status(session, proposal, ProposalStatus.DECISIONS_CLOSED)
    _refused(
        session,
        thread,
        InvalidTransition,
        "Decisions on this proposal are closed",
        lambda: CUSTODIAN_ACTIONS[action](session, custodian, thread, later(1)),
    )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda s, a, t: decisions.decline(s, a, t, "   ", later(1)), ReasonRequired, "reason"),
        (lambda s, a, t: decisions.decline(s, a, t, None, later(1)), ReasonRequired, "reason"),
        (
            lambda s, a, t: decisions.decline(s, a, t, "x" * 5_001, later(1)),
            TextTooLong,
            "at most 5,000 characters",
        ),
        (
            lambda s, a, t: decisions.approve_with_conditions(s, a, t, "", later(1)),
            ReasonRequired,
            "conditions",
        ),
        (
            lambda s, a, t: decisions.ask_for_information(s, a, t, "\n", later(1)),
            ReasonRequired,
            "question",
        ),
    ],
)
def test_reasons_conditions_and_questions_must_be_written(
    session, custodian, sent, call, error, match
):
    _proposal, thread = sent
    _refused(session, thread, error, match, lambda: call(session, custodian, thread))


def test_a_text_of_exactly_the_limit_is_kept(session, custodian, sent):
    _proposal, thread = sent
    decisions.decline(session, custodian, thread, "x" * 5_000, later(1))
    assert thread.status == ThreadStatus.DECLINED


def test_opening_twice_and_asking_twice_are_refused(session, custodian, sent):
    _proposal, thread = sent
    decisions.open_for_review(session, custodian, thread, later(1))
    _refused(
        session,
        thread,
        InvalidTransition,
        "Only a newly sent proposal is opened",
        lambda: decisions.open_for_review(session, custodian, thread, later(2)),
    )
    decisions.ask_for_information(session, custodian, thread, "Which years?", later(2))
    _refused(
        session,
        thread,
        InvalidTransition,
        "one at a time",
        lambda: decisions.ask_for_information(session, custodian, thread, "And?", later(3)),
    )


def test_answering_needs_a_pending_question_the_proposer_and_an_answer(
    session, staff, make_user, custodian, sent
):
    _proposal, thread = sent
    other_staff = make_user(Role.STAFF)
    _refused(
        session,
        thread,
        InvalidTransition,
        "No question from this registry is waiting",
        lambda: decisions.answer_information(session, staff, thread, "Here.", later(1)),
    )
    decisions.ask_for_information(session, custodian, thread, "Which years?", later(1))
    for someone in (other_staff, custodian):
        _refused(
            session,
            thread,
            NotAllowed,
            "Only the person who made this proposal",
            lambda someone=someone: decisions.answer_information(
                session, someone, thread, "Here.", later(2)
            ),
        )
    _refused(
        session,
        thread,
        ReasonRequired,
        "your answer",
        lambda: decisions.answer_information(session, staff, thread, "  ", later(2)),
    )


@pytest.mark.parametrize("answer", [decisions.accept_conditions, decisions.refuse_conditions])
def test_conditions_are_answered_only_when_set_and_only_by_the_proposer(
    session, staff, make_user, custodian, sent, answer
):
    _proposal, thread = sent
    _refused(
        session,
        thread,
        InvalidTransition,
        "no conditions to answer",
        lambda: answer(session, staff, thread, later(1)),
    )
    decisions.approve(session, custodian, thread, later(1))
    _refused(
        session,
        thread,
        InvalidTransition,
        "no conditions to answer",
        lambda: answer(session, staff, thread, later(2)),
    )


def test_conditions_are_answered_only_by_the_proposer(session, make_user, custodian, sent):
    _proposal, thread = sent
    other_staff = make_user(Role.STAFF)
    decisions.approve_with_conditions(session, custodian, thread, "Cite us.", later(1))
    for someone in (other_staff, custodian):
        _refused(
            session,
            thread,
            NotAllowed,
            "Only the person who made this proposal",
            lambda someone=someone: decisions.accept_conditions(session, someone, thread, later(2)),
        )


def test_only_an_approval_is_withdrawn_and_only_until_the_project_ends(
    session, make_user, south, custodian, sent
):
    proposal, thread = sent
    other_custodian = make_user(Role.CUSTODIAN, registry=south)
    withdraw = decisions.withdraw_approval
    _refused(
        session,
        thread,
        InvalidTransition,
        "Only an approval can be withdrawn",
        lambda: withdraw(session, custodian, thread, "Changed our minds.", later(1)),
    )
    decisions.approve(session, custodian, thread, later(1))
    _refused(
        session,
        thread,
        ReasonRequired,
        "reason for withdrawing",
        lambda: withdraw(session, custodian, thread, "", later(2)),
    )
    _refused(
        session,
        thread,
        NotAllowed,
        "Only an approved data custodian",
        lambda: withdraw(session, other_custodian, thread, "No.", later(2)),
    )
    set_proposal_status(session, proposal, ProposalStatus.COMPLETED)
    _refused(
        session,
        thread,
        InvalidTransition,
        "can no longer be withdrawn",
        lambda: withdraw(session, custodian, thread, "Too late.", later(2)),
    )


# Two custodians at once (PostgreSQL) ------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session")
def test_two_custodians_deciding_at_once_record_exactly_one_decision(
    app, session, make_user, north, sent
):
    _proposal, thread = sent
    first, second = (make_user(Role.CUSTODIAN, registry=north) for _ in range(2))
    decisions.open_for_review(session, first, thread, later(1))
    session.commit()
    barrier = threading.Barrier(2)
    results: list[object] = [None, None]

    def decide(index, call):
        own = Database.new_session(app)
        try:
            own_thread = own.get(type(thread), thread.id)
            barrier.wait(10)
            results[index] = call(own, own_thread)
            own.commit()
        except Exception as error:  # noqa: BLE001 - handed to the test
            own.rollback()
            results[index] = error
        finally:
            own.close()

    calls = [
        lambda s, t: decisions.approve(s, first, t, later(2)),
        lambda s, t: decisions.decline(s, second, t, "We lack capacity.", later(2)),
    ]
    workers = [threading.Thread(target=decide, args=(i, c)) for i, c in enumerate(calls)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert not worker.is_alive(), "a thread is stuck (a deadlock?)"

    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], InvalidTransition), errors
    assert "already decided" in str(errors[0])
    session.expire_all()
    kinds = kinds_of(session, thread)
    assert kinds[:2] == [K.SENT, K.OPENED]
    assert len(kinds) == 3 and kinds[2] in (K.APPROVED, K.DECLINED)
    decided = session.scalars(
        sa.select(DecisionEvent.kind).where(DecisionEvent.thread_id == thread.id)
    ).all()
    assert sorted(decided) == sorted(kinds)
