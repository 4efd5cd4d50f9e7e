"""The mail outbox: every email is a row written in the feature's own transaction, delivered
exactly once by claim → send → record.

Rules every sender relies on:

- A feature calls :func:`enqueue` inside its transaction with a **deduplication key** (a unique
  constraint): a double-click, a re-run job or two workers cannot queue the same email twice.
  The row holds ids and small facts (``payload``); the message is rendered at delivery time by
  the renderer its package registered for the row's ``kind``.
- Delivery **claims** due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and **commits the claim
  before sending**, commits "attempt started" just before each hand-over, then records each
  result in its own short transaction. When a worker dies, its claim's lease expires: rows it
  never attempted go back to the queue; a row whose hand-over had started becomes ``unknown``
  and is never re-sent blindly: the file backend settles it from whether its file exists; for
  SendGrid, staff decide (or the provider's events do, with the newsletters work).
- A row that fails to render or that the provider refuses fails alone, with its attempts and
  error saved; transient provider errors are retried with backoff.
- Every message carries a stable ``Message-ID`` derived from the row.

Requests that queue mail which should leave at once (a verification link) pass
``deliver_now=True``: after the request's transaction commits, the rows are handed to the
process's immediate sender (``engage.delivery``), which sends them on a thread of its own, so
the answer never waits for the provider (nor tells by its timing whether an email was sent). If
that fails (the provider is down, the process dies) the rows stay queued for the scheduler's
``outbox.deliver`` job.
"""

from __future__ import annotations

import enum
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from engage import mail
from engage.db import Base, UTCDateTime
from engage.enums import LabelledEnum, enum_column

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
CLAIM_BATCH = 50


class OutboxStatus(LabelledEnum):
    """Where a queued email stands."""

    # Due at next_attempt_at.
    PENDING = "pending", "Waiting to be sent"
    # A worker committed its claim and is sending.
    CLAIMED = "claimed", "Being sent"
    # Handed over (file written, provider accepted).
    SENT = "sent", "Sent"
    # Will not be sent: render error, refused, or out of attempts.
    FAILED = "failed", "Failed"
    # Sent or not: a crash or a timeout after the request went out.
    UNKNOWN = "unknown", "Outcome unknown"
    # No longer owed (the account was deactivated or removed).
    CANCELLED = "cancelled", "Not sent (no longer owed)"


class OutboxMessage(Base):
    """One email owed to one recipient."""

    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    # What the email is (its renderer), e.g. "verify_email", "topic_status".
    kind: Mapped[str] = mapped_column(sa.String(40))
    # Unique per email owed, e.g. "topic-status:12:345:7": queuing it again is a no-op.
    dedup_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    # The recipient's account; the address is read at delivery time (None: see to_address).
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # The address of a recipient without an account (e.g. a newsletter subscriber).
    to_address: Mapped[str | None] = mapped_column(sa.String(320))
    # Ids and small facts the renderer needs; never the message body.
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    # Random part of the Message-ID, so ids reused after a database reset never collide.
    token: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[OutboxStatus] = mapped_column(
        enum_column(OutboxStatus)
    )
    # Attempts so far (each render and hand-over counts as one).
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Not sent before this time (backoff after a transient error).
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Who holds the current claim, and until when.
    claim_token: Mapped[str | None] = mapped_column(sa.String(32))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Committed just before the hand-over starts: a claim that expires without it was never
    # attempted (safe to send); with it, the outcome is unknown.
    attempt_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Which transport the last attempt used ("file", "sendgrid", "console").
    transport: Mapped[str | None] = mapped_column(sa.String(20))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The provider's id for the message (SendGrid's X-Message-Id).
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(200))
    # Why the last attempt did not succeed (never message content).
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    # Staff who settled an unknown row, when, and how.
    resolved_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolution: Mapped[str | None] = mapped_column(sa.String(40))

    __table_args__ = (
        sa.Index("ix_outbox_messages_due", "status", "next_attempt_at", "id"),
        sa.Index("ix_outbox_messages_kind_status", "kind", "status"),
    )

    def message_id(self, domain: str) -> str:
        """The stable Message-ID of this email."""
        # Zero-padded so the file backend's files sort in the order they were queued.
        return f"<outbox-{self.id:012d}.{self.token}@{domain}>"


# Renderers ---------------------------------------------------------------------------------
Renderer = Callable[[Session, OutboxMessage], "mail.Message | None"]


class NotOwed(Exception):
    """Raised by a renderer when the email is no longer owed (the row is cancelled)."""


@dataclass
class MailKinds:
    """The renderers packages registered, by kind (bound to the app at composition time)."""

    renderers: dict[str, Renderer] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def register(self, kind: str, renderer: Renderer, label: str) -> None:
        """Register how to render emails of ``kind`` (``label``: what staff read)."""
        if kind in self.renderers:
            raise ValueError(f"mail kind {kind!r} is already registered")
        self.renderers[kind] = renderer
        self.labels[kind] = label


def kinds(app: Flask | None = None) -> MailKinds:
    """The app's registered mail kinds."""
    return (app or current_app).extensions["engage.mail_kinds"]


