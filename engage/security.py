"""Passwords, signed tokens and access-control decorators."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import abort, current_app, redirect, request, url_for
from flask_login import current_user
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from zxcvbn import zxcvbn

from engage.roles import CustodianStatus, Role

F = TypeVar("F", bound=Callable[..., Any])

COMMON_PASSWORDS = frozenset(
    {
        "password",
        "password1",
        "password12",
        "password123",
        "password1234",
        "passw0rd",
        "p@ssw0rd",
        "p@ssword",
        "qwerty",
        "qwertyuiop",
        "qwerty123",
        "qwerty1234",
        "1234567890",
        "0123456789",
        "12345678910",
        "0987654321",
        "1111111111",
        "123123123123",
        "abc1234567",
        "abcdefghij",
        "iloveyou",
        "iloveyou12",
        "letmein",
        "letmein123",
        "welcome",
        "welcome123",
        "welcome1234",
        "administrator",
        "admin12345",
        "football",
        "baseball",
        "sunshine12",
        "princess12",
        "monkey1234",
        "dragon1234",
        "trustno1",
        "changeme",
        "changeme123",
        "multiplesclerosis",
        "sclerosis",
        "engage1234",
        "engage12345",
        "1q2w3e4r5t",
        "zaq12wsxcde",
        "asdfghjkl",
        "asdfghjkl1",
        "superman12",
    }
)
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
# Strength is judged on this many characters at most: zxcvbn's cost grows with the length, and
# whatever follows only makes a password harder to guess.
STRENGTH_CHECKED_LENGTH = 100
# zxcvbn's score, 0 to 4; 3 means "safely unguessable" (over 10^8 guesses) per NIST 800-63B's
# advice to refuse passwords found in breach lists, dictionaries and context-specific words.
MIN_PASSWORD_SCORE = 3
# Words anyone attacking this site tries first.
SITE_WORDS = ("engage", "multiple sclerosis", "multiplesclerosis", "sclerosis", "ms")
_TOO_COMMON = "This password is too common; choose one that is harder to guess."
# zxcvbn's warnings and suggestions, in plain words ("" leaves a suggestion out).
_PLAIN_WARNINGS = {
    "This is a top-10 common password.": _TOO_COMMON,
    "This is a top-100 common password.": _TOO_COMMON,
    "This is a very common password.": _TOO_COMMON,
    "This is similar to a commonly used password.": (
        "This password is too close to a common one: adding a number or a symbol does not "
        "make it much harder to guess."
    ),
    "A word by itself is easy to guess.": "A single word is easy to guess.",
    "Names and surnames by themselves are easy to guess.": "Names are easy to guess.",
    "Common names and surnames are easy to guess.": "Names are easy to guess.",
    "Straight rows of keys are easy to guess.": "Rows of keys, like qwerty, are easy to guess.",
    "Short keyboard patterns are easy to guess.": "Keyboard patterns are easy to guess.",
    'Repeats like "aaa" are easy to guess.': "Repeated letters are easy to guess.",
    'Repeats like "abcabcabc" are only slightly harder to guess than "abc".': (
        "A word or pattern typed twice is hardly harder to guess than typed once."
    ),
    'Sequences like "abc" or "6543" are easy to guess.': (
        "Sequences like abc or 6543 are easy to guess."
    ),
    "Recent years are easy to guess.": "Years are easy to guess.",
    "Dates are often easy to guess.": "Dates are easy to guess.",
}
_AVOID_DATES = "Avoid years and dates that mean something to you."
_PLAIN_SUGGESTIONS = {
    "Add another word or two. Uncommon words are better.": (
        "Add another word or two; uncommon words are better."
    ),
    "Use a few words, avoid common phrases.": "Use a few unrelated words, not a common phrase.",
    "Capitalization doesn't help very much.": "Capital letters do not help much.",
    "All-uppercase is almost as easy to guess as all-lowercase.": (
        "Capital letters do not help much."
    ),
    "Reversed words aren't much harder to guess.": "Words written backwards do not help much.",
    "Predictable substitutions like '@' instead of 'a' don't help very much.": (
        "Swapping letters for look-alike symbols (@ for a) does not help much."
    ),
    "Avoid repeated words and characters.": "Avoid repeated words and letters.",
    "Avoid sequences.": "Avoid sequences.",
    "Avoid recent years.": _AVOID_DATES,
    "Avoid years that are associated with you.": _AVOID_DATES,
    "Avoid dates and years that are associated with you.": _AVOID_DATES,
    "Use a longer keyboard pattern with more turns.": "",
    "No need for symbols, digits, or uppercase letters.": "",
}
_PERSONAL = "It uses your email address, your name or words about this site (like Engage or MS)."
_GUESSABLE = "This password is too easy to guess."
_ADVICE = "A few unrelated words make a strong password that is easy to remember."


def _personal_words(email: str | None, display_name: str | None) -> list[str]:
    """What an attacker who knows the person tries first: address, its parts, name, site."""
    words: list[str] = list(SITE_WORDS)
    if email:
        email = email.strip().lower()
        local_part = email.split("@", 1)[0]
        words += [email, local_part, *re.split(r"[._+-]+", local_part)]
    if display_name:
        name = display_name.strip().lower()
        words += [name, *name.split()]
    return [word for word in dict.fromkeys(words) if word]


def _strength_problem(password: str, email: str | None, display_name: str | None) -> str | None:
    """zxcvbn's verdict on ``password`` in plain words, or None when it is strong enough."""
    result = zxcvbn(
        password[:STRENGTH_CHECKED_LENGTH],
        user_inputs=_personal_words(email, display_name),
        max_length=STRENGTH_CHECKED_LENGTH,
    )
    if result["score"] >= MIN_PASSWORD_SCORE:
        return None
    feedback = result.get("feedback") or {}
    warning = _PLAIN_WARNINGS.get(feedback.get("warning") or "")
    if warning is None:
        personal = any(
            match.get("dictionary_name") == "user_inputs" for match in result.get("sequence", [])
        )
        warning = _PERSONAL if personal else _GUESSABLE
    advice = [_PLAIN_SUGGESTIONS.get(text, "") for text in feedback.get("suggestions") or []]
    advice = [text for text in dict.fromkeys(advice) if text] or [_ADVICE]
    return " ".join([warning, *advice])


