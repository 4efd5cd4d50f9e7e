"""Encryption at rest (``engage.crypto``): the database holds only ciphertext of the encrypted
fields, the app reads them back as plain text, and wrong keys are refused with a clear message."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography.fernet import Fernet

from engage import crypto
from engage.accounts.models import Role, User
from engage.app import create_app
from engage.cli import cli
from engage.db import Database, make_engine
from engage.settings import ConfigurationError
from engage.timeutil import utcnow

ENCRYPTED = ("profession", "institution", "organisation_name", "totp_secret")
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


def _raw_rows(app) -> list[tuple]:
    """Every row of ``users`` exactly as stored (no type processing)."""
    with Database.engine(app).connect() as connection:
        return [tuple(row) for row in connection.exec_driver_sql("SELECT * FROM users")]


def test_the_database_holds_only_ciphertext_of_encrypted_fields(app, session, make_user):
    clinician = make_user(Role.CLINICIAN)
    member = make_user(Role.ORGANISATION)
    session.get(User, clinician.id).totp_secret = TOTP_SECRET
    session.commit()

    with Database.engine(app).connect() as connection:
        stored = connection.execute(
            sa.text(
                "SELECT profession, institution, organisation_name, totp_secret FROM users "
                "WHERE id IN (:a, :b)"
            ),
            {"a": clinician.id, "b": member.id},
        ).all()
    values = [value for row in stored for value in row if value is not None]
    everything = repr(_raw_rows(app))

    assert len(values) == 4
    assert all(value.startswith(crypto.FERNET_PREFIX) for value in values)
    for plain in ("Neurologist", "Karolinska", "MS Society", TOTP_SECRET):
        assert plain not in everything
    session.expire_all()
    read = session.get(User, clinician.id)
    assert (read.profession, read.institution, read.totp_secret) == (
        "Neurologist",
        "Karolinska",
        TOTP_SECRET,
    )
    assert session.get(User, member.id).organisation_name == "MS Society"


def test_the_same_text_is_encrypted_differently_each_time(app, session, make_user):
    first, second = make_user(Role.CLINICIAN), make_user(Role.CLINICIAN)

    with Database.engine(app).connect() as connection:
        stored = connection.execute(
            sa.text("SELECT profession FROM users WHERE id IN (:a, :b)"),
            {"a": first.id, "b": second.id},
        ).scalars()
        ciphertexts = set(stored)

    assert len(ciphertexts) == 2  # equal professions cannot be matched in a copy of the table


def test_an_engine_without_keys_refuses_to_store_plain_text(app, database_url):
    engine = make_engine(database_url)
    try:
        with sa.orm.Session(engine) as session:
            session.add(
                User(
                    email="keyless@example.org",
                    display_name="Keyless",
                    password_hash="x",
                    role=Role.CLINICIAN,
                    country="SE",
                    language="en",
                    profession="Neurologist",
                    created_at=utcnow(),
                )
            )
            with pytest.raises(sa.exc.StatementError) as raised:
                session.flush()
    finally:
        engine.dispose()

    assert isinstance(raised.value.orig, crypto.KeyringError)
    assert "no encryption keys" in str(raised.value.orig)
    assert "Neurologist" not in repr(_raw_rows(app))


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("not-a-fernet-key", "ENCRYPTION_KEYS key 1 is not a Fernet key"),
        (f"{KEY_A},{KEY_B[:-4]}", "ENCRYPTION_KEYS key 2 is not a Fernet key"),
        (" , ", "ENCRYPTION_KEYS is empty."),
    ],
)
def test_a_bad_key_is_a_clear_configuration_error(database_url, keys, message):
    with pytest.raises(ConfigurationError) as raised:
        create_app(
            {"ENGAGE_CONFIG": "testing", "DATABASE_URL": database_url, "ENCRYPTION_KEYS": keys}
        )

    assert message in str(raised.value)
    assert "Fernet.generate_key()" in str(raised.value) or "empty" in message


@pytest.mark.sqlite_only
def test_the_command_line_explains_a_bad_key_without_a_traceback(tmp_path):
    env = {
        "ENGAGE_CONFIG": "testing",
        "ENGAGE_TEST_DATABASE_URL": f"sqlite:///{tmp_path / 'engage.sqlite'}",
        "ENCRYPTION_KEYS": "not-a-fernet-key",
    }

    result = CliRunner().invoke(cli, ["keys", "rotate"], env=env)

    assert result.exit_code != 0
    assert "ENCRYPTION_KEYS key 1 is not a Fernet key" in result.output
    assert "Traceback" not in result.output


def test_the_keyring_encrypts_with_the_first_key_and_reads_with_any():
    old = crypto.Keyring(crypto.parse_keys(KEY_A))
    both = crypto.Keyring(crypto.parse_keys(f"{KEY_B},{KEY_A}"))
    new_only = crypto.Keyring(crypto.parse_keys(KEY_B))
    under_a = old.encrypt("Neurologist")

    rotated = both.rotate(under_a)

    assert both.decrypt(under_a) == "Neurologist"
    assert not both.is_current(under_a) and both.is_current(rotated)
    assert new_only.decrypt(rotated) == "Neurologist"
    with pytest.raises(crypto.KeyringError, match="cannot be decrypted"):
        new_only.decrypt(under_a)
