"""The ``governance.deadlines`` job, run with an explicit ``now``: reminders before each
registry's deadline, expiry at it, and closing decisions (emails through the file outbox)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage import delivery
from engage.accounts.models import CustodianStatus, Role
from engage.db import Database
from engage.outbox import OutboxMessage
from engage.settings import ConfigurationError, load_config
from engage.timeutil import utcnow
from governance.jobs import due_offset, reminder_offsets, run_deadlines
from governance.models import (
    DecisionEventKind,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ProposalStatusChange,
)
from governance.models import ThreadStatus as T
from tests.governance.support import kinds_of, make_proposal

DAY = timedelta(days=1)


def run(app, session, now):
    """Run the job as the scheduler does (commit once), deliver what it queued; the summary."""
    with app.app_context():
        summary = run_deadlines(session, now, app.config)
        session.commit()
    delivery.deliver(app, now=now)
    return summary


def set_threads(session, threads, *statuses, paused_since=None):
    """Put each thread in its status (what the registries' decisions would do); commits."""
    for thread, status in zip(threads, statuses, strict=True):
        thread = session.get(DecisionThread, thread.id)
        thread.status = status
        if status == T.INFO_REQUESTED:
            thread.paused_since = paused_since
    session.commit()


def status_changes(session, proposal):
    """The proposal's (from, to, actor) status changes, oldest first."""
    session.expire_all()
    return [
        (change.from_status, change.to_status, change.actor_id)
        for change in session.scalars(
            sa.select(ProposalStatusChange)
            .where(ProposalStatusChange.proposal_id == proposal.id)
            .order_by(ProposalStatusChange.id)
        )
    ]


@pytest.fixture
def network(make_registry, make_user):
    """Two registries: SMSREG with two approved custodians and a pending one, DMSR with one;
    a staff proposer."""
    sms, dms = (
        make_registry(code="SMSREG", name="Swedish MS Registry"),
        make_registry(code="DMSR", name="Danish MS Registry"),
    )
    people = {
        "ana": make_user(Role.CUSTODIAN, registry=sms, email="ana@sms.example"),
        "bo": make_user(Role.CUSTODIAN, registry=sms, email="bo@sms.example"),
        "pending": make_user(
            Role.CUSTODIAN,
            registry=sms,
            email="pending@sms.example",
            custodian_status=CustodianStatus.PENDING,
        ),
        "dag": make_user(Role.CUSTODIAN, registry=dms, email="dag@dms.example"),
        "proposer": make_user(Role.STAFF, email="proposer@engage.example"),
    }
    return {"sms": sms, "dms": dms, **people}


# Reminders ---------------------------------------------------------------------------------
def test_custodians_are_reminded_7_days_and_1_day_before_once_each(app, session, mailbox, network):
    t0 = utcnow() - 30 * DAY
    deadline = t0 + 10 * DAY
    proposal, _ = make_proposal(
        session, network["proposer"], [network["sms"]], now=t0, deadline=deadline
    )
    # DMSR decides on another proposal, paused while it waits for the proposer's answer.
    _, (paused,) = make_proposal(
        session, network["proposer"], [network["dms"]], now=t0, deadline=deadline
    )
    set_threads(session, [paused], T.INFO_REQUESTED, paused_since=t0 + DAY)

    counts = [
        run(app, session, moment).split(",")[0]
        for moment in (
            deadline - 8 * DAY,
            deadline - 7 * DAY,
            deadline - 7 * DAY + timedelta(minutes=15),
            deadline - 3 * DAY,
            deadline - DAY,
            deadline - DAY + timedelta(minutes=15),
            deadline - timedelta(minutes=15),
        )
    ]

    assert counts == [f"queued {n} reminder(s)" for n in (0, 2, 0, 0, 2, 0, 0)]
    for address in ("ana@sms.example", "bo@sms.example"):
        subjects = [m.subject for m in mailbox.to(address)]
        assert subjects == [
            f"Decision due in 7 days: {proposal.title}",
            f"Decision due in 1 day: {proposal.title}",
        ]
    message = mailbox.last_to("ana@sms.example")
    assert "Swedish MS Registry has not decided yet" in message.text
    assert f"{deadline.day} {deadline:%B %Y, %H:%M} UTC" in message.text
    assert message.link("/governance/registries/SMSREG") == (
        "http://engage.test/governance/registries/SMSREG"
    )
    # Not to a pending custodian, nor to a registry that is paused (or not asked).
    assert mailbox.to("pending@sms.example") == []
    assert mailbox.to("dag@dms.example") == []


def test_a_registry_that_decided_is_not_reminded(app, session, mailbox, network):
    t0 = utcnow() - 30 * DAY
    deadline = t0 + 10 * DAY
    make_proposal(
        session, network["proposer"], [network["sms"], network["dms"]], now=t0, deadline=deadline
    )
    threads = session.scalars(sa.select(DecisionThread).order_by(DecisionThread.id)).all()
    set_threads(session, threads, T.DECLINED, T.IN_REVIEW)

    assert run(app, session, deadline - 7 * DAY).startswith("queued 1 reminder(s)")
    assert [m.to for m in mailbox.messages] == ["dag@dms.example"]


def test_only_the_most_urgent_reminder_owed_is_sent():
    deadline = utcnow()
    sent = deadline - 30 * DAY
    assert due_offset(deadline, sent, deadline - 8 * DAY, (1, 7)) is None
    assert due_offset(deadline, sent, deadline - 5 * DAY, (1, 7)) == 7
    # The job was down all week: one reminder, not two.
    assert due_offset(deadline, sent, deadline - DAY / 2, (1, 7)) == 1
    # Sent to the registry 3 days before its deadline: no "7 days left" reminder.
    assert due_offset(deadline, deadline - 3 * DAY, deadline - 2 * DAY, (1, 7)) is None


def test_reminder_days_are_read_from_the_environment(monkeypatch):
    assert reminder_offsets(load_config("testing").__dict__) == (1, 7)
    monkeypatch.setenv("GOVERNANCE_REMINDER_DAYS", "14, 3,1")
    assert reminder_offsets(load_config("testing").__dict__) == (1, 3, 14)
    monkeypatch.setenv("GOVERNANCE_REMINDER_DAYS", "7,tomorrow")
    with pytest.raises(ConfigurationError, match="GOVERNANCE_REMINDER_DAYS"):
        load_config("testing").validate()


# Expiry ------------------------------------------------------------------------------------
def test_threads_expire_at_their_deadline_but_not_while_paused(app, session, network):
    t0 = utcnow() - 30 * DAY
    deadline = t0 + 10 * DAY
    proposal, (running, paused) = make_proposal(
        session, network["proposer"], [network["sms"], network["dms"]], now=t0, deadline=deadline
    )
    set_threads(session, [running, paused], T.IN_REVIEW, T.INFO_REQUESTED, paused_since=t0 + DAY)

    assert "expired 0 thread(s)" in run(app, session, deadline - timedelta(seconds=1))
    assert "expired 1 thread(s)" in run(app, session, deadline)
    assert "expired 0 thread(s)" in run(app, session, deadline + DAY)

    session.expire_all()
    assert session.get(DecisionThread, running.id).status == T.EXPIRED
    assert kinds_of(session, session.get(DecisionThread, running.id))[-1] == (
        DecisionEventKind.EXPIRED
    )
    assert session.get(DecisionThread, paused.id).status == T.INFO_REQUESTED
    # The paused registry still has time, so decisions stay open.
    assert session.get(Proposal, proposal.id).status == ProposalStatus.SENT


# Closing decisions -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("decisions", "outcome", "subject"),
    [
        (
            (T.APPROVED, T.DECLINED),
            ProposalStatus.ACTIVE,
            "Registries have decided: your project can start",
        ),
        (
            (T.CONDITIONS_ACCEPTED, T.CONDITIONS_SET),
            ProposalStatus.ACTIVE,
            "Registries have decided: your project can start",
        ),
        (
            (T.DECLINED, T.CONDITIONS_REFUSED),
            ProposalStatus.NOT_FEASIBLE,
            "Registries have decided: no registry will take part",
        ),
        (
            (T.CONDITIONS_SET, T.DECLINED),
            ProposalStatus.DECISIONS_CLOSED,
            "Registries have decided: please answer their conditions",
        ),
    ],
)
def test_decisions_close_once_every_registry_has_decided(
    app, session, mailbox, network, decisions, outcome, subject
):
    t0 = utcnow() - DAY
    proposal, threads = make_proposal(
        session, network["proposer"], [network["sms"], network["dms"]], now=t0
    )
    set_threads(session, threads, *decisions)

    summary = run(app, session, t0 + 2 * DAY)  # well before the deadline
    again = run(app, session, t0 + 3 * DAY)

    assert "closed decisions on 1 proposal(s)" in summary
    assert "closed decisions on 0 proposal(s)" in again
    expected = [(ProposalStatus.SENT, ProposalStatus.DECISIONS_CLOSED, None)]
    if outcome != ProposalStatus.DECISIONS_CLOSED:
        expected.append((ProposalStatus.DECISIONS_CLOSED, outcome, None))
    assert status_changes(session, proposal) == expected
    (message,) = mailbox.to("proposer@engage.example")
    assert message.subject == f"{subject} ({proposal.title})"
    for registry, status in zip(
        ("Swedish MS Registry", "Danish MS Registry"), decisions, strict=True
    ):
        assert f"- {registry}: {status.label}" in message.text
    assert message.link("/governance/proposals/") == (
        f"http://engage.test/governance/proposals/{proposal.id}"
    )


