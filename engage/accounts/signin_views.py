"""Sign-in and sign-out (routes of the ``auth`` blueprint)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, logout_user

from engage.accounts import services, two_factor_flow
from engage.accounts.forms import SignInForm
from engage.accounts.models import User
from engage.accounts.signin import finish_sign_in
from engage.accounts.views import _post_only, _sign_in_limit, auth
from engage.db import get_session
from engage.extensions import limiter
from engage.security import is_safe_next
from engage.timeutil import utcnow


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
            remember = bool(form.remember.data)
            if two_factor_flow.second_step_needed(user):
                return two_factor_flow.start_second_step(user, remember=remember, next_url=next_url)
            return finish_sign_in(user, remember=remember, next_url=next_url)
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
