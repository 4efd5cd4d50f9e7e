"""Reactions to other packages' signals: a participant who stops permitting a list's consent
scope receives nothing more from that list, from the moment the change is saved.

The rows are updated in the consent change's own transaction. A batch already claimed by a
worker is not recalled (its rows are no longer queued); each batch re-checks consent just before
it is handed over (``newsletters.delivery``), so only a batch already being handed over when
the change commits still goes out.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.signals import consent_changed
from newsletters.models import Delivery, DeliveryStatus, MailingList, Send, SendStatus

REASON = "consent for the list's purpose was withdrawn"


def on_consent_changed(sender: Any, *, session: Session, change: Any, **_: Any) -> None:
    """Skip the participant's queued deliveries of lists needing a scope they no longer permit."""
    withdrawn = [
        scope.code for scope in change.scopes if scope.was_permitted and not scope.is_permitted
    ]
    if not withdrawn:
        return
    session.execute(
        sa.update(Delivery)
        .where(
            Delivery.user_id == change.user_id,
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.list_id.in_(
                sa.select(MailingList.id).where(MailingList.required_scope.in_(withdrawn))
            ),
            Delivery.send_id.in_(
                sa.select(Send.id).where(Send.status.in_([SendStatus.SENDING, SendStatus.PAUSED]))
            ),
        )
        .values(status=DeliveryStatus.SKIPPED, last_error=REASON)
        .execution_options(synchronize_session=False)
    )


def connect_receivers() -> None:
    """Follow consent changes (called by ``create_app``; connecting again is a no-op)."""
    consent_changed.connect(on_consent_changed)
