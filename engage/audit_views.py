"""The audit log page (staff): security events, newest first.

The page names accounts by their email address, but the core never imports a feature package:
the composition root hands it the accounts' named query (``engage.accounts.queries.emails``)
through :func:`init_app`, as it hands the outbox its mail kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from flask import Flask, current_app, render_template
from sqlalchemy.orm import Session

from engage import audit
from engage.db import get_session
from engage.roles import Role
from engage.security import roles_required
from engage.staff import staff
from engage.views import page_arg

AUDIT_PAGE_SIZE = 50
ACCOUNT_EMAILS = "engage.audit.account_emails"

# Email addresses by account id (ids of removed accounts are absent).
AccountEmails = Callable[[Session, Iterable[int]], dict[int, str]]


def init_app(app: Flask, *, account_emails: AccountEmails) -> None:
    """Tell the audit log how to name accounts (the composition root passes accounts' query)."""
    app.extensions[ACCOUNT_EMAILS] = account_emails


@staff.route("/audit")
@roles_required(Role.STAFF)
def audit_log():
    """The most recent security events, newest first."""
    session = get_session()
    page = page_arg()
    events, has_next = audit.recent_events(session, page=page, per_page=AUDIT_PAGE_SIZE)
    ids = {e.actor_id for e in events} | {e.subject_user_id for e in events}
    names = current_app.extensions[ACCOUNT_EMAILS](session, ids)
    return render_template(
        "staff/audit.html", events=events, names=names, page=page, has_next=has_next
    )
