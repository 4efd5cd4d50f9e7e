"""What staff do to accounts: verify clinicians, decide custodian requests, change roles,
deactivate; account lists and housekeeping.

Functions take the session, the acting person and ``now`` explicitly and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts import sessions as user_sessions
from engage.accounts.models import CustodianStatus, Role, User
from engage.accounts.services import (
    InvalidDecision,
    NotAllowed,
    active_registry,
)
from engage.audit import AuditAction


# Staff decisions ---------------------------------------------------------------------------
def _require_staff(actor: User) -> None:
    if not actor.is_staff:
        raise NotAllowed("Only coordination-centre staff can do this.")


def set_clinician_verified(
    session: Session, actor: User, user: User, verified: bool, now: datetime
) -> None:
    """Confirm (or withdraw confirmation of) a clinician's professional claim."""
    _require_staff(actor)
    if user.role != Role.CLINICIAN:
        raise InvalidDecision("Only healthcare professionals have a professional claim to verify.")
    if verified == (user.clinician_verified_at is not None):
        return
    user.clinician_verified_at = now if verified else None
    action = AuditAction.CLINICIAN_VERIFIED if verified else AuditAction.CLINICIAN_UNVERIFIED
    audit.record(session, action, now=now, actor_id=actor.id, subject_user_id=user.id)


def decide_custodian_request(
    session: Session,
    actor: User,
    user: User,
    *,
    approve: bool,
    registry_id: int | None,
    reason: str | None,
    now: datetime,
) -> None:
    """Approve a custodian request and bind it to a registry, or decline it with a reason."""
    _require_staff(actor)
    if user.role != Role.CUSTODIAN or user.custodian_status != CustodianStatus.PENDING:
        raise InvalidDecision("This account has no pending custodian request.")
    if approve:
        registry = active_registry(session, registry_id or user.custodian_registry_id)
        user.custodian_registry_id = registry.id
        user.custodian_status = CustodianStatus.APPROVED
        audit.record(
            session,
            AuditAction.CUSTODIAN_APPROVED,
            now=now,
            actor_id=actor.id,
            subject_user_id=user.id,
            target=f"registry:{registry.id}",
        )
    else:
        if not reason or not reason.strip():
            raise InvalidDecision("Give a reason when declining a request.")
        user.custodian_status = CustodianStatus.DECLINED
        audit.record(
            session,
            AuditAction.CUSTODIAN_DECLINED,
            now=now,
            actor_id=actor.id,
            subject_user_id=user.id,
            reason=reason.strip()[:500],
        )


def change_role(session: Session, actor: User, user: User, role: Role, now: datetime) -> None:
    """Move an account to another role; custodian rights only come through a request."""
    _require_staff(actor)
    if role == Role.CUSTODIAN:
        raise InvalidDecision("Custodian rights are granted by approving a custodian request.")
    if user.id == actor.id:
        raise NotAllowed("You cannot change your own role.")
    if user.role == role:
        return
    old = user.role
    user.role = role
    user.clinician_verified_at = None
    if old == Role.CUSTODIAN:
        user.custodian_status = None
        user.custodian_registry_id = None
    audit.record(
        session,
        AuditAction.ROLE_CHANGED,
        now=now,
        actor_id=actor.id,
        subject_user_id=user.id,
        old=old.value,
        new=role.value,
    )


def set_active(session: Session, actor: User, user: User, active: bool, now: datetime) -> None:
    """Deactivate (no sign-in, sessions end) or reactivate an account."""
    _require_staff(actor)
    if user.id == actor.id:
        raise NotAllowed("You cannot deactivate your own account.")
    if active and user.deleted_at is not None:
        raise InvalidDecision("Its owner deleted this account, so it cannot be reactivated.")
    if user.is_active == active:
        return
    user.is_active = active
    if not active:
        user_sessions.end_all(session, user.id, now, user_sessions.EndReason.DEACTIVATED)
    action = AuditAction.ACCOUNT_ACTIVATED if active else AuditAction.ACCOUNT_DEACTIVATED
    audit.record(session, action, now=now, actor_id=actor.id, subject_user_id=user.id)


# Lists and housekeeping --------------------------------------------------------------------
@dataclass
class UserPage:
    """One page of a user search."""

    users: list[User]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages the search has (at least one)."""
        return max(1, -(-self.total // self.per_page))


def search_users(
    session: Session,
    *,
    text: str = "",
    role: Role | None = None,
    pending_only: bool = False,
    page: int = 1,
    per_page: int = 25,
) -> UserPage:
    """Find accounts by name or email fragment, role, or pending staff decisions."""
    query = sa.select(User)
    if text:
        pattern = (
            "%"
            + text.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            + "%"
        )
        query = query.where(
            sa.or_(
                User.email.like(pattern, escape="\\"),
                sa.func.lower(User.display_name).like(pattern, escape="\\"),
            )
        )
    if role is not None:
        query = query.where(User.role == role)
    if pending_only:
        query = query.where(
            sa.or_(
                User.custodian_status == CustodianStatus.PENDING,
                sa.and_(User.role == Role.CLINICIAN, User.clinician_verified_at.is_(None)),
            )
        )
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    page = max(1, page)
    users = list(
        session.scalars(
            query.order_by(User.created_at.desc(), User.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    return UserPage(users=users, total=total, page=page, per_page=per_page)


def remove_unverified_accounts(session: Session, now: datetime, retention_days: int) -> int:
    """Delete sign-ups never verified within ``retention_days``; return how many."""
    cutoff = now - timedelta(days=retention_days)
    stale = list(
        session.scalars(
            # A deleted account's row stays for its data-rights requests (and any tallies).
            sa.select(User).where(
                User.email_verified_at.is_(None),
                User.created_at < cutoff,
                User.deleted_at.is_(None),
            )
        )
    )
    for user in stale:
        audit.record(
            session, AuditAction.UNVERIFIED_ACCOUNT_REMOVED, now=now, subject_user_id=user.id
        )
        session.delete(user)
    return len(stale)
