"""Staff pages: people, professional verification, custodian requests, registries, audit log."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from engage.accounts import emails
from engage.accounts import services as account_services
from engage.accounts.forms import (
    ActiveForm,
    ClinicianVerificationForm,
    CustodianDecisionForm,
    RoleForm,
    UserSearchForm,
)
from engage.accounts.models import Role, User
from engage.audit import AuditEvent
from engage.db import get_session
from engage.forms import choices
from engage.registries import queries as registry_queries
from engage.registries import services as registry_services
from engage.registries.forms import RegistryForm
from engage.registries.models import Registry
from engage.security import roles_required
from engage.timeutil import utcnow

staff = Blueprint("staff", __name__, url_prefix="/staff")
AUDIT_PAGE_SIZE = 50


def _actor() -> User:
    actor = get_session().get(User, current_user.id)
    if actor is None:
        abort(403)
    return actor


def _page_arg() -> int:
    """The ``page`` query argument, clamped to a sane positive integer."""
    page = request.args.get("page", 1, type=int) or 1
    return min(max(page, 1), 100_000)


@staff.route("/users")
@roles_required(Role.STAFF)
def users():
    """List and search accounts."""
    form = UserSearchForm(request.args)
    form.validate()
    role = Role(form.role.data) if form.role.data in {r.value for r in Role} else None
    result = account_services.search_users(
        get_session(),
        text=(form.q.data or "")[:100] if not form.q.errors else "",
        role=role,
        pending_only=bool(form.pending.data),
        page=_page_arg(),
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
    history = list(
        session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.subject_user_id == user.id)
            .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
            .limit(20)
        )
    )
    enrolments = registry_queries.enrolled_registries(session, user.id)
    return (
        render_template(
            "staff/user_detail.html",
            user=user,
            verify_form=verify_form,
            custodian_form=custodian_form,
            role_form=role_form,
            active_form=active_form,
            history=history,
            enrolments=enrolments,
            error=error,
        ),
        status,
    )


@staff.route("/users/<int:user_id>")
@roles_required(Role.STAFF)
def user_detail(user_id: int):
    """One account, with the decisions staff can take about it."""
    return _render_user(_user_or_404(user_id))


@staff.route("/users/<int:user_id>/clinician", methods=["POST"])
@roles_required(Role.STAFF)
def verify_clinician(user_id: int):
    """Confirm or withdraw a clinician's professional claim."""
    session = get_session()
    user = _user_or_404(user_id)
    form = ClinicianVerificationForm()
    if not form.validate_on_submit():
        return _render_user(user, 400, verify_form=form)
    try:
        account_services.set_clinician_verified(
            session, _actor(), user, form.verified.data == "yes", utcnow()
        )
    except account_services.AccountError as exc:
        form.verified.errors.append(str(exc))
        return _render_user(user, 400, error=str(exc), verify_form=form)
    session.commit()
    flash(f"Saved: {user.display_name}'s professional claim.", "success")
    return redirect(url_for("staff.user_detail", user_id=user.id))


@staff.route("/users/<int:user_id>/custodian", methods=["POST"])
@roles_required(Role.STAFF)
def decide_custodian(user_id: int):
    """Approve (binding to a registry) or decline a custodian request."""
    session = get_session()
    user = _user_or_404(user_id)
    form = CustodianDecisionForm()
    form.registry.choices = choices(registry_queries.registry_choices(session))
    if not form.validate_on_submit():
        return _render_user(user, 400, custodian_form=form)
    now = utcnow()
    approve = form.decision.data == "approve"
    try:
        account_services.decide_custodian_request(
            session,
            _actor(),
            user,
            approve=approve,
            registry_id=form.registry.data or None,
            reason=form.reason.data,
            now=now,
        )
    except account_services.AccountError as exc:
        form.decision.errors.append(str(exc))
        return _render_user(user, 400, error=str(exc), custodian_form=form)
    emails.queue_custodian_decision(
        session, user, now, approved=approve, reason=form.reason.data or None
    )
    session.commit()
    flash(f"Saved: the custodian request of {user.display_name}.", "success")
    return redirect(url_for("staff.user_detail", user_id=user.id))


