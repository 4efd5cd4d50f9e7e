"""Staff page of suppressed addresses (``/staff/newsletters/suppressions``): who receives no
newsletter and why, with a way to suppress an address by hand and to lift a suppression.

Addresses travel in the posted form, never in a URL (URLs end up in access logs).
"""

from __future__ import annotations

from flask import render_template, url_for
from wtforms import EmailField, HiddenField
from wtforms.validators import DataRequired, Email, Length

from engage.db import get_session
from engage.forms import Form, strip
from engage.roles import Role
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.views import commit_or_explain, page_arg, refused, saved, signed_in_person
from newsletters import suppressions
from newsletters.blueprints import newsletters_staff
from newsletters.errors import NewsletterError


class AddSuppressionForm(Form):
    """Suppress one address by hand."""

    email = EmailField(
        "Email address to suppress",
        description="Engage sends it no newsletter until the suppression is lifted.",
        filters=[strip],
        validators=[
            DataRequired(message="Enter the email address to suppress."),
            Length(max=254, message="An email address has at most 254 characters."),
            Email(message="Enter an email address like name@example.org."),
        ],
    )


class RemoveSuppressionForm(Form):
    """Lift the suppression of one address (the address is a hidden field of its row)."""

    email = HiddenField(
        "Email address",
        filters=[strip],
        validators=[
            DataRequired(message="Choose the address whose suppression to lift."),
            Length(max=254, message="That is not a suppressed address."),
        ],
    )


def _page_url() -> str:
    """The page, with focus on the list of addresses (what a change changed)."""
    return url_for("newsletters_staff.suppressions", _anchor="suppressed")


def _render(
    form: AddSuppressionForm | None = None, status: int | None = None, error: str | None = None
):
    """The page; ``form`` is the add form as typed, ``error`` why a removal was refused."""
    form = form or AddSuppressionForm(formdata=None)
    listing = suppressions.suppression_page(get_session(), page_arg())
    return (
        render_template(
            "newsletters/staff/suppressions.html",
            listing=listing,
            form=form,
            error=error,
        ),
        status or (400 if form.errors else 200),
    )


@newsletters_staff.route("/suppressions", endpoint="suppressions")
@roles_required(Role.STAFF)
def suppressions_page():
    """Suppressed addresses, newest first, with why and since when."""
    return _render()


@newsletters_staff.route("/suppressions", methods=["POST"])
@roles_required(Role.STAFF)
def add_suppression():
    """Suppress an address by hand (reason "manual")."""
    form = AddSuppressionForm()
    if not form.validate_on_submit():
        return _render(form)
    email = suppressions.normalise(form.email.data)
    return commit_or_explain(
        lambda session: suppressions.suppress_by_staff(
            session, signed_in_person(), email, utcnow()
        ),
        errors=NewsletterError,
        explain=lambda exc: refused(exc.message, _page_url()),
        done=lambda added: (
            saved(f"{email} is suppressed: it receives no newsletter.", _page_url())
            if added
            else refused(f"{email} was already suppressed; nothing changed.", _page_url(), "info")
        ),
    )


@newsletters_staff.route("/suppressions/remove", methods=["POST"])
@roles_required(Role.STAFF)
def remove_suppression():
    """Lift one suppression: the address may receive newsletters it is subscribed to again."""
    form = RemoveSuppressionForm()
    if not form.validate_on_submit():
        return _render(
            status=400,
            error="Nothing was changed: the form expired or named no address. Please try again.",
        )
    email = suppressions.normalise(form.email.data)
    return commit_or_explain(
        lambda session: suppressions.remove_suppression(
            session, signed_in_person(), email, utcnow()
        ),
        errors=NewsletterError,
        explain=lambda exc: _render(status=404, error=exc.message),
        done=lambda _row: saved(
            f"{email} is no longer suppressed. It receives the newsletters it is subscribed to.",
            _page_url(),
        ),
    )
