"""Governance's part of the data rights (see ``engage.accounts.data_rights``): a custodian's API
tokens and the decision steps they took, the proposals a person drafted, and what deleting
their account does to them.

Deleting the account revokes every API token it holds (each revocation audited as when its
owner revokes it), and withdraws the person's proposals that are still in their own hands
(drafts, and proposals returned to them). Decision steps stay: they are the registry's
hash-chained record, not the person's, and show "Deleted account" as who took them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.data_rights import DataRights, iso
from engage.accounts.models import User
from engage.registries.models import Registry
from governance import proposals, tokens
from governance.models import (
    ApiToken,
    DecisionEvent,
    DecisionThread,
    Proposal,
    ProposalStatus,
)

# Proposals waiting for their proposer, who will never come back.
IN_PROPOSERS_HANDS = (ProposalStatus.DRAFT, ProposalStatus.RETURNED)
WITHDRAWN_REASON = "The proposer deleted their account."


def export_governance(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> dict[str, Any]:
    """API tokens (names and prefixes, never their hashes), decision steps taken and
    proposals drafted: one statement each."""
    api_tokens = session.scalars(
        sa.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at)
    )
    steps = session.execute(
        sa.select(DecisionEvent, Registry.name, Proposal.title)
        .join(DecisionThread, DecisionThread.id == DecisionEvent.thread_id)
        .join(Registry, Registry.id == DecisionThread.registry_id)
        .join(Proposal, Proposal.id == DecisionEvent.proposal_id)
        .where(DecisionEvent.actor_id == user.id)
        .order_by(DecisionEvent.occurred_at, DecisionEvent.id)
    ).all()
    drafted = session.scalars(
        sa.select(Proposal).where(Proposal.proposer_id == user.id).order_by(Proposal.created_at)
    )
    return {
        "api_tokens": [
            {
                "name": token.name,
                "starts_with": token.display_prefix,
                "created_at": iso(token.created_at),
                "last_used_at": iso(token.last_used_at),
                "revoked_at": iso(token.revoked_at),
            }
            for token in api_tokens
        ],
        "decisions": [
            {
                "registry": registry_name,
                "proposal": title,
                "step": event.kind.label,
                "text": event.text,
                "at": iso(event.occurred_at),
            }
            for event, registry_name, title in steps
        ],
        "proposals": [
            {
                "title": proposal.title,
                "status": proposal.status.label,
                "created_at": iso(proposal.created_at),
            }
            for proposal in drafted
        ],
    }


def erase_governance(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> str | None:
    """Revoke the person's API tokens and withdraw the proposals still in their hands."""
    active = list(
        session.scalars(
            sa.select(ApiToken.id).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        )
    )
    for token_id in active:
        tokens.revoke_token(session, user, token_id, now)
    waiting = list(
        session.scalars(
            sa.select(Proposal).where(
                Proposal.proposer_id == user.id, Proposal.status.in_(IN_PROPOSERS_HANDS)
            )
        )
    )
    for proposal in waiting:
        proposals.withdraw(session, user, proposal, WITHDRAWN_REASON, now)
    if not active and not waiting:
        return None
    return (
        f"Governance: {len(active)} API token(s) revoked, {len(waiting)} proposal(s) "
        "withdrawn; decision records kept."
    )


def register(rights: DataRights) -> None:
    """Add governance's section and eraser (called by the composition root)."""
    rights.add_exporter("governance", export_governance)
    rights.add_eraser("governance", erase_governance)
