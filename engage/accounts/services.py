"""What accounts do: sign-up, verification, sign-in, passwords, profiles, accounts made from
the command line. Staff decisions and account lists are in :mod:`engage.accounts.staff_services`.

Functions take the session, the acting person and ``now`` explicitly and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts import sessions as user_sessions
from engage.accounts.models import CustodianStatus, RecoveryCode, Role, User
from engage.audit import AuditAction
from engage.db import lock_rows
from engage.names import clean_name
from engage.registries import queries as registry_queries
from engage.registries import services as registry_services
from engage.registries.models import Registry
from engage.security import (
    fingerprint,
    hash_password,
    password_problem,
    verify_password,
)
from engage.signals import registry_enrolments_changed


class AccountError(Exception):
    """Base of the account domain errors; the message is safe to show."""


class WeakPassword(AccountError):
    """The new password is too weak (the message says why)."""


class WrongPassword(AccountError):
    """The current password given does not match."""


class InvalidLink(AccountError):
    """A verification or reset link no longer applies to the account."""


class NotAllowed(AccountError):
    """The actor may not do this to this account."""


class InvalidDecision(AccountError):
    """The decision does not fit the account's current state."""


class UnknownRegistry(AccountError):
    """The registry does not exist or is retired."""


class InvalidName(AccountError):
    """A display name holds line breaks, control or invisible formatting characters."""


def clean_display_name(display_name: str) -> str:
    """``display_name`` trimmed with inner spaces collapsed, or ``InvalidName`` (see
    :mod:`engage.names`). Every way an account gets a name passes through here."""
    try:
        return clean_name(display_name)
    except ValueError as exc:
        raise InvalidName(str(exc)) from None


def normalise_email(email: str) -> str:
    """Lower-case and strip an email address (addresses are compared this way)."""
    return email.strip().lower()


def find_user_by_email(session: Session, email: str) -> User | None:
    """Return the account with ``email`` (case-insensitive), if any."""
    return session.scalar(sa.select(User).where(User.email == normalise_email(email)))


@dataclass
class SignUpDetails:
    """What a person types when signing up."""

    role: Role
    display_name: str
    email: str
    password: str
    country: str
    language: str
    profession: str | None = None
    institution: str | None = None
    organisation_name: str | None = None
    registry_id: int | None = None


@dataclass
class SignUpOutcome:
    """The new account, or the existing owner of the address (who gets a different email)."""

    user: User
    created: bool
    # For an existing account: whether the password typed is the account's (the same person
    # signing up again, rather than someone else trying the address).
    same_password: bool = False


def active_registry(session: Session, registry_id: int | None) -> Registry:
    """Return the active registry ``registry_id`` or raise ``UnknownRegistry``."""
    registry = registry_queries.active_registry(session, registry_id)
    if registry is None:
        raise UnknownRegistry("Choose one of the network's registries.")
    return registry


def sign_up(session: Session, details: SignUpDetails, now: datetime) -> SignUpOutcome:
    """Create an unverified account, or report the existing owner of the address.

    Each path does one argon2 computation (hashing the new password, or checking it against
    the existing account's), so their timing does not reveal which one ran.
    """
    if details.role == Role.STAFF:
        raise NotAllowed("Staff accounts are created by the coordination centre.")
    display_name = clean_display_name(details.display_name)
    problem = password_problem(details.password, details.email, details.display_name)
    if problem:
        raise WeakPassword(problem)
    email = normalise_email(details.email)
    existing = find_user_by_email(session, email)
    if existing is not None:
        same = verify_password(existing.password_hash, details.password)
        return SignUpOutcome(user=existing, created=False, same_password=same)
    password_hash = hash_password(details.password)
    user = User(
        email=email,
        display_name=display_name,
        password_hash=password_hash,
        role=details.role,
        country=details.country,
        language=details.language,
        created_at=now,
    )
    if details.role == Role.CLINICIAN:
        user.profession = (details.profession or "").strip() or None
        user.institution = (details.institution or "").strip() or None
    elif details.role == Role.ORGANISATION:
        user.organisation_name = (details.organisation_name or "").strip() or None
    elif details.role == Role.CUSTODIAN:
        user.custodian_registry_id = active_registry(session, details.registry_id).id
        user.custodian_status = CustodianStatus.PENDING
    session.add(user)
    session.flush()
    audit.record(
        session,
        AuditAction.SIGN_UP,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
        role=user.role.value,
    )
    return SignUpOutcome(user=user, created=True)


