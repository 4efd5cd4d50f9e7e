"""Managing the network's registries (staff only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts.models import User
from engage.audit import AuditAction
from engage.registries.models import Registry


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


def _check(session: Session, actor: User, details: RegistryDetails, registry_id: int | None):
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
    session: Session, actor: User, details: RegistryDetails, now: datetime
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
    session: Session, actor: User, registry: Registry, details: RegistryDetails, now: datetime
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
