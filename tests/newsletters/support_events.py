"""Factories for tests of provider events, suppressions and the circuit breaker: a send of a
campaign and its deliveries, written straight to the database (flushed, not committed)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.timeutil import utcnow
from newsletters.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    MailingList,
    Send,
    SendStatus,
    Subscriber,
)
from tests.newsletters.support import make_campaign, make_list, subscribe_email


def make_send(
    session: Session,
    campaign: Campaign | None = None,
    *,
    status: SendStatus = SendStatus.SENDING,
    occurrence_at: datetime | None = None,
) -> Send:
    """A send of ``campaign`` (a new sending campaign on a new list when not given)."""
    if campaign is None:
        mailing_list = make_list(session, f"List {utcnow().timestamp()}")
        campaign = make_campaign(session, [mailing_list], status=CampaignStatus.SENDING)
    now = utcnow()
    send = Send(
        campaign_id=campaign.id,
        occurrence_at=occurrence_at or now,
        status=status,
        subject=campaign.subject,
        preheader=campaign.preheader,
        body_markdown=campaign.body_markdown,
        audience_size=0,
        started_at=now,
    )
    session.add(send)
    session.flush()
    return send


def add_deliveries(
    session: Session,
    send: Send,
    subscribers: Sequence[Subscriber],
    mailing_list: MailingList,
    *,
    status: DeliveryStatus = DeliveryStatus.ACCEPTED,
) -> list[Delivery]:
    """One delivery of ``send`` per subscriber (account holders need ``email`` set on their
    subscriber row here, as tests only use people without accounts)."""
    now = utcnow()
    rows = [
        Delivery(
            send_id=send.id,
            subscriber_id=subscriber.id,
            list_id=mailing_list.id,
            user_id=subscriber.user_id,
            email=subscriber.email or "",
            name=subscriber.name or "",
            language=subscriber.language,
            status=status,
            attempts=1 if status != DeliveryStatus.PENDING else 0,
            next_attempt_at=now,
            claimed_at=now - timedelta(seconds=5) if status != DeliveryStatus.PENDING else None,
            accepted_at=now if status == DeliveryStatus.ACCEPTED else None,
            provider_message_id="msg-1" if status == DeliveryStatus.ACCEPTED else None,
        )
        for subscriber in subscribers
    ]
    session.add_all(rows)
    session.flush()
    return rows


def many_deliveries(
    session: Session,
    count: int,
    *,
    status: DeliveryStatus = DeliveryStatus.ACCEPTED,
    prefix: str = "reader",
) -> tuple[Send, list[Delivery]]:
    """A sending send with ``count`` deliveries to new subscribers of a new list, written
    with bulk inserts (hundreds of rows in a few statements)."""
    mailing_list = make_list(session, f"{prefix} list")
    campaign = make_campaign(session, [mailing_list], status=CampaignStatus.SENDING)
    send = make_send(session, campaign)
    now = utcnow()
    session.execute(
        sa.insert(Subscriber),
        [
            {
                "email": f"{prefix}{n}@example.org",
                "name": f"Reader {n}",
                "language": "en",
                "created_at": now,
            }
            for n in range(count)
        ],
    )
    subscribers = list(
        session.scalars(
            sa.select(Subscriber)
            .where(Subscriber.email.like(f"{prefix}%@example.org"))
            .order_by(Subscriber.id)
        )
    )
    return send, add_deliveries(session, send, subscribers, mailing_list, status=status)


def one_delivery(
    session: Session,
    email: str = "jane@example.org",
    *,
    status: DeliveryStatus = DeliveryStatus.ACCEPTED,
) -> Delivery:
    """A delivery of a new sending send to one confirmed subscriber of a new list."""
    mailing_list = make_list(session, f"List for {email}")
    subscriber = subscribe_email(session, email, [mailing_list], name="Jane")
    campaign = make_campaign(session, [mailing_list], status=CampaignStatus.SENDING)
    send = make_send(session, campaign)
    return add_deliveries(session, send, [subscriber], mailing_list, status=status)[0]
