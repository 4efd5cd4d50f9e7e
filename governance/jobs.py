"""Scheduled governance work: one tick job, ``governance.deadlines``, that reminds custodians
before their registry's deadline, expires the threads nobody decided by it, and closes
decisions on proposals every registry has answered (or whose time is up).

The database says what is due (thread deadlines and statuses); the job only reads it, so it
can run any number of times, and at once in two processes (the scheduler and
``engage scheduler run-job``), without doing anything twice:

- each reminder is an outbox row whose deduplication key names the thread, the offset and the
  custodian, so it is queued once however often the job runs;
- a proposal is settled only by the run that locks its row (others skip it, ``SKIP LOCKED``,
  and find it settled afterwards), and every step re-reads what it checks under that lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts import queries as account_queries
from engage.db import lock_rows, savepoint
from engage.outbox import OutboxMessage
from engage.scheduler import JobRegistry
from governance import emails
from governance.decisions import expire_thread
from governance.errors import GovernanceError
from governance.models import DecisionThread, Proposal, ProposalStatus, ThreadStatus
from governance.proposals import set_status
from governance.rules import (
    APPROVING_THREAD_STATUSES,
    DECIDED_THREAD_STATUSES,
    OPEN_THREAD_STATUSES,
)

log = logging.getLogger(__name__)

# Threads (reminders) or proposals (expiry and closing) read per statement.
BATCH_SIZE = 200
# At most this many reminders and proposals per run; the rest wait for the next tick (each
# run makes progress: what was done is skipped cheaply next time).
MAX_REMINDERS_PER_RUN = 2_000
MAX_PROPOSALS_PER_RUN = 1_000
# The scheduler's proposals: decisions close into one of these (or stay closed, waiting).
SETTLED_REASONS = {
    ProposalStatus.DECISIONS_CLOSED: "Every registry has decided or its deadline has passed.",
    ProposalStatus.ACTIVE: "At least one registry takes part.",
    ProposalStatus.NOT_FEASIBLE: "No registry takes part.",
}


class ReminderSettingInvalid(ValueError):
    """``GOVERNANCE_REMINDER_DAYS`` does not list whole numbers of days above 0."""


def reminder_offsets(config: dict[str, Any]) -> tuple[int, ...]:
    """The configured reminder offsets in days, most urgent first (e.g. "7,1" → (1, 7)).

    :raises ReminderSettingInvalid: the setting is malformed (``Config.validate`` refuses to
        start with it, so this only happens with a hand-built config).
    """
    raw = str(config.get("GOVERNANCE_REMINDER_DAYS", "7,1"))
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise ReminderSettingInvalid(
            f"GOVERNANCE_REMINDER_DAYS must list whole numbers of days, e.g. 7,1 (got {raw!r})"
        )
    return tuple(sorted({int(part) for part in parts}))


def due_offset(
    deadline: datetime, sent_at: datetime, now: datetime, offsets: Sequence[int]
) -> int | None:
    """The reminder owed at ``now`` for a thread with ``deadline``, sent to the registry at
    ``sent_at``: the most urgent offset whose moment has come, or None.

    Only the most urgent is owed, so a job that was down for days sends one reminder, not a
    week's and a day's at once; and none whose moment came before the registry received the
    proposal (it has just been told).
    """
    for days in offsets:  # most urgent first
        moment = deadline - timedelta(days=days)
        if moment <= now:
            return days if sent_at <= moment else None
    return None


@dataclass
class DeadlinesReport:
    """What one run of the job did."""

    reminders: int = 0
    expired: int = 0
    active: int = 0
    not_feasible: int = 0
    waiting: int = 0
    # Proposals another run was settling at the same moment (it finishes them).
    skipped: int = 0
    # Proposals whose step was refused (logged; retried at the next tick).
    refused: int = 0

    def summary(self) -> str:
        """The job's one-line summary."""
        closed = self.active + self.not_feasible + self.waiting
        line = (
            f"queued {self.reminders} reminder(s), expired {self.expired} thread(s), "
            f"closed decisions on {closed} proposal(s) ({self.active} active, "
            f"{self.not_feasible} not feasible, {self.waiting} waiting for the proposer)"
        )
        if self.skipped:
            line += f", skipped {self.skipped} being settled by another run"
        if self.refused:
            line += f", {self.refused} refused (see the log)"
        return line


