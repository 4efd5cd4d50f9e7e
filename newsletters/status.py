"""Status changes of campaigns and sends: each one is logged with who or what made it and why,
in the same transaction that changes the status column."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from newsletters.models import Campaign, CampaignStatus, CampaignStatusChange, Send, SendStatus


def change_campaign_status(
    session: Session,
    campaign: Campaign,
    to: CampaignStatus,
    *,
    now: datetime,
    actor_id: int | None = None,
    reason: str = "",
    send_id: int | None = None,
) -> None:
    """Set ``campaign``'s status to ``to`` and log the change (no-op when unchanged)."""
    if campaign.status == to:
        return
    session.add(
        CampaignStatusChange(
            campaign_id=campaign.id,
            send_id=send_id,
            from_status=campaign.status.value if campaign.status else None,
            to_status=to.value,
            actor_id=actor_id,
            reason=reason[:300],
            created_at=now,
        )
    )
    campaign.status = to
    campaign.updated_at = now


def change_send_status(
    session: Session,
    send: Send,
    to: SendStatus,
    *,
    now: datetime,
    actor_id: int | None = None,
    reason: str = "",
) -> None:
    """Set one occurrence's status to ``to`` and log the change (no-op when unchanged)."""
    if send.status == to:
        return
    session.add(
        CampaignStatusChange(
            campaign_id=send.campaign_id,
            send_id=send.id,
            from_status=f"send:{send.status.value}" if send.status else None,
            to_status=f"send:{to.value}",
            actor_id=actor_id,
            reason=reason[:300],
            created_at=now,
        )
    )
    send.status = to
    if to in (SendStatus.SENT, SendStatus.CANCELLED):
        send.finished_at = send.finished_at or now
