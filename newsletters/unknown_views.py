"""Staff settle a send's emails whose outcome stayed unknown (see ``newsletters.unknown``)."""

from __future__ import annotations

from flask import abort, current_app, url_for
from wtforms import RadioField
from wtforms.validators import InputRequired

from engage.db import get_session
from engage.forms import Form, choices
from engage.roles import Role
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.views import commit_or_explain, refused, saved, signed_in_person
from newsletters.blueprints import newsletters_staff
from newsletters.errors import InvalidState
from newsletters.models import Send
from newsletters.unknown import UNKNOWN_AFTER_HOURS, UnknownAction, settle_unreported


class SettleUnknownForm(Form):
    """What to do with emails the provider never reported on."""

    action = RadioField(
        "What should happen to them?",
        choices=choices(
            [
                (UnknownAction.RESEND.value, "Send them again"),
                (UnknownAction.COUNT_AS_SENT.value, "Count them as sent"),
            ]
        ),
        validators=[InputRequired("Choose what should happen to them.")],
    )


def hours() -> float:
    """How long an unknown email must have gone unreported before staff may settle it."""
    return float(current_app.config.get("NEWSLETTER_UNKNOWN_AFTER_HOURS", UNKNOWN_AFTER_HOURS))


@newsletters_staff.route("/sends/<int:send_id>/unknown", methods=["POST"])
@roles_required(Role.STAFF)
def settle_unknown(send_id: int):
    """Send again, or count as sent, a send's emails whose outcome is still unknown and that
    the provider has not reported on for ``NEWSLETTER_UNKNOWN_AFTER_HOURS``."""
    session = get_session()
    send = session.get(Send, send_id)
    if send is None:
        abort(404)
    back = url_for(
        "newsletters_staff.campaign", campaign_id=send.campaign_id, _anchor=f"unknown-{send.id}"
    )
    form = SettleUnknownForm()
    if not form.validate():
        # Nothing chosen (or the form expired): say so where the choice is; nothing changes.
        return refused(
            "Choose what should happen to these emails: send them again, or count them as sent."
            if form.action.errors
            else "Your form expired; please try again.",
            back,
        )
    action = UnknownAction(form.action.data)
    actor = signed_in_person()
    window = hours()

    def done(count: int):
        if not count:
            return refused(
                f"No email of this send has been unknown and unreported for {window:g} hours.",
                back,
                category="info",
            )
        what = "will be sent again" if action == UnknownAction.RESEND else "now count as sent"
        return saved(f"{count:,} email(s) {what}.", back)

    return commit_or_explain(
        lambda s: settle_unreported(s, actor, send, action, utcnow(), hours=window),
        errors=InvalidState,
        explain=lambda error: refused(error.message, back),
        done=done,
    )
