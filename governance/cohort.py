"""Eligible-cohort counts: how many participants enrolled in a registry currently permit every
consent scope a proposal needs, with small-cell suppression.

Counts come from :func:`engage.consent.queries.count_permitting`, the one place that reads
consent. A count below the registry's ``small_cell_threshold`` is suppressed and shown as
"fewer than N"; that includes 0, because "nobody" is as identifying as "two people" (it tells
a reader that every enrolled participant refused a scope).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.consent import queries as consent_queries
from engage.consent.errors import UnknownScope
from engage.registries.models import Registry
from governance.errors import InvalidProposal
from governance.models import DecisionThread, Proposal, ProposalScope


@dataclass(frozen=True)
class CohortCount:
    """An eligible-cohort count as it may be shown."""

    # The count, or None when it is suppressed.
    value: int | None
    # What people read: "1,234" or "fewer than 5".
    shown: str

    @property
    def is_suppressed(self) -> bool:
        """True when the count is below the registry's threshold and hidden."""
        return self.value is None


def suppressed(count: int, threshold: int) -> CohortCount:
    """``count`` as it may be shown under a small-cell ``threshold``."""
    if count < threshold:
        return CohortCount(value=None, shown=f"fewer than {threshold}")
    return CohortCount(value=count, shown=f"{count:,}")


def scope_codes(session: Session, proposal: Proposal) -> list[str]:
    """The consent scope codes the proposal needs, in code order."""
    return list(
        session.scalars(
            sa.select(ProposalScope.scope_code)
            .where(ProposalScope.proposal_id == proposal.id)
            .order_by(ProposalScope.scope_code)
        )
    )


def _count(session: Session, codes: list[str], proposal: Proposal, registry: Registry) -> int:
    if not codes:
        raise InvalidProposal(
            f"The proposal “{proposal.title}” names no consent scopes, so no cohort can be counted."
        )
    try:
        return consent_queries.count_permitting(session, codes, registry_id=registry.id)
    except UnknownScope as error:
        raise InvalidProposal(
            f"{error} The cohort of “{proposal.title}” cannot be counted until its consent "
            "scopes are corrected."
        ) from None


def eligible_cohort(session: Session, proposal: Proposal, registry: Registry) -> CohortCount:
    """How many participants of ``registry`` currently permit all the proposal's scopes,
    suppressed below the registry's small-cell threshold.

    :raises InvalidProposal: the proposal names no scopes, or one no consent form ever had.
    """
    count = _count(session, scope_codes(session, proposal), proposal, registry)
    return suppressed(count, registry.small_cell_threshold)


def cohorts_for(session: Session, proposal: Proposal) -> dict[int, CohortCount]:
    """The eligible cohort of every registry the proposal was sent to, by registry id (in
    registry name order): a constant number of statements whatever the number of registries
    (the counts come grouped from ``engage.consent.queries.count_permitting_by_registry``).

    :raises InvalidProposal: the proposal names no scopes, or one no consent form ever had.
    """
    registries = session.scalars(
        sa.select(Registry)
        .join(DecisionThread, DecisionThread.registry_id == Registry.id)
        .where(DecisionThread.proposal_id == proposal.id)
        .order_by(Registry.name, Registry.id)
    ).all()
    if not registries:
        return {}
    codes = scope_codes(session, proposal)
    if not codes:
        raise InvalidProposal(
            f"The proposal “{proposal.title}” names no consent scopes, so no cohort can be counted."
        )
    try:
        counts = consent_queries.count_permitting_by_registry(
            session, codes, [registry.id for registry in registries]
        )
    except UnknownScope as error:
        raise InvalidProposal(
            f"{error} The cohort of “{proposal.title}” cannot be counted until its consent "
            "scopes are corrected."
        ) from None
    return {
        registry.id: suppressed(counts[registry.id], registry.small_cell_threshold)
        for registry in registries
    }
