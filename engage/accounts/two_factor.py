"""Two-factor sign-in: authenticator codes (TOTP) and one-time recovery codes.

Codes are what authenticator apps expect (RFC 6238: SHA-1, 6 digits, 30-second steps); one step
either side of now is accepted, for clocks that drift. A code is never accepted twice: the
time-step counter of the last accepted code is kept (``users.totp_last_counter``) and only a
later counter is accepted, decided while the person's row is locked, so two requests carrying
one code at the same moment accept it once. Recovery codes are random (50 bits each), shown
once and stored as SHA-256 hashes; each signs in once.

Plain functions over an explicit session, actor and time; they never commit.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts.models import RecoveryCode, Role, User
from engage.db import lock_rows

DIGITS = 6
STEP_SECONDS = 30
# Steps either side of now that are accepted (pyotp's ``valid_window``).
VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
# Base32 without look-alikes' trouble: lower-case letters and 2-7, 5 bits a character.
RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
RECOVERY_CODE_LENGTH = 10  # 50 bits, shown as xxxxx-xxxxx
# Roles whose accounts must use two-factor sign-in: they see and decide on others' data.
REQUIRED_FOR_ROLES = frozenset({Role.STAFF, Role.CUSTODIAN})


class TwoFactorAction(enum.StrEnum):
    """Audit events of two-factor sign-in (never with a code or secret in the details)."""

    ENABLED = "two_factor_enabled"
    DISABLED = "two_factor_disabled"
    RECOVERY_CODES_CREATED = "recovery_codes_created"
    RECOVERY_CODE_USED = "recovery_code_used"
    CODE_REFUSED = "two_factor_code_refused"
    RESET_BY_OPERATOR = "two_factor_reset_by_operator"


class TwoFactorError(Exception):
    """A two-factor step that cannot be done; the message is for the person."""


class WrongCode(TwoFactorError):
    """The code is not the authenticator's code for now, or it was used already."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "That code is not right or was already used. Wait for a new code in your "
            "authenticator app and enter it."
        )


class WrongRecoveryCode(TwoFactorError):
    """The recovery code is not one of the person's unused codes."""

    def __init__(self) -> None:
        super().__init__("That recovery code is not right or was already used.")


class NotEnrolled(TwoFactorError):
    """The step needs two-factor sign-in to be set up (or not yet confirmed)."""

    def __init__(self) -> None:
        super().__init__("Two-step sign-in is not set up for this account.")


class AlreadyEnabled(TwoFactorError):
    """Two-factor sign-in is on already."""

    def __init__(self) -> None:
        super().__init__("Two-step sign-in is already on for this account.")


class RequiredForRole(TwoFactorError):
    """Two-factor sign-in cannot be turned off for this role."""

    def __init__(self, role: Role) -> None:
        super().__init__(
            f"Two-step sign-in is required for {role.label.lower()} accounts, so it cannot be "
            "turned off."
        )


# Who needs it ------------------------------------------------------------------------------
def is_required(user: User) -> bool:
    """Whether ``user``'s role must use two-factor sign-in."""
    return user.role in REQUIRED_FOR_ROLES


def is_enabled(user: User) -> bool:
    """Whether ``user`` confirmed an authenticator (codes are asked at sign-in)."""
    return user.totp_enabled_at is not None and user.totp_secret is not None


# Enrolment ---------------------------------------------------------------------------------
def begin_enrolment(user: User) -> str:
    """Give ``user`` a new authenticator secret, or keep the one not yet confirmed; return it.

    Keeping an unconfirmed secret means reloading the set-up page shows the same QR code, so an
    app that scanned it already still works. Raises ``AlreadyEnabled`` when it is on.
    """
    if is_enabled(user):
        raise AlreadyEnabled()
    if user.totp_secret is None:
        user.totp_secret = pyotp.random_base32()
        user.totp_last_counter = None
    return user.totp_secret


def provisioning_uri(user: User, issuer: str) -> str:
    """The ``otpauth://`` address an authenticator app reads from the QR code."""
    if user.totp_secret is None:
        raise NotEnrolled()
    return _totp(user.totp_secret).provisioning_uri(name=user.email, issuer_name=issuer)


def qr_code_svg(uri: str) -> str:
    """``uri`` as an inline SVG QR code (no style attributes: the CSP forbids inline styles)."""
    qr = segno.make(uri, error="m")
    return qr.svg_inline(scale=4, border=4, dark="#000", light="#fff", omitsize=False)


