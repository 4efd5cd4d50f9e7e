"""The staff audit-log page: filters by event type, account, dates (UTC) and what an event
concerns; pages that keep the filters; a fixed number of statements per page; no secrets."""

from __future__ import annotations

import enum
import importlib
import inspect
import pkgutil
import re
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import event as sa_event

from engage import audit
from engage.accounts.models import Role
from engage.audit import AuditAction
from engage.audit_views import AUDIT_PAGE_SIZE
from engage.db import Database
from governance.tokens import TokenAction
from newsletters.suppressions import SuppressionAction
from tests.conftest import sign_in

AUDIT = "/staff/audit"
START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Page(HTMLParser):
    """What a person (or a screen reader) gets from the audit page: the table's rows, labels,
    the announced count, the error summary and the page links."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.labels: dict[str, str] = {}
        self.inputs: list[str] = []
        self.options: dict[str, str] = {}
        self.status = ""
        self.links: dict[str, str] = {}
        self.headers: list[tuple[str, str | None]] = []
        self.caption = ""
        self._in: list[str] = []
        self._label_for: str | None = None
        self._option: str | None = None
        self._cell: list[str] | None = None
        self.feed(html)
        self.text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        # The count is announced after the search (engage.js reads [data-announce]).
        self._in.append(tag if tag != "p" or "data-announce" not in attributes else "status")
        if tag == "tr" and "tbody" in self._in:
            self.rows.append([])
        elif tag == "td" and self.rows:
            self._cell = []
        elif tag == "th":
            self.headers.append(("", attributes.get("scope")))
        elif tag == "label":
            self._label_for = attributes.get("for")
            self.labels[self._label_for or ""] = ""
        elif tag in ("input", "select") and attributes.get("type") != "hidden":
            self.inputs.append(attributes.get("id") or "")
        elif tag == "option":
            self._option = attributes.get("value")
            self.options[self._option or ""] = ""
        elif tag == "a" and attributes.get("rel"):
            self.links[attributes["rel"]] = attributes["href"]

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "label":
            self._label_for = None
        if tag == "option":
            self._option = None
        if self._in:
            self._in.pop()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._label_for is not None:
            self.labels[self._label_for] += data.strip()
        if self._option is not None:
            self.options[self._option] += data.strip()
        if "status" in self._in:
            self.status += data
        if "caption" in self._in:
            self.caption += data

    @property
    def concerning(self) -> list[str]:
        """The "Concerning" column, top to bottom."""
        return [row[4] for row in self.rows]


@pytest.fixture
def staff(client, make_user):
    user = make_user(Role.STAFF, email="auditor@example.org")
    sign_in(client, user)
    return user


def _record(app, *events: dict) -> None:
    """Append events (each: action, at, and record()'s keyword arguments)."""
    session = Database.new_session(app)
    try:
        for spec in events:
            spec = dict(spec)
            action, when = spec.pop("action"), spec.pop("at")
            audit.record(session, action, now=when, **spec)
        session.commit()
    finally:
        session.close()


def _get(client, **args) -> tuple[int, Page]:
    response = client.get(AUDIT, query_string=args)
    return response.status_code, Page(response.get_data(as_text=True))


def _recorded_here(page: Page) -> list[str]:
    """The "Concerning" column of the rows the test recorded (the ones concerning something;
    creating and signing in accounts is in the log too)."""
    return [row[4] for row in page.rows if row[4]]


def test_the_filter_offers_every_known_event_type_with_a_label(client, staff):
    status, page = _get(client)
    assert status == 200
    assert page.options[""] == "Any event"
    for action in AuditAction:
        assert action.value in page.options
    assert page.options["sign_in_failed"] == "Sign in failed"
    assert page.options["account_created_by_cli"] == "Account created by command line"
    # Other packages' actions, handed over by the composition root.
    assert page.options[TokenAction.CREATED.value] == "Governance API token created"
    assert SuppressionAction.REMOVED.value in page.options


def _action_enums_of_modules_that_record() -> list[type[enum.StrEnum]]:
    """The action enums (StrEnum classes named ``…Action``) defined in each module whose code
    calls ``audit.record``."""
    found = []
    for package in ("engage", "governance", "newsletters"):
        for info in pkgutil.walk_packages([str(PROJECT_ROOT / package)], prefix=f"{package}."):
            source = PROJECT_ROOT / (info.name.replace(".", "/") + ".py")
            if not source.exists() or "audit.record(" not in source.read_text():
                continue
            module = importlib.import_module(info.name)
            found += [
                value
                for value in vars(module).values()
                if inspect.isclass(value)
                and issubclass(value, enum.StrEnum)
                and value.__module__ == module.__name__
                and value.__name__.endswith("Action")
                and value is not AuditAction
            ]
    return found


def test_every_action_enum_next_to_an_audit_record_is_offered(client, staff):
    enums = _action_enums_of_modules_that_record()
    assert TokenAction in enums  # the scan finds them
    _, page = _get(client)
    offered = set(page.options)
    missing = {
        f"{e.__module__}.{e.__name__}": sorted(m.value for m in e if m.value not in offered)
        for e in enums
    }
    assert {k: v for k, v in missing.items() if v} == {}, (
        "pass these action enums to audit_views.init_app in engage/app.py"
    )


def test_filter_by_event_type(app, client, staff):
    _record(
        app,
        {"action": AuditAction.ROLE_CHANGED, "at": START, "target": "a"},
        {"action": AuditAction.PROFILE_UPDATED, "at": START, "target": "b"},
        {"action": TokenAction.REVOKED, "at": START, "target": "c"},
        {"action": AuditAction.ROLE_CHANGED, "at": START + timedelta(hours=1), "target": "d"},
    )
    status, page = _get(client, event="role_changed")
    assert status == 200
    assert page.concerning == ["d", "a"]
    assert "2 events match these filters" in page.status
    assert {row[1] for row in page.rows} == {"role changed"}

    _, page = _get(client, event=TokenAction.REVOKED.value)
    assert page.concerning == ["c"]
    assert page.rows[0][1] == "governance API token revoked"


def test_an_unknown_event_type_is_an_error_not_an_empty_list(client, staff):
    status, page = _get(client, event="drop_table")
    assert status == 400
    assert "Event type: Choose an event type from the list." in page.text
    assert page.rows == []


def test_filter_by_account_email_or_number_shows_events_by_or_about_it(
    app, client, staff, make_user
):
    ingrid = make_user(Role.PARTICIPANT, email="ingrid@example.org")
    other = make_user(Role.CLINICIAN, email="lund@example.org")
    _record(
        app,
        {
            "action": AuditAction.PROFILE_UPDATED,
            "at": START,
            "target": "by-her",
            "actor_id": ingrid.id,
        },
        {
            "action": AuditAction.ROLE_CHANGED,
            "at": START,
            "target": "about-her",
            "actor_id": staff.id,
            "subject_user_id": ingrid.id,
        },
        {
            "action": AuditAction.ROLE_CHANGED,
            "at": START,
            "target": "other",
            "actor_id": staff.id,
            "subject_user_id": other.id,
        },
    )
    for value in ("ingrid@example.org", "  INGRID@example.org ", str(ingrid.id), f"#{ingrid.id}"):
        status, page = _get(client, account=value)
        assert status == 200, value
        assert sorted(_recorded_here(page)) == ["about-her", "by-her"], value
    # Removed accounts keep their history: their number still finds it.
    _record(
        app,
        {
            "action": AuditAction.UNVERIFIED_ACCOUNT_REMOVED,
            "at": START,
            "target": "gone",
            "subject_user_id": 987654,
        },
    )
    status, page = _get(client, account="987654")
    assert status == 200
    assert page.concerning == ["gone"]
    assert "#987654 (removed)" in page.rows[0][3]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("nobody@example.org", "No account uses this email address."),
        ("ingrid", "Enter an email address or an account number."),
        ("-3", "Enter an email address or an account number."),
        ("0", "No account has this number."),
        ("99999999999999999999", "No account has this number."),
        ("١٢", "Enter an email address or an account number."),  # Arabic-Indic digits
        ("a\x00b@example.org", "Remove the invisible NUL character"),
        ("x" * 300 + "@example.org", "Use at most 254 characters."),
    ],
)
def test_an_account_that_cannot_be_found_is_explained(client, staff, value, message):
    status, page = _get(client, account=value)
    assert status == 400
    assert message in page.text
    assert page.rows == []
    assert "Correct the filters above to see events." in page.status


