"""Consent's part of the data rights (see ``engage.accounts.data_rights``): the participant's
consent history with every signed receipt, and what deleting their account does to consent.

The consent ledger is append-only and hash-chained, and it is the legally required proof of
what the participant allowed and when (and so of every use of their data while it was
allowed): deleting the account never removes or rewrites it. Instead the deletion does what
"Ask for my data to be erased" does on the consent pages (``LeaveOption.ERASE``): every
permission still given is withdrawn, as new events with a new signed receipt (registries whose
projects relied on them are told, newsletters needing them stop at once), and an erasure
request is queued for the coordination centre to carry out with the registries. The ledger
names the participant only by their account id and consent pseudonym; once the account is
pseudonymised nothing in it names the person.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.data_rights import DataRights
from engage.accounts.models import Role, User
from engage.consent import page_queries, queries
from engage.consent.decisions import LeaveOption, leave_programme
from engage.consent.erasure import request_erasure
from engage.consent.exports import history_document
from engage.consent.models import ConsentParticipant, ConsentReceipt
from engage.consent.receipts import ReceiptIssuer


def export_consent(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> dict[str, Any] | None:
    """The consent history document (as on the consent pages' download) with every signed
    receipt as it was handed out; None for someone who never decided anything."""
    history = page_queries.history(session, user.id)
    if history.participant is None and not history.events:
        return None
    document = history_document(
        history,
        now=now,
        jurisdiction=config["CONSENT_JURISDICTION"],
        controller=config["CONSENT_CONTROLLER"],
    )
    document["receipts"] = list(
        session.scalars(
            sa.select(ConsentReceipt.document)
            .where(ConsentReceipt.user_id == user.id)
            .order_by(ConsentReceipt.issued_at, ConsentReceipt.id)
        )
    )
    return document


def erase_consent(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> str | None:
    """Withdraw every permission the participant still gives and queue an erasure request
    for the registries (the ledger stays as proof); None for someone who never decided."""
    if session.get(ConsentParticipant, user.id) is None:
        return None
    if user.role != Role.PARTICIPANT or not user.is_active or not user.is_email_verified:
        # Consent changes are made for active participants only: staff follow these up.
        return (
            "Consent: the account is no longer an active participant's, so its consent was "
            "left for the coordination centre to withdraw."
        )
    version = queries.current_version(session)
    withdrawn = 0
    if version is None:
        erasure = request_erasure(session, user, now)
    else:
        outcome = leave_programme(
            session,
            user,
            LeaveOption.ERASE,
            version_id=version.id,
            state=None,
            now=now,
            issuer=ReceiptIssuer.from_config(config),
        )
        erasure = outcome.erasure
        if outcome.change.change is not None:
            withdrawn = len(outcome.change.change.scopes)
    return (
        f"Consent: {withdrawn} permission(s) withdrawn and erasure request {erasure.id} "
        "queued for the registries; the consent ledger and receipts are kept as proof."
    )


def register(rights: DataRights) -> None:
    """Add consent's section and eraser (called by the composition root)."""
    rights.add_exporter("consent", export_consent)
    rights.add_eraser("consent", erase_consent)
