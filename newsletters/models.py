"""Newsletter tables: mailing lists and their subscribers, suppressed addresses, campaigns with
their logged status changes, one send per occurrence, one delivery row per recipient per send,
and the provider's events.

A campaign's and a send's ``status`` columns are maintained in the same transaction as the
status change row that records why; provider events are append-only, de-duplicated by
SendGrid's event id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage.db import Base, UTCDateTime
from engage.enums import LabelledEnum, enum_column


class ListVisibility(LabelledEnum):
    """Who may subscribe to a mailing list."""

    PUBLIC = "public", "Public: anyone may sign up with an email address"
    ACCOUNTS = "accounts", "Account holders only"


class SubscriptionStatus(LabelledEnum):
    """Where one subscriber's subscription to one list stands."""

    # Signed up without an account; receives nothing until the emailed link is followed.
    PENDING = "pending", "Waiting for confirmation"
    CONFIRMED = "confirmed", "Subscribed"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"


class SuppressionReason(LabelledEnum):
    """Why an address receives no newsletters at all."""

    BOUNCE = "bounce", "The address bounced"
    DROPPED = "dropped", "The provider dropped mail to it"
    SPAM_REPORT = "spam_report", "Its owner reported a newsletter as spam"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed through the provider"
    MANUAL = "manual", "Suppressed by staff"


class CampaignKind(LabelledEnum):
    """What a campaign is about."""

    RESEARCH_UPDATE = "research_update", "Research update"
    PROGRESS_REPORT = "progress_report", "Progress report"
    SURVEY_ALERT = "survey_alert", "Survey alert"


class CampaignStatus(LabelledEnum):
    """Where a campaign is in its life (a recurring one returns to ``scheduled`` after each
    occurrence has been sent)."""

    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    PAUSED = "paused", "Paused"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"


class SendStatus(LabelledEnum):
    """Where one occurrence of a campaign stands."""

    SENDING = "sending", "Sending"
    PAUSED = "paused", "Paused"
    SENT = "sent", "Sent"
    CANCELLED = "cancelled", "Cancelled"


class DeliveryStatus(LabelledEnum):
    """Where one recipient's copy of one send stands (the claim rules of ``engage.claims``)."""

    PENDING = "pending", "Queued"
    # A worker committed its claim on the batch holding this row and is sending it.
    CLAIMED = "claimed", "Being sent"
    # The provider accepted the batch (2xx).
    ACCEPTED = "accepted", "Sent"
    # The provider refused it (4xx other than 429), or attempts ran out.
    FAILED = "failed", "Failed"
    # Sent or not: a timeout after the body went out, or a claim that expired mid-hand-over.
    # Settled only by the provider's processed/dropped events.
    UNKNOWN = "unknown", "Outcome unknown"
    # Skipped: the address is suppressed (bounce, spam report, provider unsubscribe).
    SUPPRESSED = "suppressed", "Suppressed"
    # Skipped: the person unsubscribed or withdrew the consent the list needs.
    SKIPPED = "skipped", "Skipped (unsubscribed or consent withdrawn)"


class MailingList(Base):
    """A mailing list people subscribe to."""

    __tablename__ = "newsletter_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    visibility: Mapped[ListVisibility] = mapped_column(enum_column(ListVisibility))
    # The consent scope a subscriber must currently permit to receive it (None: no consent
    # needed); a list that needs one is for account holders only.
    required_scope: Mapped[str | None] = mapped_column(sa.String(40))
    # Archived lists take no new subscribers and are not offered for new campaigns.
    is_archived: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Subscriber(Base):
    """Someone who receives newsletters: an account holder, or a person without an account
    known only by name, address and language."""

    __tablename__ = "newsletter_subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The account (its address and name are read from accounts); None for a public sign-up.
    user_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), unique=True
    )
    # A public sign-up's address, lower-cased (None for an account holder).
    email: Mapped[str | None] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(80))
    language: Mapped[str] = mapped_column(sa.String(8), default="en")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.CheckConstraint("(user_id IS NULL) <> (email IS NULL)", name="one_identity"),
    )


class Subscription(Base):
    """One subscriber on one list."""

    __tablename__ = "newsletter_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter_subscribers.id", ondelete="CASCADE")
    )
    list_id: Mapped[int] = mapped_column(sa.ForeignKey("newsletter_lists.id", ondelete="CASCADE"))
    status: Mapped[SubscriptionStatus] = mapped_column(enum_column(SubscriptionStatus))
    # Where it came from: "preferences", "signup", "staff".
    source: Mapped[str] = mapped_column(sa.String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # When the emailed confirmation link was followed (or the account holder subscribed).
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.UniqueConstraint("subscriber_id", "list_id", name="uq_newsletter_subscriptions_pair"),
        sa.Index("ix_newsletter_subscriptions_list_status", "list_id", "status", "subscriber_id"),
    )