def test_filter_by_dates_in_utc_includes_both_days(app, client, staff):
    _record(
        app,
        {
            "action": AuditAction.SIGN_OUT,
            "at": datetime(2026, 3, 9, 23, 59, 59, tzinfo=UTC),
            "target": "before",
        },
        {
            "action": AuditAction.SIGN_OUT,
            "at": datetime(2026, 3, 10, 0, 0, tzinfo=UTC),
            "target": "first-moment",
        },
        {
            "action": AuditAction.SIGN_OUT,
            "at": datetime(2026, 3, 12, 23, 59, 59, tzinfo=UTC),
            "target": "last-moment",
        },
        {
            "action": AuditAction.SIGN_OUT,
            "at": datetime(2026, 3, 13, 0, 0, tzinfo=UTC),
            "target": "after",
        },
    )
    status, page = _get(client, date_from="2026-03-10", date_to="2026-03-12")
    assert status == 200
    assert page.concerning == ["last-moment", "first-moment"]
    _, page = _get(client, date_from="2026-03-13")
    assert "after" in page.concerning and "last-moment" not in page.concerning
    _, page = _get(client, date_to="2026-03-09")
    assert page.concerning == ["before"]
    _, page = _get(client, date_from="2026-03-10", date_to="2026-03-10")
    assert page.concerning == ["first-moment"]
    assert "(UTC)" in page.labels["date_from"] and "(UTC)" in page.labels["date_to"]
    assert "All dates and times are in UTC." in page.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"date_from": "yesterday"}, "From (UTC): Enter the date as year-month-day"),
        ({"date_from": "10/03/2026"}, "From (UTC): Enter the date as year-month-day"),
        ({"date_to": "2026-02-30"}, "To (UTC): This date does not exist"),
        ({"date_to": "2026-13-01"}, "To (UTC): This date does not exist"),
        ({"date_to": "9999-12-31"}, "To (UTC): Enter a date before 9999-12-31."),
        ({"date_from": "２０２６-03-01"}, "From (UTC): Enter the date as year-month-day"),
        (
            {"date_from": "2026-03-12", "date_to": "2026-03-10"},
            "To (UTC): The “to” date is before the “from” date.",
        ),
    ],
)
def test_bad_dates_are_explained_next_to_the_filter(client, staff, args, message):
    status, page = _get(client, **args)
    assert status == 400
    assert "Please correct the following" in page.text
    assert message in page.text
    assert page.rows == []