# Reminders ---------------------------------------------------------------------------------
def _reminder_candidates(
    session: Session, now: datetime, longest: int, after_id: int
) -> list[sa.Row[Any]]:
    """Open, running threads of proposals out for decisions whose deadline is within the
    longest offset, in id order after ``after_id`` (one page)."""
    return list(
        session.execute(
            sa.select(
                DecisionThread.id,
                DecisionThread.registry_id,
                DecisionThread.deadline,
                DecisionThread.created_at,
            )
            .join(Proposal, Proposal.id == DecisionThread.proposal_id)
            .where(
                Proposal.status == ProposalStatus.SENT,
                DecisionThread.status.in_(OPEN_THREAD_STATUSES),
                # A paused registry waits for the proposer; its deadline moves on meanwhile.
                DecisionThread.paused_since.is_(None),
                DecisionThread.deadline > now,
                DecisionThread.deadline <= now + timedelta(days=longest),
                DecisionThread.id > after_id,
            )
            .order_by(DecisionThread.id)
            .limit(BATCH_SIZE)
        )
    )


def _already_queued(session: Session, keys: Iterable[str]) -> set[str]:
    """Which of ``keys`` the outbox holds (one statement on its unique index)."""
    keys = list(keys)
    if not keys:
        return set()
    return set(
        session.scalars(sa.select(OutboxMessage.dedup_key).where(OutboxMessage.dedup_key.in_(keys)))
    )


def queue_reminders(session: Session, now: datetime, offsets: Sequence[int]) -> int:
    """Queue the reminder owed to each approved custodian of each registry whose thread is
    open, not paused, and at one of ``offsets`` days before its deadline; return how many.

    Each (thread, offset, custodian) is queued once ever: keys already in the outbox are
    skipped before inserting (so re-runs write nothing), and the outbox's unique key settles
    two runs inserting at once.
    """
    if not offsets:
        return 0
    queued = 0
    after_id = 0
    while queued < MAX_REMINDERS_PER_RUN:
        threads = _reminder_candidates(session, now, max(offsets), after_id)
        if not threads:
            break
        after_id = threads[-1].id
        custodians = {
            registry_id: [c.id for c in account_queries.custodians_of(session, registry_id)]
            for registry_id in sorted({thread.registry_id for thread in threads})
        }
        owed: dict[str, tuple[int, int, int]] = {}
        for thread in threads:
            days = due_offset(thread.deadline, thread.created_at, now, offsets)
            if days is None:
                continue
            for user_id in custodians[thread.registry_id]:
                owed[emails.reminder_key(thread.id, days, user_id)] = (thread.id, days, user_id)
        done = _already_queued(session, owed)
        for key, (thread_id, days, user_id) in owed.items():
            if key not in done and queued < MAX_REMINDERS_PER_RUN:
                queued += emails.queue_reminder(session, thread_id, days, user_id, now)
    return queued


# Expiry and closing ------------------------------------------------------------------------
def _is_due(thread: DecisionThread, now: datetime) -> bool:
    """Open, running and past its deadline: the expiry's condition."""
    return (
        thread.status in OPEN_THREAD_STATUSES
        and thread.paused_since is None
        and thread.deadline <= now
    )


def _settle_candidates(session: Session, now: datetime, after_id: int) -> list[int]:
    """Ids of proposals with work, after ``after_id`` (one page): a thread to expire, or
    decisions to close (out for decisions and no registry still has time), or closed
    decisions nobody waits on any more (no thread open or awaiting the proposer)."""
    thread = sa.orm.aliased(DecisionThread)
    of_proposal = thread.proposal_id == Proposal.id
    is_open = thread.status.in_(OPEN_THREAD_STATUSES)
    due = sa.exists().where(
        of_proposal, is_open, thread.paused_since.is_(None), thread.deadline <= now
    )
    # A paused registry's clock stands still, so it still has time however old its deadline.
    has_time = sa.exists().where(
        of_proposal, is_open, sa.or_(thread.paused_since.is_not(None), thread.deadline > now)
    )
    has_threads = sa.exists().where(of_proposal)
    waits = sa.exists().where(
        of_proposal, thread.status.in_(OPEN_THREAD_STATUSES | {ThreadStatus.CONDITIONS_SET})
    )
    sent = Proposal.status == ProposalStatus.SENT
    closed = Proposal.status == ProposalStatus.DECISIONS_CLOSED
    return list(
        session.scalars(
            sa.select(Proposal.id)
            .where(
                Proposal.id > after_id,
                sa.or_(
                    sa.and_(sent | closed, due),
                    sa.and_(sent, has_threads, ~has_time),
                    sa.and_(closed, has_threads, ~waits),
                ),
            )
            .order_by(Proposal.id)
            .limit(BATCH_SIZE)
        )
    )


def _claim(session: Session, proposal_id: int) -> Proposal | None:
    """Lock the proposal and re-read it, or None when another transaction holds it (another
    run settling it, or a custodian deciding right now: the next tick sees the outcome)."""
    if session.get_bind().dialect.name == "postgresql":
        locked = session.scalar(
            sa.select(Proposal.id)
            .where(Proposal.id == proposal_id)
            # FOR NO KEY UPDATE, like governance.chain.lock_proposal, which the steps take again.
            .with_for_update(key_share=True, skip_locked=True)
        )
        if locked is None:
            return None
    else:
        # SQLite has no row locks: taking its one write lock serialises the runs.
        lock_rows(session, Proposal, [proposal_id])
    return session.get(Proposal, proposal_id, populate_existing=True)