# Email verification ----------------------------------------------------------------------
def verification_payload(user: User) -> dict[str, object]:
    """What a verification link carries: the account and the address it confirms."""
    return {"uid": user.id, "email": fingerprint(user.email)}


def user_to_verify(session: Session, payload: dict[str, object]) -> User:
    """The unconfirmed account a verification link is for, or ``InvalidLink``. Changes nothing:
    opening the link (a mail scanner may) only shows the page that asks for the password."""
    uid = payload.get("uid")
    user = session.get(User, uid) if isinstance(uid, int) else None
    if user is None or not user.is_active or payload.get("email") != fingerprint(user.email):
        raise InvalidLink("This link is not valid.")
    if user.email_verified_at is not None:
        raise InvalidLink(
            "This link has already been used: your email address is confirmed, so you can sign in."
        )
    return user


def verify_email(
    session: Session, payload: dict[str, object], password: str, now: datetime
) -> User:
    """Confirm the address in a verification link, given the account's password; the link
    works once. The caller then signs the person in (this records the sign-in).

    The password proves the address's owner chose the account: someone who signed up with
    another person's address cannot have that person confirm it for them by opening the link.

    :raises WrongPassword: the password is not the account's (nothing changes).
    """
    user = user_to_verify(session, payload)
    if not verify_password(user.password_hash, password):
        raise WrongPassword(
            "That is not this account's password. If you don't know it, set a new password."
        )
    user.email_verified_at = now
    audit.record(
        session, AuditAction.EMAIL_VERIFIED, now=now, actor_id=user.id, subject_user_id=user.id
    )
    return user


# Sign-in ---------------------------------------------------------------------------------
def authenticate(session: Session, email: str, password: str, now: datetime) -> User | None:
    """Return the account if ``email`` and ``password`` match an active account, else None.

    Every failure is audited (never saying whether the address has an account); the sign-in
    itself is recorded by :func:`record_sign_in` once every step (the code, when two-step
    sign-in is on) has passed.
    """
    user = find_user_by_email(session, email)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.is_active:
        audit.record(
            session,
            AuditAction.SIGN_IN_FAILED,
            now=now,
            subject_user_id=user.id if user else None,
            reason="inactive" if (user and ok) else "bad_credentials",
        )
        return None
    return user


def record_sign_in(session: Session, user: User, now: datetime) -> None:
    """``user`` is signed in on a browser: every step passed (called by ``finish_sign_in``)."""
    user.last_sign_in_at = now
    audit.record(session, AuditAction.SIGN_IN, now=now, actor_id=user.id, subject_user_id=user.id)


def record_sign_out(session: Session, user: User, now: datetime) -> None:
    """Audit a sign-out."""
    audit.record(session, AuditAction.SIGN_OUT, now=now, actor_id=user.id, subject_user_id=user.id)


# Passwords -------------------------------------------------------------------------------
def _set_password(user: User, new_password: str) -> None:
    problem = password_problem(new_password, user.email, user.display_name)
    if problem:
        raise WeakPassword(problem)
    user.password_hash = hash_password(new_password)
    # Sessions end in the callers below (engage.accounts.sessions); the version still counts
    # password changes, which the password-changed email's deduplication key relies on.
    user.session_version += 1


def change_password(
    session: Session,
    user: User,
    current_password: str,
    new_password: str,
    now: datetime,
    *,
    keep_session_id: int | None = None,
) -> None:
    """Change ``user``'s password after checking the current one; ends every other session.

    :param keep_session_id: the session the change was made from, which stays signed in.
    """
    if not verify_password(user.password_hash, current_password):
        raise WrongPassword("Your current password is not right.")
    _set_password(user, new_password)
    user_sessions.end_all(
        session, user.id, now, user_sessions.EndReason.PASSWORD_CHANGED, keep_id=keep_session_id
    )
    audit.record(
        session, AuditAction.PASSWORD_CHANGED, now=now, actor_id=user.id, subject_user_id=user.id
    )


def reset_payload(user: User) -> dict[str, object]:
    """What a reset link carries; it stops working once the password changes (single use) or
    the account's address changes (it was sent to the old one)."""
    return {
        "uid": user.id,
        "pw": fingerprint(user.password_hash),
        "email": fingerprint(user.email),
    }


def request_password_reset(session: Session, email: str, now: datetime) -> User | None:
    """Return the active account to email a reset link to, or None (the caller says the same)."""
    user = find_user_by_email(session, email)
    if user is None or not user.is_active:
        return None
    audit.record(session, AuditAction.PASSWORD_RESET_REQUESTED, now=now, subject_user_id=user.id)
    return user


