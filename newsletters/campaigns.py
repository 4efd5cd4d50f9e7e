"""Campaigns: what staff draft, preview, test-send, schedule, pause, resume and cancel.

Every function takes the session, the acting staff member and ``now``, and never commits: the
view (or command) that called it commits once. A change of state locks the campaign row first,
so a double-click or two staff members changing it at once make one change, and the second
hears why nothing happened. Each status change is logged through :mod:`newsletters.status`.

States: draft → scheduled → sending → sent (a recurring campaign returns to scheduled after each
occurrence); sending ⇄ paused; scheduled, sending and paused → cancelled. Content can change
only in draft or scheduled: once a send has started, its content and audience are fixed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm import Session

from engage import mail, outbox
from engage.accounts import queries as account_queries
from engage.choices import LANGUAGE_CHOICES, country_names
from engage.db import lock_rows
from engage.registries import queries as registry_queries
from engage.roles import Role
from newsletters import content, queries
from newsletters.audience import is_empty
from newsletters.errors import InvalidState, NewsletterError, NotFound
from newsletters.models import (
    Campaign,
    CampaignKind,
    CampaignList,
    CampaignStatus,
    CampaignStatusChange,
    Delivery,
    DeliveryStatus,
    MailingList,
    Send,
    SendStatus,
    Subscriber,
)
from newsletters.schedule import (
    MAX_AHEAD,
    InvalidSchedule,
    local_to_utc,
    next_occurrence,
    normalise_cron,
    utc_to_local,
)
from newsletters.status import change_campaign_status, change_send_status
from newsletters.tokens import UnsubscribeSigner

TEST_SEND_KIND = "newsletter_test"
MAX_SUBJECT_LENGTH = 200
MAX_PREHEADER_LENGTH = 200
MAX_BODY_LENGTH = 50_000
MAX_REASON_LENGTH = 300
AUDIENCE_KEYS = ("roles", "countries", "languages", "registry_ids", "topic_ids")
# Staff are not an audience of network newsletters.
AUDIENCE_ROLES = tuple(role for role in Role if role != Role.STAFF)
EDITABLE = frozenset({CampaignStatus.DRAFT, CampaignStatus.SCHEDULED})
SCHEDULABLE = EDITABLE
CANCELLABLE = frozenset({CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.PAUSED})
CANCELLED_ERROR = "campaign cancelled"


class EmptyAudience(NewsletterError):
    """Nobody would receive the campaign as it stands."""


@dataclass(frozen=True)
class CampaignDetails:
    """What staff write: kind, subject, preheader, Markdown body, lists and audience filter.

    :param audience: any of ``roles`` (role values), ``countries`` (ISO codes), ``languages``,
        ``registry_ids`` and ``topic_ids``; empty ones mean "everyone".
    """

    kind: CampaignKind
    subject: str
    preheader: str
    body_markdown: str
    list_ids: list[int]
    audience: Mapping[str, Iterable[Any]] = field(default_factory=dict)


# Reading the campaign ----------------------------------------------------------------------------
def list_ids_of(session: Session, campaign_id: int) -> list[int]:
    """The lists a campaign goes to, by id."""
    return list(
        session.scalars(
            sa.select(CampaignList.list_id)
            .where(CampaignList.campaign_id == campaign_id)
            .order_by(CampaignList.list_id)
        )
    )


def current_send(session: Session, campaign_id: int) -> Send | None:
    """The occurrence being sent or paused, if any."""
    return session.scalar(
        sa.select(Send)
        .where(
            Send.campaign_id == campaign_id,
            Send.status.in_([SendStatus.SENDING, SendStatus.PAUSED]),
        )
        .order_by(Send.id.desc())
        .limit(1)
    )


def _locked(session: Session, campaign: Campaign) -> Campaign:
    """``campaign`` locked until the transaction ends, read again after the lock was taken
    (so a concurrent change is seen, not overwritten)."""
    lock_rows(session, Campaign, [campaign.id])
    fresh = session.get(Campaign, campaign.id, populate_existing=True)
    if fresh is None:
        raise NotFound("This campaign no longer exists.")
    return fresh


def why_not_editable(campaign: Campaign) -> InvalidState:
    """The refusal to edit ``campaign`` in its status (sending, paused, sent, cancelled)."""
    if campaign.status in (CampaignStatus.SENDING, CampaignStatus.PAUSED):
        return InvalidState(
            "This campaign is being sent; it can no longer be edited (its content and "
            "audience were fixed when sending started). Nothing was changed."
        )
    if campaign.status == CampaignStatus.SENT:
        return InvalidState("This campaign has been sent; it can no longer be edited.")
    return InvalidState("This campaign was cancelled; it can no longer be edited.")


# Validating what staff wrote -------------------------------------------------------------------
def clean_audience(audience: Mapping[str, Iterable[Any]]) -> dict[str, list[Any]]:
    """The audience filter as stored: known keys only, sorted, without duplicates, empty
    ones left out; :class:`NewsletterError` for a value that is not offered."""
    unknown = set(audience) - set(AUDIENCE_KEYS)
    if unknown:
        raise NewsletterError("The audience filter has parts we do not know.")
    cleaned: dict[str, list[Any]] = {}
    for key in AUDIENCE_KEYS:
        raw = list(audience.get(key) or [])
        try:
            if key.endswith("_ids"):
                values: list[Any] = sorted({int(v) for v in raw})
            else:
                values = sorted(set(map(str, raw)))
        except (TypeError, ValueError) as exc:
            raise NewsletterError("Choose the audience from the lists offered.") from exc
        if key == "roles" and not set(values) <= {role.value for role in AUDIENCE_ROLES}:
            raise NewsletterError("Choose roles from the list (staff are not an audience).")
        if key == "countries":
            values = sorted({v.upper() for v in values})
            if not set(values) <= set(country_names()):
                raise NewsletterError("Choose countries from the list.")
        if key == "languages" and not set(values) <= {code for code, _ in LANGUAGE_CHOICES}:
            raise NewsletterError("Choose languages from the list.")
        if key.endswith("_ids") and any(value < 1 for value in values):
            raise NewsletterError("Choose the audience from the lists offered.")
        if values:
            cleaned[key] = values
    return cleaned


def _check_text(details: CampaignDetails) -> None:
    subject = details.subject.strip()
    if not subject:
        raise NewsletterError("Give the campaign a subject.")
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise NewsletterError(f"Use at most {MAX_SUBJECT_LENGTH} characters for the subject.")
    if len(details.preheader.strip()) > MAX_PREHEADER_LENGTH:
        raise NewsletterError(f"Use at most {MAX_PREHEADER_LENGTH} characters for the preheader.")
    if not details.body_markdown.strip():
        raise NewsletterError("Write the newsletter's text.")
    if len(details.body_markdown) > MAX_BODY_LENGTH:
        raise NewsletterError(f"Use at most {MAX_BODY_LENGTH:,} characters for the text.")


def _check_lists(session: Session, list_ids: Iterable[int], keep: Iterable[int] = ()) -> list[int]:
    """The chosen lists, which must exist and (unless already on the campaign) be in use."""
    wanted = sorted({int(i) for i in list_ids})
    if not wanted:
        raise NewsletterError("Choose at least one mailing list.")
    rows = session.execute(
        sa.select(MailingList.id, MailingList.is_archived).where(MailingList.id.in_(wanted))
    ).all()
    found = {row.id: row.is_archived for row in rows}
    if set(found) != set(wanted):
        raise NewsletterError("One of the chosen mailing lists no longer exists.")
    kept = set(keep)
    if any(archived and list_id not in kept for list_id, archived in found.items()):
        raise NewsletterError("An archived mailing list cannot receive new campaigns.")
    return wanted


def _check_registries(session: Session, audience: dict[str, list[Any]]) -> None:
    chosen = set(audience.get("registry_ids", []))
    if chosen and registry_queries.active_registry_ids(session, chosen) != chosen:
        raise NewsletterError("Choose registries from the list of active registries.")


def _require_audience(session: Session, campaign: Campaign) -> None:
    """:class:`EmptyAudience` when nobody would receive ``campaign`` now."""
    session.flush()
    if is_empty(session, list_ids_of(session, campaign.id), campaign.audience or {}):
        raise EmptyAudience(
            "Nobody would receive this campaign: no confirmed subscriber of its lists matches "
            "its audience filter (or gives the consent a list needs). Choose other lists or a "
            "wider audience. Nothing was changed."
        )


def _apply(
    session: Session, campaign: Campaign, details: CampaignDetails, list_ids: list[int]
) -> None:
    campaign.kind = details.kind
    campaign.subject = details.subject.strip()
    campaign.preheader = details.preheader.strip()
    campaign.body_markdown = details.body_markdown
    campaign.audience = clean_audience(details.audience)
    _check_registries(session, campaign.audience)
    current = set(list_ids_of(session, campaign.id))
    wanted = set(list_ids)
    if current - wanted:
        session.execute(
            sa.delete(CampaignList).where(
                CampaignList.campaign_id == campaign.id,
                CampaignList.list_id.in_(sorted(current - wanted)),
            )
        )
    for list_id in sorted(wanted - current):
        session.add(CampaignList(campaign_id=campaign.id, list_id=list_id))


# Drafting --------------------------------------------------------------------------------------
def create_campaign(
    session: Session, actor: Any, details: CampaignDetails, now: datetime
) -> Campaign:
    """Save a new draft campaign written by ``actor``."""
    _check_text(details)
    list_ids = _check_lists(session, details.list_ids)
    campaign = Campaign(
        kind=details.kind,
        subject="",
        body_markdown="",
        status=CampaignStatus.DRAFT,
        audience={},
        timezone="UTC",
        created_by_id=actor.id,
        created_at=now,
        updated_at=now,
    )
    session.add(campaign)
    session.flush()
    _apply(session, campaign, details, list_ids)
    # The history starts with the draft (change_campaign_status logs changes, not births).
    session.add(
        CampaignStatusChange(
            campaign_id=campaign.id,
            from_status=None,
            to_status=CampaignStatus.DRAFT.value,
            actor_id=actor.id,
            reason="Drafted",
            created_at=now,
        )
    )
    session.flush()
    return campaign


def update_campaign(
    session: Session, actor: Any, campaign: Campaign, details: CampaignDetails, now: datetime
) -> Campaign:
    """Change a draft or scheduled campaign; :class:`InvalidState` once sending has started
    (nothing changes then). A scheduled campaign must keep somebody in its audience."""
    campaign = _locked(session, campaign)
    if campaign.status not in EDITABLE:
        raise why_not_editable(campaign)
    _check_text(details)
    list_ids = _check_lists(session, details.list_ids, keep=list_ids_of(session, campaign.id))
    _apply(session, campaign, details, list_ids)
    campaign.updated_at = now
    if campaign.status == CampaignStatus.SCHEDULED:
        _require_audience(session, campaign)
    session.flush()
    return campaign


# Scheduling ------------------------------------------------------------------------------------
def _schedulable(session: Session, campaign: Campaign) -> Campaign:
    campaign = _locked(session, campaign)
    if campaign.status not in SCHEDULABLE:
        raise InvalidState(
            f"This campaign is “{campaign.status.label.lower()}”: only a draft or a scheduled "
            "campaign can be scheduled. Nothing was changed."
        )
    return campaign


def _log_schedule(
    session: Session, campaign: Campaign, actor: Any, reason: str, now: datetime
) -> None:
    """Log the new schedule: a draft becomes scheduled; a scheduled campaign's change of time
    is logged too (same status), so the history says when and by whom it moved."""
    if campaign.status == CampaignStatus.SCHEDULED:
        session.add(
            CampaignStatusChange(
                campaign_id=campaign.id,
                from_status=CampaignStatus.SCHEDULED.value,
                to_status=CampaignStatus.SCHEDULED.value,
                actor_id=actor.id,
                reason=f"Schedule changed. {reason}"[:MAX_REASON_LENGTH],
                created_at=now,
            )
        )
        campaign.updated_at = now
        return
    change_campaign_status(
        session, campaign, CampaignStatus.SCHEDULED, now=now, actor_id=actor.id, reason=reason
    )


def schedule_once(
    session: Session,
    actor: Any,
    campaign: Campaign,
    local: datetime,
    timezone: str,
    now: datetime,
) -> Campaign:
    """Send ``campaign`` once, at wall-clock time ``local`` (naive) in ``timezone``.

    Refused (:class:`InvalidSchedule`, :class:`EmptyAudience`, :class:`InvalidState`) for a
    time in the past, a time the clocks skip, an empty audience, or a campaign already sending.
    """
    campaign = _schedulable(session, campaign)
    instant = local_to_utc(local, timezone)
    if instant <= now:
        raise InvalidSchedule("Choose a time in the future.", "send_at")
    if instant > now + MAX_AHEAD:
        raise InvalidSchedule("Choose a time within the next two years.", "send_at")
    _require_audience(session, campaign)
    campaign.timezone = timezone
    campaign.send_at = instant
    campaign.cron = None
    campaign.next_run_at = instant
    when = utc_to_local(instant, timezone)
    _log_schedule(
        session, campaign, actor, f"To be sent on {when:%d %B %Y at %H:%M} ({timezone}).", now
    )
    session.flush()
    return campaign


def schedule_recurring(
    session: Session, actor: Any, campaign: Campaign, cron: str, timezone: str, now: datetime
) -> Campaign:
    """Send ``campaign`` on every occurrence of ``cron`` in ``timezone`` (each occurrence makes
    its own send); refused like :func:`schedule_once`, and for a recurrence that is invalid,
    fires more often than hourly, or never comes round."""
    campaign = _schedulable(session, campaign)
    text = normalise_cron(cron)
    first = next_occurrence(text, timezone, now)
    if first is None:
        raise InvalidSchedule(
            "This schedule never comes round (e.g. 30 February). Choose days that exist.", "cron"
        )
    _require_audience(session, campaign)
    campaign.timezone = timezone
    campaign.send_at = None
    campaign.cron = text
    campaign.next_run_at = first
    when = utc_to_local(first, timezone)
    _log_schedule(
        session,
        campaign,
        actor,
        f"Repeats “{text}” ({timezone}); first on {when:%d %B %Y at %H:%M}.",
        now,
    )
    session.flush()
    return campaign


def unschedule(session: Session, actor: Any, campaign: Campaign, now: datetime) -> Campaign:
    """Take a scheduled campaign back to draft (nothing more goes out until it is scheduled
    again; sends already made stay in its history)."""
    campaign = _locked(session, campaign)
    if campaign.status != CampaignStatus.SCHEDULED:
        raise InvalidState(
            f"This campaign is “{campaign.status.label.lower()}”, not scheduled: there is no "
            "schedule to take back."
        )
    campaign.next_run_at = None
    change_campaign_status(
        session,
        campaign,
        CampaignStatus.DRAFT,
        now=now,
        actor_id=actor.id,
        reason="Schedule taken back; the campaign is a draft again",
    )
    session.flush()
    return campaign


# Pause, resume, cancel -------------------------------------------------------------------------
def _locked_send(session: Session, campaign: Campaign) -> Send | None:
    """The campaign's current send, locked (after the campaign: the order the scheduler uses)."""
    send = current_send(session, campaign.id)
    if send is None:
        return None
    lock_rows(session, Send, [send.id])
    return session.get(Send, send.id, populate_existing=True)


