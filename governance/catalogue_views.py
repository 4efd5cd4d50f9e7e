"""Staff pages of the core variable catalogue, on the ``governance_staff`` blueprint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, render_template, request, url_for

from engage.accounts.models import Role
from engage.db import get_session
from engage.forms import Form
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.views import commit_or_explain, saved, signed_in_person
from governance import catalogue
from governance.errors import GovernanceError
from governance.models import (
    CatalogueVariable,
)
from governance.staff_forms import (
    VariableForm,
    VariableStateForm,
)
from governance.staff_views import governance_staff, refusal_status, with_error


# The variable catalogue -----------------------------------------------------------------------
def _variable(variable_id: int) -> CatalogueVariable:
    variable = get_session().get(CatalogueVariable, variable_id)
    if variable is None:
        abort(404)
    return variable


def _render_catalogue(status: int = 200, failed: Form | None = None):
    grouped: dict[str, list[CatalogueVariable]] = {}
    for variable in catalogue.all_variables(get_session()):
        grouped.setdefault(variable.domain, []).append(variable)
    return (
        render_template("governance/staff/catalogue.html", groups=grouped.items(), failed=failed),
        status,
    )


@governance_staff.route("/catalogue")
@roles_required(Role.STAFF)
def catalogue_page():
    """Every variable of the core data model by domain, retired ones included."""
    return _render_catalogue()


def _variable_details(form: VariableForm) -> catalogue.VariableDetails:
    return catalogue.VariableDetails(
        code=form.code.data,
        name=form.name.data,
        domain=form.domain.data,
        description=form.description.data,
    )


def _render_variable_form(form: VariableForm, variable: CatalogueVariable | None, status=None):
    return (
        render_template("governance/staff/variable_form.html", form=form, variable=variable),
        status or (400 if form.errors else 200),
    )


def _to_catalogue(message: str, variable_id: int):
    return saved(message, url_for("governance_staff.catalogue_page") + f"#variable-{variable_id}")


@governance_staff.route("/catalogue/new", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def new_variable():
    """Add a variable to the catalogue."""
    form = VariableForm()
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: catalogue.add_variable(
                session, signed_in_person(), _variable_details(form), utcnow()
            ),
            errors=GovernanceError,
            explain=lambda exc: _render_variable_form(
                with_error(form, exc), None, refusal_status(exc)
            ),
            done=lambda variable: _to_catalogue(f"{variable.code} is added.", variable.id),
        )
    return _render_variable_form(form, None)


@governance_staff.route("/catalogue/<int:variable_id>/edit", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def edit_variable(variable_id: int):
    """Change a variable's details (its code only until a proposal requests it)."""
    variable = _variable(variable_id)
    # The row fills the form only on GET: a POST missing a field must not fall back to it.
    form = VariableForm(obj=variable if request.method == "GET" else None)
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: catalogue.edit_variable(
                session, signed_in_person(), variable, _variable_details(form), utcnow()
            ),
            errors=GovernanceError,
            explain=lambda exc: _render_variable_form(
                with_error(form, exc), _variable(variable_id), refusal_status(exc)
            ),
            done=lambda _: _to_catalogue(f"{variable.code} is saved.", variable.id),
        )
    return _render_variable_form(form, variable)


def _variable_state(variable_id: int, change: Callable[..., None], message: str) -> Any:
    variable = _variable(variable_id)
    form = VariableStateForm(expected_code=variable.code)
    if not form.validate_on_submit():
        return _render_catalogue(400, form)
    code = variable.code
    return commit_or_explain(
        lambda session: change(session, signed_in_person(), variable, utcnow()),
        errors=GovernanceError,
        explain=lambda exc: _render_catalogue(refusal_status(exc), with_error(form, exc)),
        done=lambda _: _to_catalogue(message.format(code=code), variable_id),
    )


@governance_staff.route("/catalogue/<int:variable_id>/retire", methods=["POST"])
@roles_required(Role.STAFF)
def retire_variable(variable_id: int):
    """Retire a variable: new proposals can no longer request it."""
    return _variable_state(
        variable_id,
        catalogue.retire_variable,
        "{code} is retired: new proposals can no longer request it.",
    )


@governance_staff.route("/catalogue/<int:variable_id>/reinstate", methods=["POST"])
@roles_required(Role.STAFF)
def reinstate_variable(variable_id: int):
    """Make a retired variable available to new proposals again."""
    return _variable_state(
        variable_id,
        catalogue.reinstate_variable,
        "{code} is available to new proposals again.",
    )
