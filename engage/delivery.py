"""Delivery of the mail outbox: claim → send → record, one short transaction each.

See :mod:`engage.outbox` for the rules. A worker claims due rows (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL) and commits the claim; commits "attempt started" just before each hand-over; and
records each outcome under its claim. Stale claims are settled first: never-attempted rows go
back to the queue, attempted ones become ``unknown`` and are settled from the transport's
evidence where it has any.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, g
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from engage import claims, mail, outbox
from engage.db import Database
from engage.outbox import CLAIM_BATCH, MAX_ATTEMPTS, NotOwed, OutboxMessage, OutboxStatus, kinds
from engage.timeutil import utcnow

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    """What one delivery run did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    unknown: int = 0
    cancelled: int = 0
    settled: int = 0

    def summary(self) -> str:
        """One line for the job log."""
        return (
            f"sent {self.sent}, retrying {self.retrying}, failed {self.failed}, "
            f"unknown {self.unknown}, cancelled {self.cancelled}, settled {self.settled}"
        )


def _domain(app: Flask) -> str:
    from email.utils import parseaddr

    address = parseaddr(app.config["MAIL_FROM"])[1]
    return address.rpartition("@")[2] or "engage.localhost"


def _transport_name(app: Flask) -> str:
    return str(app.config["MAIL_BACKEND"])


def _backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, … capped at one hour."""
    return claims.backoff(attempts)


STATES = claims.ClaimStates(
    pending=OutboxStatus.PENDING, claimed=OutboxStatus.CLAIMED, unknown=OutboxStatus.UNKNOWN
)


def expire_stale_claims(session: Session, now: datetime) -> int:
    """Settle rows whose claim's lease ran out (see :func:`engage.claims.expire_stale`)."""
    return sum(claims.expire_stale(session, OutboxMessage, STATES, now))


