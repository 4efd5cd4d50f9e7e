"""Sign-up, sign-in, verification, password reset and the person's own account pages."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from sqlalchemy.exc import IntegrityError

from engage.accounts import emails, services
from engage.accounts.forms import (
    ChangePasswordForm,
    EnrolmentForm,
    NewPasswordForm,
    ProfileForm,
    RequestResetForm,
    SignInForm,
    SignUpForm,
)
from engage.accounts.models import Role, User
from engage.db import get_session
from engage.extensions import limiter, rate_limit
from engage.forms import choices
from engage.registries import queries as registry_queries
from engage.security import (
    TokenInvalid,
    is_safe_next,
    read_token,
    roles_required,
    sign_in_required,
)
from engage.timeutil import utcnow

auth = Blueprint("auth", __name__)
account = Blueprint("account", __name__, url_prefix="/account")


def _sign_up_limit() -> str:
    return rate_limit("SIGN_UP_RATE_LIMIT")


def _sign_in_limit() -> str:
    return rate_limit("SIGN_IN_RATE_LIMIT")


def _reset_limit() -> str:
    return rate_limit("RESET_RATE_LIMIT")


def _post_only(_limit: object = None) -> bool:
    """Rate limits count form submissions, not page views."""
    return request.method != "POST"


@auth.route("/sign-up", methods=["GET", "POST"])
@limiter.limit(_sign_up_limit, exempt_when=_post_only)
def sign_up():
    """Join in one of the four self-service roles."""
    if current_user.is_authenticated:
        return redirect(url_for("pages.home"))
    session = get_session()
    form = SignUpForm(registry_choices=registry_queries.registry_choices(session))
    if form.validate_on_submit():
        details = services.SignUpDetails(
            role=Role(form.role.data),
            display_name=form.display_name.data,
            email=form.email.data,
            password=form.password.data,
            country=form.country.data,
            language=form.language.data,
            profession=form.profession.data,
            institution=form.institution.data,
            organisation_name=form.organisation_name.data,
            registry_id=form.registry.data or None,
        )
        try:
            _sign_up_once(session, details)
        except services.AccountError as exc:
            form.form_errors.append(str(exc))
        else:
            return redirect(url_for("auth.check_email"))
    return render_template("auth/sign_up.html", form=form), 400 if form.errors else 200


def _sign_up_once(session, details: services.SignUpDetails) -> None:
    """Create the account (or recognise its owner) and queue the right email, then commit.

    Two submissions of one new address at once both find no account; the second one's insert
    then violates the unique address, and it is answered as a repeat of the first.
    """
    for attempt in range(2):
        now = utcnow()
        try:
            outcome = services.sign_up(session, details, now)
            if outcome.created:
                emails.queue_verification(session, outcome.user, now, reason="sign-up")
            else:
                emails.queue_sign_up_repeat(session, outcome.user, now)
            session.commit()
            return
        except IntegrityError:
            session.rollback()
            if attempt:
                raise


@auth.route("/sign-up/check-email")
def check_email():
    """The same answer whether or not the address already had an account."""
    return render_template("auth/check_email.html")


@auth.route("/verify-email/<token>")
def verify_email(token: str):
    """Confirm an address from an emailed link."""
    session = get_session()
    try:
        payload = read_token(
            "verify-email", token, current_app.config["EMAIL_VERIFICATION_MAX_AGE"]
        )
        user = services.verify_email(session, payload, utcnow())
    except (TokenInvalid, services.InvalidLink) as exc:
        return render_template("auth/link_invalid.html", message=str(exc)), 400
    session.commit()
    flash("Thank you: your email address is confirmed.", "success")
    if current_user.is_authenticated and current_user.id == user.id:
        return redirect(url_for("pages.home"))
    return redirect(url_for("auth.sign_in"))


@auth.route("/verify-email/resend", methods=["POST"])
@sign_in_required
@limiter.limit(_reset_limit)
def resend_verification():
    """Send the verification link again to the signed-in person."""
    if current_user.is_email_verified:
        flash("Your email address is already confirmed.", "info")
    else:
        session = get_session()
        emails.queue_verification(session, _me(), utcnow(), reason="resend")
        session.commit()
        flash(f"We sent a new link to {current_user.email}.", "success")
    return redirect(url_for("pages.home"))


@auth.route("/sign-in", methods=["GET", "POST"])
@limiter.limit(_sign_in_limit, exempt_when=_post_only)
def sign_in():
    """Sign in with email and password."""
    next_url = request.args.get("next")
    if current_user.is_authenticated:
        return redirect(next_url if is_safe_next(next_url) else url_for("pages.home"))
    form = SignInForm()
    status = 200
    if form.validate_on_submit():
        session = get_session()
        user = services.authenticate(session, form.email.data, form.password.data, utcnow())
        session.commit()
        if user is not None:
            login_user(user, remember=form.remember.data)
            flash(f"Welcome, {user.display_name}.", "success")
            return redirect(next_url if is_safe_next(next_url) else url_for("pages.home"))
        form.form_errors.append("The email address or password is wrong.")
    if form.errors:
        status = 400
    return render_template("auth/sign_in.html", form=form, next_url=next_url), status


@auth.route("/sign-out", methods=["POST"])
def sign_out():
    """Sign out (POST only, with CSRF, so links and images can't sign people out)."""
    if current_user.is_authenticated:
        session = get_session()
        user = session.get(User, current_user.id)
        if user is not None:
            services.record_sign_out(session, user, utcnow())
            session.commit()
        logout_user()
        flash("You are signed out.", "info")
    return redirect(url_for("pages.home"))


@auth.route("/reset-password", methods=["GET", "POST"])
@limiter.limit(_reset_limit, exempt_when=_post_only)
def request_reset():
    """Ask for a reset link; the answer is the same whether or not the address has an account."""
    form = RequestResetForm()
    if form.validate_on_submit():
        session = get_session()
        now = utcnow()
        user = services.request_password_reset(session, form.email.data, now)
        if user is not None:
            emails.queue_password_reset(session, user, now)
        session.commit()
        return render_template("auth/reset_sent.html", email=form.email.data)
    return render_template("auth/request_reset.html", form=form), 400 if form.errors else 200


@auth.route("/reset-password/<token>", methods=["GET", "POST"])
@limiter.limit(_reset_limit, exempt_when=_post_only)
def reset_password(token: str):
    """Choose a new password from a reset link (single use)."""
    session = get_session()
    try:
        payload = read_token("reset-password", token, current_app.config["PASSWORD_RESET_MAX_AGE"])
        user = services.user_for_reset(session, payload)
    except (TokenInvalid, services.InvalidLink) as exc:
        return render_template("auth/link_invalid.html", message=str(exc)), 400
    form = NewPasswordForm(email=user.email)
    if form.validate_on_submit():
        now = utcnow()
        try:
            services.reset_password(session, payload, form.password.data, now)
        except services.AccountError as exc:
            form.password.errors.append(str(exc))
        else:
            emails.queue_password_changed(session, user, now)
            session.commit()
            if current_user.is_authenticated:
                logout_user()
            flash("Your password is changed. Sign in with your new password.", "success")
            return redirect(url_for("auth.sign_in"))
    return render_template("auth/reset_password.html", form=form), 400 if form.errors else 200


# The person's own account ------------------------------------------------------------------
def _me() -> User:
    """The signed-in person's row in this request's session."""
    user = get_session().get(User, current_user.id)
    if user is None:
        abort(404)
    return user


@account.route("", methods=["GET", "POST"])
@sign_in_required
def profile():
    """See and edit one's own profile."""
    session = get_session()
    user = _me()
    form = ProfileForm(obj=user, role=user.role)
    if form.validate_on_submit():
        details = services.ProfileDetails(
            display_name=form.display_name.data,
            country=form.country.data,
            language=form.language.data,
            profession=form.profession.data,
            institution=form.institution.data,
            organisation_name=form.organisation_name.data,
        )
        services.update_profile(session, user, details, utcnow())
        session.commit()
        flash("Your profile is saved.", "success")
        return redirect(url_for("account.profile"))
    enrolments = (
        registry_queries.enrolled_registries(session, user.id)
        if user.role == Role.PARTICIPANT
        else []
    )
    return (
        render_template("account/profile.html", form=form, user=user, enrolments=enrolments),
        400 if form.errors else 200,
    )


@account.route("/password", methods=["GET", "POST"])
@sign_in_required
def change_password():
    """Change one's password; other sessions end."""
    session = get_session()
    user = _me()
    form = ChangePasswordForm(email=user.email)
    if form.validate_on_submit():
        now = utcnow()
        try:
            services.change_password(
                session, user, form.current_password.data, form.password.data, now
            )
        except services.WrongPassword as exc:
            form.current_password.errors.append(str(exc))
        except services.WeakPassword as exc:
            form.password.errors.append(str(exc))
        else:
            emails.queue_password_changed(session, user, now)
            session.commit()
            # Keep this session: re-issue it with the new session version.
            login_user(user, remember=bool(request.cookies.get("remember_token")))
            flash("Your password is changed. Other devices have been signed out.", "success")
            return redirect(url_for("account.profile"))
    return render_template("account/password.html", form=form), 400 if form.errors else 200


@account.route("/registries", methods=["GET", "POST"])
@roles_required(Role.PARTICIPANT)
def registries():
    """Record which of the network's registries the participant is enrolled in."""
    session = get_session()
    user = _me()
    form = EnrolmentForm()
    form.registries.choices = choices(registry_queries.registry_choices(session))
    if request.method == "GET":
        form.registries.data = sorted(services.enrolled_registry_ids(session, user))
    if form.validate_on_submit():
        try:
            services.set_enrolments(session, user, set(form.registries.data or []), utcnow())
        except services.AccountError as exc:
            form.registries.errors.append(str(exc))
        else:
            session.commit()
            flash("Your registries are saved.", "success")
            return redirect(url_for("account.profile"))
    return render_template("account/registries.html", form=form), 400 if form.errors else 200
