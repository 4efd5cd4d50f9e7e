"""Configuration is read from the environment; production refuses unsafe settings."""

from __future__ import annotations

import pytest

from config import DEFAULT_SECRET_KEY, ConfigurationError, ProductionConfig, load_config
from engage.app import create_app

PG_URL = "postgresql+psycopg://engage@db.internal/engage"
# Random values made once with secrets.token_hex(32), secrets.token_urlsafe(32) and
# Fernet.generate_key(): production refuses keys that are not random.
GOOD_SECRET = "ecfd72f24d945cab46b0bd5231b74cc95857bc9ca49d2e11c84468aae11a4089"
GOOD_RECEIPT_KEY = "YlPZXlKaM2md0FdYqO1Ivx9YsGsKKhzTi5c2n56AsC0"
GOOD_ENCRYPTION_KEY = "anJCL3wKiNieV8G4BQZFA66rUIe-iTJYXIctisQCCBo="


@pytest.fixture
def production_env(monkeypatch):
    monkeypatch.setenv("ENGAGE_CONFIG", "production")
    monkeypatch.setenv("SECRET_KEY", GOOD_SECRET)
    monkeypatch.setenv("DATABASE_URL", PG_URL)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setenv("CONSENT_RECEIPT_KEY", GOOD_RECEIPT_KEY)
    monkeypatch.setenv("ENCRYPTION_KEYS", GOOD_ENCRYPTION_KEY)
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", "redis://redis.internal:6379/0")
    return monkeypatch


def test_production_accepts_a_real_secret_and_postgresql(production_env):
    config = load_config()
    config.validate()
    assert isinstance(config, ProductionConfig)
    assert config.SESSION_COOKIE_SECURE and config.MAIL_BACKEND == "sendgrid"


@pytest.mark.parametrize("secret", [None, "", DEFAULT_SECRET_KEY, "short"])
def test_production_refuses_a_missing_or_default_secret(production_env, secret):
    if secret is None:
        production_env.delenv("SECRET_KEY")
    else:
        production_env.setenv("SECRET_KEY", secret)
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app()


@pytest.mark.parametrize("url", [None, "sqlite:///engage.sqlite"])
def test_production_refuses_sqlite(production_env, url):
    if url is None:
        production_env.delenv("DATABASE_URL")
    else:
        production_env.setenv("DATABASE_URL", url)
    with pytest.raises(ConfigurationError, match="PostgreSQL"):
        create_app()


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (None, "CONSENT_RECEIPT_KEY is missing"),
        ("", "CONSENT_RECEIPT_KEY is missing"),
        ("short", "CONSENT_RECEIPT_KEY is too short"),
        (GOOD_SECRET, "CONSENT_RECEIPT_KEY must differ from SECRET_KEY"),
    ],
)
def test_production_refuses_a_missing_short_or_reused_receipt_key(production_env, key, problem):
    if key is None:
        production_env.delenv("CONSENT_RECEIPT_KEY")
    else:
        production_env.setenv("CONSENT_RECEIPT_KEY", key)
    with pytest.raises(ConfigurationError, match=problem):
        create_app()


def test_development_derives_a_receipt_key_unless_one_is_set(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite'}")
    monkeypatch.delenv("CONSENT_RECEIPT_KEY", raising=False)
    derived = load_config("development").CONSENT_RECEIPT_KEY
    assert derived and len(derived) == 64 and derived != DEFAULT_SECRET_KEY
    assert derived == load_config("development").CONSENT_RECEIPT_KEY  # stable across restarts
    monkeypatch.setenv("CONSENT_RECEIPT_KEY", GOOD_RECEIPT_KEY)
    assert load_config("development").CONSENT_RECEIPT_KEY == GOOD_RECEIPT_KEY
    assert load_config("production").CONSENT_RECEIPT_KEY == GOOD_RECEIPT_KEY
    monkeypatch.delenv("CONSENT_RECEIPT_KEY")
    assert load_config("production").CONSENT_RECEIPT_KEY is None  # never derived in production


def test_consent_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("CONSENT_MAX_READING_GRADE", "10")
    monkeypatch.setenv("CONSENT_REVIEW_REMINDER_DAYS", "7")
    monkeypatch.setenv("CONSENT_MAX_REMINDERS", "2")
    monkeypatch.setenv("CONSENT_JURISDICTION", "SE")
    monkeypatch.setenv("CONSENT_CONTROLLER", "Karolinska Institutet")
    config = load_config("development")
    assert (
        config.CONSENT_MAX_READING_GRADE,
        config.CONSENT_REVIEW_REMINDER_DAYS,
        config.CONSENT_MAX_REMINDERS,
        config.CONSENT_JURISDICTION,
        config.CONSENT_CONTROLLER,
    ) == (10, 7, 2, "SE", "Karolinska Institutet")


def test_unknown_environment_name_is_refused(monkeypatch):
    monkeypatch.setenv("ENGAGE_CONFIG", "staging")
    with pytest.raises(ConfigurationError, match="ENGAGE_CONFIG"):
        load_config()


def test_sendgrid_backend_needs_a_key(monkeypatch):
    monkeypatch.setenv("MAIL_BACKEND", "sendgrid")
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="SENDGRID_API_KEY"):
        load_config("development").validate()


def test_environment_variables_are_read(monkeypatch, tmp_path):
    monkeypatch.setenv("MAIL_BACKEND", "console")
    monkeypatch.setenv("MAIL_FROM", "Network <hello@network.example>")
    monkeypatch.setenv("BASE_URL", "https://engage.network.example")
    monkeypatch.setenv("RATELIMIT_ENABLED", "false")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.sqlite'}")
    app = create_app({"ENGAGE_CONFIG": "development"})
    assert app.config["MAIL_BACKEND"] == "console"
    assert app.config["MAIL_FROM"] == "Network <hello@network.example>"
    assert app.config["BASE_URL"] == "https://engage.network.example"
    assert app.config["RATELIMIT_ENABLED"] is False
    assert app.config["DATABASE_URL"].endswith("x.sqlite")


def test_production_cli_gives_a_clear_message_not_a_traceback(monkeypatch):
    from click.testing import CliRunner

    from engage.cli import cli

    monkeypatch.setenv("ENGAGE_CONFIG", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    result = CliRunner().invoke(cli, ["db", "current"])
    assert result.exit_code != 0
    assert "SECRET_KEY is missing" in result.output


def test_production_refuses_missing_encryption_keys(production_env):
    production_env.delenv("ENCRYPTION_KEYS")
    with pytest.raises(ConfigurationError, match="ENCRYPTION_KEYS is missing"):
        create_app()


def test_development_and_testing_derive_encryption_keys_from_the_secret():
    first = load_config("testing").ENCRYPTION_KEYS
    assert first and first == load_config("testing").ENCRYPTION_KEYS
