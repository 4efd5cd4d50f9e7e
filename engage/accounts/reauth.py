"""Fresh re-authentication before sensitive actions ("Confirm it's you").

A browser counts as fresh for ``REAUTH_MAX_AGE_SECONDS`` after its person last proved who they
are (``session["authenticated_at"]``, set by ``finish_sign_in`` and here). A view decorated with
:func:`fresh_auth_required` runs only on a fresh browser; otherwise the person is asked for
their password, and their authenticator code when they use two-factor sign-in:

- a GET answers with the "Confirm it's you" page, which posts to ``account.reauth_page`` and comes
  back to the page;
- a POST answers with the same page carrying everything the person had submitted as hidden
  fields, posting back to the same address: once the password (and code) are right, the view
  runs with the original fields, so nothing typed is lost.

Attempts are rate-limited per account (``REAUTH_RATE_LIMIT``) and refused ones are audited.
"""

from __future__ import annotations

import enum
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import current_app, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user
from wtforms import PasswordField, StringField

from engage import audit
from engage.accounts import two_factor
from engage.accounts.models import User
from engage.accounts.signin import AUTHENTICATED_AT
from engage.db import get_session
from engage.extensions import limiter, rate_limit
from engage.forms import Form
from engage.security import is_safe_next, verify_password
from engage.timeutil import utcnow

F = TypeVar("F", bound=Callable[..., Any])

# Names of the re-authentication fields; a POST that carries the password is an attempt.
PASSWORD_FIELD = "reauth_password"  # noqa: S105 - a field name
CODE_FIELD = "reauth_code"
# Fields never carried over from the original submission.
NOT_CARRIED = frozenset({"csrf_token", PASSWORD_FIELD, CODE_FIELD})


class ReauthAction(enum.StrEnum):
    """Audit events of re-authentication."""

    REFUSED = "reauth_refused"


class ReauthForm(Form):
    """The password, and the authenticator code for people who use two-factor sign-in."""

    reauth_password = PasswordField("Your password")
    reauth_code = StringField(
        "Code from your authenticator app",
        description="The 6-digit code your authenticator app shows now.",
    )


def is_fresh() -> bool:
    """Whether this browser's person proved who they are within ``REAUTH_MAX_AGE_SECONDS``."""
    proved_at = session.get(AUTHENTICATED_AT)
    if not isinstance(proved_at, int | float):
        return False
    age = time.time() - proved_at
    return -60 <= age <= current_app.config["REAUTH_MAX_AGE_SECONDS"]


def mark_fresh() -> None:
    """Record that this browser's person proved who they are just now."""
    session[AUTHENTICATED_AT] = int(time.time())


def is_attempt() -> bool:
    """Whether this request submits the "Confirm it's you" form."""
    return request.method == "POST" and PASSWORD_FIELD in request.form


def _account_key() -> str:
    """Rate-limit attempts per account (per address for a visitor)."""
    if current_user.is_authenticated:
        return f"account:{current_user.id}"
    return f"address:{get_remote_address()}"


def _reauth_limit() -> str:
    return rate_limit("REAUTH_RATE_LIMIT")


def limit_attempts(view: F) -> F:
    """Count re-authentication attempts of ``view`` against the account's shared limit."""
    return limiter.shared_limit(
        _reauth_limit,
        scope="reauth",
        key_func=_account_key,
        exempt_when=lambda: not is_attempt(),
    )(view)


@dataclass(frozen=True)
class Problem:
    """Why confirming failed, and the field it is about."""

    field: str
    message: str


def check_identity(user: User) -> Problem | None:
    """Check the submitted password (and code); on success mark the browser fresh and commit.

    Returns why it failed (for the person), or None on success. The code is checked only after
    the right password, so a wrong password never uses up a code.
    """
    db = get_session()
    form = ReauthForm()
    now = utcnow()
    problem = None
    if not form.validate_on_submit():
        problem = Problem(PASSWORD_FIELD, "Your form expired. Please enter your password again.")
    elif not verify_password(user.password_hash, form.reauth_password.data or ""):
        problem = Problem(PASSWORD_FIELD, "Your password is not right.")
    elif two_factor.is_enabled(user):
        try:
            two_factor.verify_code(db, user, form.reauth_code.data or "", now)
        except two_factor.TwoFactorError as exc:
            problem = Problem(CODE_FIELD, str(exc))
    if problem is not None:
        db.rollback()
        audit.record(db, ReauthAction.REFUSED, now=now, actor_id=user.id, subject_user_id=user.id)
        db.commit()
        return problem
    # The accepted code's counter is saved now, whatever the sensitive action then does.
    db.commit()
    mark_fresh()
    return None


def confirm_page(
    user: User, *, action: str, carried: list[tuple[str, str]], error: Problem | None = None
):
    """The "Confirm it's you" page posting to ``action`` with ``carried`` as hidden fields
    (400 with ``error`` shown at its field)."""
    form = ReauthForm(formdata=None)
    if error:
        form[error.field].errors = [error.message]
    return (
        render_template(
            "account/reauth.html",
            form=form,
            action=action,
            carried=carried,
            needs_code=two_factor.is_enabled(user),
        ),
        400 if error else 200,
    )


def _carried_fields() -> list[tuple[str, str]]:
    """The submitted form fields to post again, without the token and the password."""
    return [
        (name, value)
        for name, values in request.form.lists()
        if name not in NOT_CARRIED
        for value in values
    ]


def _this_page() -> str:
    """This request's path and query, to come back to."""
    return request.full_path.rstrip("?")


def fresh_auth_required(view: F) -> F:
    """Ask the signed-in person to prove who they are again unless they did so recently.

    Put it below the access-control decorator, so visitors without access are refused before
    anyone is asked for a password.
    """

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        if is_fresh():
            return view(*args, **kwargs)
        user = get_session().get(User, current_user.id)
        if user is None:
            return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
        if request.method != "POST":
            return confirm_page(
                user, action=url_for("account.reauth_page", next=_this_page()), carried=[]
            )
        if is_attempt():
            problem = check_identity(user)
            if problem is None:
                return view(*args, **kwargs)
            return confirm_page(user, action=_this_page(), carried=_carried_fields(), error=problem)
        return confirm_page(user, action=_this_page(), carried=_carried_fields())

    return limit_attempts(wrapped)  # type: ignore[arg-type]


def back_to(next_url: str | None) -> Any:
    """After confirming on the GET path: back to the page asked for (when on this site)."""
    return redirect(next_url if is_safe_next(next_url) else url_for("account.profile"), code=303)
