"""Custodians' API tokens: creating one (its secret shown once), listing and revoking them, and
finding the custodian a presented token acts for.

A token is ``eng_`` followed by ``secrets.token_urlsafe(32)``; only its SHA-256 hash and a
short non-secret prefix are stored. A token acts with exactly its owner's rights at the time of
each request: when the owner is no longer an approved custodian (or is deactivated), every token
they hold stops working. Functions take the session, the acting person and ``now`` and never
commit; the caller commits once.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts.models import User
from engage.db import lock_rows
from engage.security import is_approved_custodian
from governance.errors import GovernanceError, NotAllowed, ReasonRequired, TextTooLong
from governance.models import ApiToken

# Recognisable in logs and by secret scanners.
TOKEN_PREFIX = "eng_"  # noqa: S105 - the public prefix
# secrets.token_urlsafe(32): 32 random bytes, 43 URL-safe base64 characters.
TOKEN_PATTERN = re.compile(r"^eng_[A-Za-z0-9_-]{43}$")
# How much of the token is kept to tell tokens apart ("eng_" and 8 random characters: 48 of
# the 256 random bits, far too few to help anyone guess the rest).
DISPLAY_PREFIX_LENGTH = 12
MAX_ACTIVE_TOKENS = 10
MAX_NAME_LENGTH = 80
# last_used_at is written at most this often, so reading the API does not write every time.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenAction(enum.StrEnum):
    """Audit-log actions of API tokens (at most 40 characters each)."""

    CREATED = "governance_api_token_created"  # noqa: S105 - an event name
    REVOKED = "governance_api_token_revoked"  # noqa: S105


class TooManyTokens(GovernanceError):
    """The custodian already holds the most active tokens allowed."""


class TokenNotFound(GovernanceError):
    """No such token of this person (another person's token is not found either)."""


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``secret`` is the only time the whole token is available."""

    token: ApiToken
    secret: str


def token_hash(secret: str) -> str:
    """The hex SHA-256 of a presented token, as stored."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _clean_name(name: str | None) -> str:
    cleaned = (name or "").strip()
    if not cleaned:
        raise ReasonRequired("Give the token a name, e.g. the system that will use it.")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise TextTooLong(f"Keep the name to at most {MAX_NAME_LENGTH} characters.")
    if "\x00" in cleaned:
        raise ReasonRequired("Remove the invisible NUL character from the name.")
    return cleaned


def _require_approved_custodian(actor: User) -> None:
    if not is_approved_custodian(actor):
        raise NotAllowed("Only approved data custodians can hold API tokens.")


def active_count(session: Session, user_id: int) -> int:
    """How many unrevoked tokens ``user_id`` holds."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        )
        or 0
    )


def create_token(session: Session, actor: User, name: str | None, now: datetime) -> NewToken:
    """Create an API token for ``actor`` (audited); the returned secret is never stored.

    :raises NotAllowed: ``actor`` is not an approved custodian.
    :raises ReasonRequired: the name is empty.
    :raises TextTooLong: the name is too long.
    :raises TooManyTokens: ``actor`` already holds :data:`MAX_ACTIVE_TOKENS` active tokens.
    """
    _require_approved_custodian(actor)
    cleaned = _clean_name(name)
    # Two creations at once must not both pass the count: they queue on the owner's row.
    lock_rows(session, User, [actor.id])
    if active_count(session, actor.id) >= MAX_ACTIVE_TOKENS:
        raise TooManyTokens(
            f"You already have {MAX_ACTIVE_TOKENS} active tokens: revoke one you no longer "
            "use before creating another."
        )
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=actor.id,
        name=cleaned,
        display_prefix=secret[:DISPLAY_PREFIX_LENGTH],
        token_hash=token_hash(secret),
        created_at=now,
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        TokenAction.CREATED,
        now=now,
        actor_id=actor.id,
        subject_user_id=actor.id,
        target=f"api_token:{token.id}",
        display_prefix=token.display_prefix,
    )
    return NewToken(token=token, secret=secret)


def tokens_of(session: Session, user_id: int) -> list[ApiToken]:
    """``user_id``'s tokens: active ones first, newest first in each group."""
    return list(
        session.scalars(
            sa.select(ApiToken)
            .where(ApiToken.user_id == user_id)
            .order_by(
                ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc(), ApiToken.id.desc()
            )
        )
    )


def revoke_token(session: Session, actor: User, token_id: int, now: datetime) -> ApiToken:
    """Revoke one of ``actor``'s own tokens (audited); revoking a revoked token changes
    nothing and records nothing.

    :raises TokenNotFound: ``actor`` holds no token ``token_id``.
    """
    token = session.scalar(
        sa.select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == actor.id)
    )
    if token is None:
        raise TokenNotFound("There is no such token among yours.")
    if token.revoked_at is None:
        token.revoked_at = now
        audit.record(
            session,
            TokenAction.REVOKED,
            now=now,
            actor_id=actor.id,
            subject_user_id=actor.id,
            target=f"api_token:{token.id}",
            display_prefix=token.display_prefix,
        )
        session.flush()
    return token


class TokenRefused(GovernanceError):
    """A presented token gives no access; ``str(error)`` says why, for the API's answer."""


def authenticate(session: Session, secret: str, now: datetime) -> User:
    """The approved custodian an active token acts for; notes when it was used.

    :raises TokenRefused: the token is malformed, unknown or revoked, or its owner is no
        longer an approved, active custodian.
    """
    if not TOKEN_PATTERN.match(secret):
        raise TokenRefused("This API token is not valid.")
    row = session.execute(
        sa.select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(ApiToken.token_hash == token_hash(secret))
    ).first()
    if row is None or row.ApiToken.revoked_at is not None:
        raise TokenRefused("This API token is not valid (it may have been revoked).")
    token, owner = row.ApiToken, row.User
    if not is_approved_custodian(owner):
        raise TokenRefused(
            "This API token's owner is no longer an approved data custodian, so it gives no access."
        )
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
    return owner
