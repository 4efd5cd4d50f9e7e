"""Encryption at rest of sensitive free-text fields (``cryptography``'s MultiFernet).

The keys come from configuration, ``ENCRYPTION_KEYS``: Fernet keys separated by commas, the
first one encrypting and every one decrypting, so a new key is put first and the old ones stay
until ``engage keys rotate`` has re-encrypted every value with the new key.

Columns typed :class:`EncryptedText` hold ciphertext in the database and plain text in Python.
The keyring belongs to the app and is attached to its engine's dialect (``init_app``), so any
session on the app's database encrypts, in a request or not; an engine without a keyring
raises rather than store plain text.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, current_app, has_app_context

from engage.settings import ConfigurationError

KEYRING = "engage.keyring"
# Every Fernet token starts with its version byte 0x80, which base64 writes as "gAAAAA".
FERNET_PREFIX = "gAAAAA"


class KeyringError(RuntimeError):
    """The encryption keys are missing or malformed, or a value cannot be decrypted."""


def parse_keys(value: str) -> list[bytes]:
    """The Fernet keys in a comma-separated setting, checked (raise ``KeyringError``)."""
    keys = [part.strip().encode() for part in value.split(",") if part.strip()]
    if not keys:
        raise KeyringError("ENCRYPTION_KEYS is empty.")
    for number, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise KeyringError(
                f"ENCRYPTION_KEYS key {number} is not a Fernet key (32 url-safe base64-encoded "
                "bytes); make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None
    return keys


class Keyring:
    """The app's encryption keys: the first encrypts, all decrypt."""

    def __init__(self, keys: list[bytes]) -> None:
        self.keys = keys
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self._primary = Fernet(keys[0])

    def encrypt(self, plaintext: str) -> str:
        """Ciphertext of ``plaintext`` under the first key."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """Plain text of ``ciphertext`` (any of the keys), or raise ``KeyringError``."""
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise KeyringError(
                "A stored value cannot be decrypted with any of ENCRYPTION_KEYS (was a key "
                "removed before `engage keys rotate` ran?)."
            ) from None

    def rotate(self, ciphertext: str) -> str:
        """``ciphertext`` re-encrypted under the first key (unchanged plain text)."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise KeyringError(
                "A stored value cannot be decrypted with any of ENCRYPTION_KEYS."
            ) from None

    def is_current(self, ciphertext: str) -> bool:
        """Whether ``ciphertext`` is already under the first key."""
        try:
            self._primary.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True


def init_app(app: Flask) -> None:
    """Build the app's keyring from ``ENCRYPTION_KEYS``."""
    try:
        ring = Keyring(parse_keys(app.config["ENCRYPTION_KEYS"] or ""))
    except KeyringError as exc:
        raise ConfigurationError(str(exc)) from None
    app.extensions[KEYRING] = ring
    # EncryptedText finds the keys through the dialect of the engine it runs on.
    app.extensions["engage.db"]["engine"].dialect.engage_keyring = ring


def keyring(app: Flask | None = None) -> Keyring:
    """The keyring of ``app`` or of the current app."""
    if app is None:
        if not has_app_context():
            raise KeyringError("encrypted columns are read and written inside an app context")
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    return app.extensions[KEYRING]


class EncryptedText(sa.types.TypeDecorator[str]):
    """Text stored encrypted with the app's keyring (plain text in Python, None stays None)."""

    impl = sa.Text()
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> Any:
        """Encrypt on the way in."""
        if value is None:
            return None
        return _dialect_keyring(dialect).encrypt(value)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> Any:
        """Decrypt on the way out."""
        if value is None:
            return None
        return _dialect_keyring(dialect).decrypt(value)


def _dialect_keyring(dialect: sa.Dialect) -> Keyring:
    ring = getattr(dialect, "engage_keyring", None)
    if ring is None:
        raise KeyringError("this engine has no encryption keys (engage.crypto.init_app binds them)")
    return ring
