"""Factories for newsletter tests: lists, subscribers and campaigns written straight to the
database (the services under test are exercised by the tests themselves)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.timeutil import utcnow
from newsletters.models import (
    Campaign,
    CampaignKind,
    CampaignList,
    CampaignStatus,
    ListVisibility,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)


def make_list(
    session: Session,
    name: str = "Research updates",
    *,
    visibility: ListVisibility = ListVisibility.PUBLIC,
    required_scope: str | None = None,
    description: str = "News about research.",
) -> MailingList:
    """A mailing list (flushed, not committed)."""
    now = utcnow()
    mailing_list = MailingList(
        name=name,
        description=description,
        visibility=visibility,
        required_scope=required_scope,
        created_at=now,
        updated_at=now,
    )
    session.add(mailing_list)
    session.flush()
    return mailing_list


def subscribe_email(
    session: Session,
    email: str,
    lists: Iterable[MailingList],
    *,
    name: str = "Reader",
    language: str = "en",
    status: SubscriptionStatus = SubscriptionStatus.CONFIRMED,
) -> Subscriber:
    """A person without an account on ``lists`` (confirmed unless told otherwise)."""
    now = utcnow()
    subscriber = Subscriber(email=email.lower(), name=name, language=language, created_at=now)
    session.add(subscriber)
    session.flush()
    for mailing_list in lists:
        session.add(
            Subscription(
                subscriber_id=subscriber.id,
                list_id=mailing_list.id,
                status=status,
                source="signup",
                created_at=now,
                confirmed_at=now if status == SubscriptionStatus.CONFIRMED else None,
            )
        )
    session.flush()
    return subscriber


def subscribe_user(
    session: Session,
    user_id: int,
    lists: Iterable[MailingList],
    *,
    status: SubscriptionStatus = SubscriptionStatus.CONFIRMED,
) -> Subscriber:
    """An account holder on ``lists``."""
    now = utcnow()
    subscriber = session.scalar(sa.select(Subscriber).where(Subscriber.user_id == user_id))
    if subscriber is None:
        subscriber = Subscriber(user_id=user_id, language="en", created_at=now)
        session.add(subscriber)
        session.flush()
    for mailing_list in lists:
        session.add(
            Subscription(
                subscriber_id=subscriber.id,
                list_id=mailing_list.id,
                status=status,
                source="preferences",
                created_at=now,
                confirmed_at=now if status == SubscriptionStatus.CONFIRMED else None,
            )
        )
    session.flush()
    return subscriber


def make_campaign(
    session: Session,
    lists: Iterable[MailingList],
    *,
    subject: str = "Research news for spring",
    body: str = "Dear {name},\n\nThe network has **news** for you.",
    kind: CampaignKind = CampaignKind.RESEARCH_UPDATE,
    status: CampaignStatus = CampaignStatus.DRAFT,
    send_at: datetime | None = None,
    cron: str | None = None,
    audience: dict[str, Any] | None = None,
    created_by_id: int | None = None,
) -> Campaign:
    """A campaign on ``lists`` (scheduled ones get ``next_run_at = send_at``)."""
    now = utcnow()
    campaign = Campaign(
        kind=kind,
        subject=subject,
        preheader="What happened this season",
        body_markdown=body,
        status=status,
        audience=audience or {},
        timezone="UTC",
        send_at=send_at,
        cron=cron,
        next_run_at=send_at if status == CampaignStatus.SCHEDULED else None,
        created_by_id=created_by_id,
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    session.flush()
    for mailing_list in lists:
        session.add(CampaignList(campaign_id=campaign.id, list_id=mailing_list.id))
    session.flush()
    return campaign