def test_decisions_close_at_the_deadline_with_the_undecided_expired(app, session, mailbox, network):
    t0 = utcnow() - 30 * DAY
    deadline = t0 + 10 * DAY
    approved, threads = make_proposal(
        session, network["proposer"], [network["sms"], network["dms"]], now=t0, deadline=deadline
    )
    set_threads(session, threads, T.APPROVED, T.IN_REVIEW)
    ignored, _ = make_proposal(
        session, network["proposer"], [network["sms"]], now=t0, deadline=deadline, title="Sleep"
    )

    assert "closed decisions on 0 proposal(s)" in run(app, session, deadline - DAY / 2)
    summary = run(app, session, deadline)

    assert summary.endswith(
        "expired 2 thread(s), closed decisions on 2 proposal(s) (1 active, 1 not feasible, "
        "0 waiting for the proposer)"
    )
    session.expire_all()
    assert session.get(Proposal, approved.id).status == ProposalStatus.ACTIVE
    assert session.get(Proposal, ignored.id).status == ProposalStatus.NOT_FEASIBLE
    subjects = sorted(m.subject for m in mailbox.to("proposer@engage.example"))
    assert subjects == [
        "Registries have decided: no registry will take part (Sleep)",
        f"Registries have decided: your project can start ({approved.title})",
    ]
    assert "- Danish MS Registry: No decision by the deadline" in (
        mailbox.to("proposer@engage.example")[0].text
        + mailbox.to("proposer@engage.example")[1].text
    )


