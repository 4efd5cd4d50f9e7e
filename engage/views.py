"""What every view shares: one commit-or-explain path for state changes.

A view validates its form, then hands the change to :func:`commit_or_explain`: the service
runs in the request's session; a domain error rolls everything back and is explained to the
person (a form error, a 4xx page); otherwise the request commits once and answers (usually a
flash and a redirect). Views never write their own try/rollback/commit blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, flash, redirect, request
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy.orm import Session

from engage.db import get_session

T = TypeVar("T")


def commit_or_explain(
    change: Callable[[Session], T],
    *,
    errors: type[Exception] | tuple[type[Exception], ...],
    explain: Callable[[Any], ResponseReturnValue],
    done: Callable[[T], ResponseReturnValue],
) -> ResponseReturnValue:
    """Run ``change`` in the request's session and commit, or roll back and explain.

    :param errors: the domain errors ``change`` may raise (anything else is a bug: a 500).
    :param explain: the answer for a refused change, given the error.
    :param done: the answer after the commit, given what ``change`` returned.
    """
    session = get_session()
    try:
        outcome = change(session)
    except errors as exc:
        session.rollback()
        return explain(exc)
    session.commit()
    return done(outcome)


def saved(message: str, location: str, category: str = "success", status: int = 303):
    """Flash ``message`` and redirect to ``location`` (the usual answer after a change)."""
    flash(message, category)
    return redirect(location, code=status)


def refused(message: str, location: str, category: str = "error", status: int = 303):
    """Flash why a change was not made and redirect to ``location`` (for changes asked from a
    page's button rather than a form page of their own)."""
    flash(message, category)
    return redirect(location, code=status)


def with_error(form: Any, error: Exception) -> Any:
    """``form`` with a service's refusal as an error of the whole form (the error summary
    shows it first)."""
    form.form_errors.append(str(error))
    return form


def page_arg() -> int:
    """The ``page`` query argument, clamped to a sane positive integer."""
    page = request.args.get("page", 1, type=int) or 1
    return min(max(page, 1), 100_000)


def signed_in_person() -> Any:
    """The signed-in person's account row, for services that take the acting person; 403 for
    a visitor. The user loader (``engage.app``) reads it in this request's session, so core
    and packages that don't import ``engage.accounts`` can hand it on."""
    if not current_user.is_authenticated:
        abort(403)
    return current_user._get_current_object()