def test_the_earliest_and_latest_dates_are_accepted(client, staff):
    status, page = _get(client, date_from="0001-01-01", date_to="9999-12-30")
    assert status == 200
    assert page.rows  # the staff member's sign-in


def test_filter_by_what_an_event_concerns(app, client, staff):
    _record(
        app,
        {"action": AuditAction.REGISTRY_UPDATED, "at": START, "target": "registry:3"},
        {"action": AuditAction.REGISTRY_UPDATED, "at": START, "target": "registry:31"},
        {"action": AuditAction.REGISTRY_UPDATED, "at": START, "target": "Registry_100%"},
        {"action": AuditAction.REGISTRY_UPDATED, "at": START, "target": "proposal:3"},
    )
    _, page = _get(client, concerning="registry:3")
    assert sorted(page.concerning) == ["registry:3", "registry:31"]
    _, page = _get(client, concerning="REGISTRY")
    assert len(page.concerning) == 3
    # % and _ are the characters typed, not wildcards.
    _, page = _get(client, concerning="y_1")
    assert page.concerning == ["Registry_100%"]
    _, page = _get(client, concerning="%")
    assert page.concerning == ["Registry_100%"]
    status, page = _get(client, concerning="x" * 81)
    assert status == 400 and "Use at most 80 characters." in page.text


def test_filters_combine(app, client, staff, make_user):
    person = make_user(Role.PARTICIPANT)
    _record(
        app,
        {
            "action": AuditAction.ROLE_CHANGED,
            "at": START,
            "target": "match",
            "subject_user_id": person.id,
        },
        {
            "action": AuditAction.ROLE_CHANGED,
            "at": START - timedelta(days=5),
            "target": "old",
            "subject_user_id": person.id,
        },
        {
            "action": AuditAction.PROFILE_UPDATED,
            "at": START,
            "target": "other-type",
            "subject_user_id": person.id,
        },
    )
    _, page = _get(
        client,
        event="role_changed",
        account=person.email,
        date_from="2026-03-10",
        date_to="2026-03-10",
        concerning="mat",
    )
    assert page.concerning == ["match"]
    assert "1 event match these filters" in page.status


def test_pages_keep_the_filters_and_only_them(app, client, staff):
    _record(
        app,
        *(
            {"action": AuditAction.SIGN_OUT, "at": START + timedelta(minutes=n), "target": f"n{n}"}
            for n in range(AUDIT_PAGE_SIZE + 12)
        ),
        {"action": AuditAction.ROLE_CHANGED, "at": START, "target": "elsewhere"},
    )
    filters = {"event": "sign_out", "concerning": "n", "date_from": "2026-03-10"}
    status, first = _get(client, **filters, endpoint="x", _external="1")
    assert status == 200
    assert len(first.rows) == AUDIT_PAGE_SIZE
    assert first.concerning[0] == f"n{AUDIT_PAGE_SIZE + 11}"  # newest first
    assert f"{AUDIT_PAGE_SIZE + 12} events match these filters; page 1" in first.status
    assert "prev" not in first.links
    older = urlsplit(first.links["next"])
    assert older.path == AUDIT and older.netloc == ""
    assert parse_qs(older.query) == {**{k: [v] for k, v in filters.items()}, "page": ["2"]}

    second = Page(client.get(first.links["next"]).get_data(as_text=True))
    assert second.concerning == [f"n{n}" for n in range(11, -1, -1)]
    assert "next" not in second.links
    assert parse_qs(urlsplit(second.links["prev"]).query)["page"] == ["1"]
    # Past the last page: nothing, no error.
    status, beyond = _get(client, **filters, page="9")
    assert status == 200 and beyond.rows == [] and "prev" in beyond.links


