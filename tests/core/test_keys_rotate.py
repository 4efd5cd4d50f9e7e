"""``engage keys rotate`` and the migration that encrypted existing values: every encrypted
value ends up under the first key of ENCRYPTION_KEYS, readable by an app that holds only it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from alembic import command
from cryptography.fernet import Fernet

from engage import crypto
from engage.accounts import services as account_services
from engage.accounts.models import Role, User
from engage.app import create_app
from engage.db import Database, UTCDateTime
from engage.migrate import alembic_config
from engage.timeutil import utcnow
from tests.conftest import BACKENDS, PASSWORD

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
BEFORE_ENCRYPTION = "120b35071e7a"
ENCRYPTION = "9d3e5a7c1f20"
PLAIN = {
    "profession": "Neurologist",
    "institution": "Karolinska University Hospital",
    "organisation_name": "MS Society of Sweden",
}
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@contextmanager
def _app_with_keys(database_url: str, keys: str) -> Iterator:
    app = create_app(
        {"ENGAGE_CONFIG": "testing", "DATABASE_URL": database_url, "ENCRYPTION_KEYS": keys}
    )
    try:
        yield app
    finally:
        Database.engine(app).dispose()


def _stored(app) -> list[str]:
    """Every non-empty encrypted value of ``users`` as stored."""
    with Database.engine(app).connect() as connection:
        rows = connection.execute(
            sa.text("SELECT profession, institution, organisation_name, totp_secret FROM users")
        ).all()
    return [value for row in rows for value in row if value is not None]


def _read_all(app) -> list[tuple]:
    """Every account's encrypted fields, read (and decrypted) through the model."""
    with app.app_context():
        session = Database.new_session(app)
        try:
            return [
                (u.profession, u.institution, u.organisation_name, u.totp_secret)
                for u in session.scalars(sa.select(User).order_by(User.id))
            ]
        finally:
            session.close()


def _write_people(app, count: int) -> None:
    """``count`` clinicians with every encrypted field set, written with ``app``'s keys."""
    with app.app_context():
        session = Database.new_session(app)
        try:
            for n in range(count):
                user = account_services.create_user_by_cli(
                    session,
                    email=f"clinician{n}@example.org",
                    password=PASSWORD,
                    role=Role.CLINICIAN,
                    display_name=f"Clinician {n}",
                    country="SE",
                    language="en",
                    now=utcnow(),
                )
                user.profession = PLAIN["profession"]
                user.institution = PLAIN["institution"]
                user.organisation_name = PLAIN["organisation_name"]
                user.totp_secret = TOTP_SECRET
            session.commit()
        finally:
            session.close()


def test_rotate_moves_every_value_to_the_new_key(app, database_url):
    expected = [(*PLAIN.values(), TOTP_SECRET)] * 5
    with _app_with_keys(database_url, KEY_A) as old_app:
        _write_people(old_app, 5)
    with _app_with_keys(database_url, f"{KEY_B},{KEY_A}") as both_app:
        assert _read_all(both_app) == expected  # the new key first, the old one still reads
        result = both_app.test_cli_runner().invoke(args=["keys", "rotate", "--batch-size", "2"])
        again = both_app.test_cli_runner().invoke(args=["keys", "rotate"])

    assert result.exit_code == 0, result.output
    assert "users.profession: 5 re-encrypted, 0 already under the first key" in result.output
    assert "users.totp_secret: 5 re-encrypted" in result.output
    assert "Done: 20 value(s) re-encrypted" in result.output
    assert "Neurologist" not in result.output
    assert again.exit_code == 0
    assert "users.institution: 0 re-encrypted, 5 already under the first key" in again.output
    with _app_with_keys(database_url, KEY_B) as new_app:
        assert _read_all(new_app) == expected
        stored = _stored(new_app)
    new_key = crypto.Keyring(crypto.parse_keys(KEY_B))
    assert len(stored) == 20 and all(new_key.is_current(value) for value in stored)
    assert not any(plain in value for value in stored for plain in (*PLAIN.values(), TOTP_SECRET))
    with _app_with_keys(database_url, KEY_A) as old_app, pytest.raises(crypto.KeyringError):
        _read_all(old_app)


def test_rotate_stops_with_a_clear_message_when_no_key_opens_a_value(app, database_url):
    with _app_with_keys(database_url, KEY_A) as old_app:
        _write_people(old_app, 1)
    with _app_with_keys(database_url, KEY_B) as new_app:
        result = new_app.test_cli_runner().invoke(args=["keys", "rotate"])

    assert result.exit_code != 0
    assert "cannot be decrypted with any of ENCRYPTION_KEYS" in result.output
    assert "Traceback" not in result.output


# The migration that introduced encryption ---------------------------------------------------------
USERS_BEFORE = sa.table(
    "users",
    sa.column("id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("display_name", sa.String),
    sa.column("password_hash", sa.String),
    sa.column("role", sa.String),
    sa.column("country", sa.String),
    sa.column("language", sa.String),
    sa.column("profession", sa.String),
    sa.column("institution", sa.String),
    sa.column("organisation_name", sa.String),
    sa.column("is_active", sa.Boolean),
    sa.column("session_version", sa.Integer),
    sa.column("created_at", UTCDateTime()),
)


@pytest.fixture(params=BACKENDS)
def fresh_url(request, make_database_url) -> str:
    """A brand-new, never-migrated database of each backend."""
    return make_database_url(request.param)


def test_the_migration_encrypts_existing_values_and_its_downgrade_decrypts_them(fresh_url):
    with _app_with_keys(fresh_url, KEY_A) as migrating_app:
        config = alembic_config(migrating_app)
        command.upgrade(config, BEFORE_ENCRYPTION)
        with Database.engine(migrating_app).begin() as connection:
            connection.execute(
                USERS_BEFORE.insert().values(
                    email="clinician@example.org",
                    display_name="Clinician",
                    password_hash="x",
                    role="clinician",
                    country="SE",
                    language="en",
                    is_active=True,
                    session_version=1,
                    created_at=utcnow(),
                    **PLAIN,
                )
            )
        command.upgrade(config, ENCRYPTION)
        encrypted = _stored(migrating_app)
        read = _read_all(migrating_app)
        command.downgrade(config, BEFORE_ENCRYPTION)
        with Database.engine(migrating_app).connect() as connection:
            decrypted = connection.execute(
                sa.select(USERS_BEFORE.c.profession, USERS_BEFORE.c.institution)
            ).one()
        command.upgrade(config, "head")

    assert len(encrypted) == 3
    assert all(value.startswith(crypto.FERNET_PREFIX) for value in encrypted)
    assert not any(plain in value for value in encrypted for plain in PLAIN.values())
    assert read == [(*PLAIN.values(), None)]
    assert tuple(decrypted) == (PLAIN["profession"], PLAIN["institution"])
