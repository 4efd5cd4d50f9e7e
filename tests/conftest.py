"""Shared fixtures: a migrated database per backend, the app, clients, factories and mail.

Every database test runs on SQLite; when ``TEST_DATABASE_URL`` is set it also runs on that
PostgreSQL, in a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from flask import Flask
from flask.testing import FlaskClient

import engage.models  # noqa: F401 - all tables on Base.metadata
from engage.accounts import services as account_services
from engage.accounts.models import CustodianStatus, Role, User
from engage.app import create_app
from engage.db import Base, Database
from engage.migrate import alembic_config
from engage.registries.models import Registry
from engage.timeutil import utcnow

pytest_plugins = ["tests.fixtures_mail", "tests.fixtures_browser"]

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
        with admin.begin() as connection:
            for schema in schemas:
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


def _empty_all_tables(app: Flask) -> None:
    engine = Database.engine(app)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(sa.text(f"DELETE FROM {table}"))


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    """The app on a clean, migrated database, writing mail into a temporary folder."""
    app = create_app(
        {
            "ENGAGE_CONFIG": "testing",
            "DATABASE_URL": database_url,
            "MAIL_BACKEND": "file",
            "MAIL_OUTBOX_DIR": str(tmp_path / "mail"),
            "BASE_URL": "http://engage.test",
        }
    )
    try:
        yield app
    finally:
        _empty_all_tables(app)
        Database.engine(app).dispose()


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

    def last_to(self, address: str) -> SentMail:
        """The newest message to ``address`` (fails when there is none)."""
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
    ) -> User:
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


def sign_in(client: FlaskClient, user: User, password: str = PASSWORD, **extra: Any):
    """Sign ``user`` in through the sign-in form; fails the test if it doesn't work."""
    response = post_form(client, "/sign-in", {"email": user.email, "password": password, **extra})
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