class Suppression(Base):
    """An address that receives no newsletter (checked when an audience is frozen and again
    just before each batch is sent)."""

    __tablename__ = "newsletter_suppressions"

    # Lower-cased.
    email: Mapped[str] = mapped_column(sa.String(254), primary_key=True)
    reason: Mapped[SuppressionReason] = mapped_column(enum_column(SuppressionReason))
    # The provider's event id, or the staff member, that caused it.
    source: Mapped[str] = mapped_column(sa.String(120), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Campaign(Base):
    """A newsletter drafted by staff and sent once or on a recurrence."""

    __tablename__ = "newsletter_campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[CampaignKind] = mapped_column(enum_column(CampaignKind))
    subject: Mapped[str] = mapped_column(sa.String(200))
    # The line mail programs show after the subject.
    preheader: Mapped[str] = mapped_column(sa.String(200), default="")
    # Markdown source (rendered and sanitised for the HTML part, flattened for the text part).
    body_markdown: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[CampaignStatus] = mapped_column(enum_column(CampaignStatus), index=True)
    # The audience filter beyond the lists: {"roles": [...], "countries": [...],
    # "languages": [...], "registry_ids": [...], "topic_ids": [...]} (absent: everyone).
    audience: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    # The time zone staff scheduled in (IANA name); times are stored in UTC.
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    # A one-off campaign's send time.
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A recurring campaign's cron expression (five fields, APScheduler's CronTrigger).
    cron: Mapped[str | None] = mapped_column(sa.String(120))
    # When the next occurrence is due (None: nothing due); the scheduler's job reads it.
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CampaignList(Base):
    """A list a campaign goes to."""

    __tablename__ = "newsletter_campaign_lists"

    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter_campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    list_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter_lists.id", ondelete="RESTRICT"), primary_key=True
    )


class Send(Base):
    """One occurrence of a campaign: its content and audience frozen when sending started."""

    __tablename__ = "newsletter_sends"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter_campaigns.id", ondelete="CASCADE"), index=True
    )
    # The occurrence it answers (send_at, or a cron fire time): unique, so two schedulers or
    # a double-click cannot start the same occurrence twice.
    occurrence_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[SendStatus] = mapped_column(enum_column(SendStatus), index=True)
    # The content as sent (later edits of a recurring campaign don't change it).
    subject: Mapped[str] = mapped_column(sa.String(200))
    preheader: Mapped[str] = mapped_column(sa.String(200), default="")
    body_markdown: Mapped[str] = mapped_column(sa.Text)
    # How many deliveries the frozen audience had (so far, while it is being written).
    audience_size: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The audience is written in chunks, each committed, so workers start on the first while
    # the rest is written: whether that is still going on (a send is never finished before),
    # and which candidate query and subscriber id it has reached.
    is_freezing: Mapped[bool] = mapped_column(default=False)
    freeze_query: Mapped[int] = mapped_column(default=0)
    freeze_after_id: Mapped[int] = mapped_column(default=0)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "occurrence_at", name="uq_newsletter_sends_occurrence"),
    )


