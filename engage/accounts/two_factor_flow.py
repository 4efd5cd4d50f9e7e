"""The second step of signing in (two-factor), between the password and the session.

After the right password, a person who uses two-factor sign-in (or whose role requires it) is
not signed in yet: the half-finished sign-in is kept in the Flask session (who, "keep me signed
in", where to go next, when it started) for ``PENDING_MAX_AGE_SECONDS``, and the person is sent
to enter a code, or, when their role requires two-factor sign-in and they have not set it up,
to set it up first. Only ``engage.accounts.signin.finish_sign_in`` then signs them in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import redirect, session, url_for
from sqlalchemy.orm import Session

from engage.accounts import two_factor
from engage.accounts.models import User
from engage.accounts.signin import finish_sign_in
from engage.security import fingerprint

# The half-finished sign-in, in the Flask session.
PENDING_KEY = "two_factor_pending"
# How long the code may take after the password (seconds).
PENDING_MAX_AGE_SECONDS = 10 * 60
# Wrong codes after which the half-finished sign-in is dropped (start again with the password).
MAX_WRONG_CODES = 5


@dataclass(frozen=True)
class PendingSignIn:
    """Who passed the password step on this browser, and what to do once the code is right."""

    user_id: int
    remember: bool
    next_url: str | None
    started_at: int
    wrong_codes: int
    # Binds the step to the password it followed: a password change meanwhile voids it.
    password_fingerprint: str


def second_step_needed(user: User) -> bool:
    """Whether ``user`` must give an authenticator code (or enrol) before being signed in."""
    return two_factor.is_enabled(user) or two_factor.is_required(user)


def start_second_step(user: User, *, remember: bool, next_url: str | None) -> Any:
    """Remember the half-finished sign-in and send the person to the second step."""
    session[PENDING_KEY] = {
        "user_id": user.id,
        "remember": bool(remember),
        "next_url": next_url,
        "started_at": int(time.time()),
        "wrong_codes": 0,
        "password_fingerprint": fingerprint(user.password_hash),
    }
    if two_factor.is_enabled(user):
        return redirect(url_for("auth.two_factor_code"))
    return redirect(url_for("auth.two_factor_setup"))


def pending_sign_in() -> PendingSignIn | None:
    """The half-finished sign-in of this browser, or None (none, malformed or too old)."""
    value = session.get(PENDING_KEY)
    if not isinstance(value, dict):
        return None
    try:
        pending = PendingSignIn(
            user_id=int(value["user_id"]),
            remember=bool(value["remember"]),
            next_url=value.get("next_url"),
            started_at=int(value["started_at"]),
            wrong_codes=int(value.get("wrong_codes", 0)),
            password_fingerprint=str(value["password_fingerprint"]),
        )
    except (KeyError, TypeError, ValueError):
        drop_pending()
        return None
    age = time.time() - pending.started_at
    if age > PENDING_MAX_AGE_SECONDS or age < -60:
        drop_pending()
        return None
    return pending


def pending_user(db: Session, pending: PendingSignIn) -> User | None:
    """The account of ``pending`` when it may still finish signing in (active, same password)."""
    user = db.get(User, pending.user_id)
    if user is None or not user.is_active:
        return None
    if fingerprint(user.password_hash) != pending.password_fingerprint:
        return None
    return user


def count_wrong_code() -> bool:
    """Count a wrong code; True when that was one too many and the sign-in was dropped."""
    value = session.get(PENDING_KEY)
    if not isinstance(value, dict):
        return True
    wrong = int(value.get("wrong_codes", 0)) + 1
    if wrong >= MAX_WRONG_CODES:
        drop_pending()
        return True
    session[PENDING_KEY] = {**value, "wrong_codes": wrong}
    return False


def drop_pending() -> None:
    """Forget the half-finished sign-in."""
    session.pop(PENDING_KEY, None)


def complete_sign_in(user: User, pending: PendingSignIn) -> Any:
    """The second step succeeded: sign ``user`` in, as the password step asked."""
    drop_pending()
    return finish_sign_in(user, remember=pending.remember, next_url=pending.next_url)
