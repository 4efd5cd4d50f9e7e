"""Staff pages about the network's registries: list, add, edit (retire rather than delete).
Their routes belong to the shared ``staff`` blueprint (``engage.staff``)."""

from __future__ import annotations

from flask import abort, render_template, url_for

from engage.db import get_session
from engage.registries import queries, services
from engage.registries.forms import RegistryForm
from engage.registries.models import Registry
from engage.roles import Role
from engage.security import roles_required
from engage.staff import staff
from engage.timeutil import utcnow
from engage.views import commit_or_explain, saved, signed_in_person


@staff.route("/registries")
@roles_required(Role.STAFF)
def registries():
    """All registries, active and retired."""
    rows = queries.all_registries(get_session())
    return render_template("staff/registries.html", registries=rows)


def _details(form: RegistryForm) -> services.RegistryDetails:
    return services.RegistryDetails(
        code=form.code.data,
        name=form.name.data,
        country=form.country.data,
        is_active=bool(form.is_active.data),
    )


def _form_page(form: RegistryForm, registry: Registry | None):
    return (
        render_template("staff/registry_form.html", form=form, registry=registry),
        400 if form.errors else 200,
    )


def _refused(form: RegistryForm, registry: Registry | None):
    """A refused change: the form again, the reason on the code (the one thing that clashes)."""

    def explain(exc: Exception):
        form.code.errors.append(str(exc))
        return _form_page(form, registry)

    return explain


@staff.route("/registries/new", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def new_registry():
    """Add a registry."""
    form = RegistryForm()
    if not form.validate_on_submit():
        return _form_page(form, None)
    return commit_or_explain(
        lambda session: services.create_registry(
            session, signed_in_person(), _details(form), utcnow()
        ),
        errors=services.RegistryError,
        explain=_refused(form, None),
        done=lambda registry: saved(
            f"Added {registry.name}.", url_for("staff.registries"), status=302
        ),
    )


@staff.route("/registries/<int:registry_id>/edit", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def edit_registry(registry_id: int):
    """Edit a registry (retire it rather than delete it)."""
    registry = get_session().get(Registry, registry_id)
    if registry is None:
        abort(404)
    form = RegistryForm(obj=registry)
    if not form.validate_on_submit():
        return _form_page(form, registry)
    return commit_or_explain(
        lambda session: services.update_registry(
            session, signed_in_person(), registry, _details(form), utcnow()
        ),
        errors=services.RegistryError,
        explain=_refused(form, registry),
        done=lambda _outcome: saved(
            f"Saved {registry.name}.", url_for("staff.registries"), status=302
        ),
    )
