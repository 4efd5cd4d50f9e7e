"""Shared fixtures: a migrated database per backend, the app, clients, factories and mail.

Every database test runs on SQLite; when ``TEST_DATABASE_URL`` is set it also runs on that
PostgreSQL, in a schema of its own that is dropped afterwards. Tests marked ``sqlite_only``
(checks decided before any SQL runs) are deselected on PostgreSQL.

The app is built once per database and put back in its first state before each test (config,
mail folder, rate limits, empty tables), which the ``app`` fixture hands out: building a new
app per test cost more than most tests do.
"""

from __future__ import annotations

import copy
import email
import email.policy
import os
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyotp
import pytest
import sqlalchemy as sa
from alembic import command
from flask import Flask
from flask.testing import FlaskClient

from engage import mail
from engage.accounts import services as account_services
from engage.accounts import two_factor as two_factor_service
from engage.accounts.models import CustodianStatus, Role, User
from engage.app import create_app
from engage.db import Database
from engage.extensions import limiter
from engage.migrate import alembic_config
from engage.registries.models import Registry
from engage.timeutil import utcnow

pytest_plugins = ["tests.fixtures_mail", "tests.fixtures_browser", "tests.crash_support"]

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])
PASSWORD = "correct horse battery"


def _postgres_url(schema: str) -> str:
    """TEST_DATABASE_URL with its search path set to ``schema``."""
    url = sa.engine.make_url(os.environ["TEST_DATABASE_URL"])
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@pytest.fixture(scope="session")
def make_database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A factory of empty databases: a fresh SQLite file or a fresh PostgreSQL schema."""
    schemas: list[str] = []

    def make(backend: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / 'engage.sqlite'}"
        schema = f"engage_test_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(_postgres_url("public"))
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        admin.dispose()
        schemas.append(schema)
        return _postgres_url(schema)

    yield make
    if schemas:
        admin = sa.create_engine(_postgres_url("public"))
        for schema in schemas:
            # One transaction each: dropping a schema locks every table, index and constraint
            # in it, and all of them at once can exceed PostgreSQL's shared lock table.
            with admin.begin() as connection:
                connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, make_database_url: Any) -> str:
    """A database migrated to the newest revision, one per backend for the whole run."""
    url = make_database_url(request.param)
    app = create_app({"ENGAGE_CONFIG": "testing", "DATABASE_URL": url})
    command.upgrade(alembic_config(app), "head")
    Database.engine(app).dispose()
    return url


# Waiting this long to empty the tables means a connection left open by an earlier test holds
# locks (it takes milliseconds otherwise): fail that once instead of hanging the run.
LOCK_TIMEOUT = "3s"
LOCK_HOLDERS = """
SELECT a.pid, a.state, a.xact_start, left(a.query, 200) AS query, pg_terminate_backend(a.pid)
FROM pg_stat_activity AS a
WHERE a.pid <> pg_backend_pid() AND a.pid IN (
    SELECT l.pid FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation
    WHERE l.granted AND c.relnamespace = to_regnamespace(current_schema())
)
"""


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers this conftest acts on."""
    config.addinivalue_line(
        "markers",
        "sqlite_only: the check is decided before any SQL runs (CSRF, request parsing, size "
        "limits, routing), so it runs on SQLite only; its other backends are deselected",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect tests marked ``sqlite_only`` on every database backend but SQLite."""
    kept, deselected = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("database_url") if callspec else None
        if item.get_closest_marker("sqlite_only") and backend not in (None, "sqlite"):
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def _tables_children_first(engine: sa.Engine) -> list[str]:
    """Every table of the migrated database but Alembic's, each before the tables it refers to."""
    metadata = sa.MetaData()
    metadata.reflect(engine)
    return [t.name for t in reversed(metadata.sorted_tables) if t.name != "alembic_version"]


def _empty_tables(engine: sa.Engine, tables: list[str]) -> None:
    """Delete every row, children first.

    ``DELETE`` rather than ``TRUNCATE … CASCADE``: on tables this small it is ~20 times faster
    on PostgreSQL, and it waits only for rows another connection locked, not for any open
    transaction that read a table. Ids are not reset: no test relies on them.
    """
    deletes = [f'DELETE FROM "{name}"' for name in tables]
    if engine.dialect.name != "postgresql":
        with engine.begin() as connection:
            for statement in deletes:
                connection.exec_driver_sql(statement)
        return
    settings = [f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'", "SET LOCAL synchronous_commit = off"]
    try:
        with engine.begin() as connection:
            # One round trip: psycopg sends statements without parameters as one query.
            connection.exec_driver_sql("; ".join(settings + deletes))
        return
    except sa.exc.OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
    with engine.begin() as connection:
        holders = [dict(row._mapping) for row in connection.execute(sa.text(LOCK_HOLDERS))]
    pytest.fail(
        f"Emptying the tables waited over {LOCK_TIMEOUT} for locks that connections left open "
        f"by an earlier test held; those connections were ended: {holders}",
        pytrace=False,
    )


def _freeze(value: Any, keep: list[Any]) -> Any:
    """A comparable copy of ``value``: containers copied, anything else by identity.

    Objects are appended to ``keep`` so that their ids stay theirs while the copy is in use.
    Only plain containers are copied (``app.config``, a dict too, is compared by identity), and
    empty entries of a mapping are left out: Flask's handler maps are defaultdicts that grow
    empty entries when looked up.
    """
    if type(value) in (dict, defaultdict):
        frozen = {key: _freeze(item, keep) for key, item in value.items()}
        return {key: item for key, item in frozen.items() if item not in ({}, (), frozenset())}
    if type(value) in (list, tuple):
        return tuple(_freeze(item, keep) for item in value)
    if type(value) in (set, frozenset):
        return frozenset(_freeze(item, keep) for item in value)
    if isinstance(value, str | int | None):
        return value
    keep.append(value)
    return id(value)


def _setup_of(app: Flask, keep: list[Any]) -> Any:
    """What building the app registered: routes, hooks, handlers, template names, extensions.

    A test may add to these (a route that raises, to see the 500 page); the app is then built
    again for the next test rather than shared in that state.
    """
    rules = sorted((r.rule, r.endpoint, *sorted(r.methods or ())) for r in app.url_map.iter_rules())
    extensions = {k: v for k, v in app.extensions.items() if k != "engage.mail"}  # rebuilt per test
    hooks = {
        name: getattr(app, name)
        for name in (
            "view_functions",
            "before_request_funcs",
            "after_request_funcs",
            "teardown_request_funcs",
            "teardown_appcontext_funcs",
            "url_value_preprocessors",
            "url_default_functions",
            "template_context_processors",
            "shell_context_processors",
            "error_handler_spec",
            "blueprints",
        )
    }
    env = app.jinja_env
    return _freeze(
        {
            "rules": rules,
            "converters": app.url_map.converters,
            "hooks": hooks,
            "extensions": extensions,
            "templates": [env.filters, env.tests, env.globals],
            "commands": app.cli.commands,
        },
        keep,
    )


class SharedApp:
    """The app of one database for the whole run, put back in its first state for each test.

    Building an app costs ~124 ms (URL map, template compiles, a cold statement cache), more
    than most tests take.
    """

    def __init__(self, database_url: str, mail_dir: Path) -> None:
        self.database_url = database_url
        self.mail_dir = mail_dir
        self._build()
        self.tables = _tables_children_first(Database.engine(self.app))

    def _build(self) -> None:
        self.app = create_app(
            {
                "ENGAGE_CONFIG": "testing",
                "DATABASE_URL": self.database_url,
                "MAIL_BACKEND": "file",
                "MAIL_OUTBOX_DIR": str(self.mail_dir),
                "BASE_URL": "http://engage.test",
            }
        )
        self.config = copy.deepcopy(dict(self.app.config))
        self.instance_path = self.app.instance_path
        self._keep: list[Any] = []
        self.setup = _setup_of(self.app, self._keep)

    def prepare(self, tmp_path: Path) -> Flask:
        """The app as it was built, writing mail into ``tmp_path``, on empty tables."""
        app = self.app
        app.config.clear()  # in place: templates and extensions hold this object
        app.config.update(copy.deepcopy(self.config))
        app.config["MAIL_OUTBOX_DIR"] = str(tmp_path / "mail")
        app.instance_path = self.instance_path
        # Setup methods (app.route, app.errorhandler…) work as on a new app; after_test
        # builds a new one if a test used them.
        app._got_first_request = False
        mail.init_app(app)
        # The limiter is one object for every app: re-read this app's settings (a test's own
        # create_app may have switched it on); when on, it starts with empty storage.
        limiter.init_app(app)
        if limiter.enabled:
            limiter.reset()
        _empty_tables(Database.engine(app), self.tables)
        return app

    def after_test(self) -> None:
        """Build the app again if the test changed what building it registered."""
        if _setup_of(self.app, []) != self.setup:
            self.close()
            self._build()

    def close(self) -> None:
        """Close the app's database connections."""
        Database.engine(self.app).dispose()


@pytest.fixture(scope="session")
def shared_app(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedApp]:
    """One app per database for the whole run; tests use ``app``, which resets it."""
    shared = SharedApp(database_url, tmp_path_factory.mktemp("mail"))
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def app(shared_app: SharedApp, tmp_path: Path) -> Iterator[Flask]:
    """The app on a clean, migrated database, writing mail into a temporary folder."""
    try:
        yield shared_app.prepare(tmp_path)
    finally:
        shared_app.after_test()


@pytest.fixture
def session(app: Flask) -> Iterator[sa.orm.Session]:
    """A session of the test's own (commit to make rows visible to requests).

    No app context is held open: requests made during the test must get their own.
    """
    db_session = Database.new_session(app)
    try:
        yield db_session
    finally:
        db_session.rollback()
        db_session.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client (cookies kept between requests)."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    """A CLI runner for the app's commands."""
    return app.test_cli_runner()


# Mail ------------------------------------------------------------------------------------
@dataclass
class SentMail:
    """A message read back from the file backend's outbox."""

    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str]

    def link(self, path_fragment: str) -> str:
        """The first absolute link in the text whose path contains ``path_fragment``."""
        for url in re.findall(r"https?://\S+", self.text):
            if path_fragment in url:
                return url
        raise AssertionError(f"no link containing {path_fragment!r} in: {self.text}")


class Mailbox:
    """What the app has written to its file outbox, oldest first."""

    def __init__(self, app: Flask) -> None:
        self.folder = Path(app.config["MAIL_OUTBOX_DIR"])

    @property
    def messages(self) -> list[SentMail]:
        """Every message sent so far."""
        if not self.folder.exists():
            return []
        found = []
        for path in sorted(self.folder.glob("*.eml")):
            parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            text = parsed.get_body(preferencelist=("plain",)).get_content()
            html = parsed.get_body(preferencelist=("html",)).get_content()
            found.append(
                SentMail(
                    to=parsed["To"],
                    subject=parsed["Subject"],
                    text=text,
                    html=html,
                    headers={k: str(v) for k, v in parsed.items()},
                )
            )
        return found

    def to(self, address: str) -> list[SentMail]:
        """Messages sent to ``address``."""
        return [m for m in self.messages if m.to == address]

    def last_to(self, address: str, wait: float = 5.0) -> SentMail:
        """The newest message to ``address`` (fails when there is none).

        Emails a person waits for are sent just after the response has gone out, so a served
        app (browser tests) may still be sending when the page has loaded: wait up to ``wait``
        seconds for the first one.
        """
        deadline = time.monotonic() + wait
        messages = self.to(address)
        while not messages and time.monotonic() < deadline:
            time.sleep(0.05)
            messages = self.to(address)
        assert messages, f"no mail to {address}"
        return messages[-1]


@pytest.fixture
def mailbox(app: Flask) -> Mailbox:
    """The messages the app sent during the test."""
    return Mailbox(app)


# Factories -------------------------------------------------------------------------------
@pytest.fixture
def make_registry(app: Flask):
    """Create a registry row: ``make_registry(code="SMSREG")``."""
    counter = iter(range(1, 10_000))

    def make(
        code: str | None = None,
        name: str | None = None,
        country: str = "SE",
        is_active: bool = True,
    ) -> Registry:
        n = next(counter)
        with app.app_context():
            db_session = Database.new_session(app)
            registry = Registry(
                code=code or f"REG{n}",
                name=name or f"Registry {n}",
                country=country,
                is_active=is_active,
                created_at=utcnow(),
            )
            db_session.add(registry)
            db_session.commit()
            db_session.close()
        return registry

    return make


# The app of each account make_user set up with two-step sign-in, by address: browser tests'
# sign-in helpers drive a page, not the app, and read the account's secret through it.
TWO_FACTOR_APPS: dict[str, Flask] = {}


@pytest.fixture
def make_user(app: Flask, make_registry: Any):
    """Create an account: ``make_user(role=Role.CLINICIAN, clinician_verified=True)``."""
    counter = iter(range(1, 10_000))

    def make(
        role: Role = Role.PARTICIPANT,
        *,
        email: str | None = None,
        password: str = PASSWORD,
        email_verified: bool = True,
        clinician_verified: bool = False,
        custodian_status: CustodianStatus | None = None,
        registry: Registry | None = None,
        is_active: bool = True,
        display_name: str | None = None,
        two_factor: bool | None = None,
    ) -> User:
        """:param two_factor: set up two-step sign-in (default: for the roles requiring it)."""
        n = next(counter)
        if role == Role.CUSTODIAN and registry is None:
            registry = make_registry()
        with app.app_context():
            db_session = Database.new_session(app)
            user = account_services.create_user_by_cli(
                db_session,
                email=email or f"{role.value}{n}@example.org",
                password=password,
                role=role,
                display_name=display_name or f"{role.value.title()} {n}",
                country="SE",
                language="en",
                now=utcnow(),
            )
            if not email_verified:
                user.email_verified_at = None
            if role == Role.CLINICIAN:
                user.profession, user.institution = "Neurologist", "Karolinska"
                user.clinician_verified_at = utcnow() if clinician_verified else None
            if role == Role.ORGANISATION:
                user.organisation_name = "MS Society"
            if role == Role.CUSTODIAN:
                user.custodian_registry_id = registry.id
                user.custodian_status = custodian_status or CustodianStatus.APPROVED
            user.is_active = is_active
            if two_factor is None:
                two_factor = role in two_factor_service.REQUIRED_FOR_ROLES
            if two_factor:
                # Confirmed with the oldest code still accepted, leaving later ones to sign in.
                now = utcnow()
                secret = two_factor_service.begin_enrolment(user)
                oldest = two_factor_service.current_counter(now) - two_factor_service.VALID_WINDOW
                code = two_factor_service.code_at(secret, oldest)
                two_factor_service.confirm_enrolment(db_session, user, code, now)
                TWO_FACTOR_APPS[user.email] = app
            db_session.commit()
            db_session.close()
        return user

    return make


# Browsing helpers --------------------------------------------------------------------------
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def csrf_token(client: FlaskClient) -> str:
    """The CSRF token of the client's session, read from any page's meta tag."""
    page = client.get("/")
    match = CSRF_META.search(page.get_data(as_text=True))
    assert match, "no csrf-token meta tag on the home page"
    return match.group(1)


def post_form(client: FlaskClient, url: str, data: dict[str, Any] | None = None, **kwargs: Any):
    """POST ``data`` to ``url`` with the session's CSRF token, as a browser form would."""
    data = dict(data or {})
    data.setdefault("csrf_token", csrf_token(client))
    return client.post(url, data=data, **kwargs)


TWO_FACTOR_PAGE = "/sign-in/two-factor"
# Seconds before a time step ends in which its previous step's code is no longer offered (the
# server may check it in the next step, when it is too old).
CODE_MARGIN_SECONDS = 3


def next_totp_code(app: Flask, email: str) -> str:
    """The authenticator code the account ``email`` can sign in with now: the oldest one still
    accepted and newer than the last accepted (codes are never accepted twice)."""
    db_session = Database.new_session(app)
    try:
        user = db_session.scalar(sa.select(User).where(User.email == email))
        assert user is not None and user.totp_secret, f"{email} has no two-step sign-in"
        secret, last = user.totp_secret, user.totp_last_counter
    finally:
        db_session.close()
    now = utcnow()
    current = two_factor_service.current_counter(now)
    late = now.timestamp() % two_factor_service.STEP_SECONDS > (
        two_factor_service.STEP_SECONDS - CODE_MARGIN_SECONDS
    )
    window = two_factor_service.VALID_WINDOW
    for counter in range(current - window, current + window + 1):
        if (last is None or counter > last) and not (counter < current and late):
            return two_factor_service.code_at(secret, counter)
    pytest.fail(
        f"{email} used every authenticator code accepted right now (each works once): sign in "
        "once and reuse the client, or make another account",
        pytrace=False,
    )


def totp_code_for(email: str) -> str:
    """:func:`next_totp_code` for an account make_user set up with two-step sign-in (for
    browser tests, which have no app at hand)."""
    assert email in TWO_FACTOR_APPS, f"make_user did not set up two-step sign-in for {email}"
    return next_totp_code(TWO_FACTOR_APPS[email], email)


def sign_in(client: FlaskClient, user: User, password: str = PASSWORD, **extra: Any):
    """Sign ``user`` in through the sign-in form, and its code step when the account uses
    two-step sign-in; fails the test if it doesn't work."""
    response = post_form(client, "/sign-in", {"email": user.email, "password": password, **extra})
    assert response.status_code == 302, response.get_data(as_text=True)
    step = urlsplit(response.headers["Location"]).path
    if step == TWO_FACTOR_PAGE + "/set-up":
        # A role that needs two-step sign-in, not yet set up (demo or CLI-made accounts): set
        # it up as a person would, reading the key the page shows into an authenticator.
        page = client.get(step).get_data(as_text=True)
        key = re.search(r'<code id="setup-key">([^<]+)</code>', page)
        assert key, "the set-up page shows no key"
        code = pyotp.TOTP(key.group(1).replace(" ", "")).now()
        response = post_form(client, step, {"code": code})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response
    if step.startswith(TWO_FACTOR_PAGE + "/"):
        pytest.fail(f"{user.email}: unexpected two-step sign-in page {step}")
    if step == TWO_FACTOR_PAGE:
        code = next_totp_code(client.application, user.email)
        response = post_form(client, TWO_FACTOR_PAGE, {"code": code})
        assert response.status_code == 302, response.get_data(as_text=True)
    return response


@pytest.fixture
def as_role(client: FlaskClient, make_user: Any):
    """Sign the client in as a new account of ``role`` and return the account."""

    def sign_in_as(role: Role | None, **kwargs: Any) -> User | None:
        if role is None:
            return None
        user = make_user(role, **kwargs)
        sign_in(client, user)
        return user

    return sign_in_as


# Tests that need PostgreSQL (real concurrency) -------------------------------------------------
def _postgres_required() -> bool:
    """True when a missing PostgreSQL must fail the run (CI sets ENGAGE_REQUIRE_POSTGRES=1)."""
    value = os.environ.get("ENGAGE_REQUIRE_POSTGRES", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.postgres`` tests skip without ``TEST_DATABASE_URL`` on a developer machine
    (saying how to run them) and fail where PostgreSQL is required."""
    if item.get_closest_marker("postgres") is None or os.environ.get("TEST_DATABASE_URL"):
        return
    reason = "this test needs PostgreSQL (set TEST_DATABASE_URL, or run make test with a local one)"
    if _postgres_required():
        pytest.fail(f"{reason}, and ENGAGE_REQUIRE_POSTGRES is set", pytrace=False)
    pytest.skip(f"{reason}; set ENGAGE_REQUIRE_POSTGRES=1 to make this a failure")
