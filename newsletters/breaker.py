"""The circuit breaker: a send whose bounce or spam-report rate crosses a limit is paused, and
staff are told.

Mail providers judge a sender by these rates; an old or bought list can ruin the network's
reputation within one send. Rates are measured per send, over its accepted deliveries, from the
provider's events (distinct deliveries, so a retried event never counts twice), and only once
enough deliveries were accepted for the rate to mean something.

Delivery calls :func:`check_sends` after each batch, and :func:`newsletters.events.record_events`
after recording events. Limits come from the app's configuration:

- ``NEWSLETTER_BREAKER_MIN_ACCEPTED`` (200): accepted deliveries needed before judging;
- ``NEWSLETTER_BREAKER_BOUNCE_RATE`` (0.05): pause above this share of bounces;
- ``NEWSLETTER_BREAKER_SPAM_RATE`` (0.003): pause above this share of spam reports.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from engage import mail, outbox
from engage.accounts import queries as account_queries
from engage.db import lock_rows
from engage.roles import Role
from newsletters.models import (
    Campaign,
    CampaignStatus,
    CampaignStatusChange,
    Delivery,
    DeliveryStatus,
    ProviderEvent,
    ProviderEventKind,
    Send,
    SendStatus,
)
from newsletters.status import change_campaign_status, change_send_status

log = logging.getLogger(__name__)

PAUSED_NOTICE = "newsletter_paused"
# Counting accepted deliveries stops here when a limit of 0 makes any bounce count.
NO_CAP = 2**31 - 1
# The campaign states a pause applies to: a recurring campaign waits "scheduled" between
# occurrences, and must not start the next one while the breaker holds.
PAUSABLE_CAMPAIGN_STATES = frozenset({CampaignStatus.SENDING, CampaignStatus.SCHEDULED})


@dataclass(frozen=True)
class BreakerLimits:
    """When the breaker pauses a send."""

    # Accepted deliveries needed before a rate is judged.
    min_accepted: int = 200
    # Pause above these shares of accepted deliveries.
    bounce_rate: float = 0.05
    spam_rate: float = 0.003

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> BreakerLimits:
        """The limits ``config`` sets (defaults for what it leaves out)."""
        config = config or {}
        defaults = cls()
        return cls(
            min_accepted=int(config.get("NEWSLETTER_BREAKER_MIN_ACCEPTED", defaults.min_accepted)),
            bounce_rate=float(config.get("NEWSLETTER_BREAKER_BOUNCE_RATE", defaults.bounce_rate)),
            spam_rate=float(config.get("NEWSLETTER_BREAKER_SPAM_RATE", defaults.spam_rate)),
        )


@dataclass(frozen=True)
class SendRates:
    """What the breaker measured for one send."""

    send_id: int
    accepted: int
    bounced: int
    spam_reports: int

    @property
    def bounce_rate(self) -> float:
        """Bounced deliveries per accepted delivery."""
        return self.bounced / self.accepted if self.accepted else 0.0

    @property
    def spam_rate(self) -> float:
        """Spam reports per accepted delivery."""
        return self.spam_reports / self.accepted if self.accepted else 0.0


def _percent(rate: float) -> str:
    """A rate as people read it: "7.5%", "0.3%"."""
    return f"{rate * 100:.2f}".rstrip("0").rstrip(".") + "%"


def pause_reason(rates: SendRates, limits: BreakerLimits) -> str | None:
    """Why ``rates`` must pause the send, in plain words, or None when they need not."""
    if rates.accepted < limits.min_accepted:
        return None
    if rates.bounce_rate > limits.bounce_rate:
        return (
            f"Paused automatically: {_percent(rates.bounce_rate)} of accepted messages bounced "
            f"(limit {_percent(limits.bounce_rate)})"
        )
    if rates.spam_rate > limits.spam_rate:
        return (
            f"Paused automatically: {_percent(rates.spam_rate)} of accepted messages were "
            f"reported as spam (limit {_percent(limits.spam_rate)})"
        )
    return None


def _event_counts(session: Session, send_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(bounced, spam-reported) distinct deliveries by send (one grouped statement)."""
    rows = session.execute(
        sa.select(
            ProviderEvent.send_id,
            ProviderEvent.kind,
            sa.func.count(sa.distinct(ProviderEvent.delivery_id)),
        )
        .where(
            ProviderEvent.send_id.in_(send_ids),
            ProviderEvent.kind.in_([ProviderEventKind.BOUNCE, ProviderEventKind.SPAM_REPORT]),
        )
        .group_by(ProviderEvent.send_id, ProviderEvent.kind)
    ).all()
    counts: dict[int, tuple[int, int]] = {}
    for send_id, kind, count in rows:
        bounced, spam = counts.get(send_id, (0, 0))
        if kind == ProviderEventKind.BOUNCE:
            bounced = count
        else:
            spam = count
        counts[send_id] = (bounced, spam)
    return counts


