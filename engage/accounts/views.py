"""Sign-up, verification, password reset and the person's own account pages (profile,
password, email address, registries). Sign-in and sign-out live in ``signin_views``."""

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
from flask_login import current_user
from sqlalchemy.exc import IntegrityError

from engage.accounts import email_change, emails, services, two_factor_flow
from engage.accounts import sessions as user_sessions
from engage.accounts.forms import (
    ChangePasswordForm,
    ConfirmAddressForm,
    EmailChangeForm,
    EnrolmentForm,
    NewPasswordForm,
    ProfileForm,
    RequestResetForm,
    SignUpForm,
)
from engage.accounts.models import Role, User
from engage.accounts.reauth import fresh_auth_required
from engage.accounts.signin import finish_sign_in, forget_failed_sign_ins, sign_out_here
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
                emails.queue_sign_up_repeat(
                    session, outcome.user, now, same_password=outcome.same_password
                )
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


@auth.route("/verify-email/<token>", methods=["GET", "POST"])
@limiter.limit(_reset_limit, exempt_when=_post_only)
def verify_email(token: str):
    """Confirm an address from an emailed link, with the account's password; then sign in.

    Opening the link changes nothing (mail scanners open links). The password shows that
    whoever chose the account owns the address: someone who signed up with another person's
    address is never confirmed by that person opening the link. The owner sets a new password
    instead (the reset flow), which confirms the address and ends the other person's sessions.
    """
    session = get_session()
    try:
        payload = read_token(
            "verify-email", token, current_app.config["EMAIL_VERIFICATION_MAX_AGE"]
        )
        user = services.user_to_verify(session, payload)
    except (TokenInvalid, services.InvalidLink) as exc:
        return render_template("auth/link_invalid.html", message=str(exc)), 400
    form = ConfirmAddressForm()
    if not form.validate_on_submit():
        return _verify_page(form, user)

    def refused(exc: Exception):
        if isinstance(exc, services.WrongPassword):
            form.password.errors.append(str(exc))
            return _verify_page(form, user)
        return render_template("auth/link_invalid.html", message=str(exc)), 400

    def confirmed(user: User):
        flash("Thank you: your email address is confirmed.", "success")
        if two_factor_flow.second_step_needed(user):
            return two_factor_flow.start_second_step(user, remember=False, next_url=None)
        return finish_sign_in(user, remember=False, next_url=None)

    return commit_or_explain(
        lambda session: services.verify_email(session, payload, form.password.data, utcnow()),
        errors=(services.WrongPassword, services.InvalidLink),
        explain=refused,
        done=confirmed,
    )