def password_problem(
    password: str, email: str | None = None, display_name: str | None = None
) -> str | None:
    """Return why ``password`` is too weak, or None when it is acceptable.

    NIST SP 800-63B: at least 10 and at most 256 characters, any characters, no composition
    rules; refused when it is the address, too common, or guessable by zxcvbn (score below 3)
    from dictionaries, patterns and the person's own details (address, name, this site).

    :param display_name: the person's name, when known (sign-up, a password change).
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Use at most {MAX_PASSWORD_LENGTH} characters."
    lowered = password.lower()
    if email:
        email = email.strip().lower()
        local_part = email.split("@", 1)[0]
        if lowered == email or (len(local_part) >= 4 and lowered in (local_part, email)):
            return "Your password must not be your email address."
        if len(local_part) >= 4 and local_part in lowered and len(lowered) - len(local_part) < 4:
            return "Your password is too close to your email address."
    if lowered in COMMON_PASSWORDS:
        return _TOO_COMMON
    if len(set(lowered)) <= 2:
        return "This password repeats too few characters; choose one that is harder to guess."
    return _strength_problem(password, email, display_name)


def password_hasher() -> PasswordHasher:
    """Return an argon2id hasher with the app's cost parameters."""
    config = current_app.config
    return PasswordHasher(
        time_cost=config["PASSWORD_HASH_TIME_COST"],
        memory_cost=config["PASSWORD_HASH_MEMORY_COST"],
        parallelism=config["PASSWORD_HASH_PARALLELISM"],
    )


def hash_password(password: str) -> str:
    """Hash ``password`` with argon2id."""
    return password_hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check ``password`` against ``password_hash``; spends the same work when there is none."""
    hasher = password_hasher()
    if password_hash is None:
        # Equalise timing for unknown accounts so sign-in doesn't reveal who has one.
        hasher.hash(password)
        return False
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Signed tokens -------------------------------------------------------------------------
class TokenInvalid(Exception):
    """A link's token is malformed, tampered with, expired or already used."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.expired = expired


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"engage.{purpose}")


def fingerprint(value: str) -> str:
    """A short digest that changes when ``value`` changes (binds tokens to account state)."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def make_token(purpose: str, payload: dict[str, Any]) -> str:
    """Sign ``payload`` for ``purpose``."""
    return _serializer(purpose).dumps(payload)


def read_token(purpose: str, token: str, max_age: int) -> dict[str, Any]:
    """Return the payload of a token made for ``purpose``, or raise ``TokenInvalid``."""
    if len(token) > 1024:
        raise TokenInvalid("This link is not valid.")
    try:
        payload = _serializer(purpose).loads(token, max_age=max_age)
    except SignatureExpired:
        raise TokenInvalid("This link has expired.", expired=True) from None
    except BadSignature:
        raise TokenInvalid("This link is not valid.") from None
    if not isinstance(payload, dict):
        raise TokenInvalid("This link is not valid.")
    return payload


# Access control ------------------------------------------------------------------------
def roles_required(*roles: Role) -> Callable[[F], F]:
    """Let only signed-in people with one of ``roles`` in; others get sign-in or 403."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))
            if roles and current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def is_approved_custodian(user: Any) -> bool:
    """True for a data custodian whose request staff approved and bound to a registry."""
    return (
        bool(getattr(user, "is_authenticated", False))
        and user.role == Role.CUSTODIAN
        and user.custodian_status == CustodianStatus.APPROVED
        and user.custodian_registry_id is not None
        and bool(user.is_active)
    )


def is_custodian_of(user: Any, registry_id: int) -> bool:
    """True when ``user`` is an approved custodian acting for registry ``registry_id``."""
    return is_approved_custodian(user) and user.custodian_registry_id == registry_id


def approved_custodian_required(view: F) -> F:
    """Let in only approved custodians (a pending or declined request gives no rights):
    anonymous visitors are sent to sign in, everyone else gets 403. Views that act on one
    registry's data also check :func:`is_custodian_of` for that registry."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))
        if not is_approved_custodian(current_user):
            abort(403)
        return view(*args, **kwargs)

    return wrapped  # type: ignore[return-value]


def require_custodian_of(registry_id: int) -> None:
    """Abort with 403 unless the signed-in person is an approved custodian of the registry."""
    if not is_custodian_of(current_user, registry_id):
        abort(403)


def sign_in_required(view: F) -> F:
    """Let any signed-in person in; anonymous visitors are sent to sign in."""
    return roles_required()(view)


def is_safe_next(target: str | None) -> bool:
    """True when ``target`` is a path on this site, to redirect to after signing in.

    Browsers drop tabs and newlines anywhere in a URL and read a backslash as a slash, so a
    slash, a tab and a slash (``/%09/evil.example`` in the query string) would lead to another
    site. So any control character, whitespace or backslash is refused, as is anything that
    starts with ``//`` or in which ``urlsplit`` finds a scheme or a host. Ordinary paths with a
    query string pass.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or any(char.isspace() or not char.isprintable() for char in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc
