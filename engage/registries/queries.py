"""Read-only questions other packages may ask about registries and enrolments."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.registries.models import Registry, RegistryEnrolment


def all_registries(session: Session) -> list[Registry]:
    """Every registry, active and retired, by name (staff pages)."""
    return list(session.scalars(sa.select(Registry).order_by(Registry.name)))


def active_registries(session: Session) -> list[Registry]:
    """The network's active registries, by name."""
    return list(
        session.scalars(
            sa.select(Registry).where(Registry.is_active.is_(True)).order_by(Registry.name)
        )
    )


def registry_choices(session: Session) -> list[tuple[int, str]]:
    """(id, label) pairs of active registries for a form."""
    return [(r.id, f"{r.name} ({r.code})") for r in active_registries(session)]


def active_registry(session: Session, registry_id: int | None) -> Registry | None:
    """Registry ``registry_id`` if it exists and is active, else None."""
    registry = session.get(Registry, registry_id) if registry_id else None
    if registry is None or not registry.is_active:
        return None
    return registry


def active_registry_ids(session: Session, registry_ids: Iterable[int]) -> set[int]:
    """Which of ``registry_ids`` name active registries."""
    return set(
        session.scalars(
            sa.select(Registry.id).where(
                Registry.id.in_(registry_ids), Registry.is_active.is_(True)
            )
        )
    )


def enrolled_registries(session: Session, user_id: int) -> list[Registry]:
    """The registries a participant says they are enrolled in."""
    return list(
        session.scalars(
            sa.select(Registry)
            .join(RegistryEnrolment, RegistryEnrolment.registry_id == Registry.id)
            .where(RegistryEnrolment.user_id == user_id)
            .order_by(Registry.name)
        )
    )


def enrolled_registry_ids(session: Session, user_id: int) -> set[int]:
    """The ids of the registries a participant says they are enrolled in."""
    return set(
        session.scalars(
            sa.select(RegistryEnrolment.registry_id).where(RegistryEnrolment.user_id == user_id)
        )
    )


def enrolments_select() -> sa.Select[tuple[int, int]]:
    """A query of every (user_id, registry_id) enrolment, for other packages to join against
    (e.g. consent checks each enrolled participant has a registry mask)."""
    return sa.select(RegistryEnrolment.user_id, RegistryEnrolment.registry_id)
