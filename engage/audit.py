"""The append-only audit log of security events.

Rows are only ever inserted: an ORM guard refuses updates and deletes. Details never hold
passwords, tokens or health information.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from engage.db import Base, UTCDateTime


class AuditAction(enum.StrEnum):
    """Security events worth keeping."""

    SIGN_UP = "sign_up"
    EMAIL_VERIFIED = "email_verified"
    EMAIL_CHANGE_REQUESTED = "email_change_requested"
    EMAIL_CHANGE_CANCELLED = "email_change_cancelled"
    EMAIL_CHANGED = "email_changed"
    SIGN_IN = "sign_in"
    SIGN_IN_FAILED = "sign_in_failed"
    SIGN_OUT = "sign_out"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    PASSWORD_RESET_REQUESTED = "password_reset_requested"  # noqa: S105
    PASSWORD_RESET = "password_reset"  # noqa: S105
    PROFILE_UPDATED = "profile_updated"
    ROLE_CHANGED = "role_changed"
    CLINICIAN_VERIFIED = "clinician_verified"
    CLINICIAN_UNVERIFIED = "clinician_unverified"
    CUSTODIAN_APPROVED = "custodian_approved"
    CUSTODIAN_DECLINED = "custodian_declined"
    ACCOUNT_ACTIVATED = "account_activated"
    ACCOUNT_DEACTIVATED = "account_deactivated"
    ACCOUNT_CREATED_BY_CLI = "account_created_by_cli"
    UNVERIFIED_ACCOUNT_REMOVED = "unverified_account_removed"
    REGISTRY_CREATED = "registry_created"
    REGISTRY_UPDATED = "registry_updated"


# The longest action value the column holds.
ACTION_MAX_LENGTH = 40


class AuditEvent(Base):
    """One security event. Ids are plain integers so removing an account keeps its history."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    action: Mapped[str] = mapped_column(sa.String(ACTION_MAX_LENGTH), index=True)
    # Who acted (None for the system or an unknown visitor).
    actor_id: Mapped[int | None] = mapped_column(index=True)
    # Whose account the event concerns.
    subject_user_id: Mapped[int | None] = mapped_column(index=True)
    # What else concerns it, e.g. "registry:3".
    target: Mapped[str | None] = mapped_column(sa.String(80))
    # Small JSON object of non-sensitive facts (old and new role, reason given by staff).
    details: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)


class AuditLogIsAppendOnly(RuntimeError):
    """Something tried to change or delete an audit event."""


def record(
    session: Session,
    action: enum.StrEnum,
    *,
    now: datetime,
    actor_id: int | None = None,
    subject_user_id: int | None = None,
    target: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Append one audit event to ``session`` (the caller commits).

    :param action: a member of :class:`AuditAction` or of any package's own action enum
        (e.g. governance's), stored by its value, at most 40 characters.
    """
    if len(action.value) > ACTION_MAX_LENGTH:
        raise ValueError(f"audit action {action.value!r} is longer than {ACTION_MAX_LENGTH}")
    audit_event = AuditEvent(
        occurred_at=now,
        action=action.value,
        actor_id=actor_id,
        subject_user_id=subject_user_id,
        target=target,
        details=details,
    )
    session.add(audit_event)
    return audit_event


def events_about(session: Session, user_id: int, limit: int = 20) -> list[AuditEvent]:
    """The latest ``limit`` events concerning account ``user_id``, newest first."""
    return list(
        session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.subject_user_id == user_id)
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
            .limit(limit)
        )
    )


def recent_events(session: Session, *, page: int, per_page: int) -> tuple[list[AuditEvent], bool]:
    """One page of events, newest first, and whether an older page follows."""
    found = find_events(session, EventFilter(), page=page, per_page=per_page, count=False)
    return found.events, found.has_next


def action_label(action: str) -> str:
    """A plain-language name of an event type, for people reading the log.

    An action enum member may carry its own ``label``; otherwise the stored value is spelt out
    ("sign_in_failed" → "Sign in failed").
    """
    words = [_SPELT_OUT.get(word, word) for word in action.split("_") if word]
    text = " ".join(words)
    return (text[:1].upper() + text[1:]) or action


# Words of action values that read better spelt differently.
_SPELT_OUT = {"api": "API", "cli": "command line"}


def known_actions(*enums: type[enum.StrEnum]) -> dict[str, str]:
    """Every action of :class:`AuditAction` and of ``enums`` (other packages' action enums),
    value → label, ordered by label."""
    labels = {
        member.value: str(getattr(member, "label", "") or action_label(member.value))
        for enum_type in (AuditAction, *enums)
        for member in enum_type
    }
    return dict(sorted(labels.items(), key=lambda item: item[1].casefold()))


@dataclass(frozen=True)
class EventFilter:
    """Which events to list; None leaves a criterion out."""

    action: str | None = None
    # Events by (actor) or about (subject) this account.
    account_id: int | None = None
    # Occurred at or after this moment.
    occurred_from: datetime | None = None
    # Occurred strictly before this moment.
    occurred_before: datetime | None = None
    # Text the event's ``target`` contains (case-insensitive; % and _ match themselves).
    target_contains: str | None = None

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        """The SQL conditions of the criteria that are set."""
        where: list[sa.ColumnElement[bool]] = []
        if self.action is not None:
            where.append(AuditEvent.action == self.action)
        if self.account_id is not None:
            where.append(
                sa.or_(
                    AuditEvent.actor_id == self.account_id,
                    AuditEvent.subject_user_id == self.account_id,
                )
            )
        if self.occurred_from is not None:
            where.append(AuditEvent.occurred_at >= self.occurred_from)
        if self.occurred_before is not None:
            where.append(AuditEvent.occurred_at < self.occurred_before)
        if self.target_contains:
            pattern = "%" + _escape_like(self.target_contains.lower()) + "%"
            where.append(sa.func.lower(AuditEvent.target).like(pattern, escape="\\"))
        return where


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class EventPage:
    """One page of matching events, newest first."""

    events: list[AuditEvent]
    # How many events match in all (None when not counted).
    total: int | None
    has_next: bool


def find_events(
    session: Session, criteria: EventFilter, *, page: int, per_page: int, count: bool = True
) -> EventPage:
    """The ``page``-th page of events matching ``criteria``, newest first: two statements (the
    page and, when ``count``, the number of matches), whatever the page size."""
    where = criteria.conditions()
    rows = list(
        session.scalars(
            sa.select(AuditEvent)
            .where(*where)
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
            .limit(per_page + 1)
            .offset((page - 1) * per_page)
        )
    )
    total = (
        session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(*where))
        if count
        else None
    )
    return EventPage(events=rows[:per_page], total=total, has_next=len(rows) > per_page)


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, _context: Any, _instances: Any) -> None:
    """Keep the audit log append-only at the ORM level."""
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEvent) and (obj in session.deleted or session.is_modified(obj)):
            raise AuditLogIsAppendOnly("audit events are append-only")