@staff.route("/users/<int:user_id>/role", methods=["POST"])
@roles_required(Role.STAFF)
def change_role(user_id: int):
    """Move an account to another role."""
    session = get_session()
    user = _user_or_404(user_id)
    form = RoleForm()
    if not form.validate_on_submit():
        return _render_user(user, 400, role_form=form)
    try:
        account_services.change_role(session, _actor(), user, Role(form.role.data), utcnow())
    except account_services.AccountError as exc:
        form.role.errors.append(str(exc))
        return _render_user(user, 400, error=str(exc), role_form=form)
    session.commit()
    flash(f"Saved: {user.display_name} is now {user.role.label.lower()}.", "success")
    return redirect(url_for("staff.user_detail", user_id=user.id))


@staff.route("/users/<int:user_id>/active", methods=["POST"])
@roles_required(Role.STAFF)
def set_active(user_id: int):
    """Deactivate or reactivate an account."""
    session = get_session()
    user = _user_or_404(user_id)
    form = ActiveForm()
    if not form.validate_on_submit():
        return _render_user(user, 400, active_form=form)
    try:
        account_services.set_active(session, _actor(), user, form.active.data == "yes", utcnow())
    except account_services.AccountError as exc:
        form.active.errors.append(str(exc))
        return _render_user(user, 400, error=str(exc), active_form=form)
    session.commit()
    flash(f"Saved: {user.display_name}'s account status.", "success")
    return redirect(url_for("staff.user_detail", user_id=user.id))


# Registries -----------------------------------------------------------------------------
@staff.route("/registries")
@roles_required(Role.STAFF)
def registries():
    """All registries, active and retired."""
    rows = list(get_session().scalars(sa.select(Registry).order_by(Registry.name)))
    return render_template("staff/registries.html", registries=rows)


def _details(form: RegistryForm) -> registry_services.RegistryDetails:
    return registry_services.RegistryDetails(
        code=form.code.data,
        name=form.name.data,
        country=form.country.data,
        is_active=bool(form.is_active.data),
    )


@staff.route("/registries/new", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def new_registry():
    """Add a registry."""
    session = get_session()
    form = RegistryForm()
    if form.validate_on_submit():
        try:
            registry = registry_services.create_registry(
                session, _actor(), _details(form), utcnow()
            )
        except registry_services.RegistryError as exc:
            form.code.errors.append(str(exc))
        else:
            session.commit()
            flash(f"Added {registry.name}.", "success")
            return redirect(url_for("staff.registries"))
    return (
        render_template("staff/registry_form.html", form=form, registry=None),
        400 if form.errors else 200,
    )


@staff.route("/registries/<int:registry_id>/edit", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def edit_registry(registry_id: int):
    """Edit a registry (retire it rather than delete it)."""
    session = get_session()
    registry = session.get(Registry, registry_id)
    if registry is None:
        abort(404)
    form = RegistryForm(obj=registry)
    if form.validate_on_submit():
        try:
            registry_services.update_registry(session, _actor(), registry, _details(form), utcnow())
        except registry_services.RegistryError as exc:
            form.code.errors.append(str(exc))
        else:
            session.commit()
            flash(f"Saved {registry.name}.", "success")
            return redirect(url_for("staff.registries"))
    return (
        render_template("staff/registry_form.html", form=form, registry=registry),
        400 if form.errors else 200,
    )


# Audit log -------------------------------------------------------------------------------
@staff.route("/audit")
@roles_required(Role.STAFF)
def audit_log():
    """The most recent security events, newest first."""
    session = get_session()
    page = _page_arg()
    events = list(
        session.scalars(
            sa.select(AuditEvent)
            .order_by(AuditEvent.id.desc())
            .limit(AUDIT_PAGE_SIZE + 1)
            .offset((page - 1) * AUDIT_PAGE_SIZE)
        )
    )
    has_next = len(events) > AUDIT_PAGE_SIZE
    events = events[:AUDIT_PAGE_SIZE]
    ids = {e.actor_id for e in events} | {e.subject_user_id for e in events}
    ids.discard(None)
    names = (
        dict(session.execute(sa.select(User.id, User.email).where(User.id.in_(ids))).all())
        if ids
        else {}
    )
    return render_template(
        "staff/audit.html", events=events, names=names, page=page, has_next=has_next
    )