def _accepted_up_to(session: Session, send_id: int, cap: int) -> int:
    """How many of the send's deliveries were accepted, counted no further than ``cap``
    (a rate can only cross its limit below a known number of accepted deliveries, and
    counting a million-row send after every batch would cost more than sending it)."""
    capped = (
        sa.select(sa.literal(1))
        .where(Delivery.send_id == send_id, Delivery.status == DeliveryStatus.ACCEPTED)
        .limit(cap)
        .subquery()
    )
    return session.scalar(sa.select(sa.func.count()).select_from(capped)) or 0


def _sending(session: Session, send_ids: Iterable[int]) -> list[int]:
    ids = sorted(set(send_ids))
    if not ids:
        return []
    return list(
        session.scalars(
            sa.select(Send.id)
            .where(Send.id.in_(ids), Send.status == SendStatus.SENDING)
            .order_by(Send.id)
        )
    )


def _resumed_by_staff(session: Session, send_ids: list[int]) -> set[int]:
    """Sends a staff member resumed after a pause: staff decided to go on knowing the rates,
    so the breaker does not pause them again (staff can still pause by hand)."""
    return set(
        session.scalars(
            sa.select(CampaignStatusChange.send_id).where(
                CampaignStatusChange.send_id.in_(send_ids),
                CampaignStatusChange.from_status == f"send:{SendStatus.PAUSED.value}",
                CampaignStatusChange.to_status == f"send:{SendStatus.SENDING.value}",
                CampaignStatusChange.actor_id.is_not(None),
            )
        )
    )


def measure(session: Session, send_ids: Iterable[int], limits: BreakerLimits) -> list[SendRates]:
    """The rates of those of ``send_ids`` whose events could cross a limit (sends with too
    few bounces and spam reports to pause are left out)."""
    ids = sorted(set(send_ids))
    if not ids:
        return []
    measured = []
    for send_id, (bounced, spam) in sorted(_event_counts(session, ids).items()):
        # Past a limit only while accepted < count / rate, and accepted must reach the minimum.
        caps = [
            math.floor(count / rate) + 1 if rate > 0 else NO_CAP
            for count, rate in ((bounced, limits.bounce_rate), (spam, limits.spam_rate))
            if count
        ]
        if not caps or max(caps) <= limits.min_accepted:
            continue
        accepted = _accepted_up_to(session, send_id, max(caps))
        measured.append(SendRates(send_id, accepted, bounced, spam))
    return measured


