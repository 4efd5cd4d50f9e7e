"""Read-only questions other packages may ask about registries."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import RegistryEnrolment
from engage.registries.models import Registry


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
