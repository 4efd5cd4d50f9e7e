"""Consent notices: when a participant withdraws a consent scope that an active project relies
on, the custodians of each registry the participant is enrolled in (and that takes part in the
project) are told, and one of them acknowledges the notice.

The receiver follows ``engage.signals.consent_changed``: it runs inside the consent change's
transaction and only adds rows (the notice and its outbox emails), so a change that is rolled
back leaves no notice and sends nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engage.accounts import queries as account_queries
from engage.accounts.models import User
from engage.db import lock_rows
from engage.registries import queries as registry_queries
from engage.security import is_custodian_of
from engage.signals import consent_changed
from governance import emails
from governance.errors import InvalidTransition, NotAllowed
from governance.models import (
    ConsentNotice,
    DecisionThread,
    Proposal,
    ProposalScope,
    ProposalStatus,
)
from governance.rules import APPROVING_THREAD_STATUSES, PUBLIC_PROJECT_STATUSES

if TYPE_CHECKING:
    from engage.consent.decisions import ConsentChange

# Of the public projects, only active ones still use data: a completed project's analysis is
# done, so a withdrawal no longer concerns it.
WATCHED_PROJECT_STATUSES = PUBLIC_PROJECT_STATUSES & {ProposalStatus.ACTIVE}
# How many open notices a registry's page lists at most (the oldest wait below the fold).
OPEN_NOTICES_LIMIT = 200


def _affected(
    session: Session, scope_codes: list[str], registry_ids: set[int]
) -> list[sa.Row[tuple[int, int, str]]]:
    """(registry id, proposal id, scope code) of every watched project that needs one of
    ``scope_codes`` and that one of ``registry_ids`` approved (one statement)."""
    return list(
        session.execute(
            sa.select(DecisionThread.registry_id, Proposal.id, ProposalScope.scope_code)
            .join(ProposalScope, ProposalScope.proposal_id == Proposal.id)
            .join(DecisionThread, DecisionThread.proposal_id == Proposal.id)
            .where(
                Proposal.status.in_(WATCHED_PROJECT_STATUSES),
                ProposalScope.scope_code.in_(scope_codes),
                DecisionThread.registry_id.in_(registry_ids),
                DecisionThread.status.in_(APPROVING_THREAD_STATUSES),
            )
            .order_by(DecisionThread.registry_id, Proposal.id, ProposalScope.scope_code)
        )
    )


def _add_notice(session: Session, values: dict[str, Any]) -> int:
    """Insert the notice unless it exists (the unique receipt/registry/project/scope
    constraint decides, also when the signal is sent twice); return its id either way."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(ConsentNotice)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["receipt_id", "registry_id", "proposal_id", "scope_code"]
        )
    )
    return session.scalars(
        sa.select(ConsentNotice.id).where(
            ConsentNotice.receipt_id == values["receipt_id"],
            ConsentNotice.registry_id == values["registry_id"],
            ConsentNotice.proposal_id == values["proposal_id"],
            ConsentNotice.scope_code == values["scope_code"],
        )
    ).one()


def record_withdrawals(session: Session, change: ConsentChange) -> int:
    """Add a notice for each (registry, project, scope) that ``change`` withdrew consent from
    and queue one email per approved custodian of that registry; return how many notices
    concern the change (see ``engage.signals.consent_changed`` for what ``change`` holds)."""
    withdrawn = sorted(
        {scope.code for scope in change.scopes if scope.was_permitted and not scope.is_permitted}
    )
    if not withdrawn:
        return 0
    registry_ids = registry_queries.enrolled_registry_ids(session, change.user_id)
    if not registry_ids:
        return 0
    affected = _affected(session, withdrawn, registry_ids)
    custodians: dict[int, list[int]] = {}
    for registry_id, proposal_id, scope_code in affected:
        notice_id = _add_notice(
            session,
            {
                "registry_id": registry_id,
                "proposal_id": proposal_id,
                "pseudonym": change.pseudonym,
                "scope_code": scope_code,
                "receipt_id": change.receipt_id,
                "created_at": change.occurred_at,
            },
        )
        if registry_id not in custodians:
            custodians[registry_id] = [
                c.id for c in account_queries.custodians_of(session, registry_id)
            ]
        for user_id in custodians[registry_id]:
            emails.queue_consent_notice(session, notice_id, user_id, change.occurred_at)
    return len(affected)


def on_consent_changed(sender: Any, *, session: Session, change: ConsentChange, **_: Any) -> None:
    """The ``consent_changed`` receiver (see :func:`record_withdrawals`)."""
    record_withdrawals(session, change)


def connect_receivers() -> None:
    """Follow consent changes (called by ``create_app``; connecting again is a no-op, as
    blinker keeps one connection per receiver)."""
    consent_changed.connect(on_consent_changed)


def acknowledge_notice(
    session: Session, actor: User, notice: ConsentNotice, now: datetime
) -> ConsentNotice:
    """An approved custodian of the notice's registry marks it as dealt with (once).

    The notice is locked and re-read first, so two custodians clicking at once acknowledge
    it once and the second is told.

    :raises NotAllowed: ``actor`` is not an approved custodian of the notice's registry.
    :raises InvalidTransition: the notice was already acknowledged.
    """
    if not is_custodian_of(actor, notice.registry_id):
        raise NotAllowed("Only an approved data custodian of this registry can do this.")
    lock_rows(session, ConsentNotice, [notice.id])
    session.refresh(notice)
    if notice.acknowledged_at is not None:
        raise InvalidTransition(
            f"This notice was already marked as dealt with on {emails.when(notice.acknowledged_at)}"
            "; nothing was changed."
        )
    notice.acknowledged_at = now
    notice.acknowledged_by_id = actor.id
    session.flush()
    return notice


def open_notice_count(session: Session, registry_id: int) -> int:
    """How many of the registry's notices nobody has acknowledged yet (one count)."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(ConsentNotice)
            .where(
                ConsentNotice.registry_id == registry_id,
                ConsentNotice.acknowledged_at.is_(None),
            )
        )
        or 0
    )


def open_notices(session: Session, registry_id: int) -> list[ConsentNotice]:
    """The registry's notices nobody has acknowledged yet, oldest first (at most
    ``OPEN_NOTICES_LIMIT``)."""
    return list(
        session.scalars(
            sa.select(ConsentNotice)
            .where(
                ConsentNotice.registry_id == registry_id,
                ConsentNotice.acknowledged_at.is_(None),
            )
            .order_by(ConsentNotice.created_at, ConsentNotice.id)
            .limit(OPEN_NOTICES_LIMIT)
        )
    )