def check_sends(
    session: Session,
    send_ids: Iterable[int],
    now: datetime,
    config: Mapping[str, Any] | None = None,
) -> list[int]:
    """Pause each of ``send_ids`` that is sending and whose bounce or spam-report rate is past
    its limit: the send and its campaign become "paused" (the change logged with the rates),
    and every active staff account is emailed. Returns the ids of the sends it paused.

    A send with any bounce or spam report is locked before it is measured, so requests
    recording events of one send at once take turns: each measures what the others committed
    (together they may cross the limit that neither crosses alone), and a send is paused, and
    staff emailed, once. The caller commits.

    :param config: the app's configuration (``NEWSLETTER_BREAKER_*``; defaults when absent).
    """
    limits = BreakerLimits.from_config(config)
    sending = _sending(session, send_ids)
    if not sending:
        return []
    # Without a single bounce or spam report nothing can pause: no lock, no counting.
    candidates = sorted(set(_event_counts(session, sending)) - _resumed_by_staff(session, sending))
    if not candidates:
        return []
    # Campaign rows first, then sends: the order staff actions and finishing sends lock in.
    campaign_ids = sorted(
        set(session.scalars(sa.select(Send.campaign_id).where(Send.id.in_(candidates))))
    )
    lock_rows(session, Campaign, campaign_ids)
    lock_rows(session, Send, candidates)
    sends = {
        send.id: send
        for send in session.scalars(
            sa.select(Send).where(Send.id.in_(candidates)).execution_options(populate_existing=True)
        )
        if send.status == SendStatus.SENDING  # not paused meanwhile by another request or staff
    }
    paused = []
    for rates in measure(session, sorted(sends), limits):
        reason = pause_reason(rates, limits)
        if reason is None:
            continue
        send = sends[rates.send_id]
        change_send_status(session, send, SendStatus.PAUSED, now=now, reason=reason)
        # Two sends of one campaign may be paused at once: the campaign changes once.
        lock_rows(session, Campaign, [send.campaign_id])
        campaign = session.get(Campaign, send.campaign_id, populate_existing=True)
        if campaign is not None and campaign.status in PAUSABLE_CAMPAIGN_STATES:
            change_campaign_status(
                session, campaign, CampaignStatus.PAUSED, now=now, reason=reason, send_id=send.id
            )
        _tell_staff(session, send, rates, reason, now)
        paused.append(send.id)
        log.warning(
            "circuit breaker paused send %s of campaign %s (%s accepted, %s bounced, %s spam)",
            send.id,
            send.campaign_id,
            rates.accepted,
            rates.bounced,
            rates.spam_reports,
        )
    return paused


# Telling staff --------------------------------------------------------------------------------
def paused_notice_key(send_id: int, pause_number: int, user_id: int) -> str:
    """The deduplication key of one staff member's email about one pause of one send."""
    return f"newsletter-paused:{send_id}:{pause_number}:{user_id}"


def _tell_staff(session: Session, send: Send, rates: SendRates, reason: str, now: datetime) -> None:
    session.flush()
    # Which pause of this send this is (staff may resume it, and it may be paused again).
    pause_number = session.scalar(
        sa.select(sa.func.count()).where(
            CampaignStatusChange.send_id == send.id,
            CampaignStatusChange.to_status == f"send:{SendStatus.PAUSED.value}",
        )
    )
    for person in account_queries.recipients(session, roles=[Role.STAFF]):
        outbox.enqueue(
            session,
            kind=PAUSED_NOTICE,
            dedup_key=paused_notice_key(send.id, pause_number or 1, person.id),
            now=now,
            user_id=person.id,
            payload={
                "send_id": send.id,
                "campaign_id": send.campaign_id,
                "reason": reason,
                "accepted": rates.accepted,
                "bounced": rates.bounced,
                "spam_reports": rates.spam_reports,
            },
        )


def campaign_url(campaign_id: int) -> str:
    """The staff page of a campaign (built from ``BASE_URL``: emails leave outside requests)."""
    base = current_app.config["BASE_URL"].rstrip("/")
    return f"{base}/staff/newsletters/campaigns/{campaign_id}"


def render_paused_notice(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """A staff member hears that the breaker paused a send, why, and where to decide what
    happens next."""
    staff = {p.id: p for p in account_queries.recipients(session, roles=[Role.STAFF])}
    person = staff.get(row.user_id) if row.user_id is not None else None
    if person is None:
        raise outbox.NotOwed("the recipient is no longer active staff")
    send = session.get(Send, row.payload.get("send_id"))
    campaign = session.get(Campaign, row.payload.get("campaign_id"))
    if send is None or campaign is None:
        raise outbox.NotOwed("the campaign no longer exists")
    return mail.render_message(
        PAUSED_NOTICE,
        to=person.email,
        subject=f"Newsletter paused: {send.subject}",
        user=person,
        send=send,
        campaign=campaign,
        reason=row.payload.get("reason", ""),
        accepted=int(row.payload.get("accepted", 0)),
        bounced=int(row.payload.get("bounced", 0)),
        spam_reports=int(row.payload.get("spam_reports", 0)),
        is_still_paused=send.status == SendStatus.PAUSED,
        link=campaign_url(campaign.id),
    )


def register_kinds(kinds: outbox.MailKinds) -> None:
    """Register the breaker's email to staff."""
    kinds.register(PAUSED_NOTICE, render_paused_notice, "Newsletter paused by the circuit breaker")
