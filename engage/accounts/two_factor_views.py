"""Two-step sign-in pages: the code step of signing in (authenticator or recovery code), setting
it up (at sign-in for roles that require it, or from the account page), new recovery codes,
turning it off, and "Confirm it's you" before sensitive actions.

Routes of the ``auth`` and ``account`` blueprints (``engage.accounts.views``).
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address
from flask_login import current_user
from sqlalchemy.orm import Session
from wtforms import HiddenField, StringField
from wtforms.validators import AnyOf, DataRequired, Length

from engage.accounts import emails, reauth, two_factor, two_factor_flow
from engage.accounts.models import User
from engage.accounts.reauth import fresh_auth_required
from engage.accounts.views import _me, account, auth
from engage.db import get_session
from engage.extensions import limiter, rate_limit
from engage.forms import Form, strip
from engage.security import sign_in_required
from engage.timeutil import utcnow
from engage.views import refused, saved

# Pages a signed-in person whose role requires two-step sign-in may open before setting it up.
OPEN_BEFORE_SET_UP = frozenset(
    {
        "account.two_factor_settings",
        "account.reauth_page",
        "auth.sign_out",
        "static",
        "pages.healthz",
    }
)


class CodeForm(Form):
    """A code from the authenticator app."""

    code = StringField(
        "Code from your authenticator app",
        filters=[strip],
        validators=[
            DataRequired(message="Enter the 6-digit code from your authenticator app."),
            Length(max=20, message="Enter the 6-digit code from your authenticator app."),
        ],
        description="Open the app and type the 6-digit code it shows for Engage.",
        render_kw={"inputmode": "numeric", "spellcheck": "false"},
    )


class RecoveryCodeForm(Form):
    """One of the recovery codes saved when two-step sign-in was set up."""

    recovery_code = StringField(
        "Recovery code",
        filters=[strip],
        validators=[
            DataRequired(message="Enter one of your recovery codes."),
            Length(max=40, message="A recovery code looks like abcde-fghij."),
        ],
        description="One of the codes you saved when you set up two-step sign-in: abcde-fghij.",
        render_kw={"spellcheck": "false", "autocapitalize": "none"},
    )


class ButtonForm(Form):
    """A button of the two-step sign-in page: the hidden field names it, so a post with no
    fields (or another page's) is refused rather than taken as a press."""

    button = HiddenField(validators=[AnyOf(["new-codes", "turn-off"])])


def _two_factor_limit() -> str:
    return rate_limit("TWO_FACTOR_RATE_LIMIT")


def _post_only() -> bool:
    return request.method != "POST"


def _pending_account_key() -> str:
    """Count code attempts per account being signed in (per address when there is none)."""
    value = session.get(two_factor_flow.PENDING_KEY)
    if isinstance(value, dict) and "user_id" in value:
        return f"account:{value['user_id']}"
    return f"address:{get_remote_address()}"


# Code attempts are limited per address and per account, across the three code pages.
_limit_by_address = limiter.shared_limit(
    _two_factor_limit, scope="two-factor-address", exempt_when=_post_only
)
_limit_by_account = limiter.shared_limit(
    _two_factor_limit,
    scope="two-factor-account",
    key_func=_pending_account_key,
    exempt_when=_post_only,
)


# The code step of signing in ----------------------------------------------------------------
def _pending() -> tuple[two_factor_flow.PendingSignIn | None, User | None]:
    pending = two_factor_flow.pending_sign_in()
    if pending is None:
        return None, None
    user = two_factor_flow.pending_user(get_session(), pending)
    if user is None:
        two_factor_flow.drop_pending()
        return None, None
    return pending, user


def _step(*, enrolled: bool) -> tuple[two_factor_flow.PendingSignIn | None, User | None, Any]:
    """The half-finished sign-in and its account, when this step is the right one for it (the
    code step for an account with two-step sign-in, the set-up step for one without); else
    ``(None, None, answer)`` with where to go instead."""
    if current_user.is_authenticated:
        return None, None, redirect(url_for("pages.home"))
    pending, user = _pending()
    if pending is None or user is None:
        return None, None, _start_again()
    if two_factor.is_enabled(user) != enrolled:
        other = "auth.two_factor_code" if two_factor.is_enabled(user) else "auth.two_factor_setup"
        return None, None, redirect(url_for(other))
    return pending, user, None


def _start_again():
    """The half-finished sign-in is gone (expired, never started, or too many wrong codes)."""
    return refused(
        "Please sign in again: the time to enter a code ran out, or you have not signed in yet.",
        url_for("auth.sign_in"),
        category="info",
    )


def _refused_code(db: Session, user: User, kind: str, exc: Exception, form: Form, field, page):
    """Audit a wrong code and show the form again, or start over after too many."""
    db.rollback()
    two_factor.record_refused_code(db, user, utcnow(), kind=kind)
    db.commit()
    if two_factor_flow.count_wrong_code():
        return refused(
            "Too many wrong codes. Please sign in again with your password.",
            url_for("auth.sign_in"),
        )
    field.errors = [*field.errors, str(exc)]
    return page(form)


@auth.route("/sign-in/two-factor", methods=["GET", "POST"])
@_limit_by_address
@_limit_by_account
def two_factor_code():
    """Second step of signing in: the code from the authenticator app."""
    pending, user, elsewhere = _step(enrolled=True)
    if elsewhere is not None:
        return elsewhere
    form = CodeForm()

    def page(form: CodeForm):
        return render_template("auth/two_factor.html", form=form), 400 if form.errors else 200

    if not form.validate_on_submit():
        return page(form)
    db = get_session()
    try:
        two_factor.verify_code(db, user, form.code.data, utcnow())
    except two_factor.TwoFactorError as exc:
        return _refused_code(db, user, "authenticator", exc, form, form.code, page)
    db.commit()
    return two_factor_flow.complete_sign_in(user, pending)


@auth.route("/sign-in/recovery-code", methods=["GET", "POST"])
@_limit_by_address
@_limit_by_account
def two_factor_recovery():
    """Second step of signing in with a recovery code instead (each works once)."""
    pending, user, elsewhere = _step(enrolled=True)
    if elsewhere is not None:
        return elsewhere
    form = RecoveryCodeForm()

    def page(form: RecoveryCodeForm):
        status = 400 if form.errors else 200
        return render_template("auth/two_factor_recovery.html", form=form), status

    if not form.validate_on_submit():
        return page(form)
    db = get_session()
    now = utcnow()
    try:
        outcome = two_factor.use_recovery_code(db, user, form.recovery_code.data, now)
    except two_factor.TwoFactorError as exc:
        return _refused_code(db, user, "recovery", exc, form, form.recovery_code, page)
    emails.queue_two_factor_notice(
        db, user, now, kind="recovery_code_used", remaining=outcome.remaining
    )
    db.commit()
    flash(_codes_left(outcome.remaining), "info" if outcome.remaining > 3 else "error")
    return two_factor_flow.complete_sign_in(user, pending)


def _codes_left(remaining: int) -> str:
    if remaining == 0:
        return (
            "You have used your last recovery code. Make new ones now on the two-step sign-in "
            "page of your account."
        )
    left = "1 recovery code" if remaining == 1 else f"{remaining} recovery codes"
    advice = " Make new ones soon on your account page." if remaining <= 3 else ""
    return f"You signed in with a recovery code. You have {left} left.{advice}"


@auth.route("/sign-in/two-factor/set-up", methods=["GET", "POST"])
@_limit_by_address
@_limit_by_account
def two_factor_setup():
    """Set up two-step sign-in while signing in, for roles that require it (not signed in
    until it is confirmed)."""
    pending, user, elsewhere = _step(enrolled=False)
    if elsewhere is not None:
        return elsewhere
    db = get_session()
    two_factor.begin_enrolment(user)
    db.commit()
    form = CodeForm()

    def page(form: CodeForm):
        return _enrol_page("auth/two_factor_setup.html", user, form)

    if not form.validate_on_submit():
        return page(form)
    now = utcnow()
    try:
        codes = two_factor.confirm_enrolment(db, user, form.code.data, now)
    except two_factor.TwoFactorError as exc:
        return _refused_code(db, user, "authenticator", exc, form, form.code, page)
    emails.queue_two_factor_notice(db, user, now, kind="two_factor_enabled")
    db.commit()
    signed_in = two_factor_flow.complete_sign_in(user, pending)
    # The codes are shown once, here; the button then goes where signing in leads.
    return _codes_page(codes, continue_url=signed_in.location, first_time=True)


# Shared pages --------------------------------------------------------------------------------
def _enrol_page(template: str, user: User, form: CodeForm):
    issuer = current_app.config["TWO_FACTOR_ISSUER"]
    uri = two_factor.provisioning_uri(user, issuer)
    return (
        render_template(
            template,
            form=form,
            qr_svg=two_factor.qr_code_svg(uri),
            otpauth_uri=uri,
            secret=two_factor.grouped_secret(user.totp_secret or ""),
            issuer=issuer,
            account_name=user.email,
        ),
        400 if form.errors else 200,
    )


def _codes_page(codes: list[str], *, continue_url: str, first_time: bool):
    return render_template(
        "account/two_factor_codes.html",
        codes=codes,
        continue_url=continue_url,
        first_time=first_time,
    )


# The account page ----------------------------------------------------------------------------
@account.route("/two-factor", methods=["GET", "POST"])
@sign_in_required
@fresh_auth_required
def two_factor_settings():
    """Two-step sign-in on one's account: set it up, or see it, make new recovery codes and
    (where the role allows) turn it off."""
    db = get_session()
    user = _me()
    if two_factor.is_enabled(user):
        if request.method == "POST":  # a set-up form sent again after it was confirmed
            return _settings_page(user, error="Two-step sign-in is already on.")
        return _settings_page(user)
    two_factor.begin_enrolment(user)
    db.commit()
    form = CodeForm()
    if not form.validate_on_submit():
        return _enrol_page("account/two_factor_setup.html", user, form)
    now = utcnow()
    try:
        codes = two_factor.confirm_enrolment(db, user, form.code.data, now)
    except two_factor.TwoFactorError as exc:
        db.rollback()
        form.code.errors = [*form.code.errors, str(exc)]
        return _enrol_page("account/two_factor_setup.html", user, form)
    emails.queue_two_factor_notice(db, user, now, kind="two_factor_enabled")
    db.commit()
    flash("Two-step sign-in is on.", "success")
    return _codes_page(codes, continue_url=url_for("account.two_factor_settings"), first_time=True)


def _settings_page(user: User, error: str | None = None):
    """Two-step sign-in as it is on: recovery codes left, and the buttons (400 with ``error``)."""
    return (
        render_template(
            "account/two_factor.html",
            user=user,
            enabled_at=user.totp_enabled_at,
            remaining=two_factor.unused_recovery_codes(get_session(), user),
            required=two_factor.is_required(user),
            button_form=ButtonForm(formdata=None),
            error=error,
        ),
        400 if error else 200,
    )


def _pressed(button: str) -> bool:
    form = ButtonForm()
    return form.validate_on_submit() and form.button.data == button


@account.route("/two-factor/recovery-codes", methods=["POST"])
@sign_in_required
@fresh_auth_required
def two_factor_new_codes():
    """Make a new set of recovery codes (the old ones stop working)."""
    db = get_session()
    user = _me()
    if not _pressed("new-codes"):
        return _button_refused(user)
    try:
        codes = two_factor.replace_recovery_codes(db, user, utcnow())
    except two_factor.TwoFactorError as exc:
        db.rollback()
        return refused(str(exc), url_for("account.two_factor_settings"))
    db.commit()
    return _codes_page(codes, continue_url=url_for("account.two_factor_settings"), first_time=False)


@account.route("/two-factor/turn-off", methods=["POST"])
@sign_in_required
@fresh_auth_required
def two_factor_turn_off():
    """Turn two-step sign-in off (refused for roles that require it)."""
    db = get_session()
    user = _me()
    if not _pressed("turn-off"):
        return _button_refused(user)
    now = utcnow()
    try:
        two_factor.disable(db, user, now)
    except two_factor.TwoFactorError as exc:
        db.rollback()
        return refused(str(exc), url_for("account.two_factor_settings"))
    emails.queue_two_factor_notice(db, user, now, kind="two_factor_disabled")
    db.commit()
    return saved(
        "Two-step sign-in is off. Signing in now asks only for your password.",
        url_for("account.two_factor_settings"),
    )


def _button_refused(user: User):
    """A post that is not one of the page's buttons (only a forged or stale post): 400."""
    if two_factor.is_enabled(user):
        return _settings_page(user, error="Please use the buttons on this page.")
    abort(400)


# "Confirm it's you" for pages opened with GET ------------------------------------------------
@account.route("/confirm", methods=["GET", "POST"])
@sign_in_required
@reauth.limit_attempts
def reauth_page():
    """Prove who you are again (password, and code when set up), then go back to ``next``."""
    next_url = request.args.get("next")
    user = _me()
    action = url_for("account.reauth_page", next=next_url) if next_url else request.path
    if reauth.is_attempt():
        problem = reauth.check_identity(user)
        if problem is None:
            return reauth.back_to(next_url)
        return reauth.confirm_page(user, action=action, carried=[], error=problem)
    return reauth.confirm_page(user, action=action, carried=[])


# Roles that require two-step sign-in --------------------------------------------------------
@account.before_app_request
def _require_set_up_for_roles_that_need_it():
    """A signed-in person whose role requires two-step sign-in but who has not set it up (their
    role changed while signed in) can only set it up or sign out."""
    if request.endpoint in OPEN_BEFORE_SET_UP or request.endpoint is None:
        return None
    if not current_user.is_authenticated:
        return None
    if two_factor.is_required(current_user) and not two_factor.is_enabled(current_user):
        return refused(
            "Your role needs two-step sign-in: please set it up to go on.",
            url_for("account.two_factor_settings"),
            category="info",
        )
    return None
