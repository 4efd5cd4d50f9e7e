"""Data rights: a person downloads everything Engage holds about them, or deletes their account.

Every package contributes through a :class:`DataRights` registry that the composition root
fills (``engage.app``), because the account package must not import the packages built on it:

- an **exporter** ``(session, user, now, config) -> JSON value`` gives one section of the
  download. It runs a fixed number of statements however much the person wrote (one query
  per kind of row, never one per row), and never includes secrets (password and token hashes,
  two-factor secrets) or other people's personal data.
- an **eraser** ``(session, user, now, config) -> sentence | None`` erases or pseudonymises
  what its package holds about the person, in the deletion's own transaction, and says what it
  did in one sentence without personal data (the sentences become the request's outcome).
  Erasers run before the account itself is pseudonymised, so they can still act as the person
  (a consent withdrawal) and find rows by the person's address (a newsletter sign-up).

Functions take the session, the person and ``now`` explicitly and never commit.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts import sessions
from engage.accounts.models import (
    DataRequest,
    DataRequestKind,
    DataRequestStatus,
    RecoveryCode,
    User,
    UserSession,
)
from engage.audit import AuditEvent
from engage.db import lock_rows
from engage.hashchain import timestamp
from engage.outbox import OutboxMessage, OutboxStatus
from engage.registries import queries as registry_queries
from engage.security import hash_password

EXPORT_FORMAT = "engage-my-data/1"
# What a deleted account is called wherever its name was shown (topics, comments, decisions).
DELETED_NAME = "Deleted account"
# ISO 3166-1 "user-assigned" code: no tally reads an account's country, so none is kept.
DELETED_COUNTRY = "ZZ"
OUTCOME_MAX_LENGTH = 500

Exporter = Callable[[Session, User, datetime, Mapping[str, Any]], Any]
Eraser = Callable[[Session, User, datetime, Mapping[str, Any]], "str | None"]


class DataRightsAction(enum.StrEnum):
    """Audit-log actions of data-rights requests."""

    DATA_EXPORTED = "data_exported"
    ACCOUNT_DELETED = "account_deleted"


class DataRightsError(Exception):
    """Base of the data-rights errors; the message is safe to show."""


class AccountAlreadyDeleted(DataRightsError):
    """The account was deleted already (a second click, another tab)."""


@dataclass
class DataRights:
    """The packages' exporters (by section name) and erasers (in the order they run)."""

    exporters: dict[str, Exporter] = field(default_factory=dict)
    erasers: list[tuple[str, Eraser]] = field(default_factory=list)

    def add_exporter(self, section: str, exporter: Exporter) -> None:
        """Add ``section`` to the download, filled by ``exporter``."""
        if section in self.exporters or section in ACCOUNT_SECTIONS:
            raise ValueError(f"the data export already has a section {section!r}")
        self.exporters[section] = exporter

    def add_eraser(self, name: str, eraser: Eraser) -> None:
        """Run ``eraser`` when an account is deleted (after those added before it)."""
        self.erasers.append((name, eraser))


def init_app(app: Flask, rights: DataRights) -> None:
    """Bind the packages' contributions to ``app`` (called by the composition root)."""
    app.extensions["engage.data_rights"] = rights


def registered(app: Flask | None = None) -> DataRights:
    """The contributions bound to ``app`` (default: the current app)."""
    return (app or current_app).extensions["engage.data_rights"]


def iso(value: datetime | None) -> str | None:
    """A UTC time as ISO 8601 for the download, or None."""
    return timestamp(value) if value is not None else None