def _threads(session: Session, proposal_id: int) -> list[DecisionThread]:
    """The proposal's threads as they are now, by registry id."""
    return list(
        session.scalars(
            sa.select(DecisionThread)
            .where(DecisionThread.proposal_id == proposal_id)
            .order_by(DecisionThread.registry_id)
            .execution_options(populate_existing=True)
        )
    )


def outcome_of(statuses: Iterable[ThreadStatus]) -> ProposalStatus:
    """Where a proposal goes once decisions are closed: ACTIVE when a registry takes part,
    NOT_FEASIBLE when none does and none waits for the proposer's answer to its conditions
    (or is somehow still open), else it stays DECISIONS_CLOSED, waiting."""
    statuses = set(statuses)
    if statuses & APPROVING_THREAD_STATUSES:
        return ProposalStatus.ACTIVE
    if statuses & (OPEN_THREAD_STATUSES | {ThreadStatus.CONDITIONS_SET}):
        return ProposalStatus.DECISIONS_CLOSED
    return ProposalStatus.NOT_FEASIBLE


def _may_close(threads: Sequence[DecisionThread], now: datetime) -> bool:
    """Every registry has decided, or the time of every one still open has run out."""
    return bool(threads) and all(
        thread.status in DECIDED_THREAD_STATUSES or _is_due(thread, now) for thread in threads
    )


def _settle(session: Session, proposal: Proposal, now: datetime, report: DeadlinesReport) -> None:
    """Expire the proposal's overdue threads, then close its decisions if they may close and
    move them on to ACTIVE or NOT_FEASIBLE once nobody waits, telling the proposer. The caller
    holds the proposal's lock."""
    threads = _threads(session, proposal.id)
    for thread in threads:
        if _is_due(thread, now) and expire_thread(session, thread, now):
            report.expired += 1
    closing = proposal.status == ProposalStatus.SENT
    if closing:
        if not _may_close(threads, now):
            return
        set_status(
            session,
            None,
            proposal,
            ProposalStatus.DECISIONS_CLOSED,
            now,
            reason=SETTLED_REASONS[ProposalStatus.DECISIONS_CLOSED],
        )
    elif proposal.status != ProposalStatus.DECISIONS_CLOSED:
        return
    statuses = [thread.status for thread in threads]
    # Staff may close decisions early: registries still deciding are expired at their deadline
    # by a later run, and the outcome waits for them.
    if any(status in OPEN_THREAD_STATUSES for status in statuses):
        return
    outcome = outcome_of(statuses)
    if outcome != ProposalStatus.DECISIONS_CLOSED:
        set_status(session, None, proposal, outcome, now, reason=SETTLED_REASONS[outcome])
        if outcome == ProposalStatus.ACTIVE:
            report.active += 1
        else:
            report.not_feasible += 1
    elif closing:
        report.waiting += 1
    emails.queue_decisions_closed(
        session, proposal, outcome, [(t.registry_id, t.status) for t in threads], now
    )


def settle_proposals(session: Session, now: datetime, report: DeadlinesReport) -> None:
    """Expire overdue threads and close decisions, one locked proposal at a time.

    A proposal whose step is refused (a rule changed under it) is rolled back alone to its
    savepoint and logged, so it cannot stop the others; the next tick tries it again.
    """
    after_id = 0
    seen = 0
    while seen < MAX_PROPOSALS_PER_RUN:
        page = _settle_candidates(session, now, after_id)
        if not page:
            break
        after_id = page[-1]
        for proposal_id in page[: MAX_PROPOSALS_PER_RUN - seen]:
            seen += 1
            try:
                with savepoint(session):
                    proposal = _claim(session, proposal_id)
                    if proposal is None:
                        report.skipped += 1
                        continue
                    _settle(session, proposal, now, report)
            except GovernanceError:
                report.refused += 1
                log.warning("settling proposal %s was refused", proposal_id, exc_info=True)


def run_deadlines(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """The ``governance.deadlines`` tick: queue the reminders owed (each once per thread,
    offset and custodian), expire open, running threads whose deadline passed, and close
    decisions on proposals every registry has answered or whose time is up, into ACTIVE or
    NOT_FEASIBLE (or closed, waiting for the proposer's answer to conditions), with a summary
    email to the proposer. Returns the run's summary line."""
    report = DeadlinesReport()
    report.reminders = queue_reminders(session, now, reminder_offsets(config))
    settle_proposals(session, now, report)
    return report.summary()


def register(jobs: JobRegistry) -> None:
    """Register the governance jobs."""
    jobs.register(
        "governance.deadlines",
        run_deadlines,
        "interval",
        description="Remind registries before their decision deadline, expire undecided "
        "threads and close decisions",
        minutes=15,
    )
