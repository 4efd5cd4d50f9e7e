"""Exactly-once delivery under crashes and concurrency, on PostgreSQL with real processes.

Delivery runs as the operator runs it (`engage scheduler run-job outbox.deliver`,
`engage outbox deliver`), in subprocesses that are SIGKILLed at random points and restarted;
at the end every queued email exists exactly once where the transport put it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage import delivery, outbox
from engage.accounts.models import Role, User
from engage.db import Database
from engage.outbox import OutboxMessage, OutboxStatus
from engage.timeutil import utcnow
from tests.crash_support import app_factory, kill_repeatedly
from tests.fake_sendgrid import FakeSendGrid

ENGAGE = str(Path(sys.executable).parent / "engage")
LEASE_SECONDS = 2

pytestmark = pytest.mark.postgres


@pytest.fixture
def make_app(pg_url):
    """Apps on the test's schema (engines disposed afterwards)."""
    yield from app_factory(pg_url)


def _environment(url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ENGAGE_CONFIG": "development",
            "DATABASE_URL": url,
            "OUTBOX_LEASE_SECONDS": str(LEASE_SECONDS),
            "BASE_URL": "http://engage.test",
            "SCHEDULER_IN_PROCESS": "false",
            **extra,
        }
    )
    return env


def _queue(app, count: int, *, poison: int | None = None) -> list[int]:
    """``count`` participants, each owed one email; ``poison``: the index of one whose email
    cannot be rendered."""
    now = utcnow()
    with app.app_context():
        session = Database.new_session(app)
        session.execute(
            sa.insert(User),
            [
                {
                    "email": f"person{n}@example.org",
                    "display_name": f"Person {n}",
                    "password_hash": "not-a-hash",
                    "role": Role.PARTICIPANT,
                    "country": "SE",
                    "language": "en",
                    "email_verified_at": now,
                    "is_active": True,
                    "session_version": 1,
                    "created_at": now,
                }
                for n in range(count)
            ],
        )
        users = session.scalars(sa.select(User.id).order_by(User.id)).all()
        ids = []
        for n, user_id in enumerate(users):
            ids.append(
                outbox.enqueue(
                    session,
                    kind="consent_review_reminder" if n == poison else "password_changed",
                    dedup_key=f"crash-test:{user_id}",
                    now=now,
                    user_id=user_id,
                    payload={},
                )
            )
        session.commit()
        session.close()
    return ids


def _statuses(app) -> Counter:
    with app.app_context():
        session = Database.new_session(app)
        found = Counter(
            dict(
                session.execute(
                    sa.select(OutboxMessage.status, sa.func.count()).group_by(OutboxMessage.status)
                ).all()
            )
        )
        session.close()
    return found


def _run_until_settled(args: list[str], env: dict[str, str], app, rounds: int = 20) -> None:
    """Run delivery to completion (waiting out the leases of killed workers)."""
    for _ in range(rounds):
        open_rows = _statuses(app)
        busy = open_rows[OutboxStatus.PENDING] or open_rows[OutboxStatus.CLAIMED]
        # Unknown rows settle from evidence only with the file backend; SendGrid's wait for staff.
        settles = open_rows[OutboxStatus.UNKNOWN] and env["MAIL_BACKEND"] == "file"
        if not busy and not settles:
            return
        if open_rows[OutboxStatus.CLAIMED]:
            time.sleep(LEASE_SECONDS + 0.5)
        subprocess.run(args, env=env, check=True, capture_output=True, timeout=120)
    raise AssertionError(f"delivery did not settle: {_statuses(app)}")


