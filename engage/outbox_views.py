"""Staff page of the mail outbox: counts by kind and status, failed and unknown emails with
their errors, and the decision on each one whose outcome is unknown."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask_login import current_user
from wtforms import SelectField
from wtforms.validators import InputRequired

from engage import outbox
from engage.db import get_session
from engage.forms import Form, choices
from engage.roles import Role
from engage.security import roles_required
from engage.timeutil import utcnow

outbox_staff = Blueprint("outbox_staff", __name__, url_prefix="/staff/outbox")

DECISIONS = {
    outbox.Resolution.SEND_AGAIN: "Send it again",
    outbox.Resolution.MARK_SENT: "It arrived: count it as sent",
    outbox.Resolution.GIVE_UP: "Do not send it",
}


class ResolveForm(Form):
    """What staff decide about one failed or unknown email."""

    decision = SelectField(
        "Decision",
        choices=choices([(d.value, label) for d, label in DECISIONS.items()]),
        validators=[InputRequired()],
    )


def _render(
    status: int = 200,
    form: ResolveForm | None = None,
    form_for: int | None = None,
    error: str | None = None,
):
    session = get_session()
    problems = outbox.problems(session)
    return (
        render_template(
            "staff/outbox.html",
            counts=outbox.counts(session),
            labels=outbox.kinds().labels,
            problems=problems,
            form=form,
            form_for=form_for,
            error=error,
            new_form=ResolveForm,
            decisions=[(d.value, label) for d, label in DECISIONS.items()],
        ),
        status,
    )


@outbox_staff.route("")
@roles_required(Role.STAFF)
def overview():
    """Outbox counts, and the emails that need a decision."""
    return _render()


@outbox_staff.route("/<int:message_id>/resolve", methods=["POST"])
@roles_required(Role.STAFF)
def resolve(message_id: int):
    """Settle one failed or unknown email; the decision is recorded with who made it."""
    session = get_session()
    if session.get(outbox.OutboxMessage, message_id) is None:
        abort(404)
    form = ResolveForm()
    if not form.validate_on_submit():
        return _render(400, form, message_id)
    decision = outbox.Resolution(form.decision.data)
    try:
        outbox.resolve(session, current_user.id, message_id, decision, utcnow())
    except outbox.CannotResolve as exc:
        session.rollback()
        form.decision.errors.append(str(exc))
        return _render(409, form, message_id, error=f"Email #{message_id}: {exc}")
    session.commit()
    flash(
        f"Email #{message_id}: {DECISIONS[decision].lower()}. Your decision is recorded.", "success"
    )
    return redirect(url_for("outbox_staff.overview")), 303
