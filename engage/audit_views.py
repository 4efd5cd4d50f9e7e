"""The audit log page (staff): security events, newest first, filtered by event type, account,
dates (UTC) and what an event concerns.

The page names accounts by their email address and finds an account by its address, but the
core never imports a feature package: the composition root hands it the accounts' named queries
(``engage.accounts.queries.emails`` and ``user_id_by_email``) and other packages' action enums
through :func:`init_app`, as it hands the outbox its mail kinds.

The filters are a GET form: reading the log changes nothing, so it takes no CSRF token. A page
costs a fixed number of statements whatever its size: the events, their count, the accounts'
addresses (and the account asked for by address).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from flask import Flask, current_app, render_template, request
from sqlalchemy.orm import Session
from wtforms import SelectField, StringField
from wtforms.validators import Length, Optional, ValidationError
from wtforms.widgets import DateInput

from engage import audit
from engage.db import get_session
from engage.forms import Form, choices, strip
from engage.roles import Role
from engage.security import roles_required
from engage.staff import staff
from engage.views import page_arg

AUDIT_PAGE_SIZE = 50
ACCOUNT_EMAILS = "engage.audit.account_emails"
ACCOUNT_ID_BY_EMAIL = "engage.audit.account_id_by_email"
ACTION_ENUMS = "engage.audit.action_enums"
# The largest account number an id column holds (PostgreSQL's integer).
MAX_ACCOUNT_ID = 2**31 - 1
# The longest text the "concerning" filter takes: the length of the column it searches.
CONCERNING_MAX_LENGTH = audit.AuditEvent.__table__.c.target.type.length
# The filters' query arguments, kept in the page links.
FILTER_ARGS = ("event", "account", "date_from", "date_to", "concerning")
# Facts from an event's details the page shows, with their names. Anything else stays out of
# the page (a token's display prefix, or whatever a package records later), so a new kind of
# detail is shown only once someone has decided it holds nothing secret.
SHOWN_DETAILS = {
    "role": "role",
    "old": "from",
    "new": "to",
    "from_status": "from",
    "to_status": "to",
    "reason": "reason",
    "code": "code",
    "is_active": "active",
    "deliveries": "deliveries",
    "kind": "kind",
    "count": "count",
    "remaining": "remaining",
    "ended": "sessions ended",
}
# The longest detail value shown (a reason staff typed may be long).
DETAIL_MAX_LENGTH = 200

# Email addresses by account id (ids of removed accounts are absent).
AccountEmails = Callable[[Session, Iterable[int]], dict[int, str]]
# The id of the account with an email address (compared lower-cased), if any.
AccountIdByEmail = Callable[[Session, str], int | None]


def init_app(
    app: Flask,
    *,
    account_emails: AccountEmails,
    account_id_by_email: AccountIdByEmail | None = None,
    action_enums: Iterable[type[enum.StrEnum]] = (),
) -> None:
    """Tell the audit log how to name accounts and find them by email address, and which
    other packages' actions it may hold (the composition root passes them).

    :param account_id_by_email: without it, the account filter takes account numbers only.
    :param action_enums: action enums defined outside ``engage.audit`` (by the features and by
        governance and newsletters); :class:`engage.audit.AuditAction` is always offered.
    """
    app.extensions[ACCOUNT_EMAILS] = account_emails
    app.extensions[ACCOUNT_ID_BY_EMAIL] = account_id_by_email
    app.extensions[ACTION_ENUMS] = tuple(action_enums)


def event_types() -> dict[str, str]:
    """Every event type the log may hold, value → label, ordered by label."""
    return audit.known_actions(*current_app.extensions.get(ACTION_ENUMS, ()))


def _parse_date(text: str) -> date:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise ValueError("Enter the date as year-month-day, for example 2026-12-01.")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError("This date does not exist; check the day and month.") from None
    if day >= date.max:
        raise ValueError("Enter a date before 9999-12-31.")
    return day


def _checked_date(text: str) -> date:
    try:
        return _parse_date(text)
    except ValueError as error:
        raise ValidationError(str(error)) from None


class AuditFilterForm(Form):
    """Filters of the audit log (GET; no CSRF token needed for a read)."""

    class Meta:
        csrf = False

    event = SelectField("Event type", validators=[Optional()], validate_choice=False)
    account = StringField(
        "Account",
        description="An email address or an account number. Shows events by or about it.",
        filters=[strip],
        validators=[Length(max=254, message="Use at most 254 characters.")],
    )
    date_from = StringField(
        "From (UTC)",
        description="The first day to show, as year-month-day (UTC).",
        filters=[strip],
        widget=DateInput(),
    )
    date_to = StringField(
        "To (UTC)",
        description="The last day to show, as year-month-day (UTC).",
        filters=[strip],
        widget=DateInput(),
    )
    concerning = StringField(
        "Concerning",
        description="Text the “Concerning” column contains, such as registry:3.",
        filters=[strip],
        validators=[
            Length(
                max=CONCERNING_MAX_LENGTH,
                message=f"Use at most {CONCERNING_MAX_LENGTH} characters.",
            )
        ],
    )

    def offer_events(self, types: dict[str, str]) -> None:
        """Offer the event types ``types`` (value → label) and accept only those."""
        self.known_events = set(types)
        self.event.choices = choices([("", "Any event"), *types.items()])

    def validate_event(self, field: SelectField) -> None:
        """Only event types the log knows (an unknown one could never match)."""
        if field.data and field.data not in getattr(self, "known_events", ()):
            raise ValidationError("Choose an event type from the list.")

    def validate_date_from(self, field: StringField) -> None:
        """A real date."""
        if field.data:
            _checked_date(field.data)

    def validate_date_to(self, field: StringField) -> None:
        """A real date, not before the "from" date."""
        if not field.data:
            return
        last = _checked_date(field.data)
        if self.date_from.data and not self.date_from.errors:
            try:
                first = _parse_date(self.date_from.data)
            except ValueError:
                return
            if last < first:
                raise ValidationError("The “to” date is before the “from” date.")


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _account_id(session: Session, form: AuditFilterForm) -> int | None:
    """The account the filter names, or None when it names none (an error is added)."""
    text = form.account.data or ""
    by_email = current_app.extensions.get(ACCOUNT_ID_BY_EMAIL)
    number = text.removeprefix("#").strip()
    if number.isascii() and number.isdigit():
        if int(number) > MAX_ACCOUNT_ID or int(number) == 0:
            form.account.errors.append("No account has this number.")
            return None
        return int(number)
    if "@" in text and by_email is not None:
        account_id = by_email(session, text)
        if account_id is None:
            form.account.errors.append("No account uses this email address.")
        return account_id
    form.account.errors.append(
        "Enter an email address or an account number."
        if by_email is not None
        else "Enter an account number."
    )
    return None


def _criteria(session: Session, form: AuditFilterForm) -> audit.EventFilter | None:
    """The filter the valid form asks for, or None when a value needs correcting."""
    if not form.validate():
        return None
    account_id = _account_id(session, form) if form.account.data else None
    if form.account.errors:
        return None
    first = _parse_date(form.date_from.data) if form.date_from.data else None
    last = _parse_date(form.date_to.data) if form.date_to.data else None
    return audit.EventFilter(
        action=form.event.data or None,
        account_id=account_id,
        occurred_from=_day_start(first) if first else None,
        occurred_before=_day_start(last + timedelta(days=1)) if last else None,
        target_contains=form.concerning.data or None,
    )


def event_phrase(label: str) -> str:
    """An event type's label as it reads inside the table ("Sign in" → "sign in"; a label
    that begins with an abbreviation, such as "API", keeps it)."""
    if len(label) > 1 and label[1].isupper():
        return label
    return label[:1].lower() + label[1:]


def shown_details(details: Any) -> list[tuple[str, str]]:
    """The facts of an event's details the page may show, as (name, value) pairs."""
    if not isinstance(details, dict):
        return []
    shown = []
    for key, name in SHOWN_DETAILS.items():
        value = details.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        shown.append((name, str(value)[:DETAIL_MAX_LENGTH]))
    return shown


@staff.route("/audit")
@roles_required(Role.STAFF)
def audit_log():
    """Security events, newest first, filtered as the form asks."""
    session = get_session()
    types = event_types()
    form = AuditFilterForm(request.args)
    form.offer_events(types)
    page = page_arg()
    criteria = _criteria(session, form)
    found = None
    names: dict[int, str] = {}
    if criteria is not None:
        found = audit.find_events(session, criteria, page=page, per_page=AUDIT_PAGE_SIZE)
        ids = {e.actor_id for e in found.events} | {e.subject_user_id for e in found.events}
        names = current_app.extensions[ACCOUNT_EMAILS](session, ids)
    # Only the filters' own values go into page links: passed on to url_for, names such as
    # "endpoint" or "_external" would break or redirect the link.
    args = {k: v for k, v in request.args.items() if k in FILTER_ARGS and v and criteria}
    return render_template(
        "staff/audit.html",
        form=form,
        found=found,
        names=names,
        types=types,
        page=page,
        args=args,
        per_page=AUDIT_PAGE_SIZE,
        filtered=bool(args),
        shown_details=shown_details,
        event_phrase=event_phrase,
    ), (200 if criteria is not None else 400)