def _verify_page(form: ConfirmAddressForm, user: User):
    return (
        render_template("auth/verify_email.html", form=form, user=user),
        400 if form.errors else 200,
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
        # Its owner just proved who they are: the account's failed sign-ins are forgotten.
        forget_failed_sign_ins(user.email)
        if current_user.is_authenticated:
            sign_out_here()
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
    user = _me()
    form = ProfileForm(obj=user, role=user.role)
    if not form.validate_on_submit():
        return _profile_page(form, user)
    details = services.ProfileDetails(
        display_name=form.display_name.data,
        country=form.country.data,
        language=form.language.data,
        profession=form.profession.data,
        institution=form.institution.data,
        organisation_name=form.organisation_name.data,
    )

    def refused(exc: Exception):
        form.display_name.errors.append(str(exc))
        return _profile_page(form, user)

    return commit_or_explain(
        lambda session: services.update_profile(session, user, details, utcnow()),
        errors=services.InvalidName,
        explain=refused,
        done=lambda _outcome: saved(
            "Your profile is saved.", url_for("account.profile"), status=302
        ),
    )


def _profile_page(form: ProfileForm, user: User):
    session = get_session()
    enrolments = (
        registry_queries.enrolled_registries(session, user.id)
        if user.role == Role.PARTICIPANT
        else []
    )
    return (
        render_template("account/profile.html", form=form, user=user, enrolments=enrolments),
        400 if form.errors else 200,
    )


# Changing one's email address ------------------------------------------------------------------
@account.route("/email", methods=["GET", "POST"])
@sign_in_required
@limiter.limit(_reset_limit, exempt_when=_post_only)
@fresh_auth_required
def change_email():
    """Ask for a new email address: a link goes to it, a notice to the current one.

    The answer never says whether the new address already has an account (that address is
    told instead).
    """
    user = _me()
    form = EmailChangeForm()
    if not form.validate_on_submit():
        return _email_page(form, user)

    def ask(session):
        now = utcnow()
        asked = email_change.request_email_change(session, user, form.email.data, now)
        emails.queue_email_change(session, asked, now)
        return asked

    def refused(exc: Exception):
        form.email.errors.append(str(exc))
        return _email_page(form, user)

    def asked(outcome: email_change.ChangeAsked):
        return saved(
            f"We sent a link to {outcome.new_address}. Open it to finish the change: until "
            f"then your address stays {outcome.old_address}.",
            url_for("account.profile"),
            status=302,
        )

    return commit_or_explain(ask, errors=email_change.AddressUnchanged, explain=refused, done=asked)


def _email_page(form: EmailChangeForm, user: User):
    return (
        render_template("account/email.html", form=form, user=user),
        400 if form.errors else 200,
    )


@account.route("/email/cancel", methods=["POST"])
@sign_in_required
def cancel_email_change():
    """Cancel the pending change of address (its link stops working)."""
    session = get_session()
    if email_change.cancel_email_change(session, _me(), utcnow()):
        session.commit()
        flash("The change of your email address is cancelled.", "success")
    else:
        flash("There was no change of email address waiting.", "info")
    return redirect(url_for("account.profile"), code=303)


@auth.route("/confirm-new-email/<token>", methods=["GET", "POST"])
@limiter.limit(_reset_limit, exempt_when=_post_only)
def confirm_email_change(token: str):
    """Confirm a new address from the link sent to it, with the account's password.

    Opening the link changes nothing. The password keeps a stranger who receives a mistyped
    address's link from taking the account over.
    """
    session = get_session()
    try:
        payload = read_token(
            email_change.TOKEN_PURPOSE, token, current_app.config["EMAIL_CHANGE_MAX_AGE"]
        )
        user = email_change.user_for_change(session, payload)
    except (TokenInvalid, services.InvalidLink) as exc:
        return render_template("auth/link_invalid.html", message=str(exc)), 400
    form = ConfirmAddressForm()
    if not form.validate_on_submit():
        return _confirm_email_page(form, user)

    own = current_user.is_authenticated and current_user.id == user.id

    def change(session):
        now = utcnow()
        changed = email_change.confirm_email_change(
            session,
            payload,
            form.password.data,
            now,
            keep_session_id=user_sessions.current_session_id(current_user) if own else None,
        )
        emails.queue_email_changed(session, changed, now)
        return changed

    def refused(exc: Exception):
        if isinstance(exc, services.WrongPassword):
            form.password.errors.append(str(exc))
        elif isinstance(exc, email_change.AddressTaken):
            form.form_errors.append(str(exc))
        else:
            return render_template("auth/link_invalid.html", message=str(exc)), 400
        return _confirm_email_page(form, user)

    def changed(outcome: email_change.AddressChanged):
        return saved(
            f"Your email address is now {outcome.user.email}."
            + (" Other devices were signed out." if own else " Use it to sign in."),
            url_for("account.profile") if own else url_for("auth.sign_in"),
            status=302,
        )

    return commit_or_explain(
        change,
        errors=(services.WrongPassword, services.InvalidLink, email_change.AddressTaken),
        explain=refused,
        done=changed,
    )


def _confirm_email_page(form: ConfirmAddressForm, user: User):
    return (
        render_template("account/email_confirm.html", form=form, user=user),
        400 if form.errors or form.form_errors else 200,
    )


@account.route("/password", methods=["GET", "POST"])
@sign_in_required
@fresh_auth_required
def change_password():
    """Change one's password; other sessions end."""
    user = _me()
    form = ChangePasswordForm(email=user.email)
    if not form.validate_on_submit():
        return _password_page(form)

    def change(session):
        now = utcnow()
        services.change_password(
            session,
            user,
            form.current_password.data,
            form.password.data,
            now,
            keep_session_id=user_sessions.current_session_id(user),
        )
        emails.queue_password_changed(session, user, now)

    def refused(exc: Exception):
        field = form.current_password if isinstance(exc, services.WrongPassword) else form.password
        field.errors.append(str(exc))
        return _password_page(form)

    def done(_outcome: None):
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