def test_killed_delivery_never_sends_an_email_twice_or_loses_one(pg_url, make_app, tmp_path):
    mail_dir = tmp_path / "mail"
    app = make_app(
        MAIL_BACKEND="file",
        MAIL_OUTBOX_DIR=str(mail_dir),
    )
    ids = _queue(app, 600)
    env = _environment(pg_url, MAIL_BACKEND="file", MAIL_OUTBOX_DIR=str(mail_dir))
    args = [ENGAGE, "scheduler", "run-job", "outbox.deliver"]

    landed = kill_repeatedly(
        args, env, kills=6, seed=8, progress=lambda: len(list(mail_dir.glob("*.eml")))
    )
    _run_until_settled(args, env, app)

    files = sorted(mail_dir.glob("*.eml"))
    print(f"kills landed (files before, at the kill): {landed}; files at the end: {len(files)}")
    mid_batch = [(a, b) for a, b in landed if a < b < len(ids)]
    assert len(mid_batch) >= 2, "at least two kills should land while emails are going out"
    per_row = Counter(int(f.name.split("-")[1].split(".")[0]) for f in files)
    assert sorted(per_row) == sorted(ids)
    assert set(per_row.values()) == {1}
    assert all(f.stat().st_size > 0 for f in files)
    assert _statuses(app) == Counter({OutboxStatus.SENT: len(ids)})


def test_killed_sendgrid_delivery_never_sends_twice_and_staff_settle_the_rest(
    pg_url, make_app, fake_sendgrid: FakeSendGrid
):
    app = make_app(
        MAIL_BACKEND="sendgrid",
        SENDGRID_API_KEY="SG.test-key",
        SENDGRID_API_HOST=fake_sendgrid.url,
    )
    ids = _queue(app, 250)
    for _ in range(len(ids) * 2):  # answers take 10 ms, so the kills land mid-batch
        fake_sendgrid.enqueue(202, delay=0.01)
    env = _environment(
        pg_url,
        MAIL_BACKEND="sendgrid",
        SENDGRID_API_KEY="SG.test-key",
        SENDGRID_API_HOST=fake_sendgrid.url,
    )
    args = [ENGAGE, "scheduler", "run-job", "outbox.deliver"]

    landed = kill_repeatedly(
        args, env, kills=4, seed=3, progress=lambda: len(fake_sendgrid.mail_sends)
    )
    time.sleep(LEASE_SECONDS + 0.5)
    _run_until_settled(args, env, app)

    received = Counter(int(r.body["custom_args"]["outbox_id"]) for r in fake_sendgrid.mail_sends)
    statuses = _statuses(app)
    print(f"kills landed (requests before, at the kill): {landed}; {dict(statuses)}")
    assert len([1 for a, b in landed if a < b < len(ids)]) >= 2
    assert set(received.values()) == {1}, "no email reached the provider twice"
    assert statuses[OutboxStatus.UNKNOWN] <= len(landed)  # one in flight per kill at most
    with app.app_context():
        session = Database.new_session(app)
        sent = set(
            session.scalars(
                sa.select(OutboxMessage.id).where(OutboxMessage.status == OutboxStatus.SENT)
            )
        )
        unknown = list(
            session.scalars(
                sa.select(OutboxMessage.id).where(OutboxMessage.status == OutboxStatus.UNKNOWN)
            )
        )
        assert sent <= set(received)
        # Staff settle each unknown email from the provider's record, as the event webhook will.
        staff_id = session.scalar(sa.select(User.id).limit(1))
        for row_id in unknown:
            decision = (
                outbox.Resolution.MARK_SENT if row_id in received else outbox.Resolution.SEND_AGAIN
            )
            outbox.resolve(session, staff_id, row_id, decision, utcnow())
        session.commit()
        session.close()
    _run_until_settled(args, env, app)
    received = Counter(int(r.body["custom_args"]["outbox_id"]) for r in fake_sendgrid.mail_sends)
    assert sorted(received) == sorted(ids)
    assert set(received.values()) == {1}
    assert _statuses(app) == Counter({OutboxStatus.SENT: len(ids)})