def user_for_reset(session: Session, payload: dict[str, object]) -> User:
    """Return the account a reset link is for, or raise ``InvalidLink`` if it was used."""
    uid = payload.get("uid")
    user = session.get(User, uid) if isinstance(uid, int) else None
    if (
        user is None
        or not user.is_active
        or payload.get("pw") != fingerprint(user.password_hash)
        or payload.get("email") != fingerprint(user.email)
    ):
        raise InvalidLink("This link has already been used or is no longer valid.")
    return user


def reset_password(
    session: Session, payload: dict[str, object], new_password: str, now: datetime
) -> User:
    """Set a new password from a reset link; a reset link also proves the address. Every
    session of the account ends (whoever knew the old password is signed out)."""
    user = user_for_reset(session, payload)
    _set_password(user, new_password)
    user_sessions.end_all(session, user.id, now, user_sessions.EndReason.PASSWORD_RESET)
    if user.email_verified_at is None:
        user.email_verified_at = now
        # Whoever started an unconfirmed account may not own its address: what they set up to
        # gate sign-in (an authenticator, recovery codes) or a new address must not bind the
        # owner, who takes the account over here.
        user.totp_secret = user.totp_enabled_at = user.totp_last_counter = None
        user.pending_email = None
        session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record(
        session, AuditAction.PASSWORD_RESET, now=now, actor_id=user.id, subject_user_id=user.id
    )
    return user


# Profile ---------------------------------------------------------------------------------
@dataclass
class ProfileDetails:
    """The fields a person may edit about themselves."""

    display_name: str
    country: str
    language: str
    profession: str | None = None
    institution: str | None = None
    organisation_name: str | None = None


def update_profile(session: Session, user: User, details: ProfileDetails, now: datetime) -> None:
    """Save ``user``'s own profile; role-specific fields only for that role."""
    user.display_name = clean_display_name(details.display_name)
    user.country = details.country
    user.language = details.language
    if user.role == Role.CLINICIAN:
        changed_claim = (user.profession, user.institution) != (
            details.profession,
            details.institution,
        )
        user.profession = (details.profession or "").strip() or None
        user.institution = (details.institution or "").strip() or None
        if changed_claim and user.clinician_verified_at is not None:
            # A changed professional claim must be checked again.
            user.clinician_verified_at = None
            audit.record(
                session,
                AuditAction.CLINICIAN_UNVERIFIED,
                now=now,
                actor_id=user.id,
                subject_user_id=user.id,
                reason="professional details changed",
            )
    if user.role == Role.ORGANISATION:
        user.organisation_name = (details.organisation_name or "").strip() or None
    audit.record(
        session, AuditAction.PROFILE_UPDATED, now=now, actor_id=user.id, subject_user_id=user.id
    )


def set_enrolments(session: Session, user: User, registry_ids: set[int], now: datetime) -> None:
    """Record exactly ``registry_ids`` as the participant's registries.

    The person's row is locked first, so their concurrent saves (a double click, two tabs)
    queue: each reads the enrolments the one before left, and none inserts a duplicate.
    """
    if user.role != Role.PARTICIPANT:
        raise NotAllowed("Only people with MS record registry enrolments.")
    lock_rows(session, User, [user.id])
    if registry_ids and registry_queries.active_registry_ids(session, registry_ids) != registry_ids:
        raise UnknownRegistry("Choose only registries of the network.")
    if registry_services.replace_enrolments(session, user.id, registry_ids, now):
        registry_enrolments_changed.send("engage.accounts", session=session, user_id=user.id)


def create_user_by_cli(
    session: Session,
    *,
    email: str,
    password: str,
    role: Role,
    display_name: str,
    country: str,
    language: str,
    now: datetime,
) -> User:
    """Create a verified account from the command line (staff and demo accounts)."""
    email = normalise_email(email)
    if find_user_by_email(session, email) is not None:
        raise InvalidDecision(f"An account with {email} already exists.")
    display_name = clean_display_name(display_name)
    problem = password_problem(password, email, display_name)
    if problem:
        raise WeakPassword(problem)
    user = User(
        email=email,
        display_name=display_name,
        password_hash=hash_password(password),
        role=role,
        country=country,
        language=language,
        created_at=now,
        email_verified_at=now,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        AuditAction.ACCOUNT_CREATED_BY_CLI,
        now=now,
        subject_user_id=user.id,
        role=role.value,
    )
    return user
