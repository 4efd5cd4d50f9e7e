"""Passwords, signed tokens and access-control decorators."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import abort, current_app, redirect, request, url_for
from flask_login import current_user
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

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


def password_problem(password: str, email: str | None = None) -> str | None:
    """Return why ``password`` is too weak, or None when it is acceptable."""
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
        return "This password is too common; choose one that is harder to guess."
    if len(set(lowered)) <= 2:
        return "This password repeats too few characters; choose one that is harder to guess."
    return None


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
    """True when ``target`` is a path on this site (no scheme, no host, no backslashes)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    return "\\" not in target and "\n" not in target and "\r" not in target