# Download my data ---------------------------------------------------------------------------
def export_my_data(
    session: Session,
    user: User,
    now: datetime,
    *,
    rights: DataRights,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything Engage holds about ``user``, as one JSON document, and the request recorded
    (``DataRequest`` export, completed; audited).

    A fixed number of statements whatever the amount of data: each section reads its rows in
    one query per kind of row.
    """
    if user.deleted_at is not None:
        raise AccountAlreadyDeleted("This account has been deleted.")
    request = DataRequest(
        user_id=user.id,
        kind=DataRequestKind.EXPORT,
        status=DataRequestStatus.COMPLETED,
        requested_at=now,
        completed_at=now,
        outcome="The file was downloaded.",
    )
    session.add(request)
    audit.record(
        session,
        DataRightsAction.DATA_EXPORTED,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
    )
    session.flush()
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exported_at": iso(now),
        "controller": config.get("CONSENT_CONTROLLER"),
    }
    for section, exporter in ACCOUNT_SECTIONS.items():
        document[section] = exporter(session, user, now, config)
    for section, exporter in rights.exporters.items():
        document[section] = exporter(session, user, now, config)
    return document


def export_profile(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> dict[str, Any]:
    """The account itself, free text decrypted; never the password hash or 2FA secret."""
    registry = user.custodian_registry
    return {
        "account_id": user.id,
        "email": user.email,
        "email_confirmed_at": iso(user.email_verified_at),
        "new_email_waiting_for_confirmation": user.pending_email,
        "display_name": user.display_name,
        "role": user.role.label,
        "country": user.country,
        "language": user.language,
        "profession": user.profession,
        "institution": user.institution,
        "organisation_name": user.organisation_name,
        "professional_details_verified_at": iso(user.clinician_verified_at),
        "custodian_request": user.custodian_status.value if user.custodian_status else None,
        "custodian_registry": registry.name if registry is not None else None,
        "two_factor_sign_in_since": iso(user.totp_enabled_at),
        "is_active": user.is_active,
        "joined_at": iso(user.created_at),
        "last_sign_in_at": iso(user.last_sign_in_at),
    }


def export_enrolments(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The registries the person says they are enrolled in."""
    return [
        {"registry": registry.name, "code": registry.code, "country": registry.country}
        for registry in registry_queries.enrolled_registries(session, user.id)
    ]


def export_sessions(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Where and when the person was signed in (never the session keys)."""
    rows = session.scalars(
        sa.select(UserSession)
        .where(UserSession.user_id == user.id)
        .order_by(UserSession.created_at, UserSession.id)
    )
    return [
        {
            "signed_in_at": iso(row.created_at),
            "last_seen_at": iso(row.last_seen_at),
            "ended_at": iso(row.ended_at),
            "ended_because": row.ended_reason,
            "browser": row.user_agent,
            "address": row.ip_address,
            "kept_signed_in": row.remember,
        }
        for row in rows
    ]


def _emails_to(user: User) -> sa.ColumnElement[bool]:
    """The outbox rows addressed to ``user``: by account, at their address, or at an earlier
    address of theirs (notices of an address change name the account as ``uid``)."""
    return sa.or_(
        OutboxMessage.user_id == user.id,
        OutboxMessage.to_address == user.email,
        sa.and_(
            OutboxMessage.to_address.is_not(None),
            OutboxMessage.payload["uid"].as_integer() == user.id,
        ),
    )


def export_emails(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The emails queued for the person: what kind, where it stands and when (no bodies,
    links or tokens; newsletters are in their own section)."""
    rows = session.execute(
        sa.select(
            OutboxMessage.kind,
            OutboxMessage.status,
            OutboxMessage.created_at,
            OutboxMessage.sent_at,
        )
        .where(_emails_to(user))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    )
    return [
        {
            "kind": row.kind,
            "status": row.status.label,
            "queued_at": iso(row.created_at),
            "sent_at": iso(row.sent_at),
        }
        for row in rows
    ]


def export_data_requests(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The person's downloads and deletion requests, this one included."""
    rows = session.scalars(
        sa.select(DataRequest)
        .where(DataRequest.user_id == user.id)
        .order_by(DataRequest.requested_at, DataRequest.id)
    )
    return [
        {
            "kind": row.kind.label,
            "status": row.status.label,
            "requested_at": iso(row.requested_at),
            "completed_at": iso(row.completed_at),
            "outcome": row.outcome,
        }
        for row in rows
    ]


def export_security_events(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The security events recorded about the account (sign-ins, password changes, …)."""
    rows = session.execute(
        sa.select(AuditEvent.action, AuditEvent.occurred_at)
        .where(AuditEvent.subject_user_id == user.id)
        .order_by(AuditEvent.occurred_at, AuditEvent.id)
    )
    return [{"event": row.action, "at": iso(row.occurred_at)} for row in rows]


# The account's own sections, always first in the download.
ACCOUNT_SECTIONS: dict[str, Exporter] = {
    "profile": export_profile,
    "registry_enrolments": export_enrolments,
    "sessions": export_sessions,
    "emails": export_emails,
    "data_requests": export_data_requests,
    "security_events": export_security_events,
}


# Delete my account --------------------------------------------------------------------------
def deleted_email(user_id: int) -> str:
    """The address a deleted account keeps: unique, and never deliverable (RFC 2606)."""
    return f"deleted-{user_id}@deleted.invalid"


def delete_account(
    session: Session,
    user: User,
    now: datetime,
    *,
    rights: DataRights,
    config: Mapping[str, Any],
) -> DataRequest:
    """Erase ``user``'s identity in one transaction and return the completed request.

    The account row is locked first, so two deletions (a double click) queue and the second
    is refused. The request is recorded, every package's eraser runs, then the account is
    pseudonymised: it keeps its id (topics, comments, supports and ledgers refer to it) but
    no name, address, free text or way to sign in.

    :raises AccountAlreadyDeleted: the account was deleted already.
    """
    lock_rows(session, User, [user.id])
    session.refresh(user)
    if user.deleted_at is not None:
        raise AccountAlreadyDeleted("This account has already been deleted.")
    request = DataRequest(
        user_id=user.id,
        kind=DataRequestKind.ERASURE,
        status=DataRequestStatus.REQUESTED,
        requested_at=now,
        outcome="",
    )
    session.add(request)
    session.flush()
    done = []
    for _name, eraser in rights.erasers:
        sentence = eraser(session, user, now, config)
        if sentence:
            done.append(sentence)
    done.append(_erase_account(session, user, now))
    request.status = DataRequestStatus.COMPLETED
    request.completed_at = now
    request.outcome = _outcome(done)
    audit.record(
        session,
        DataRightsAction.ACCOUNT_DELETED,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
        target=f"data_request:{request.id}",
    )
    session.flush()
    return request


def _outcome(sentences: list[str]) -> str:
    text = " ".join(sentences)
    if len(text) <= OUTCOME_MAX_LENGTH:
        return text
    return text[: OUTCOME_MAX_LENGTH - 1].rstrip() + "…"


def _erase_account(session: Session, user: User, now: datetime) -> str:
    """Cancel the person's queued emails, end their sessions and recovery codes, and
    pseudonymise the account row (the last step: erasers before it read the address)."""
    cancelled = session.execute(
        sa.update(OutboxMessage)
        .where(_emails_to(user), OutboxMessage.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.CANCELLED, last_error="the account was deleted")
        .execution_options(synchronize_session=False)
    ).rowcount
    # Sent emails stay as a record (kind, status, dates); the addresses go.
    session.execute(
        sa.update(OutboxMessage)
        .where(
            _emails_to(user),
            OutboxMessage.to_address.is_not(None),
            OutboxMessage.status.in_(
                [OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.CANCELLED]
            ),
        )
        .values(to_address=None)
        .execution_options(synchronize_session=False)
    )
    ended = sessions.end_all(session, user.id, now, sessions.EndReason.ACCOUNT_DELETED)
    # The ended rows stay until the retention job removes them, without browser or address.
    session.execute(
        sa.update(UserSession)
        .where(UserSession.user_id == user.id)
        .values(user_agent="", ip_address="")
        .execution_options(synchronize_session=False)
    )
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))

    user.email = deleted_email(user.id)
    user.pending_email = None
    user.display_name = DELETED_NAME
    # Nobody knows this password, and the address cannot receive a reset link.
    user.password_hash = hash_password(secrets.token_urlsafe(32))
    user.profession = None
    user.institution = None
    user.organisation_name = None
    user.country = DELETED_COUNTRY
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_counter = None
    user.is_active = False
    user.session_version += 1
    user.deleted_at = now
    return (
        f"Account: name, address, profile and password erased; {ended} session(s) ended; "
        f"{cancelled} queued email(s) cancelled."
    )


# Staff: the list of requests ------------------------------------------------------------------
@dataclass(frozen=True)
class DataRequestRow:
    """One request as staff see it, with the account's current (perhaps pseudonymised) email."""

    request: DataRequest
    email: str


@dataclass
class DataRequestPage:
    """One page of data-rights requests, newest first."""

    rows: list[DataRequestRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages there are (at least one)."""
        return max(1, -(-self.total // self.per_page))


def data_request_page(
    session: Session,
    *,
    kind: DataRequestKind | None = None,
    status: DataRequestStatus | None = None,
    page: int = 1,
    per_page: int = 25,
) -> DataRequestPage:
    """Requests of ``kind`` and ``status`` (any when None), newest first (two statements)."""
    conditions = []
    if kind is not None:
        conditions.append(DataRequest.kind == kind)
    if status is not None:
        conditions.append(DataRequest.status == status)
    total = session.scalar(sa.select(sa.func.count()).select_from(DataRequest).where(*conditions))
    page = max(1, page)
    rows = session.execute(
        sa.select(DataRequest, User.email)
        .join(User, User.id == DataRequest.user_id)
        .where(*conditions)
        .order_by(DataRequest.requested_at.desc(), DataRequest.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return DataRequestPage(
        rows=[DataRequestRow(request=request, email=email) for request, email in rows],
        total=total or 0,
        page=page,
        per_page=per_page,
    )
