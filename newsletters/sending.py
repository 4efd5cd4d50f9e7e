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
    """Start the campaign's due occurrence: create its send (content copied, audience still to
    be written: see :func:`freeze_audience`) and move ``next_run_at`` on. Returns the send, or
    None when that occurrence had already been started (by another scheduler) or the campaign
    is no longer scheduled.

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
            is_freezing=True,
            freeze_query=0,
            freeze_after_id=0,
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
    session.add(
        CampaignStatusChange(
            campaign_id=campaign.id,
            send_id=send_id,
            from_status=None,
            to_status=f"send:{SendStatus.SENDING.value}",
            reason="Sending started: the audience is who is subscribed and confirmed now",
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
    return send


def freeze_audience(
    session: Session, send_id: int, now: datetime, *, chunk_ids: int = audience.FREEZE_CHUNK_IDS
) -> int | None:
    """Write the send's audience chunk by chunk, committing each (delivery workers start on
    the first while the rest is written), and finish it: record the size, and a send nobody
    is left in is finished at once. A freeze cut off (a crash) resumes where its last chunk
    ended. Returns the audience size, or None when the send was cancelled meanwhile."""
    dialect = session.get_bind().dialect.name
    chunks = 0
    while True:
        lock_rows(session, Send, [send_id])
        send = session.get(Send, send_id, populate_existing=True)
        if send is None or not send.is_freezing:
            session.commit()
            return None if send is None else send.audience_size
        if send.status == SendStatus.CANCELLED:
            send.is_freezing = False
            session.commit()
            return None
        campaign_lists = list_ids_of(session, send.campaign_id)
        campaign = session.get(Campaign, send.campaign_id)
        assert campaign is not None
        done = audience.freeze_chunk(
            session, send, campaign_lists, campaign.audience, chunk_ids=chunk_ids
        )
        chunks += 1
        if dialect == "postgresql" and (chunks == 1 or done):
            # Fresh statistics, so the workers' claims plan for the table as it now is (a
            # million new rows would otherwise be planned as a handful until autovacuum runs).
            session.execute(sa.text("ANALYZE newsletter_deliveries"))
        if done:
            break
        session.commit()
    size = audience.frozen_size(session, send_id)
    send.audience_size = size
    send.is_freezing = False
    session.add(
        CampaignStatusChange(
            campaign_id=send.campaign_id,
            send_id=send_id,
            from_status=f"send:{send.status.value}",
            to_status=f"send:{send.status.value}",
            reason=f"The audience is fixed: {size} recipient(s)",
            created_at=now,
        )
    )
    if size == 0 and send.status == SendStatus.SENDING:
        lock_rows(session, Campaign, [send.campaign_id])
        campaign = session.get(Campaign, send.campaign_id, populate_existing=True)
        assert campaign is not None
        finish_send(session, send, campaign, now, reason="Nobody was in the audience any more")
    session.commit()
    return size


def start_due(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """The ``newsletters.start_due`` job: finish writing any audience a crash cut off, then
    start every campaign whose occurrence is due and write its audience (each step commits
    on its own)."""
    chunk_ids = int(config.get("NEWSLETTER_FREEZE_CHUNK_IDS") or audience.FREEZE_CHUNK_IDS)
    resumed = list(session.scalars(sa.select(Send.id).where(Send.is_freezing.is_(True))))
    for send_id in resumed:
        freeze_audience(session, send_id, now, chunk_ids=chunk_ids)
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
            session.commit()
            continue
        send = start_occurrence(session, campaign, now)
        session.commit()
        if send is not None:
            size = freeze_audience(session, send.id, now, chunk_ids=chunk_ids)
            started.append(f"campaign {campaign_id}: {size or 0} recipient(s)")
    finished = finish_done_sends(session, now)
    return (
        f"started {len(started)} send(s) ({'; '.join(started) or '-'}), finished {finished}, "
        f"resumed writing {len(resumed)} audience(s)"
    )


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
    sending = sa.select(Send.id).where(
        Send.status == SendStatus.SENDING, Send.is_freezing.is_(False)
    )
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
        if send.status != SendStatus.SENDING or send.is_freezing or still_busy or not campaign:
            continue
        finish_send(session, send, campaign, now, reason="Every recipient was handled")
        finished += 1
    return finished
