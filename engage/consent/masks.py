"""Permitted masks: each participant's current permissions as one integer, so counts never
read the ledger.

Every scope code ever published owns one bit (``consent_scope_codes``). A participant's
``permitted_mask`` holds the bits of the scopes they permit on the current wording, and
``consent_registry_masks`` repeats that mask once per registry they are enrolled in, so
per-registry counts need no join. Decisions set the mask, publishing a version clears the bits
of changed and removed scopes, and enrolment changes copy it (see :func:`sync_registry_masks`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.consent.errors import PublishRefused
from engage.consent.models import (
    MAX_SCOPE_CODES,
    ConsentParticipant,
    ConsentRegistryMask,
    ConsentScopeCode,
)
from engage.registries import queries as registry_queries
from engage.signals import registry_enrolments_changed


def scope_bits(session: Session, codes: list[str]) -> dict[str, int]:
    """The bit of each of ``codes`` that was ever published (unpublished codes are absent)."""
    return dict(
        session.execute(
            sa.select(ConsentScopeCode.code, ConsentScopeCode.bit).where(
                ConsentScopeCode.code.in_(codes)
            )
        ).all()
    )


def register_codes(session: Session, codes: list[str], now: datetime) -> None:
    """Give each new scope code the lowest free bit.

    :raises PublishRefused: every bit is taken.
    """
    known = dict(session.execute(sa.select(ConsentScopeCode.code, ConsentScopeCode.bit)).all())
    free = iter(sorted(set(range(MAX_SCOPE_CODES)) - set(known.values())))
    for code in codes:
        if code in known:
            continue
        bit = next(free, None)
        if bit is None:
            raise PublishRefused(
                f"The platform tracks at most {MAX_SCOPE_CODES} different scope codes; reuse an "
                "existing code."
            )
        session.add(ConsentScopeCode(code=code, bit=bit, created_at=now))
        known[code] = bit
    session.flush()


def permitted_mask(session: Session, codes: list[str], is_permitted: Callable[[str], bool]) -> int:
    """The mask of the ``codes`` (a form's scopes) that ``is_permitted`` says are permitted."""
    bits = scope_bits(session, codes)
    return sum(1 << bits[code] for code in codes if is_permitted(code))


def clear_bits(session: Session, codes: list[str]) -> None:
    """Take the bits of ``codes`` out of every participant's and registry's mask (a new
    version changed or removed those scopes, so earlier decisions on them permit nothing)."""
    if not codes:
        return
    stale_bits = sum(1 << bit for bit in scope_bits(session, codes).values())
    keep = ((1 << MAX_SCOPE_CODES) - 1) & ~stale_bits
    session.execute(
        sa.update(ConsentParticipant)
        .where(ConsentParticipant.permitted_mask.op("&")(stale_bits) != 0)
        .values(permitted_mask=ConsentParticipant.permitted_mask.op("&")(keep))
        .execution_options(synchronize_session=False)
    )
    session.execute(
        sa.update(ConsentRegistryMask)
        .where(ConsentRegistryMask.permitted_mask.op("&")(stale_bits) != 0)
        .values(permitted_mask=ConsentRegistryMask.permitted_mask.op("&")(keep))
        .execution_options(synchronize_session=False)
    )


def sync_registry_masks(session: Session, user_id: int) -> None:
    """Make the participant's ``consent_registry_masks`` rows equal their enrolments, each with
    their current ``permitted_mask`` (nothing to do for someone who never decided).

    The mask is read ``FOR UPDATE`` (on PostgreSQL): an enrolment saved while a decision or a
    publication is changing the mask waits for it, then copies the new mask; a decision that
    comes after sees the new enrolment's row and updates it.
    """
    mask = session.scalar(
        sa.select(ConsentParticipant.permitted_mask)
        .where(ConsentParticipant.user_id == user_id)
        .with_for_update()
    )
    if mask is None:
        return
    enrolled = registry_queries.enrolled_registry_ids(session, user_id)
    rows = dict(
        session.execute(
            sa.select(ConsentRegistryMask.registry_id, ConsentRegistryMask.permitted_mask).where(
                ConsentRegistryMask.user_id == user_id
            )
        ).all()
    )
    if set(rows) - enrolled:
        session.execute(
            sa.delete(ConsentRegistryMask).where(
                ConsentRegistryMask.user_id == user_id,
                ConsentRegistryMask.registry_id.in_(set(rows) - enrolled),
            )
        )
    if any(rows[registry_id] != mask for registry_id in set(rows) & enrolled):
        session.execute(
            sa.update(ConsentRegistryMask)
            .where(ConsentRegistryMask.user_id == user_id)
            .values(permitted_mask=mask)
        )
    for registry_id in sorted(enrolled - set(rows)):
        session.add(
            ConsentRegistryMask(user_id=user_id, registry_id=registry_id, permitted_mask=mask)
        )
    session.flush()


def _on_enrolments_changed(_sender: object, *, session: Session, user_id: int) -> None:
    sync_registry_masks(session, user_id)


def connect_receivers() -> None:
    """Follow other packages' changes that consent's own tables mirror (called by create_app)."""
    registry_enrolments_changed.connect(_on_enrolments_changed)
