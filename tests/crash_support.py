"""Helpers shared by the crash tests (real processes SIGKILLed on PostgreSQL): a migrated
schema of the test's own, apps on it, killing a command at random moments, a staff account."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from alembic import command

from engage.accounts.models import Role, User
from engage.app import create_app
from engage.db import Database
from engage.migrate import alembic_config
from engage.timeutil import utcnow


@pytest.fixture
def pg_url(make_database_url) -> str:
    """A fresh, migrated PostgreSQL schema of this test's own."""
    url = make_database_url("postgresql")
    app = create_app({"ENGAGE_CONFIG": "testing", "DATABASE_URL": url})
    command.upgrade(alembic_config(app), "head")
    Database.engine(app).dispose()
    return url


def app_factory(url: str, **defaults: Any) -> Iterator[Callable[..., Any]]:
    """Yield ``make(**config)`` building apps on ``url`` (``defaults`` first), and dispose of
    their engines afterwards (use it from a fixture with ``yield from``)."""
    made = []

    def make(**config: Any) -> Any:
        app = create_app({"ENGAGE_CONFIG": "testing", "DATABASE_URL": url, **defaults, **config})
        made.append(app)
        return app

    yield make
    for app in made:
        Database.engine(app).dispose()


def kill_repeatedly(
    args: list[str],
    env: dict[str, str],
    kills: int,
    seed: int,
    progress: Callable[[], int],
    *,
    spread: float = 1.4,
) -> list[tuple[int, int]]:
    """Start ``args`` and SIGKILL it at a random moment, ``kills`` times. Returns, for each
    kill that landed while the process ran, how many messages had gone out before it started
    and when it was killed (``progress()`` counts them)."""
    rng = random.Random(seed)
    landed: list[tuple[int, int]] = []
    earliest = 1.0  # seconds after the start; later when a kill came before any sending
    for _ in range(kills):
        before = progress()
        process = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(earliest, earliest + spread))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            landed.append((before, progress()))
            if landed[-1][1] == before:  # a slow machine: still starting up
                earliest += 0.5
        else:
            process.wait(timeout=60)
    return landed


def staff_account(session: Any, email: str = "staff@example.org") -> User:
    """A verified staff account written straight to the database (flushed, not committed)."""
    staff = User(
        email=email,
        display_name="Staff",
        password_hash="not-a-hash",
        role=Role.STAFF,
        country="SE",
        language="en",
        email_verified_at=utcnow(),
        is_active=True,
        session_version=1,
        created_at=utcnow(),
    )
    session.add(staff)
    session.flush()
    return staff