def pause(
    session: Session, actor: Any, campaign: Campaign, now: datetime, reason: str = ""
) -> Campaign:
    """Stop handing a sending campaign's queued emails to workers until it is resumed (emails
    already with the provider still arrive)."""
    campaign = _locked(session, campaign)
    if campaign.status == CampaignStatus.PAUSED:
        raise InvalidState("This campaign is already paused.")
    if campaign.status != CampaignStatus.SENDING:
        raise InvalidState(
            f"This campaign is “{campaign.status.label.lower()}”: only a campaign that is being "
            "sent can be paused."
        )
    why = reason.strip()[:MAX_REASON_LENGTH] or "Paused by staff"
    send = _locked_send(session, campaign)
    change_campaign_status(
        session,
        campaign,
        CampaignStatus.PAUSED,
        now=now,
        actor_id=actor.id,
        reason=why,
        send_id=send.id if send else None,
    )
    if send is not None:
        change_send_status(session, send, SendStatus.PAUSED, now=now, actor_id=actor.id, reason=why)
    session.flush()
    return campaign


def resume(
    session: Session, actor: Any, campaign: Campaign, now: datetime, reason: str = ""
) -> Campaign:
    """Carry on sending a paused campaign from where it stopped."""
    campaign = _locked(session, campaign)
    if campaign.status == CampaignStatus.SENDING:
        raise InvalidState("This campaign is already being sent.")
    if campaign.status != CampaignStatus.PAUSED:
        raise InvalidState(
            f"This campaign is “{campaign.status.label.lower()}”: only a paused campaign can be "
            "resumed."
        )
    why = reason.strip()[:MAX_REASON_LENGTH] or "Resumed by staff"
    send = _locked_send(session, campaign)
    if send is None:
        # Nothing was left in flight (the pause came between occurrences): wait for the next.
        target = CampaignStatus.SCHEDULED if campaign.next_run_at else CampaignStatus.SENT
        change_campaign_status(session, campaign, target, now=now, actor_id=actor.id, reason=why)
        session.flush()
        return campaign
    change_campaign_status(
        session,
        campaign,
        CampaignStatus.SENDING,
        now=now,
        actor_id=actor.id,
        reason=why,
        send_id=send.id,
    )
    change_send_status(session, send, SendStatus.SENDING, now=now, actor_id=actor.id, reason=why)
    session.flush()
    return campaign