@contextmanager
def counted_statements(app):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    engine = Database.engine(app)
    sa_event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa_event.remove(engine, "before_cursor_execute", count)


@pytest.mark.parametrize("args", [{}, {"account": "auditor@example.org", "event": "role_changed"}])
def test_a_page_costs_the_same_statements_for_5_or_60_events(app, client, staff, make_user, args):
    people = [make_user(Role.PARTICIPANT) for _ in range(3)]

    def add(count: int) -> None:
        _record(
            app,
            *(
                {
                    "action": AuditAction.ROLE_CHANGED,
                    "at": START,
                    "actor_id": staff.id,
                    "subject_user_id": people[n % 3].id,
                    "target": f"t{n}",
                }
                for n in range(count)
            ),
        )

    add(5)
    with counted_statements(app) as small:
        response = client.get(AUDIT, query_string=args)
    assert response.status_code == 200
    assert len(Page(response.get_data(as_text=True)).rows) >= 5
    add(55)
    with counted_statements(app) as large:
        response = client.get(AUDIT, query_string=args)
    assert response.status_code == 200
    assert len(Page(response.get_data(as_text=True)).rows) == AUDIT_PAGE_SIZE
    assert len(large) == len(small), "\n".join(large)
    audit_reads = [s for s in large if "FROM audit_events" in s]
    assert len(audit_reads) == 2  # the page and its count


def test_the_page_shows_facts_but_never_secrets(app, client, staff, make_user):
    person = make_user(Role.PARTICIPANT)
    _record(
        app,
        {
            "action": TokenAction.CREATED,
            "at": START,
            "actor_id": person.id,
            "subject_user_id": person.id,
            "target": "api_token:7",
            "display_prefix": "eng_SECRETPREFIX",
        },
        {
            "action": AuditAction.ROLE_CHANGED,
            "at": START,
            "actor_id": staff.id,
            "subject_user_id": person.id,
            "old": "participant",
            "new": "organisation",
            "password": "hunter2-do-not-show",
            "token": "tok-do-not-show",
            "ip": "192.0.2.7",
        },
    )
    status, page = _get(client, account=str(person.id))
    assert status == 200
    html = client.get(AUDIT, query_string={"account": str(person.id)}).get_data(as_text=True)
    for secret in ("SECRETPREFIX", "hunter2-do-not-show", "tok-do-not-show", "192.0.2.7"):
        assert secret not in html
    role_row = next(row for row in page.rows if row[1] == "role changed")
    assert role_row[5] == "from: participant; to: organisation"
    assert role_row[2] == "auditor@example.org" and role_row[3] == person.email


def test_text_in_events_is_escaped(app, client, staff):
    _record(
        app,
        {
            "action": AuditAction.CUSTODIAN_DECLINED,
            "at": START,
            "target": '<script>alert("t")</script>',
            "reason": "<img src=x onerror=1>",
        },
    )
    html = client.get(AUDIT).get_data(as_text=True)
    assert '<script>alert("t")</script>' not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=1&gt;" in html


def test_the_page_is_accessible(client, staff):
    status, page = _get(client)
    assert status == 200
    for input_id in page.inputs:
        assert page.labels.get(input_id), f"input {input_id} has no label"
    assert set(page.inputs) == {"event", "account", "date_from", "date_to", "concerning"}
    assert page.caption.startswith("Security events")
    assert page.headers and all(scope == "col" for _, scope in page.headers)
    assert re.fullmatch(r"\s*\d+ events? in the log\.\s*", page.status)
    assert '<form method="get"' in client.get(AUDIT).get_data(as_text=True)


def test_filtering_changes_nothing(app, client, staff, session):
    before = session.scalar(audit.sa.select(audit.sa.func.count()).select_from(audit.AuditEvent))
    for args in ({"event": "sign_in"}, {"account": "auditor@example.org"}, {"date_from": "x"}):
        client.get(AUDIT, query_string=args)
    session.expire_all()
    after = session.scalar(audit.sa.select(audit.sa.func.count()).select_from(audit.AuditEvent))
    assert after == before


@pytest.mark.parametrize("role", [Role.PARTICIPANT, Role.CLINICIAN, Role.CUSTODIAN])
def test_only_staff_read_the_log(client, as_role, role):
    as_role(role)
    assert client.get(AUDIT, query_string={"account": "1"}).status_code == 403
