"""The web archive of past newsletters (blueprint ``newsletters``, /newsletters/archive).

Anyone may read what went to public lists; what went to account-only lists (or was aimed at
account holders by role, country, registry or topic) only signed-in account holders may read;
to everyone else it does not exist (404). Nobody's name appears: ``{name}`` reads "reader".
"""

from __future__ import annotations

from flask import abort, render_template
from flask_login import current_user

from engage.db import get_session
from engage.views import page_arg
from newsletters import queries
from newsletters.blueprints import newsletters


def _signed_in() -> bool:
    return bool(current_user.is_authenticated)


@newsletters.route("/archive")
def archive():
    """Past newsletters the reader may see, newest first."""
    result = queries.archive_page(get_session(), signed_in=_signed_in(), page=page_arg())
    if result.page > result.pages:
        abort(404)
    return render_template("newsletters/archive.html", result=result, signed_in=_signed_in())


@newsletters.route("/archive/<int:send_id>")
def archive_send(send_id: int):
    """One past newsletter, as it was sent, addressed to no one in particular."""
    entry = queries.archived_send(get_session(), send_id, signed_in=_signed_in())
    if entry is None:
        abort(404)
    return render_template(
        "newsletters/archive_send.html",
        entry=entry,
        body=queries.archive_body(entry.body_markdown),
    )