def grouped_secret(secret: str) -> str:
    """The secret in groups of four characters, easier to type into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def confirm_enrolment(session: Session, user: User, code: str, now: datetime) -> list[str]:
    """Turn two-factor sign-in on once ``code`` proves the app has the secret.

    Returns the new recovery codes (in clear, to show once). Raises ``WrongCode``,
    ``NotEnrolled`` (no secret) or ``AlreadyEnabled``.
    """
    _lock(session, user)
    if is_enabled(user):
        raise AlreadyEnabled()
    if user.totp_secret is None:
        raise NotEnrolled()
    _accept_code(user, code, now)
    user.totp_enabled_at = now
    audit.record(
        session, TwoFactorAction.ENABLED, now=now, actor_id=user.id, subject_user_id=user.id
    )
    return replace_recovery_codes(session, user, now)


def disable(session: Session, user: User, now: datetime) -> None:
    """Turn two-factor sign-in off: forget the secret and the recovery codes.

    Raises ``RequiredForRole`` for roles that must use it and ``NotEnrolled`` when it is off.
    """
    _lock(session, user)
    if is_required(user):
        raise RequiredForRole(user.role)
    if not is_enabled(user):
        raise NotEnrolled()
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_counter = None
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record(
        session, TwoFactorAction.DISABLED, now=now, actor_id=user.id, subject_user_id=user.id
    )


def reset_by_operator(session: Session, user: User, now: datetime) -> None:
    """An operator clears a lost authenticator (``engage users reset-two-factor``), whatever the
    role: the secret and recovery codes are forgotten and every session ends, so the owner
    signs in with their password and, where the role requires it, enrols a new authenticator
    before being signed in."""
    _lock(session, user)
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_counter = None
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record(
        session,
        TwoFactorAction.RESET_BY_OPERATOR,
        now=now,
        actor_id=None,
        subject_user_id=user.id,
    )


# Codes -------------------------------------------------------------------------------------
def verify_code(session: Session, user: User, code: str, now: datetime) -> None:
    """Accept ``code`` from ``user``'s authenticator once, or raise ``WrongCode``.

    The row lock makes the check and the new counter one step: of two requests with the same
    code, the second waits, then sees the counter the first stored and is refused.
    """
    _lock(session, user)
    if not is_enabled(user):
        raise NotEnrolled()
    _accept_code(user, code, now)


def record_refused_code(session: Session, user: User, now: datetime, *, kind: str) -> None:
    """Audit a refused code (``kind``: "authenticator" or "recovery"), never the code."""
    audit.record(
        session,
        TwoFactorAction.CODE_REFUSED,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
        kind=kind,
    )


def current_counter(now: datetime) -> int:
    """The TOTP time-step counter at ``now``."""
    return int(now.timestamp()) // STEP_SECONDS


def code_at(secret: str, counter: int) -> str:
    """The code an authenticator with ``secret`` shows during time step ``counter``."""
    return _totp(secret).generate_otp(counter)


def _accept_code(user: User, code: str, now: datetime) -> None:
    """Check ``code`` against the steps around ``now`` and move the counter past it."""
    typed = "".join((code or "").split())
    if len(typed) != DIGITS or not typed.isdigit() or user.totp_secret is None:
        raise WrongCode("Enter the 6-digit code from your authenticator app.")
    now_counter = current_counter(now)
    last = user.totp_last_counter if user.totp_last_counter is not None else -1
    for counter in range(now_counter - VALID_WINDOW, now_counter + VALID_WINDOW + 1):
        if hmac.compare_digest(code_at(user.totp_secret, counter), typed):
            if counter <= last:
                break  # a replay, or an older code after a newer one was used
            user.totp_last_counter = counter
            return
    raise WrongCode()


# Recovery codes ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RecoveryOutcome:
    """A recovery code was used: how many unused ones are left."""

    remaining: int


def replace_recovery_codes(session: Session, user: User, now: datetime) -> list[str]:
    """Make ``user`` a new set of recovery codes (the old ones stop working); return them.

    Only their hashes are stored: the codes are shown once and cannot be shown again.
    """
    if not is_enabled(user):
        raise NotEnrolled()
    session.execute(sa.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    session.add_all(
        RecoveryCode(user_id=user.id, code_hash=recovery_code_hash(code), created_at=now)
        for code in codes
    )
    audit.record(
        session,
        TwoFactorAction.RECOVERY_CODES_CREATED,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
        count=len(codes),
    )
    return codes


def use_recovery_code(session: Session, user: User, code: str, now: datetime) -> RecoveryOutcome:
    """Spend one of ``user``'s recovery codes, or raise ``WrongRecoveryCode``.

    Under the row lock, and marked used only if still unused, so one code signs in once even
    when it is sent twice at the same moment.
    """
    _lock(session, user)
    if not is_enabled(user):
        raise NotEnrolled()
    normalised = normalise_recovery_code(code)
    if len(normalised) != RECOVERY_CODE_LENGTH:
        raise WrongRecoveryCode()
    marked = session.execute(
        sa.update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == recovery_code_hash(normalised),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if marked.rowcount != 1:
        raise WrongRecoveryCode()
    remaining = unused_recovery_codes(session, user)
    audit.record(
        session,
        TwoFactorAction.RECOVERY_CODE_USED,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
        remaining=remaining,
    )
    return RecoveryOutcome(remaining=remaining)


def unused_recovery_codes(session: Session, user: User) -> int:
    """How many of ``user``'s recovery codes are still unused."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
        )
        or 0
    )


def normalise_recovery_code(code: str) -> str:
    """A typed recovery code without spaces and dashes, lower-cased."""
    return "".join(ch for ch in (code or "").lower() if ch not in " -\t")


def recovery_code_hash(code: str) -> str:
    """SHA-256 (hex) of the normalised ``code``: what is stored."""
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)


def _lock(session: Session, user: User) -> None:
    """Lock ``user``'s row and re-read what another request may have changed meanwhile."""
    lock_rows(session, User, [user.id])
    session.refresh(user, ["totp_secret", "totp_enabled_at", "totp_last_counter", "role"])
