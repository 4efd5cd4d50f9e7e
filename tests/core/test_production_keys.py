"""Production refuses secrets that are not random (white space, few distinct characters, repeats,
sequences, words: under 128 bits by estimate) and encryption keys that are not Fernet keys or
were derived for development; keys made as the messages advise pass."""

from __future__ import annotations

import base64
import secrets

import pytest
from cryptography.fernet import Fernet

from config import (
    DEFAULT_SECRET_KEY,
    TESTING_SECRET_KEY,
    ConfigurationError,
    _derived_encryption_key,
    _derived_receipt_key,
    estimated_secret_bits,
    load_config,
    secret_problem,
)
from engage.app import create_app

KEY_SETTINGS = ("SECRET_KEY", "CONSENT_RECEIPT_KEY", "ENCRYPTION_KEYS")


@pytest.fixture
def production(monkeypatch):
    """A production environment whose keys are all made as the messages advise."""
    monkeypatch.setenv("ENGAGE_CONFIG", "production")
    monkeypatch.setenv("SECRET_KEY", secrets.token_hex(32))
    monkeypatch.setenv("CONSENT_RECEIPT_KEY", secrets.token_urlsafe(32))
    monkeypatch.setenv("ENCRYPTION_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://engage@db.internal/engage")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.provider-issued")
    monkeypatch.setenv("RATELIMIT_STORAGE_URI", "redis://redis.internal:6379/0")
    return monkeypatch


def key_problems(setting: str | None = None) -> list[str]:
    """The production problems about keys (about ``setting`` only, when given)."""
    names = (setting,) if setting else KEY_SETTINGS
    return [p for p in load_config("production").problems() if p.startswith(names)]


def test_keys_made_as_advised_pass(production):
    assert key_problems() == []


@pytest.mark.parametrize("make", [lambda: secrets.token_hex(32), lambda: secrets.token_urlsafe(32)])
def test_many_generated_secrets_pass(make):
    failures = [value for value in (make() for _ in range(40)) if secret_problem("K", value)]
    assert failures == []


BAD_SECRETS = {
    "32 spaces": (" " * 32, "white space"),
    "a phrase with spaces": ("correct horse battery staple engage", "white space"),
    "one character": ("x" * 64, "too few different characters"),
    "a repeated pattern": ("Kx9!" * 16, "too few different characters"),
    "a repeated block": ("q7Zx2LmP9vR4tK8w" * 4, "too predictable"),
    "the hex alphabet": ("0123456789abcdef" * 4, "long repeat or sequence"),
    "a run": ("aaaaaaaa" + secrets.token_hex(28), "long repeat or sequence"),
    "a keyboard and digits": ("qwertyuiopasdfghjklzxcvbnm1234567890", "long repeat or sequence"),
    "words": ("ThisIsMyVerySecretKeyForTheEngageApp!!", "too predictable"),
    "words and a year": ("dev-only-not-secret-but-long-enough-2024", "too predictable"),
    "short": ("k3Y" * 5, "too short"),
}


@pytest.mark.parametrize("setting", ["SECRET_KEY", "CONSENT_RECEIPT_KEY"])
@pytest.mark.parametrize("case", BAD_SECRETS)
def test_guessable_secrets_are_refused(production, setting, case):
    value, reason = BAD_SECRETS[case]
    production.setenv(setting, value)
    problems = key_problems(setting)
    assert len(problems) == 1 and reason in problems[0], problems


def test_the_estimate_separates_random_from_patterned():
    assert estimated_secret_bits(secrets.token_hex(32)) >= 200
    assert estimated_secret_bits(secrets.token_hex(8) * 4) < 128
    assert estimated_secret_bits("dev-only-not-secret-but-long-enough-2024") < 128


def test_create_app_refuses_a_guessable_secret(production):
    production.setenv("SECRET_KEY", " " * 40)
    with pytest.raises(ConfigurationError, match="SECRET_KEY contains spaces"):
        create_app()


@pytest.mark.parametrize("secret", [DEFAULT_SECRET_KEY, TESTING_SECRET_KEY])
def test_the_receipt_key_derived_for_development_is_refused(production, secret):
    production.setenv("CONSENT_RECEIPT_KEY", _derived_receipt_key(secret))
    assert "derived from SECRET_KEY" in " ".join(key_problems("CONSENT_RECEIPT_KEY"))


def test_the_receipt_key_derived_from_the_configured_secret_is_refused(production):
    secret = secrets.token_hex(32)
    production.setenv("SECRET_KEY", secret)
    production.setenv("CONSENT_RECEIPT_KEY", _derived_receipt_key(secret))
    assert "derived from SECRET_KEY" in " ".join(key_problems("CONSENT_RECEIPT_KEY"))


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ("not-a-fernet-key", "key 1 is not a Fernet key"),
        (secrets.token_hex(32), "key 1 is not a Fernet key"),
        ("{good}," + base64.urlsafe_b64encode(b"short").decode(), "key 2 is not a Fernet key"),
        (base64.urlsafe_b64encode(bytes(32)).decode(), "key 1 is not random"),
        (base64.urlsafe_b64encode(bytes(range(32))).decode(), "key 1 is not random"),
        (_derived_encryption_key(DEFAULT_SECRET_KEY), "derives from a secret"),
        (_derived_encryption_key(TESTING_SECRET_KEY), "derives from a secret"),
        ("{good},   ", "key 2 is not a Fernet key"),
    ],
)
def test_encryption_keys_must_be_random_fernet_keys(production, keys, reason):
    production.setenv("ENCRYPTION_KEYS", keys.format(good=Fernet.generate_key().decode()))
    problems = key_problems("ENCRYPTION_KEYS")
    assert len(problems) == 1 and reason in problems[0], problems


def test_the_key_derived_from_the_configured_secret_is_refused(production):
    secret = secrets.token_hex(32)
    production.setenv("SECRET_KEY", secret)
    production.setenv("ENCRYPTION_KEYS", _derived_encryption_key(secret))
    assert "derives from a secret" in " ".join(key_problems("ENCRYPTION_KEYS"))


def test_several_fernet_keys_pass(production):
    keys = ",".join(Fernet.generate_key().decode() for _ in range(3))
    production.setenv("ENCRYPTION_KEYS", keys)
    assert key_problems("ENCRYPTION_KEYS") == []


def test_any_other_secret_setting_is_checked_too(production):
    config = load_config("production")
    config.PARTNER_API_TOKEN = "x" * 40
    config.WEBHOOK_SECRET = secrets.token_hex(32)
    config.SOME_KEY = None  # unset settings are not judged here
    problems = config.problems()
    assert any(p.startswith("PARTNER_API_TOKEN uses too few different") for p in problems)
    assert not any(p.startswith(("WEBHOOK_SECRET", "SOME_KEY")) for p in problems)
    # Provider-issued credentials are the provider's to make.
    assert not any(p.startswith("SENDGRID_API_KEY") for p in problems)