class CampaignStatusChange(Base):
    """One change of a campaign's or a send's status, with who or what made it and why."""

    __tablename__ = "newsletter_status_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter_campaigns.id", ondelete="CASCADE"), index=True
    )
    # The occurrence it concerns, if any.
    send_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("newsletter_sends.id", ondelete="CASCADE")
    )
    from_status: Mapped[str | None] = mapped_column(sa.String(20))
    to_status: Mapped[str] = mapped_column(sa.String(20))
    # Staff who made it (None: the scheduler or the circuit breaker).
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str] = mapped_column(sa.String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Delivery(Base):
    """One recipient's copy of one send (millions of rows: keep it narrow)."""

    __tablename__ = "newsletter_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign key to the send or the list: an audience of a million is written in one
    # statement, and each key checked per row costs more than the insert itself. Sends and
    # lists are never deleted (lists are archived); the send's rows are reached by this id.
    send_id: Mapped[int] = mapped_column(sa.Integer)
    # A foreign key: deleting a subscriber (an erased account) deletes their copies, with the
    # address they hold.
    subscriber_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter_subscribers.id", ondelete="CASCADE")
    )
    # The list the recipient qualified through (its consent scope is re-checked).
    list_id: Mapped[int] = mapped_column(sa.Integer)
    # The account, for account holders (consent withdrawals find their rows by it).
    user_id: Mapped[int | None] = mapped_column(sa.Integer)
    # Address, name and language as frozen with the audience.
    email: Mapped[str] = mapped_column(sa.String(254))
    name: Mapped[str] = mapped_column(sa.String(80), default="")
    language: Mapped[str] = mapped_column(sa.String(8), default="en")
    status: Mapped[DeliveryStatus] = mapped_column(enum_column(DeliveryStatus))
    attempts: Mapped[int] = mapped_column(default=0)
    # Not sent before this time (backoff after a transient error).
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The claim (see engage.claims): which batch holds it, and until when (whether the
    # batch's hand-over began is recorded once per batch, in newsletter_batches).
    claim_token: Mapped[str | None] = mapped_column(sa.String(32))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # SendGrid's X-Message-Id of the batch request.
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(64))
    # Why it was not sent, or what settled it (never message content).
    last_error: Mapped[str | None] = mapped_column(sa.String(500))

    __table_args__ = (
        # One copy per address, and so per subscriber (a subscriber has one address), even
        # for a person subscribed both with and without an account.
        sa.UniqueConstraint("send_id", "email", name="uq_newsletter_deliveries_address"),
        # What a worker claims next: a send's queued rows in id order.
        sa.Index(
            "ix_newsletter_deliveries_queued",
            "send_id",
            "id",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
        sa.Index("ix_newsletter_deliveries_send_status", "send_id", "status"),
        # Partial: a million queued rows have neither a claim nor (public sign-ups) an account.
        sa.Index(
            "ix_newsletter_deliveries_claim",
            "claim_token",
            postgresql_where=sa.text("claim_token IS NOT NULL"),
            sqlite_where=sa.text("claim_token IS NOT NULL"),
        ),
        sa.Index(
            "ix_newsletter_deliveries_user",
            "user_id",
            postgresql_where=sa.text("user_id IS NOT NULL"),
            sqlite_where=sa.text("user_id IS NOT NULL"),
        ),
    )


class DeliveryBatch(Base):
    """One claimed batch whose hand-over to the provider started: written (and committed)
    just before the request goes out, so an expired claim with a batch row may have been sent
    (``unknown``) and one without was never attempted (back to the queue)."""

    __tablename__ = "newsletter_batches"

    # The claim token its delivery rows carry.
    claim_token: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    send_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter_sends.id", ondelete="CASCADE"), index=True
    )
    size: Mapped[int] = mapped_column(default=0)
    attempt_started_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProviderEventKind(LabelledEnum):
    """What SendGrid reported about a delivery."""

    PROCESSED = "processed", "Accepted by the provider"
    DELIVERED = "delivered", "Delivered"
    DEFERRED = "deferred", "Deferred"
    BOUNCE = "bounce", "Bounced"
    DROPPED = "dropped", "Dropped"
    SPAM_REPORT = "spamreport", "Reported as spam"
    UNSUBSCRIBE = "unsubscribe", "Unsubscribed"
    GROUP_UNSUBSCRIBE = "group_unsubscribe", "Unsubscribed from a group"
    OPEN = "open", "Opened"
    CLICK = "click", "Clicked"


class ProviderEvent(Base):
    """One event of SendGrid's Event Webhook about one delivery (de-duplicated by its id:
    SendGrid retries for 24 hours)."""

    __tablename__ = "newsletter_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SendGrid's sg_event_id.
    provider_event_id: Mapped[str] = mapped_column(sa.String(100), unique=True)
    delivery_id: Mapped[int] = mapped_column(
        sa.ForeignKey("newsletter_deliveries.id", ondelete="CASCADE")
    )
    # Kept alongside the delivery so a send's event counts need no join.
    send_id: Mapped[int] = mapped_column(sa.ForeignKey("newsletter_sends.id", ondelete="CASCADE"))
    kind: Mapped[ProviderEventKind] = mapped_column(enum_column(ProviderEventKind))
    # The provider's reason for a bounce or drop (no message content).
    reason: Mapped[str] = mapped_column(sa.String(300), default="")
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.Index("ix_newsletter_events_send_kind", "send_id", "kind"),
        sa.Index("ix_newsletter_events_delivery", "delivery_id"),
    )
