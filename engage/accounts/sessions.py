"""Signed-in browsers, kept on the server (``user_sessions``): start, find, list and end them.

A browser's session cookie and remember-me cookie carry ``"<account id>:<key>"`` (Flask-Login's
identity, ``User.get_id``), where the key is random and only its SHA-256 is stored: a copy of
the table signs nobody in. Signing out ends the row, so a copied cookie stops working at once.

Functions take the database session and ``now`` explicitly and never commit.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts.models import User, UserSession

# Activity is written at most this often per session (each write is an UPDATE).
ACTIVITY_INTERVAL = timedelta(minutes=5)
# The random key's length in bytes (URL-safe base64 in the cookie).
KEY_BYTES = 32
# Longer "keys" cannot be ours; they are refused before hashing.
MAX_KEY_LENGTH = 100


class EndReason(enum.StrEnum):
    """Why a session ended (``user_sessions.ended_reason``)."""

    SIGNED_OUT = "signed-out"
    SIGNED_OUT_FROM_ANOTHER_DEVICE = "signed-out-elsewhere"
    SIGNED_OUT_EVERYWHERE = "signed-out-everywhere"
    PASSWORD_CHANGED = "password-changed"  # noqa: S105 - a reason, not a password
    PASSWORD_RESET = "password-reset"  # noqa: S105
    DEACTIVATED = "deactivated"
    EMAIL_CHANGED = "email-changed"
    ACCOUNT_DELETED = "account-deleted"
    TWO_FACTOR_RESET = "two-factor-reset"


class SessionAuditAction(enum.StrEnum):
    """Audit events of a person ending their own sessions from the signed-in devices page."""

    DEVICE_SIGNED_OUT = "device_signed_out"
    OTHER_DEVICES_SIGNED_OUT = "other_devices_signed_out"
    SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"


@dataclass(frozen=True)
class Lifetime:
    """How long a session lasts: ``idle`` without activity, or ``remembered`` from sign-in when
    the person chose "keep me signed in"."""

    idle: timedelta
    remembered: timedelta

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Lifetime:
        """Read ``SESSION_IDLE_HOURS`` and ``REMEMBER_COOKIE_DURATION`` (seconds or timedelta)."""
        remembered = config["REMEMBER_COOKIE_DURATION"]
        if not isinstance(remembered, timedelta):
            remembered = timedelta(seconds=int(remembered))
        return cls(idle=timedelta(hours=config["SESSION_IDLE_HOURS"]), remembered=remembered)


def hash_key(key: str) -> str:
    """The stored form of a session key (SHA-256, hex): keys are random, so no salt is needed."""
    return hashlib.sha256(key.encode()).hexdigest()


def start(
    session: Session,
    user: User,
    *,
    now: datetime,
    remember: bool,
    lifetime: Lifetime,
    user_agent: str,
    ip_address: str,
) -> tuple[UserSession, str]:
    """Start a session for ``user`` on one browser; return the row and its key (for the cookie
    only: it is never stored or logged).

    :param user_agent: the browser's User-Agent header, shown on the signed-in devices page.
    :param ip_address: the client's address (after trusted proxies).
    """
    key = secrets.token_urlsafe(KEY_BYTES)
    row = UserSession(
        user_id=user.id,
        key_hash=hash_key(key),
        created_at=now,
        last_seen_at=now,
        expires_at=now + (lifetime.remembered if remember else lifetime.idle),
        remember=remember,
        user_agent=user_agent[:200],
        ip_address=ip_address[:45],
    )
    session.add(row)
    session.flush()
    return row, key


def attach(user: User, row: UserSession, key: str) -> None:
    """Mark ``user`` (this request's instance) as signed in through ``row`` with ``key``, which
    ``User.get_id`` then hands to Flask-Login."""
    user.session_key = key  # type: ignore[attr-defined]
    user.signed_in_session_id = row.id  # type: ignore[attr-defined]


def current_session_id(user: Any) -> int | None:
    """The id of the session the signed-in ``user`` came in with (None for anyone else)."""
    return getattr(user, "signed_in_session_id", None)


def is_live(row: UserSession, now: datetime) -> bool:
    """True while ``row`` still signs its browser in: not ended and not expired."""
    return row.ended_at is None and row.expires_at > now


def signed_in(session: Session, identity: str, now: datetime) -> tuple[User, UserSession] | None:
    """The account and live session named by a cookie's ``identity`` (``"<id>:<key>"``), in one
    query; None when the session ended or expired, or the account is deactivated or deleted."""
    user_id, _, key = identity.partition(":")
    if not user_id.isdigit() or not key or len(key) > MAX_KEY_LENGTH:
        return None
    found = session.execute(
        sa.select(User, UserSession)
        .join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.key_hash == hash_key(key))
    ).first()
    if found is None:
        return None
    user, row = found
    if user.id != int(user_id) or not is_live(row, now):
        return None
    if not user.is_active or user.deleted_at is not None:
        return None
    attach(user, row, key)
    return user, row


def record_activity(row: UserSession, now: datetime, lifetime: Lifetime) -> bool:
    """Note that ``row``'s browser was active; without "keep me signed in" the idle limit
    starts again. Writes at most every ``ACTIVITY_INTERVAL``; returns whether it changed."""
    if now - row.last_seen_at < ACTIVITY_INTERVAL:
        return False
    row.last_seen_at = now
    if not row.remember:
        row.expires_at = now + lifetime.idle
    return True


def end(row: UserSession, now: datetime, reason: EndReason) -> None:
    """End one session (already ended: unchanged)."""
    if row.ended_at is None:
        row.ended_at = now
        row.ended_reason = reason.value


def end_all(
    session: Session,
    user_id: int,
    now: datetime,
    reason: EndReason,
    *,
    keep_id: int | None = None,
) -> int:
    """End every session of account ``user_id`` (but ``keep_id``, when given); return how many."""
    query = (
        sa.update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason.value)
        .execution_options(synchronize_session="fetch")
    )
    if keep_id is not None:
        query = query.where(UserSession.id != keep_id)
    return session.execute(query).rowcount or 0


def live_sessions(session: Session, user_id: int, now: datetime) -> list[UserSession]:
    """Account ``user_id``'s live sessions, most recently active first."""
    return list(
        session.scalars(
            sa.select(UserSession)
            .where(
                UserSession.user_id == user_id,
                UserSession.ended_at.is_(None),
                UserSession.expires_at > now,
            )
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
        )
    )


def own_live_session(
    session: Session, user_id: int, session_id: int, now: datetime
) -> UserSession | None:
    """Session ``session_id`` if it is a live one of account ``user_id``; None otherwise (another
    person's session is treated exactly like one that does not exist)."""
    row = session.get(UserSession, session_id)
    if row is None or row.user_id != user_id or not is_live(row, now):
        return None
    return row


def end_one(session: Session, user: User, row: UserSession, now: datetime) -> None:
    """``user`` signs out one of their other devices (audited)."""
    if row.user_id != user.id:
        raise ValueError("a person can only end their own sessions")
    end(row, now, EndReason.SIGNED_OUT_FROM_ANOTHER_DEVICE)
    audit.record(
        session,
        SessionAuditAction.DEVICE_SIGNED_OUT,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
        target=f"session:{row.id}",
    )


def end_others(session: Session, user: User, keep_id: int | None, now: datetime) -> int:
    """``user`` signs out every device but the one they use (``keep_id``); audited."""
    ended = end_all(
        session, user.id, now, EndReason.SIGNED_OUT_FROM_ANOTHER_DEVICE, keep_id=keep_id
    )
    audit.record(
        session,
        SessionAuditAction.OTHER_DEVICES_SIGNED_OUT,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
        ended=ended,
    )
    return ended


def end_everywhere(session: Session, user: User, now: datetime) -> int:
    """``user`` signs out on every device, the one they use included; audited."""
    ended = end_all(session, user.id, now, EndReason.SIGNED_OUT_EVERYWHERE)
    audit.record(
        session,
        SessionAuditAction.SIGNED_OUT_EVERYWHERE,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
        ended=ended,
    )
    return ended


def remove_old_sessions(session: Session, now: datetime, retention_days: int) -> int:
    """Delete sessions that ended or expired more than ``retention_days`` ago (their devices
    and addresses are kept no longer than needed); return how many."""
    cutoff = now - timedelta(days=retention_days)
    result = session.execute(
        sa.delete(UserSession)
        .where(sa.or_(UserSession.ended_at < cutoff, UserSession.expires_at < cutoff))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def remove_old_sessions_job(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """Scheduled job: delete sessions ended or expired past ``SESSION_RETENTION_DAYS``."""
    removed = remove_old_sessions(session, now, config["SESSION_RETENTION_DAYS"])
    return f"removed {removed} old session(s)"


# What the signed-in devices page shows ---------------------------------------------------------
# Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS = (
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Linux", "Linux"),
)


def describe_browser(user_agent: str) -> str:
    """A short description of a User-Agent header, e.g. "Firefox on Linux"."""
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return browser or f"A browser on {system}"
    # Scripts and unknown clients: their own first word, e.g. "curl", else a plain phrase.
    word = re.match(r"[A-Za-z][\w.-]{0,30}", user_agent)
    return word.group(0) if word else "Unknown browser"
