"""Scheduled jobs: a small registry of tick jobs and an APScheduler 3 runner.

Packages register jobs at composition time (``create_app``). Each job is a function
``job(session, now, config) -> str | None`` that does its work in the given session;
the runner opens the session, passes an explicit UTC ``now``, commits once and logs
the job's one-line summary. Tests never start a scheduler: they call the job functions
directly with a chosen ``now``.

Exactly one scheduler process runs: ``engage scheduler run`` takes a PostgreSQL advisory
lock and waits while another process holds it.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import Session

from engage.db import Database
from engage.timeutil import utcnow

log = logging.getLogger(__name__)

JobFunction = Callable[[Session, datetime, dict[str, Any]], "str | None"]
# Arbitrary constant identifying Engage's scheduler lock among PostgreSQL advisory locks.
SCHEDULER_LOCK_KEY = 0x454E4741  # "ENGA"


@dataclass(frozen=True)
class Job:
    """A registered tick job and its APScheduler trigger."""

    id: str
    func: JobFunction
    trigger: str
    trigger_args: dict[str, Any] = field(default_factory=dict)
    description: str = ""


class JobRegistry:
    """The jobs the packages have registered, by id."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def register(
        self,
        job_id: str,
        func: JobFunction,
        trigger: str,
        description: str = "",
        **trigger_args: Any,
    ) -> None:
        """Register ``func`` under ``job_id`` with an APScheduler trigger (e.g. interval)."""
        if job_id in self._jobs:
            raise ValueError(f"job {job_id!r} is already registered")
        self._jobs[job_id] = Job(job_id, func, trigger, trigger_args, description)

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __getitem__(self, job_id: str) -> Job:
        return self._jobs[job_id]

    def __len__(self) -> int:
        return len(self._jobs)


def job_lock_key(job_id: str) -> int:
    """The PostgreSQL advisory lock key of one job (stable across processes)."""
    digest = hashlib.sha256(f"engage.job:{job_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def job_lock(app: Flask, job_id: str, poll_seconds: float = 1.0) -> Iterator[None]:
    """Hold ``job_id``'s advisory lock while inside: a tick of the scheduler and any number of
    ``engage scheduler run-job`` processes never run the same job at the same time (a second
    one waits for the first to finish). On SQLite there is one process to coordinate."""
    engine = Database.engine(app)
    if engine.dialect.name != "postgresql":
        yield
        return
    key = job_lock_key(job_id)
    with engine.connect() as connection:
        announced = False
        while not connection.execute(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
        ).scalar():
            if not announced:
                log.warning("job %s is running in another process; waiting for it", job_id)
                announced = True
            connection.commit()
            time.sleep(poll_seconds)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()


def run_job(app: Flask, job: Job, now: datetime | None = None) -> str | None:
    """Run one job under its lock, in its own session and transaction; roll back and
    re-raise on error."""
    with job_lock(app, job.id), app.app_context():
        now = now or utcnow()
        session = Database.new_session(app)
        try:
            summary = job.func(session, now, app.config)
            session.commit()
        except Exception:
            session.rollback()
            log.exception("job %s failed", job.id)
            raise
        finally:
            session.close()
    log.info("job %s done: %s", job.id, summary or "-")
    return summary


class RunningJobs:
    """Counts job runs in progress so a stopping scheduler can wait for them to finish."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    @contextmanager
    def running(self) -> Iterator[None]:
        """Count one run while inside."""
        with self._idle:
            self._count += 1
        try:
            yield
        finally:
            with self._idle:
                self._count -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no job runs; False if ``timeout`` passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


def _safe_runner(app: Flask, job: Job) -> Callable[[], None]:
    running: RunningJobs = app.extensions.setdefault("engage.running_jobs", RunningJobs())
    stop: threading.Event = app.extensions.setdefault("engage.stop", threading.Event())

    def tick() -> None:
        if stop.is_set():
            return
        with running.running():
            try:
                run_job(app, job)
            except Exception:  # noqa: BLE001 - run_job logged it; the scheduler keeps ticking
                log.debug("job %s will run again at its next tick", job.id)

    return tick


def stop_on_signals(app: Flask, scheduler: Any) -> None:
    """On SIGTERM or SIGINT: stop starting jobs, let the running ones finish what they are
    doing (the outbox finishes its current message), then let ``scheduler.start()`` return."""
    stop: threading.Event = app.extensions.setdefault("engage.stop", threading.Event())

    def handle(signum: int, _frame: Any) -> None:
        if stop.is_set():
            return
        log.info("signal %s: stopping after the current work", signum)
        stop.set()
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def build_scheduler(app: Flask, *, background: bool) -> Any:
    """Create an APScheduler 3 scheduler (UTC, coalescing, one instance per job)."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler_class = BackgroundScheduler if background else BlockingScheduler
    scheduler = scheduler_class(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )
    for job in app.extensions["engage.jobs"]:
        scheduler.add_job(
            _safe_runner(app, job),
            job.trigger,
            id=job.id,
            name=job.description or job.id,
            replace_existing=True,
            **job.trigger_args,
        )
    return scheduler


@contextmanager
def single_scheduler_lock(app: Flask, poll_seconds: float = 10.0) -> Iterator[None]:
    """Hold PostgreSQL's advisory lock for the scheduler while inside; wait while taken.

    On SQLite (one machine, development) there is nothing to coordinate.
    """
    engine = Database.engine(app)
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        announced = False
        while not connection.execute(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": SCHEDULER_LOCK_KEY}
        ).scalar():
            if not announced:
                log.warning("another scheduler is running; waiting for it to stop")
                announced = True
            connection.commit()
            time.sleep(poll_seconds)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(
                sa.text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEDULER_LOCK_KEY}
            )
            connection.commit()
