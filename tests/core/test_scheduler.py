"""Jobs are registered through the scheduler wrapper and run with an explicit ``now``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from engage.audit import AuditEvent
from engage.db import Database
from engage.scheduler import (
    SCHEDULER_LOCK_KEY,
    JobRegistry,
    build_scheduler,
    run_job,
    single_scheduler_lock,
)


def test_registry_refuses_duplicate_ids():
    jobs = JobRegistry()
    jobs.register("a.job", lambda s, n, c: None, "interval", minutes=5)
    with pytest.raises(ValueError, match="already registered"):
        jobs.register("a.job", lambda s, n, c: None, "interval", minutes=5)


def test_scheduler_is_utc_coalescing_and_single_instance(app):
    scheduler = build_scheduler(app, background=True)
    scheduler.start(paused=True)  # paused: the jobs are scheduled but never run
    try:
        jobs = scheduler.get_jobs()
        assert {job.id for job in jobs} == {job.id for job in app.extensions["engage.jobs"]}
        assert str(scheduler.timezone) == "UTC"
        for job in jobs:
            assert job.coalesce is True and job.max_instances == 1
            assert job.next_run_time.tzinfo is not None
    finally:
        scheduler.shutdown(wait=False)


def test_run_job_commits_once_with_the_given_now(app, session):
    now = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
    seen = []

    def job(db_session, job_now, config):
        from engage import audit
        from engage.audit import AuditAction

        seen.append(job_now)
        audit.record(db_session, AuditAction.SIGN_OUT, now=job_now)
        return "one event"

    jobs = JobRegistry()
    jobs.register("test.job", job, "interval", minutes=1)
    assert run_job(app, jobs["test.job"], now=now) == "one event"
    assert seen == [now]
    assert session.scalar(sa.select(AuditEvent.occurred_at)) == now


def test_a_failing_job_rolls_back(app, session):
    def job(db_session, job_now, config):
        from engage import audit
        from engage.audit import AuditAction

        audit.record(db_session, AuditAction.SIGN_OUT, now=job_now)
        raise RuntimeError("boom")

    jobs = JobRegistry()
    jobs.register("test.fail", job, "interval", minutes=1)
    with pytest.raises(RuntimeError):
        run_job(app, jobs["test.fail"])
    assert session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == 0


def test_only_one_scheduler_holds_the_lock_on_postgresql(app):
    engine = Database.engine(app)
    if engine.dialect.name != "postgresql":
        # On SQLite there is one process by design: the lock is a no-op.
        with single_scheduler_lock(app):
            assert engine.dialect.name == "sqlite"
        return
    second_started = threading.Event()
    second_acquired = threading.Event()

    def second_scheduler():
        second_started.set()
        with single_scheduler_lock(app, poll_seconds=0.05):
            second_acquired.set()

    with single_scheduler_lock(app):
        with engine.connect() as probe:
            held = probe.execute(
                sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :k"),
                {"k": SCHEDULER_LOCK_KEY},
            ).scalar()
        assert held == 1
        thread = threading.Thread(target=second_scheduler, daemon=True)
        thread.start()
        second_started.wait(2)
        assert not second_acquired.wait(0.5), "a second scheduler ran while the first held the lock"
    assert second_acquired.wait(5), "the second scheduler did not take over after the first stopped"
    thread.join(5)
