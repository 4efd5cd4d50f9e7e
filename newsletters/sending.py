"""Starting and finishing sends: the scheduler's side of a campaign.

A due campaign (``scheduled``, ``next_run_at`` passed) gets one :class:`Send` per occurrence,
unique by (campaign, occurrence), so two schedulers or a re-run job start it once. Its content
is copied and its audience frozen into delivery rows in the same transaction; the delivery
workers take it from there. A send with nothing left queued or in flight is finished: the
campaign goes back to ``scheduled`` (recurring, next occurrence set) or becomes ``sent``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engage.db import lock_rows
from newsletters import audience
from newsletters.models import (
    Campaign,
    CampaignList,
    CampaignStatus,
    CampaignStatusChange,
    Delivery,
    DeliveryStatus,
    Send,
    SendStatus,
)
from newsletters.status import change_campaign_status, change_send_status

log = logging.getLogger(__name__)

# Campaigns started per job run (the rest wait for the next tick).
START_BATCH = 20
IN_FLIGHT = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED)


def list_ids_of(session: Session, campaign_id: int) -> list[int]:
    """The lists a campaign goes to."""
    return list(
        session.scalars(
            sa.select(CampaignList.list_id)
            .where(CampaignList.campaign_id == campaign_id)
            .order_by(CampaignList.list_id)
        )
    )


def _next_run(campaign: Campaign, after: datetime) -> datetime | None:
    if not campaign.cron:
        return None
    from newsletters.schedule import next_occurrence

    return next_occurrence(campaign.cron, campaign.timezone, after)


def start_occurrence(session: Session, campaign: Campaign, now: datetime) -> Send | None:
    """Start the campaign's due occurrence: create its send, freeze content and audience, and
    move ``next_run_at`` on. Returns the send, or None when that occurrence had already been
    started (by another scheduler) or the campaign is no longer scheduled.

    The caller holds the campaign row locked and commits.
    """
    occurrence = campaign.next_run_at
    if campaign.status != CampaignStatus.SCHEDULED or occurrence is None:
        return None
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    send_id = session.scalar(
        insert(Send)
        .values(
            campaign_id=campaign.id,
            occurrence_at=occurrence,
            status=SendStatus.SENDING.value,
            subject=campaign.subject,
            preheader=campaign.preheader,
            body_markdown=campaign.body_markdown,
            audience_size=0,
            started_at=now,
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "occurrence_at"])
        .returning(Send.id)
    )
    campaign.next_run_at = _next_run(campaign, occurrence)
    campaign.updated_at = now
    if send_id is None:
        log.warning("campaign %s: occurrence %s was already started", campaign.id, occurrence)
        return None
    send = session.get(Send, send_id)
    assert send is not None
    size = audience.freeze(
        session, send_id, list_ids_of(session, campaign.id), campaign.audience, now
    )
    send.audience_size = size
    session.add(
        CampaignStatusChange(
            campaign_id=campaign.id,
            send_id=send_id,
            from_status=None,
            to_status=f"send:{SendStatus.SENDING.value}",
            reason=f"Sending started for {size} recipient(s); the audience is now fixed",
            created_at=now,
        )
    )
    change_campaign_status(
        session,
        campaign,
        CampaignStatus.SENDING,
        now=now,
        send_id=send_id,
        reason=f"Occurrence of {occurrence:%Y-%m-%d %H:%M} UTC started",
    )
    if size == 0:
        finish_send(session, send, campaign, now, reason="Nobody was in the audience any more")
    return send


def start_due(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """The ``newsletters.start_due`` job: start every campaign whose occurrence is due."""
    query = (
        sa.select(Campaign.id)
        .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.next_run_at <= now)
        .order_by(Campaign.next_run_at, Campaign.id)
        .limit(START_BATCH)
    )
    started = []
    for campaign_id in list(session.scalars(query)):
        lock_rows(session, Campaign, [campaign_id])
        campaign = session.get(Campaign, campaign_id, populate_existing=True)
        if campaign is None or campaign.next_run_at is None or campaign.next_run_at > now:
            continue
        send = start_occurrence(session, campaign, now)
        if send is not None:
            started.append(f"campaign {campaign_id}: {send.audience_size} recipient(s)")
    finished = finish_done_sends(session, now)
    return f"started {len(started)} send(s) ({'; '.join(started) or '-'}), finished {finished}"


def finish_send(
    session: Session, send: Send, campaign: Campaign, now: datetime, *, reason: str
) -> None:
    """Mark ``send`` sent and move its campaign on (the caller holds both rows locked)."""
    change_send_status(session, send, SendStatus.SENT, now=now, reason=reason)
    if campaign.status not in (CampaignStatus.SENDING, CampaignStatus.PAUSED):
        return
    if campaign.cron and campaign.next_run_at is not None:
        change_campaign_status(
            session,
            campaign,
            CampaignStatus.SCHEDULED,
            now=now,
            send_id=send.id,
            reason="Occurrence sent; waiting for the next one",
        )
    else:
        change_campaign_status(
            session, campaign, CampaignStatus.SENT, now=now, send_id=send.id, reason=reason
        )


def finish_done_sends(
    session: Session, now: datetime, send_ids: Iterable[int] | None = None
) -> int:
    """Finish every sending send with nothing queued or in flight; returns how many."""
    sending = sa.select(Send.id).where(Send.status == SendStatus.SENDING)
    if send_ids is not None:
        sending = sending.where(Send.id.in_(list(send_ids)))
    candidates = list(session.scalars(sending))
    if not candidates:
        return 0
    busy = set(
        session.scalars(
            sa.select(Delivery.send_id)
            .where(Delivery.send_id.in_(candidates), Delivery.status.in_(IN_FLIGHT))
            .group_by(Delivery.send_id)
        )
    )
    finished = 0
    for send_id in candidates:
        if send_id in busy:
            continue
        send = session.get(Send, send_id)
        assert send is not None
        lock_rows(session, Campaign, [send.campaign_id])
        lock_rows(session, Send, [send_id])
        session.refresh(send)
        campaign = session.get(Campaign, send.campaign_id, populate_existing=True)
        still_busy = session.scalar(
            sa.select(sa.func.count())
            .select_from(Delivery)
            .where(Delivery.send_id == send_id, Delivery.status.in_(IN_FLIGHT))
        )
        if send.status != SendStatus.SENDING or still_busy or campaign is None:
            continue
        finish_send(session, send, campaign, now, reason="Every recipient was handled")
        finished += 1
    return finished
