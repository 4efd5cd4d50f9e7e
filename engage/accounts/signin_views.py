"""Sign-in and sign-out (routes of the ``auth`` blueprint), and the signed-in devices page
(``/account/sessions``, of the ``account`` blueprint) where a person ends their sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import HiddenField, IntegerField
from wtforms.validators import AnyOf, InputRequired, NumberRange
from wtforms.widgets import HiddenInput

from engage.accounts import services, sessions, signin, two_factor_flow
from engage.accounts.forms import SignInForm
from engage.accounts.models import UserSession
from engage.accounts.views import _post_only, _sign_in_limit, account, auth
from engage.db import get_session
from engage.extensions import limiter
from engage.forms import Form
from engage.security import is_safe_next, sign_in_required
from engage.timeutil import utcnow
from engage.views import saved, signed_in_person

WRONG_CREDENTIALS = "The email address or password is wrong."


def _failed_attempt(response) -> bool:
    """Only refused sign-ins count towards the per-address limit (not people getting in)."""
    return response.status_code >= 400


def _paused_message(seconds: int) -> str:
    minutes = -(-seconds // 60)
    wait = "1 minute" if minutes == 1 else f"{minutes} minutes"
    return (
        "You tried to sign in to this account too many times, so signing in to it is paused "
        f"for a while to keep it safe. Please try again in {wait}. If you have forgotten your "
        "password, you can reset it now."
    )


@auth.route("/sign-in", methods=["GET", "POST"])
@limiter.limit(_sign_in_limit, exempt_when=_post_only, deduct_when=_failed_attempt)
def sign_in():
    """Sign in with email and password (failed attempts are limited per address and per
    account; a paused account is told when to try again, known or not)."""
    next_url = request.args.get("next")
    if current_user.is_authenticated:
        return redirect(next_url if is_safe_next(next_url) else url_for("pages.home"))
    form = SignInForm()
    status = 200
    if form.validate_on_submit():
        paused = signin.sign_in_paused_for(form.email.data)
        if paused is not None:
            form.form_errors.append(_paused_message(paused))
            page = render_template("auth/sign_in.html", form=form, next_url=next_url)
            return page, 429, {"Retry-After": str(paused)}
        session = get_session()
        user = services.authenticate(session, form.email.data, form.password.data, utcnow())
        session.commit()
        if user is not None:
            remember = bool(form.remember.data)
            if two_factor_flow.second_step_needed(user):
                return two_factor_flow.start_second_step(user, remember=remember, next_url=next_url)
            return signin.finish_sign_in(user, remember=remember, next_url=next_url)
        signin.count_failed_sign_in(form.email.data)
        form.form_errors.append(WRONG_CREDENTIALS)
    if form.errors:
        status = 400
    return render_template("auth/sign_in.html", form=form, next_url=next_url), status


@auth.route("/sign-out", methods=["POST"])
def sign_out():
    """Sign out (POST only, with CSRF, so links and images can't sign people out): the session
    ends on the server, so a copy of this browser's cookies no longer works either."""
    if current_user.is_authenticated:
        session = get_session()
        user = signed_in_person()
        now = utcnow()
        row = session.get(UserSession, sessions.current_session_id(user) or 0)
        if row is not None:
            sessions.end(row, now, sessions.EndReason.SIGNED_OUT)
        services.record_sign_out(session, user, now)
        session.commit()
        signin.sign_out_here()
        flash("You are signed out.", "info")
    return redirect(url_for("pages.home"))


# Signed-in devices --------------------------------------------------------------------------------
class EndSessionForm(Form):
    """Sign out one other device (its session's number is a hidden field of its row)."""

    session_id = IntegerField(
        "Device",
        widget=HiddenInput(),
        validators=[
            InputRequired(message="Choose the device to sign out."),
            NumberRange(min=1, max=2**31 - 1, message="That device is not signed in."),
        ],
    )


class EndSessionsForm(Form):
    """Sign out every other device, or every device including this one."""

    which = HiddenField(
        "Devices",
        validators=[
            InputRequired(message="Choose which devices to sign out."),
            AnyOf(("others", "everywhere"), message="Choose which devices to sign out."),
        ],
    )


@dataclass(frozen=True)
class Device:
    """One row of the signed-in devices page."""

    id: int
    browser: str
    ip_address: str
    started: str
    last_active: str
    started_at: datetime
    last_active_at: datetime
    remember: bool
    is_current: bool


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%b %Y}"


def _devices(user_id: int, current_id: int | None) -> list[Device]:
    """The person's live sessions, this device first, then the most recently active."""
    rows = sessions.live_sessions(get_session(), user_id, utcnow())
    devices = [
        Device(
            id=row.id,
            browser=sessions.describe_browser(row.user_agent),
            ip_address=row.ip_address or "unknown",
            started=_day(row.created_at),
            last_active=f"{_day(row.last_seen_at)}, {row.last_seen_at:%H:%M} UTC",
            started_at=row.created_at,
            last_active_at=row.last_seen_at,
            remember=row.remember,
            is_current=row.id == current_id,
        )
        for row in rows
    ]
    return sorted(devices, key=lambda device: not device.is_current)


def _devices_page(status: int = 200, error: str | None = None):
    user = signed_in_person()
    devices = _devices(user.id, sessions.current_session_id(user))
    return render_template("account/sessions.html", devices=devices, error=error), status


@account.route("/sessions", endpoint="sessions")
@sign_in_required
def signed_in_devices():
    """The browsers where the person is signed in, with a way to sign each of them out."""
    return _devices_page()


@account.route("/sessions/sign-out", methods=["POST"])
@sign_in_required
def end_session():
    """Sign out one of the person's devices; another person's session is not found (404)."""
    form = EndSessionForm()
    if not form.validate_on_submit():
        return _devices_page(
            400, "Nothing was changed: the form expired or named no device. Please try again."
        )
    session = get_session()
    user = signed_in_person()
    now = utcnow()
    row = sessions.own_live_session(session, user.id, form.session_id.data, now)
    if row is None:
        return _devices_page(
            404, "That device is not signed in to your account (it may have signed out already)."
        )
    if row.id == sessions.current_session_id(user):
        return sign_out()
    browser = sessions.describe_browser(row.user_agent)
    sessions.end_one(session, user, row, now)
    session.commit()
    return saved(f"{browser} is signed out.", url_for("account.sessions"))


@account.route("/sessions/sign-out-all", methods=["POST"])
@sign_in_required
def end_sessions():
    """Sign out every other device, or every device including this one (then sign in again)."""
    form = EndSessionsForm()
    if not form.validate_on_submit():
        return _devices_page(
            400, "Nothing was changed: the form expired or named no devices. Please try again."
        )
    session = get_session()
    user = signed_in_person()
    now = utcnow()
    if form.which.data == "others":
        ended = sessions.end_others(session, user, sessions.current_session_id(user), now)
        session.commit()
        message = (
            "All your other devices are signed out."
            if ended
            else "No other device was signed in; nothing changed."
        )
        return saved(message, url_for("account.sessions"), "success" if ended else "info")
    sessions.end_everywhere(session, user, now)
    session.commit()
    signin.sign_out_here()
    return saved(
        "You are signed out on every device, this one included.", url_for("auth.sign_in"), "info"
    )
