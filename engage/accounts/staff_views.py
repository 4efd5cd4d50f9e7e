"""Staff pages about people: search, professional verification, custodian requests, roles and
activation. Their routes belong to the shared ``staff`` blueprint (``engage.staff``)."""

from __future__ import annotations

from flask import abort, render_template, request, url_for
from flask_login import current_user

from engage import audit
from engage.accounts import emails, staff_services
from engage.accounts import services as account_services
from engage.accounts.forms import (
    ActiveForm,
    ClinicianVerificationForm,
    CustodianDecisionForm,
    RoleForm,
    UserSearchForm,
)
from engage.accounts.models import Role, User
from engage.accounts.reauth import fresh_auth_required
from engage.db import get_session
from engage.forms import choices
from engage.registries import queries as registry_queries
from engage.security import roles_required
from engage.staff import staff
from engage.timeutil import utcnow
from engage.views import commit_or_explain, page_arg, saved


def _actor() -> User:
    actor = get_session().get(User, current_user.id)
    if actor is None:
        abort(403)
    return actor


@staff.route("/users")
@roles_required(Role.STAFF)
def users():
    """List and search accounts."""
    form = UserSearchForm(request.args)
    form.validate()
    role = Role(form.role.data) if form.role.data in {r.value for r in Role} else None
    result = staff_services.search_users(
        get_session(),
        text=(form.q.data or "")[:100] if not form.q.errors else "",
        role=role,
        pending_only=bool(form.pending.data),
        page=page_arg(),
    )
    # Only the search's own parameters go into page links: passed on to url_for, names such as
    # "endpoint" or "_external" would break or redirect the link.
    args = {k: v for k, v in request.args.items() if k in ("q", "role", "pending")}
    return render_template("staff/users.html", form=form, result=result, args=args)


def _user_or_404(user_id: int) -> User:
    user = get_session().get(User, user_id)
    if user is None:
        abort(404)
    return user


def _render_user(user: User, status: int = 200, error: str | None = None, **forms: object):
    session = get_session()
    registry_choices = registry_queries.registry_choices(session)
    verify_form = forms.get("verify_form") or ClinicianVerificationForm(
        verified="yes" if user.clinician_verified_at else "no"
    )
    custodian_form = forms.get("custodian_form") or CustodianDecisionForm(
        registry=user.custodian_registry_id
    )
    custodian_form.registry.choices = choices(registry_choices)
    role_form = forms.get("role_form") or RoleForm(role=user.role.value)
    active_form = forms.get("active_form") or ActiveForm(active="yes" if user.is_active else "no")
    return (
        render_template(
            "staff/user_detail.html",
            user=user,
            verify_form=verify_form,
            custodian_form=custodian_form,
            role_form=role_form,
            active_form=active_form,
            history=audit.events_about(session, user.id, limit=20),
            enrolments=registry_queries.enrolled_registries(session, user.id),
            error=error,
        ),
        status,
    )


def _refused(user: User, field, exc: Exception, **forms: object):
    """A refused decision: the page again, with the reason on the field that asked (400)."""
    field.errors.append(str(exc))
    return _render_user(user, 400, error=str(exc), **forms)


def _back_to_user(user_id: int, message: str):
    """After a saved decision: say so on the person's page."""
    return lambda _outcome: saved(
        message, url_for("staff.user_detail", user_id=user_id), status=302
    )


@staff.route("/users/<int:user_id>")
@roles_required(Role.STAFF)
def user_detail(user_id: int):
    """One account, with the decisions staff can take about it."""
    return _render_user(_user_or_404(user_id))


@staff.route("/users/<int:user_id>/clinician", methods=["POST"])
@roles_required(Role.STAFF)
@fresh_auth_required
def verify_clinician(user_id: int):
    """Confirm or withdraw a clinician's professional claim."""
    user = _user_or_404(user_id)
    form = ClinicianVerificationForm()
    if not form.validate_on_submit():
        return _render_user(user, 400, verify_form=form)
    return commit_or_explain(
        lambda session: staff_services.set_clinician_verified(
            session, _actor(), user, form.verified.data == "yes", utcnow()
        ),
        errors=account_services.AccountError,
        explain=lambda exc: _refused(user, form.verified, exc, verify_form=form),
        done=_back_to_user(user_id, f"Saved: {user.display_name}'s professional claim."),
    )


@staff.route("/users/<int:user_id>/custodian", methods=["POST"])
@roles_required(Role.STAFF)
@fresh_auth_required
def decide_custodian(user_id: int):
    """Approve (binding to a registry) or decline a custodian request."""
    user = _user_or_404(user_id)
    form = CustodianDecisionForm()
    form.registry.choices = choices(registry_queries.registry_choices(get_session()))
    if not form.validate_on_submit():
        return _render_user(user, 400, custodian_form=form)
    approve = form.decision.data == "approve"

    def decide(session):
        now = utcnow()
        staff_services.decide_custodian_request(
            session,
            _actor(),
            user,
            approve=approve,
            registry_id=form.registry.data or None,
            reason=form.reason.data,
            now=now,
        )
        emails.queue_custodian_decision(
            session, user, now, approved=approve, reason=form.reason.data or None
        )

    return commit_or_explain(
        decide,
        errors=account_services.AccountError,
        explain=lambda exc: _refused(user, form.decision, exc, custodian_form=form),
        done=_back_to_user(user_id, f"Saved: the custodian request of {user.display_name}."),
    )


@staff.route("/users/<int:user_id>/role", methods=["POST"])
@roles_required(Role.STAFF)
@fresh_auth_required
def change_role(user_id: int):
    """Move an account to another role."""
    user = _user_or_404(user_id)
    form = RoleForm()
    if not form.validate_on_submit():
        return _render_user(user, 400, role_form=form)
    return commit_or_explain(
        lambda session: staff_services.change_role(
            session, _actor(), user, Role(form.role.data), utcnow()
        ),
        errors=account_services.AccountError,
        explain=lambda exc: _refused(user, form.role, exc, role_form=form),
        # Read after the commit: the message names the new role.
        done=lambda _outcome: saved(
            f"Saved: {user.display_name} is now {user.role.label.lower()}.",
            url_for("staff.user_detail", user_id=user_id),
            status=302,
        ),
    )


@staff.route("/users/<int:user_id>/active", methods=["POST"])
@roles_required(Role.STAFF)
@fresh_auth_required
def set_active(user_id: int):
    """Deactivate or reactivate an account."""
    user = _user_or_404(user_id)
    form = ActiveForm()
    if not form.validate_on_submit():
        return _render_user(user, 400, active_form=form)
    return commit_or_explain(
        lambda session: staff_services.set_active(
            session, _actor(), user, form.active.data == "yes", utcnow()
        ),
        errors=account_services.AccountError,
        explain=lambda exc: _refused(user, form.active, exc, active_form=form),
        done=_back_to_user(user_id, f"Saved: {user.display_name}'s account status."),
    )