# Enqueue -----------------------------------------------------------------------------------
_IMMEDIATE = "engage.outbox.immediate"
_READY = "engage.outbox.ready"


def enqueue(
    session: Session,
    *,
    kind: str,
    dedup_key: str,
    now: datetime,
    user_id: int | None = None,
    to_address: str | None = None,
    payload: dict[str, Any] | None = None,
    deliver_now: bool = False,
) -> int | None:
    """Queue one email in the caller's transaction; return its id, or None when an email with
    ``dedup_key`` was already queued (nothing changes then).

    :param deliver_now: try to send it as soon as the caller's transaction commits (in a
        request: on the immediate sender's thread), instead of at the next delivery tick.
    """
    if (user_id is None) == (to_address is None):
        raise ValueError("give exactly one of user_id and to_address")
    values = {
        "kind": kind,
        "dedup_key": dedup_key[:200],
        "user_id": user_id,
        "to_address": to_address,
        "payload": payload or {},
        "token": secrets.token_hex(8),
        "status": OutboxStatus.PENDING.value,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(OutboxMessage)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(OutboxMessage.id)
    )
    row_id = session.execute(statement).scalar()
    if row_id is not None and deliver_now:
        session.info.setdefault(_IMMEDIATE, []).append(row_id)
    return row_id


def is_queued(session: Session, dedup_key: str) -> bool:
    """Whether an email with ``dedup_key`` has been queued (whatever became of it)."""
    return (
        session.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.dedup_key == dedup_key))
        is not None
    )


def _promote_after_commit(session: Session) -> None:
    rows = session.info.pop(_IMMEDIATE, None)
    if rows:
        session.info.setdefault(_READY, []).extend(rows)


def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_IMMEDIATE, None)


# Staff -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutboxCount:
    """How many emails of one kind are in one status."""

    kind: str
    status: OutboxStatus
    count: int


def counts(session: Session) -> list[OutboxCount]:
    """Emails by kind and status (one grouped query)."""
    rows = session.execute(
        sa.select(OutboxMessage.kind, OutboxMessage.status, sa.func.count())
        .group_by(OutboxMessage.kind, OutboxMessage.status)
        .order_by(OutboxMessage.kind, OutboxMessage.status)
    ).all()
    return [OutboxCount(kind, status, count) for kind, status, count in rows]


def problems(session: Session, limit: int = 100) -> list[OutboxMessage]:
    """Failed and unknown emails, newest first."""
    return list(
        session.scalars(
            sa.select(OutboxMessage)
            .where(OutboxMessage.status.in_([OutboxStatus.FAILED, OutboxStatus.UNKNOWN]))
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
        )
    )


class CannotResolve(Exception):
    """The email is not in a state staff can settle."""


class Resolution(enum.StrEnum):
    """What staff decided about an email whose outcome is unknown or that failed."""

    SEND_AGAIN = "send_again"
    MARK_SENT = "mark_sent"
    GIVE_UP = "give_up"


def resolve(
    session: Session, actor_id: int, row_id: int, decision: Resolution, now: datetime
) -> OutboxMessage:
    """Staff settle an unknown (or failed) email: send it again, count it as delivered, or
    give up on it. The row is locked, so two staff clicking at once decide once."""
    row = session.scalar(
        sa.select(OutboxMessage).where(OutboxMessage.id == row_id).with_for_update()
    )
    if row is None:
        raise CannotResolve("That email no longer exists.")
    allowed = {OutboxStatus.UNKNOWN} | (
        {OutboxStatus.FAILED} if decision != Resolution.MARK_SENT else set()
    )
    if row.status not in allowed:
        raise CannotResolve(f"That email is “{row.status.label.lower()}” now; nothing was changed.")
    if decision == Resolution.SEND_AGAIN:
        row.status = OutboxStatus.PENDING
        row.next_attempt_at = now
        row.claim_token = None
        row.attempts = min(row.attempts, MAX_ATTEMPTS - 1)
    elif decision == Resolution.MARK_SENT:
        row.status = OutboxStatus.SENT
        row.sent_at = row.sent_at or now
    else:
        row.status = OutboxStatus.CANCELLED
    row.resolved_by_id = actor_id
    row.resolved_at = now
    row.resolution = decision.value
    return row


# Composition -------------------------------------------------------------------------------
def init_app(app: Flask, mail_kinds: MailKinds) -> None:
    """Bind the registered mail kinds and follow commits of ``deliver_now`` rows."""
    app.extensions["engage.mail_kinds"] = mail_kinds
    factory = app.extensions["engage.db"]["sessionmaker"]
    if not event.contains(factory, "after_commit", _promote_after_commit):
        event.listen(factory, "after_commit", _promote_after_commit)
        event.listen(factory, "after_rollback", _forget_after_rollback)


def take_ready(session: Session) -> list[int]:
    """The ids of ``deliver_now`` rows ``session`` has committed since last asked."""
    return session.info.pop(_READY, None) or []


def iter_messages(session: Session, status: OutboxStatus) -> Iterator[OutboxMessage]:
    """Every row in ``status`` (tests and checks)."""
    yield from session.scalars(
        sa.select(OutboxMessage).where(OutboxMessage.status == status).order_by(OutboxMessage.id)
    )
