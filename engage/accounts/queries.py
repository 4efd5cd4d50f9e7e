"""What other packages may ask about accounts, without reading accounts' tables themselves.

Recipients are always active accounts with a confirmed address: nobody else is emailed or
counted. Each function is one statement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.roles import CustodianStatus, Role


@dataclass(frozen=True)
class Recipient:
    """Who an email goes to: enough to address and greet them."""

    id: int
    email: str
    display_name: str
    language: str


def reachable() -> sa.ColumnElement[bool]:
    """The condition for an account people may be emailed at (active, address confirmed)."""
    return sa.and_(User.is_active.is_(True), User.email_verified_at.is_not(None))


def recipient_ids(
    *,
    roles: Iterable[Role] | None = None,
    countries: Iterable[str] | None = None,
    languages: Iterable[str] | None = None,
) -> sa.Select[tuple[int]]:
    """A query of the ids of reachable accounts with one of ``roles`` (and, when given, one of
    ``countries`` and ``languages``), in id order; callers may add conditions and limits."""
    query = sa.select(User.id).where(reachable()).order_by(User.id)
    if roles is not None:
        query = query.where(User.role.in_(list(roles)))
    if countries is not None:
        query = query.where(User.country.in_([c.upper() for c in countries]))
    if languages is not None:
        query = query.where(User.language.in_(list(languages)))
    return query


def recipients(
    session: Session,
    *,
    roles: Iterable[Role] | None = None,
    countries: Iterable[str] | None = None,
    languages: Iterable[str] | None = None,
) -> list[Recipient]:
    """Reachable accounts by role, country and language, in id order."""
    ids = recipient_ids(roles=roles, countries=countries, languages=languages).subquery()
    rows = session.execute(
        sa.select(User.id, User.email, User.display_name, User.language)
        .where(User.id.in_(sa.select(ids.c.id)))
        .order_by(User.id)
    ).all()
    return [Recipient(*row) for row in rows]


def recipient(session: Session, user_id: int) -> Recipient | None:
    """One account to email, or None when it is gone, deactivated or unconfirmed."""
    row = session.execute(
        sa.select(User.id, User.email, User.display_name, User.language).where(
            User.id == user_id, reachable()
        )
    ).first()
    return Recipient(*row) if row is not None else None


def custodians_of(session: Session, registry_id: int) -> list[Recipient]:
    """The approved, reachable custodians acting for registry ``registry_id``."""
    rows = session.execute(
        sa.select(User.id, User.email, User.display_name, User.language)
        .where(
            User.role == Role.CUSTODIAN,
            User.custodian_status == CustodianStatus.APPROVED,
            User.custodian_registry_id == registry_id,
            reachable(),
        )
        .order_by(User.id)
    ).all()
    return [Recipient(*row) for row in rows]


def display_names(session: Session, user_ids: Iterable[int]) -> dict[int, str]:
    """Display names by account id (ids of removed accounts are absent)."""
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    return dict(
        session.execute(sa.select(User.id, User.display_name).where(User.id.in_(ids))).all()
    )


def emails(session: Session, user_ids: Iterable[int]) -> dict[int, str]:
    """Email addresses by account id, for staff pages (ids of removed accounts are absent)."""
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    return dict(session.execute(sa.select(User.id, User.email).where(User.id.in_(ids))).all())


def user_id_by_email(session: Session, email: str) -> int | None:
    """The id of the account with ``email`` (compared lower-cased), if any."""
    return session.scalar(sa.select(User.id).where(User.email == email.strip().lower()))


def display_name_of(user_id: sa.ColumnElement[int]) -> sa.ScalarSelect[str]:
    """The display name of the account ``user_id`` points at, as a column other packages put
    in their own statement (one statement per page instead of one more query per row)."""
    return sa.select(User.display_name).where(User.id == user_id).scalar_subquery()


@dataclass(frozen=True)
class Person:
    """An account as staff pages name it (whatever its state)."""

    id: int
    display_name: str
    email: str


def people(session: Session, user_ids: Iterable[int]) -> dict[int, Person]:
    """Accounts by id, active or not (ids of removed accounts are absent); one statement."""
    ids = {i for i in user_ids if i is not None}
    if not ids:
        return {}
    rows = session.execute(
        sa.select(User.id, User.display_name, User.email).where(User.id.in_(ids))
    ).all()
    return {row.id: Person(*row) for row in rows}


def recipient_rows(
    *,
    roles: Iterable[Role] | None = None,
    countries: Iterable[str] | None = None,
    languages: Iterable[str] | None = None,
) -> sa.Select[tuple[int, str, str, str]]:
    """A query of (id, email, display_name, language) of reachable accounts, filtered like
    :func:`recipient_ids`, for other packages to join against (a newsletter audience)."""
    ids = recipient_ids(roles=roles, countries=countries, languages=languages)
    return ids.with_only_columns(User.id, User.email, User.display_name, User.language)
