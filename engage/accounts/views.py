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
    SignUpForm,
)
from engage.accounts.models import Role, User
from engage.db import get_session
from engage.extensions import limiter, rate_limit
from engage.forms import choices
from engage.registries import queries as registry_queries
from engage.security import (
    TokenInvalid,
    read_token,
    roles_required,
    sign_in_required,
)
from engage.timeutil import utcnow
from engage.views import commit_or_explain, saved

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

    def confirm(session):
        max_age = current_app.config["EMAIL_VERIFICATION_MAX_AGE"]
        return services.verify_email(session, read_token("verify-email", token, max_age), utcnow())

    def confirmed(user: User):
        own = current_user.is_authenticated and current_user.id == user.id
        return saved(
            "Thank you: your email address is confirmed.",
            url_for("pages.home") if own else url_for("auth.sign_in"),
            status=302,
        )

    return commit_or_explain(
        confirm,
        errors=(TokenInvalid, services.InvalidLink),
        explain=lambda exc: (render_template("auth/link_invalid.html", message=str(exc)), 400),
        done=confirmed,
    )


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
    if not form.validate_on_submit():
        return _reset_password_page(form)

    def reset(session):
        now = utcnow()
        services.reset_password(session, payload, form.password.data, now)
        emails.queue_password_changed(session, user, now)

    def refused(exc: Exception):
        form.password.errors.append(str(exc))
        return _reset_password_page(form)

    def done(_outcome: None):
        if current_user.is_authenticated:
            logout_user()
        return saved(
            "Your password is changed. Sign in with your new password.",
            url_for("auth.sign_in"),
            status=302,
        )

    return commit_or_explain(reset, errors=services.AccountError, explain=refused, done=done)


def _reset_password_page(form: NewPasswordForm):
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
    user = _me()
    form = ChangePasswordForm(email=user.email)
    if not form.validate_on_submit():
        return _password_page(form)

    def change(session):
        now = utcnow()
        services.change_password(session, user, form.current_password.data, form.password.data, now)
        emails.queue_password_changed(session, user, now)

    def refused(exc: Exception):
        field = form.current_password if isinstance(exc, services.WrongPassword) else form.password
        field.errors.append(str(exc))
        return _password_page(form)

    def done(_outcome: None):
        # Keep this session: re-issue it with the new session version.
        login_user(user, remember=bool(request.cookies.get("remember_token")))
        return saved(
            "Your password is changed. Other devices have been signed out.",
            url_for("account.profile"),
            status=302,
        )

    return commit_or_explain(
        change, errors=(services.WrongPassword, services.WeakPassword), explain=refused, done=done
    )


def _password_page(form: ChangePasswordForm):
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
        form.registries.data = sorted(registry_queries.enrolled_registry_ids(session, user.id))
    if not form.validate_on_submit():
        return _registries_page(form)

    def refused(exc: Exception):
        form.registries.errors.append(str(exc))
        return _registries_page(form)

    return commit_or_explain(
        lambda session: services.set_enrolments(
            session, user, set(form.registries.data or []), utcnow()
        ),
        errors=services.AccountError,
        explain=refused,
        done=lambda _outcome: saved(
            "Your registries are saved.", url_for("account.profile"), status=302
        ),
    )


def _registries_page(form: EnrolmentForm):
    return render_template("account/registries.html", form=form), 400 if form.errors else 200