def settle_unknown(session: Session, app: Flask, now: datetime, limit: int = 500) -> int:
    """Settle ``unknown`` rows from the transport's evidence where it has any: delivered ones
    become ``sent``, certainly-undelivered ones go back to ``pending``. Returns how many."""
    backend: mail.MailBackend = app.extensions["engage.mail"]
    transport = _transport_name(app)
    domain = _domain(app)
    rows = session.scalars(
        sa.select(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.UNKNOWN, OutboxMessage.transport == transport)
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    settled = 0
    for row in rows:
        evidence = backend.was_delivered(row.message_id(domain))
        if evidence is None:
            continue
        settled += 1
        if evidence:
            row.status = OutboxStatus.SENT
            row.sent_at = row.sent_at or now
            row.resolution = "evidence: delivered"
        else:
            row.status = OutboxStatus.PENDING
            row.next_attempt_at = now
            row.resolution = "evidence: not delivered"
        row.claim_token = None
    return settled


def claim(
    session: Session,
    app: Flask,
    now: datetime,
    *,
    limit: int = CLAIM_BATCH,
    ids: list[int] | None = None,
) -> tuple[str, list[int]]:
    """Claim up to ``limit`` due rows for this worker (the caller commits at once).

    Returns the claim token and the claimed ids, oldest first.
    """
    token = secrets.token_hex(8)
    due = [OutboxMessage.next_attempt_at <= now]
    if ids is not None:
        due.append(OutboxMessage.id.in_(ids))
    claimed = claims.claim(
        session,
        OutboxMessage,
        STATES,
        due,
        now=now,
        lease=timedelta(seconds=app.config["OUTBOX_LEASE_SECONDS"]),
        token=token,
        limit=limit,
        values={"transport": _transport_name(app)},
    )
    return token, claimed


def _record(session: Session, row_id: int, token: str, **values: Any) -> None:
    """Record one attempt's outcome in its own transaction (only under this worker's claim)."""
    claims.record(session, OutboxMessage, STATES, token, values, ids=[row_id])
    session.commit()


def _render(session: Session, app: Flask, row: OutboxMessage) -> mail.Message:
    renderer = kinds(app).renderers.get(row.kind)
    if renderer is None:
        raise LookupError(f"no renderer for mail kind {row.kind!r}")
    message = renderer(session, row)
    if message is None:
        raise NotOwed("nothing to send")
    message.message_id = row.message_id(_domain(app))
    message.custom_args = {**message.custom_args, "outbox_id": str(row.id)}
    if row.kind not in message.categories:
        message.categories = [*message.categories, row.kind]
    return message


def _deliver_one(
    session: Session, app: Flask, row_id: int, token: str, report: DeliveryReport
) -> None:
    row = session.get(OutboxMessage, row_id, populate_existing=True)
    if row is None or row.claim_token != token:
        session.rollback()
        return
    attempts = row.attempts + 1
    try:
        message = _render(session, app, row)
    except NotOwed as exc:
        session.rollback()
        report.cancelled += 1
        _record(session, row_id, token, status=OutboxStatus.CANCELLED, last_error=str(exc)[:500])
        return
    except Exception as exc:  # noqa: BLE001 - a poison row fails alone, with its error kept
        session.rollback()
        log.exception("outbox row %s (%s) could not be rendered", row_id, row.kind)
        report.failed += 1
        _record(
            session,
            row_id,
            token,
            status=OutboxStatus.FAILED,
            attempts=attempts,
            last_error=f"could not render: {exc.__class__.__name__}: {exc}"[:500],
        )
        return
    # From here on the outcome may be unknown: say so durably before handing over (this
    # also ends the render's transaction, so none stays open while the provider answers).
    session.rollback()
    _record(session, row_id, token, attempt_started_at=utcnow(), attempts=attempts)
    try:
        result = mail.send(message)
    except mail.MailOutcomeUnknown as exc:
        report.unknown += 1
        _record(session, row_id, token, status=OutboxStatus.UNKNOWN, last_error=str(exc)[:500])
        return
    except mail.MailError as exc:
        if exc.transient and attempts < MAX_ATTEMPTS:
            report.retrying += 1
            _record(
                session,
                row_id,
                token,
                status=OutboxStatus.PENDING,
                claim_token=None,
                next_attempt_at=utcnow() + _backoff(attempts),
                last_error=str(exc)[:500],
            )
        else:
            report.failed += 1
            _record(session, row_id, token, status=OutboxStatus.FAILED, last_error=str(exc)[:500])
        return
    report.sent += 1
    _record(
        session,
        row_id,
        token,
        status=OutboxStatus.SENT,
        sent_at=utcnow(),
        provider_message_id=(result.message_id or "")[:200] or None,
        last_error=None,
    )


def deliver(
    app: Flask,
    *,
    now: datetime | None = None,
    ids: list[int] | None = None,
    limit: int | None = None,
    stop: threading.Event | None = None,
) -> DeliveryReport:
    """Deliver due emails: expire stale claims, settle unknown rows from evidence, then claim
    and send batch after batch until nothing is due, ``limit`` rows were claimed, or ``stop``
    is set (the current message is finished first).

    :param ids: deliver only these rows (the immediate attempt after a request).
    """
    report = DeliveryReport()
    with app.app_context():
        session = Database.new_session(app)
        try:
            now = now or utcnow()
            if ids is None:
                expire_stale_claims(session, now)
                session.commit()
                report.settled = settle_unknown(session, app, now)
                session.commit()
            remaining = limit
            size = int(app.config.get("OUTBOX_CLAIM_BATCH", CLAIM_BATCH))
            while not (stop is not None and stop.is_set()):
                batch = size if remaining is None else min(size, remaining)
                if batch <= 0:
                    break
                token, claimed = claim(session, app, now, limit=batch, ids=ids)
                session.commit()
                if not claimed:
                    break
                for row_id in claimed:
                    if stop is not None and stop.is_set():
                        # Not started: hand the rest back at once instead of leaving them
                        # to expire into "unknown".
                        _release(session, row_id, token)
                        continue
                    _deliver_one(session, app, row_id, token, report)
                if remaining is not None:
                    remaining -= len(claimed)
                if ids is not None:
                    break
                now = max(now, utcnow())
        finally:
            session.rollback()
            session.close()
    return report


def _release(session: Session, row_id: int, token: str) -> None:
    """Give back a claimed row that was never attempted."""
    _record(session, row_id, token, status=OutboxStatus.PENDING, claim_token=None)


def deliver_due(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """The ``outbox.deliver`` job: deliver what is due (each step commits on its own)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stop = app.extensions.get("engage.stop")
    return deliver(app, now=now, stop=stop).summary()


def _deliver_ready_after_request(response: Any) -> Any:
    """Hand what this request queued with ``deliver_now`` (once its transaction committed) to
    the app's immediate sender, which sends it on a thread of its own: never while the person
    waits for the answer.

    A request that sent an email itself would answer only after the provider did, and the time
    to answer would tell whether it sent one (whether an address has an account, on the
    password reset form); now both answers do the same work.
    """
    session: Session | None = g.get("db_session")
    if session is None:
        return response
    ready = outbox.take_ready(session)
    if ready:
        current_app.extensions[IMMEDIATE_SENDER].submit(ready)
    return response


IMMEDIATE_SENDER = "engage.delivery.immediate_sender"


class ImmediateSender:
    """One thread per process sending the emails requests queued with ``deliver_now``.

    The rows are committed in the outbox before they are handed over, so nothing is lost when
    the process dies first: the scheduled ``outbox.deliver`` job sends them, and the claim
    rules of :func:`deliver` keep the two from sending one email twice. The thread starts on
    first use in each process (servers that fork workers start none in the parent).
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._queue: queue.Queue[list[int]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def submit(self, ids: list[int]) -> None:
        """Send ``ids`` soon, on the sender's thread."""
        with self._lock:
            if self._pid != os.getpid():  # a forked worker: the parent's queue is not ours
                self._queue, self._thread, self._pid = queue.Queue(), None, os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="engage-immediate-mail", daemon=True
                )
                self._thread.start()
            self._queue.put(list(ids))

    def wait(self) -> None:
        """Return once everything handed over so far has been sent (or left queued)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            ids = self._queue.get()
            try:
                deliver(self.app, ids=ids)
            except Exception:  # noqa: BLE001 - the rows stay queued; the job sends them later
                log.exception(
                    "immediate delivery of %d queued email(s) failed; left queued", len(ids)
                )
            finally:
                self._queue.task_done()


class DeliveringTestClient(FlaskClient):
    """Flask's test client, returning once the emails a request handed to the immediate
    sender are sent, as a mail program would see them a moment after a real answer: tests
    look at the mailbox right after the response."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        """Make a request, then wait for the immediate sender."""
        response = super().open(*args, **kwargs)
        self.application.extensions[IMMEDIATE_SENDER].wait()
        return response


def deliver_ready(app: Flask, session: Session) -> DeliveryReport | None:
    """Send what ``session`` queued with ``deliver_now`` and has committed (CLI, tests)."""
    ready = outbox.take_ready(session)
    if not ready:
        return None
    return deliver(app, ids=ready)


def init_app(app: Flask) -> None:
    """Send each request's ``deliver_now`` emails on the immediate sender's thread once the
    request has committed; the app's test client waits for them, so tests see them."""
    app.extensions[IMMEDIATE_SENDER] = ImmediateSender(app)
    app.after_request(_deliver_ready_after_request)
    app.test_client_class = DeliveringTestClient
