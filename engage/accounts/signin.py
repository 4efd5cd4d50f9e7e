"""Signing in and out on this browser: the one place a person becomes signed in.

Both the password step (when no second step is needed) and the two-factor step end in
:func:`finish_sign_in`. The signed-in state lives on the server (``engage.accounts.sessions``);
the browser's cookies only name it. Failed sign-ins are also limited here, per account.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from flask import current_app, flash, g, redirect, request, session, url_for
from flask_login import login_user, logout_user
from flask_wtf.csrf import generate_csrf

from engage.accounts import services, sessions
from engage.accounts.models import User
from engage.db import get_session
from engage.extensions import FailureLimit
from engage.security import is_safe_next
from engage.timeutil import utcnow

# When this browser last proved who it is (password, and code when enrolled): seconds since
# the epoch, in the Flask session. Re-authentication before sensitive actions reads it.
AUTHENTICATED_AT = "authenticated_at"
# What survives the renewal of the Flask session at sign-in and sign-out: messages waiting to
# be shown. Everything else (the CSRF token above all) is started afresh.
KEPT_ON_RENEWAL = ("_flashes",)
# Failed sign-ins per account, whatever address they come from (see SIGN_IN_ACCOUNT_RATE_LIMIT).
ACCOUNT_FAILURES = FailureLimit("SIGN_IN_ACCOUNT_RATE_LIMIT", scope="sign-in-account")


def finish_sign_in(user: User, *, remember: bool, next_url: str | None) -> Any:
    """Sign ``user`` in on this browser and redirect to ``next_url`` (when safe) or home.

    Starts a session on the server (committing the request's database session), then renews
    the browser's session and CSRF token so that nothing from before the sign-in (a cookie an
    attacker planted, say) carries over.
    """
    db_session = get_session()
    lifetime = sessions.Lifetime.from_config(current_app.config)
    now = utcnow()
    services.record_sign_in(db_session, user, now)
    row, key = sessions.start(
        db_session,
        user,
        now=now,
        remember=remember,
        lifetime=lifetime,
        user_agent=request.headers.get("User-Agent", ""),
        ip_address=request.remote_addr or "",
    )
    db_session.commit()
    renew_browser_session()
    sessions.attach(user, row, key)
    login_user(user, remember=remember, duration=lifetime.remembered)
    session[AUTHENTICATED_AT] = int(time.time())
    flash(f"Welcome, {user.display_name}.", "success")
    return redirect(next_url if is_safe_next(next_url) else url_for("pages.home"))


def renew_browser_session() -> None:
    """Empty the browser's Flask session but for pending messages, and issue a new CSRF token
    (forms still open with the old one are refused)."""
    kept = {name: session[name] for name in KEPT_ON_RENEWAL if name in session}
    session.clear()
    session.update(kept)
    # Flask-WTF caches the token of this request in ``g``; drop it so a new one is made.
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
    generate_csrf()


def sign_out_here() -> None:
    """Forget the signed-in person on this browser (session and remember-me cookie). The caller
    has already ended their session on the server."""
    renew_browser_session()
    logout_user()


def load_signed_in_user(identity: str) -> User | None:
    """Flask-Login's user loader: the account of this browser's live session, or None.

    Runs at the start of the request (``engage.app``), so the activity it records (at most
    every few minutes) is committed on its own.
    """
    db_session = get_session()
    now = utcnow()
    found = sessions.signed_in(db_session, identity, now)
    if found is None:
        return None
    user, row = found
    if sessions.record_activity(row, now, sessions.Lifetime.from_config(current_app.config)):
        db_session.commit()
    return user


# Failed sign-ins per account ---------------------------------------------------------------------
def account_key(email: str) -> str:
    """What the per-account limit counts under: a keyed hash of the address as typed
    (normalised), never the address itself; unknown addresses are counted the same way."""
    normalised = (email or "").strip().lower().encode()
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.new(secret, b"sign-in-account:" + normalised, hashlib.sha256).hexdigest()[:32]


def sign_in_paused_for(email: str) -> int | None:
    """Seconds until the account ``email`` names may try to sign in again, or None."""
    return ACCOUNT_FAILURES.retry_after(account_key(email))


def count_failed_sign_in(email: str) -> None:
    """Count one failed sign-in for the account ``email`` names (known or not)."""
    ACCOUNT_FAILURES.count_failure(account_key(email))


def forget_failed_sign_ins(email: str) -> None:
    """Clear the failed sign-ins of ``email``'s account (after a password reset, say)."""
    ACCOUNT_FAILURES.forget(account_key(email))