def cancel(
    session: Session, actor: Any, campaign: Campaign, now: datetime, reason: str = ""
) -> int:
    """Stop a scheduled, sending or paused campaign for good: its current send is cancelled
    and its still-queued emails are skipped (emails already with the provider still arrive).
    Returns how many queued emails will not be sent."""
    campaign = _locked(session, campaign)
    if campaign.status == CampaignStatus.CANCELLED:
        raise InvalidState("This campaign is already cancelled.")
    if campaign.status == CampaignStatus.SENT:
        raise InvalidState("This campaign has been sent; there is nothing left to cancel.")
    if campaign.status not in CANCELLABLE:
        raise InvalidState("This draft is not scheduled, so there is nothing to cancel.")
    why = reason.strip()[:MAX_REASON_LENGTH] or "Cancelled by staff"
    send = _locked_send(session, campaign)
    skipped = 0
    if send is not None:
        skipped = (
            session.execute(
                sa.update(Delivery)
                .where(Delivery.send_id == send.id, Delivery.status == DeliveryStatus.PENDING)
                .values(status=DeliveryStatus.SKIPPED, last_error=CANCELLED_ERROR)
                .execution_options(synchronize_session=False)
            ).rowcount
            or 0
        )
        change_send_status(
            session, send, SendStatus.CANCELLED, now=now, actor_id=actor.id, reason=why
        )
    campaign.next_run_at = None
    change_campaign_status(
        session,
        campaign,
        CampaignStatus.CANCELLED,
        now=now,
        actor_id=actor.id,
        reason=why,
        send_id=send.id if send else None,
    )
    session.flush()
    return skipped


