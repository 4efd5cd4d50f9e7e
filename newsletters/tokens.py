"""Signed links: one-click unsubscribe (no expiry) and sign-up confirmation (expiring).

An unsubscribe token names a subscriber and a list and carries an HMAC-SHA256 over both under
the app's secret key: ``{subscriber}.{list}.{mac}``. It is computed for every recipient of every
send (a million per large send), so it is one HMAC call, not a serializer round trip. A forged
or altered token fails :func:`read_unsubscribe_token`; it never expires, because an unsubscribe
link in an old email must keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

CONFIRM_SALT = "engage.newsletters.confirm"
UNSUBSCRIBE_CONTEXT = b"engage.newsletters.unsubscribe:"
# How long a sign-up confirmation link works.
CONFIRM_MAX_AGE_SECONDS = 7 * 24 * 3600


class BadToken(ValueError):
    """A link that was altered, forged, or has expired."""


@dataclass(frozen=True)
class UnsubscribeToken:
    """Who an unsubscribe link is for."""

    subscriber_id: int
    list_id: int


class UnsubscribeSigner:
    """Makes and reads unsubscribe tokens under one secret key (build once per send)."""

    def __init__(self, secret_key: str | bytes) -> None:
        key = secret_key.encode() if isinstance(secret_key, str) else secret_key
        self._key = hashlib.sha256(UNSUBSCRIBE_CONTEXT + key).digest()

    def _mac(self, subscriber_id: int, list_id: int) -> str:
        digest = hmac.digest(self._key, f"{subscriber_id}.{list_id}".encode(), "sha256")
        return base64.urlsafe_b64encode(digest[:18]).decode()

    def make(self, subscriber_id: int, list_id: int) -> str:
        """The token for ``subscriber_id`` on ``list_id``."""
        return f"{subscriber_id}.{list_id}.{self._mac(subscriber_id, list_id)}"

    def read(self, token: str) -> UnsubscribeToken:
        """The subscriber and list a token names; :class:`BadToken` when it is not ours."""
        parts = (token or "").split(".")
        # ASCII digits only, and few of them: int() refuses "²" (which isdigit() accepts) and
        # numbers over 4,300 digits with a ValueError that is not a BadToken.
        if len(parts) != 3 or not all(_is_id(part) for part in parts[:2]):
            raise BadToken("This unsubscribe link is not valid.")
        subscriber_id, list_id = int(parts[0]), int(parts[1])
        if not hmac.compare_digest(parts[2], self._mac(subscriber_id, list_id)):
            raise BadToken("This unsubscribe link is not valid.")
        return UnsubscribeToken(subscriber_id, list_id)


def _is_id(text: str) -> bool:
    """Whether ``text`` is a row id as :meth:`UnsubscribeSigner.make` writes it."""
    return text.isascii() and text.isdigit() and len(text) <= 19


def make_unsubscribe_token(secret_key: str, subscriber_id: int, list_id: int) -> str:
    """One unsubscribe token (see :class:`UnsubscribeSigner` for many)."""
    return UnsubscribeSigner(secret_key).make(subscriber_id, list_id)


def read_unsubscribe_token(secret_key: str, token: str) -> UnsubscribeToken:
    """Read an unsubscribe token; :class:`BadToken` when it was altered or forged."""
    return UnsubscribeSigner(secret_key).read(token)


def make_confirm_token(secret_key: str, subscription_id: int) -> str:
    """A sign-up confirmation token for one pending subscription (expires, see below)."""
    return URLSafeTimedSerializer(secret_key, salt=CONFIRM_SALT).dumps(subscription_id)


def read_confirm_token(secret_key: str, token: str, max_age: int = CONFIRM_MAX_AGE_SECONDS) -> int:
    """The subscription a confirmation token names; :class:`BadToken` when it was altered,
    forged, or is older than ``max_age`` seconds."""
    serializer = URLSafeTimedSerializer(secret_key, salt=CONFIRM_SALT)
    try:
        value = serializer.loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise BadToken("This confirmation link has expired. Please sign up again.") from exc
    except BadSignature as exc:
        raise BadToken("This confirmation link is not valid.") from exc
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadToken("This confirmation link is not valid.")
    return value
