"""Managing the network's registries (staff only), and recording a participant's enrolments.

Registries know accounts only as the acting person's id and whether they are staff: this package
imports nothing from ``engage.accounts`` (accounts imports registries, never the other way).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.audit import AuditAction
from engage.registries import queries
from engage.registries.models import Registry, RegistryEnrolment


class Actor(Protocol):
    """The person acting: any account (``engage.accounts.models.User``)."""

    @property
    def id(self) -> int:
        """The account's id."""

    @property
    def is_staff(self) -> bool:
        """True for coordination-centre staff."""


class RegistryError(Exception):
    """Base of registry domain errors; the message is safe to show."""


class DuplicateRegistryCode(RegistryError):
    """Another registry already has this code."""


class NotAllowed(RegistryError):
    """Only staff manage registries."""


@dataclass
class RegistryDetails:
    """The editable facts of a registry."""

    code: str
    name: str
    country: str
    is_active: bool = True


def _check(session: Session, actor: Actor, details: RegistryDetails, registry_id: int | None):
    if not actor.is_staff:
        raise NotAllowed("Only coordination-centre staff manage registries.")
    clash = session.scalar(
        sa.select(Registry.id).where(
            Registry.code == details.code.strip().upper(), Registry.id != (registry_id or -1)
        )
    )
    if clash is not None:
        raise DuplicateRegistryCode(f"Another registry already uses the code {details.code}.")


def create_registry(
    session: Session, actor: Actor, details: RegistryDetails, now: datetime
) -> Registry:
    """Add a registry to the network."""
    _check(session, actor, details, None)
    registry = Registry(
        code=details.code.strip().upper(),
        name=details.name.strip(),
        country=details.country,
        is_active=details.is_active,
        created_at=now,
    )
    session.add(registry)
    session.flush()
    audit.record(
        session,
        AuditAction.REGISTRY_CREATED,
        now=now,
        actor_id=actor.id,
        target=f"registry:{registry.id}",
        code=registry.code,
    )
    return registry


def update_registry(
    session: Session, actor: Actor, registry: Registry, details: RegistryDetails, now: datetime
) -> None:
    """Change a registry's code, name, country or active flag."""
    _check(session, actor, details, registry.id)
    registry.code = details.code.strip().upper()
    registry.name = details.name.strip()
    registry.country = details.country
    registry.is_active = details.is_active
    audit.record(
        session,
        AuditAction.REGISTRY_UPDATED,
        now=now,
        actor_id=actor.id,
        target=f"registry:{registry.id}",
        code=registry.code,
        is_active=registry.is_active,
    )


def ensure_registry(session: Session, details: RegistryDetails, now: datetime) -> Registry:
    """Return the registry with ``details.code``, creating it if missing (demo seeding)."""
    code = details.code.strip().upper()
    registry = session.scalar(sa.select(Registry).where(Registry.code == code))
    if registry is None:
        registry = Registry(
            code=code, name=details.name, country=details.country, is_active=True, created_at=now
        )
        session.add(registry)
        session.flush()
    return registry


def replace_enrolments(
    session: Session, user_id: int, registry_ids: set[int], now: datetime
) -> bool:
    """Make ``registry_ids`` exactly the registries person ``user_id`` is enrolled in; return
    whether anything changed (the rows are then flushed).

    The caller checks who may do this, locks the person and checks the registries first
    (``engage.accounts.services.set_enrolments``).
    """
    current = queries.enrolled_registry_ids(session, user_id)
    for registry_id in registry_ids - current:
        session.add(RegistryEnrolment(user_id=user_id, registry_id=registry_id, created_at=now))
    if current - registry_ids:
        session.execute(
            sa.delete(RegistryEnrolment).where(
                RegistryEnrolment.user_id == user_id,
                RegistryEnrolment.registry_id.in_(current - registry_ids),
            )
        )
    if registry_ids == current:
        return False
    session.flush()
    return True