def test_decisions_stay_open_while_a_registry_still_has_time(app, session, mailbox, network):
    t0 = utcnow() - DAY
    proposal, threads = make_proposal(
        session, network["proposer"], [network["sms"], network["dms"]], now=t0
    )
    set_threads(session, threads, T.APPROVED, T.IN_REVIEW)

    assert "closed decisions on 0 proposal(s)" in run(app, session, t0 + 2 * DAY)
    assert session.get(Proposal, proposal.id).status == ProposalStatus.SENT
    assert mailbox.to("proposer@engage.example") == []


def test_the_job_is_registered_with_the_scheduler(app, runner):
    assert "governance.deadlines" in runner.invoke(args=["scheduler", "list"]).output
    result = runner.invoke(args=["scheduler", "run-job", "governance.deadlines"])
    assert result.exit_code == 0, result.output
    assert "queued 0 reminder(s)" in result.output


# Concurrent runs (PostgreSQL) --------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session")
def test_four_runs_at_once_remind_and_close_each_once(app, session, network):
    t0 = utcnow() - 30 * DAY
    deadline = t0 + 10 * DAY
    reminded = [
        make_proposal(
            session,
            network["proposer"],
            [network["sms"], network["dms"]],
            now=t0,
            deadline=deadline,
            title=f"Reminded {n}",
        )[0]
        for n in range(3)
    ]
    closing = []
    for n in range(3):
        proposal, threads = make_proposal(
            session,
            network["proposer"],
            [network["sms"], network["dms"]],
            now=t0,
            deadline=deadline + 30 * DAY,
            title=f"Closing {n}",
        )
        set_threads(session, threads, T.APPROVED if n % 2 else T.DECLINED, T.DECLINED)
        closing.append(proposal)
    now = deadline - 7 * DAY
    barrier = threading.Barrier(4)
    results: list[object] = [None] * 4

    def one_run(index: int) -> None:
        own = Database.new_session(app)
        try:
            barrier.wait(30)
            with app.app_context():
                results[index] = run_deadlines(own, now, app.config)
            own.commit()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            own.rollback()
            results[index] = exc
        finally:
            own.close()

    threads = [threading.Thread(target=one_run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a run is stuck (a deadlock?)"

    assert not [r for r in results if isinstance(r, BaseException)], results
    session.expire_all()
    keys = session.scalars(sa.select(OutboxMessage.dedup_key)).all()
    reminders = [k for k in keys if k.startswith("governance-reminder:")]
    # 3 proposals × (2 SMSREG custodians + 1 DMSR custodian), each once.
    assert len(reminders) == len(set(reminders)) == 9
    assert sum(int(str(r).split()[1]) for r in results) == 9
    for proposal in closing:
        closes = [c for c in status_changes(session, proposal) if c[1] == "decisions_closed"]
        assert len(closes) == 1
        assert sum(k.startswith(f"governance-decisions-closed:{proposal.id}:") for k in keys) == 1
    assert [session.get(Proposal, p.id).status for p in closing] == [
        ProposalStatus.NOT_FEASIBLE,
        ProposalStatus.ACTIVE,
        ProposalStatus.NOT_FEASIBLE,
    ]
    assert all(session.get(Proposal, p.id).status == ProposalStatus.SENT for p in reminded)


def test_a_proposal_waiting_for_the_proposer_activates_once_conditions_are_accepted(
    app, session, mailbox, network
):
    """Decisions close while a registry's conditions await the proposer; the proposer accepts
    them afterwards, and the next run makes the project active with one more summary."""
    from engage.accounts.models import User
    from governance import decisions

    t0 = utcnow() - DAY
    proposal, threads = make_proposal(
        session, network["proposer"], [network["sms"], network["dms"]], now=t0
    )
    set_threads(session, threads, T.CONDITIONS_SET, T.DECLINED)
    run(app, session, t0 + 2 * DAY)
    assert session.get(Proposal, proposal.id).status == ProposalStatus.DECISIONS_CLOSED

    proposer = session.get(User, network["proposer"].id)
    decisions.accept_conditions(
        session, proposer, session.get(DecisionThread, threads[0].id), t0 + 3 * DAY
    )
    session.commit()
    run(app, session, t0 + 3 * DAY)

    session.expire_all()
    assert session.get(Proposal, proposal.id).status == ProposalStatus.ACTIVE
    assert [m.subject.split(" (")[0] for m in mailbox.to("proposer@engage.example")] == [
        "Registries have decided: please answer their conditions",
        "Registries have decided: your project can start",
    ]