def test_two_delivery_processes_and_a_poison_row(pg_url, make_app, tmp_path):
    mail_dir = tmp_path / "mail"
    app = make_app(
        MAIL_BACKEND="file",
        MAIL_OUTBOX_DIR=str(mail_dir),
    )
    ids = _queue(app, 600, poison=17)
    env = _environment(
        pg_url, MAIL_BACKEND="file", MAIL_OUTBOX_DIR=str(mail_dir), OUTBOX_CLAIM_BATCH="5"
    )
    workers = [
        subprocess.Popen(
            [ENGAGE, "outbox", "deliver"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]

    files = sorted(mail_dir.glob("*.eml"))
    per_row = Counter(int(f.name.split("-")[1].split(".")[0]) for f in files)
    print(outputs)
    assert all(w.returncode == 0 for w in workers)
    assert all(not out.startswith("sent 0,") for out in outputs), "both workers took a share"
    assert sorted(per_row) == sorted(i for n, i in enumerate(ids) if n != 17)
    assert set(per_row.values()) == {1}
    assert _statuses(app) == Counter({OutboxStatus.SENT: 599, OutboxStatus.FAILED: 1})
    with app.app_context():
        session = Database.new_session(app)
        poison = session.get(OutboxMessage, ids[17])
        assert (poison.status, poison.attempts) == (OutboxStatus.FAILED, 1)
        assert poison.last_error.startswith("could not render: KeyError")
        session.close()


def test_scheduler_stops_cleanly_on_sigterm(pg_url, make_app, tmp_path):
    """SIGTERM finishes the message being sent, hands the rest back, releases the lock."""
    mail_dir = tmp_path / "mail"
    app = make_app()
    _queue(app, 300)
    env = _environment(pg_url, MAIL_BACKEND="file", MAIL_OUTBOX_DIR=str(mail_dir))
    process = subprocess.Popen(
        [ENGAGE, "scheduler", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(mail_dir.glob("*.eml")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0]

    assert process.returncode == 0, output
    assert "Scheduler stopped." in output
    statuses = _statuses(app)
    assert statuses[OutboxStatus.CLAIMED] == 0 and statuses[OutboxStatus.UNKNOWN] == 0
    assert statuses[OutboxStatus.SENT] == len(list(mail_dir.glob("*.eml")))


def test_two_reminder_runs_at_once_queue_each_email_once(pg_url, make_app, tmp_path):
    """The consent job run by the scheduler and by hand at the same moment."""
    from engage.consent.jobs import send_review_reminders
    from tests import consent_support

    app = make_app(
        MAIL_BACKEND="file",
        MAIL_OUTBOX_DIR=str(tmp_path / "mail"),
    )
    _queue(app, 40)  # 40 participants who never decided
    with app.app_context():
        session = Database.new_session(app)
        staff = User(
            email="staff@example.org",
            display_name="Staff",
            password_hash="x",
            role=Role.STAFF,
            country="SE",
            language="en",
            email_verified_at=utcnow(),
            created_at=utcnow(),
        )
        session.add(staff)
        session.commit()
        consent_support.publish(session, staff)
        session.close()
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        with app.app_context():
            session = Database.new_session(app)
            try:
                barrier.wait()
                send_review_reminders(session, utcnow(), app.config)
                session.commit()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)
            finally:
                session.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with app.app_context():
        session = Database.new_session(app)
        queued = session.scalar(
            sa.select(sa.func.count()).where(OutboxMessage.kind == "consent_available")
        )
        session.close()
    assert queued == 40


def test_concurrent_identical_sign_ups_send_one_confirmation_and_no_warning(make_app, tmp_path):
    """A double-submitted sign-up: every request answers "check your email", one account,
    one confirmation, no "someone tried to join with your address" warning."""
    from tests.conftest import Mailbox, csrf_token

    app = make_app(MAIL_BACKEND="file", MAIL_OUTBOX_DIR=str(tmp_path / "mail"))
    form = {
        "role": "participant",
        "display_name": "Ana",
        "email": "ana@example.org",
        "password": "a long enough passphrase",
        "password_confirm": "a long enough passphrase",
        "country": "SE",
        "language": "en",
    }
    clients = [app.test_client() for _ in range(4)]
    tokens = [csrf_token(client) for client in clients]
    barrier = threading.Barrier(len(clients))
    answers: list[int] = []

    def submit(client, token) -> None:
        barrier.wait()
        answers.append(client.post("/sign-up", data={**form, "csrf_token": token}).status_code)

    threads = [
        threading.Thread(target=submit, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert answers == [302] * 4
    with app.app_context():
        session = Database.new_session(app)
        accounts = session.scalar(sa.select(sa.func.count()).select_from(User))
        session.close()
    assert accounts == 1
    delivery.deliver(app)
    subjects = [m.subject for m in Mailbox(app).to("ana@example.org")]
    assert subjects == ["Confirm your email address for Engage"]