# Test send -------------------------------------------------------------------------
def _test_dedup_key(campaign: Campaign, actor_id: int) -> str:
    return f"newsletter-test:{campaign.id}:{actor_id}:{campaign.updated_at.isoformat()}"


def test_send(session: Session, actor: Any, campaign: Campaign, now: datetime) -> bool:
    """Queue a copy of ``campaign`` as it stands to ``actor``'s own address, sent as soon as the
    caller commits. Returns False when this version was already sent to them (a double-click
    sends one; an edit makes a new version)."""
    if campaign.id is None or session.get(Campaign, campaign.id) is None:
        raise NotFound("This campaign no longer exists.")
    if account_queries.recipient(session, actor.id) is None:
        raise NewsletterError(
            "Confirm your email address first: the test copy goes to your own address."
        )
    row_id = outbox.enqueue(
        session,
        kind=TEST_SEND_KIND,
        dedup_key=_test_dedup_key(campaign, actor.id),
        now=now,
        user_id=actor.id,
        payload={"campaign_id": campaign.id},
        deliver_now=True,
    )
    return row_id is not None


def _test_token(session: Session, user_id: int, campaign_id: int) -> str:
    """An unsubscribe token like a real recipient's: the tester's subscriber row (0 when they
    subscribe to nothing, so the link leads nowhere) and the campaign's first list."""
    subscriber_id = session.scalar(sa.select(Subscriber.id).where(Subscriber.user_id == user_id))
    list_ids = list_ids_of(session, campaign_id)
    signer = UnsubscribeSigner(current_app.config["SECRET_KEY"])
    return signer.make(subscriber_id or 0, list_ids[0] if list_ids else 0)


def render_test_send(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The outbox renderer of a test send: the real newsletter, personalised for the staff
    member who asked, its subject marked "[Test]"."""
    person = account_queries.recipient(session, row.user_id) if row.user_id is not None else None
    campaign = session.get(Campaign, (row.payload or {}).get("campaign_id"))
    if person is None or campaign is None:
        raise outbox.NotOwed("the campaign or the account is gone, or the account is deactivated")
    rendered = dataclasses.replace(queries.rendered(campaign), subject=f"[Test] {campaign.subject}")
    config = current_app.config
    return content.personalise(
        rendered,
        to=person.email,
        name=person.display_name,
        base_url=config["BASE_URL"],
        token=_test_token(session, person.id, campaign.id),
        mailto=config.get("NEWSLETTER_UNSUBSCRIBE_MAILTO"),
    )


def register_kinds(kinds: outbox.MailKinds) -> None:
    """Register the campaigns' email kinds with the outbox."""
    kinds.register(TEST_SEND_KIND, render_test_send, "Newsletter test send")
