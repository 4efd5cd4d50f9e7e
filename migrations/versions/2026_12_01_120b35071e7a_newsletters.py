"""newsletters: lists, subscribers, campaigns, sends, deliveries and provider events

Revision ID: 120b35071e7a
Revises: c2295e488ab7
Create Date: 2026-12-01 18:18:05.437572
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import engage.db

# The network's first lists (the same as newsletters.lists.DEFAULT_LISTS when this was written).
DEFAULT_LISTS = [
    (
        "Research updates",
        "News about research the network takes part in, a few times a year.",
        "public",
        None,
    ),
    (
        "Progress reports",
        "How the research topics people supported are progressing.",
        "accounts",
        None,
    ),
    (
        "Survey alerts",
        "An email when a new survey is open to you.",
        "accounts",
        "SURVEY_RECONTACT",
    ),
    (
        "Data-sharing initiative news",
        "News of the global MS data-sharing initiative.",
        "public",
        None,
    ),
]


revision = "120b35071e7a"
down_revision = "c2295e488ab7"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "newsletter_lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "visibility",
            sa.Enum("public", "accounts", name="listvisibility", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("required_scope", sa.String(length=40), nullable=True),
        sa.Column("is_archived", sa.Boolean(), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletter_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_newsletter_lists_name")),
    )
    op.create_table(
        "newsletter_suppressions",
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column(
            "reason",
            sa.Enum(
                "bounce",
                "dropped",
                "spam_report",
                "unsubscribed",
                "manual",
                name="suppressionreason",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=120), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("email", name=op.f("pk_newsletter_suppressions")),
    )
    op.create_table(
        "newsletter_campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "research_update",
                "progress_report",
                "survey_alert",
                name="campaignkind",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("preheader", sa.String(length=200), nullable=False),
        sa.Column("body_markdown", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "scheduled",
                "sending",
                "paused",
                "sent",
                "cancelled",
                name="campaignstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("send_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cron", sa.String(length=120), nullable=True),
        sa.Column("next_run_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_newsletter_campaigns_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletter_campaigns")),
    )
    with op.batch_alter_table("newsletter_campaigns", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_newsletter_campaigns_next_run_at"), ["next_run_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_newsletter_campaigns_status"), ["status"], unique=False
        )

    op.create_table(
        "newsletter_subscribers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("name", sa.String(length=80), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (email IS NULL)",
            name=op.f("ck_newsletter_subscribers_one_identity"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_newsletter_subscribers_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletter_subscribers")),
        sa.UniqueConstraint("email", name=op.f("uq_newsletter_subscribers_email")),
        sa.UniqueConstraint("user_id", name=op.f("uq_newsletter_subscribers_user_id")),
    )
    op.create_table(
        "newsletter_campaign_lists",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["newsletter_campaigns.id"],
            name=op.f("fk_newsletter_campaign_lists_campaign_id_newsletter_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["newsletter_lists.id"],
            name=op.f("fk_newsletter_campaign_lists_list_id_newsletter_lists"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint(
            "campaign_id", "list_id", name=op.f("pk_newsletter_campaign_lists")
        ),
    )
    op.create_table(
        "newsletter_sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("occurrence_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "sending",
                "paused",
                "sent",
                "cancelled",
                name="sendstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("preheader", sa.String(length=200), nullable=False),
        sa.Column("body_markdown", sa.Text(), nullable=False),
        sa.Column("audience_size", sa.Integer(), nullable=False),
        sa.Column("started_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["newsletter_campaigns.id"],
            name=op.f("fk_newsletter_sends_campaign_id_newsletter_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletter_sends")),
        sa.UniqueConstraint("campaign_id", "occurrence_at", name="uq_newsletter_sends_occurrence"),
    )
    with op.batch_alter_table("newsletter_sends", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_newsletter_sends_campaign_id"), ["campaign_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_newsletter_sends_status"), ["status"], unique=False)

    op.create_table(
        "newsletter_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "confirmed",
                "unsubscribed",
                name="subscriptionstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("unsubscribed_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["newsletter_lists.id"],
            name=op.f("fk_newsletter_subscriptions_list_id_newsletter_lists"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["newsletter_subscribers.id"],
            name=op.f("fk_newsletter_subscriptions_subscriber_id_newsletter_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletter_subscriptions")),
        sa.UniqueConstraint("subscriber_id", "list_id", name="uq_newsletter_subscriptions_pair"),
    )
    with op.batch_alter_table("newsletter_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_newsletter_subscriptions_list_status",
            ["list_id", "status", "subscriber_id"],
            unique=False,
        )

    op.create_table(
        "newsletter_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "claimed",
                "accepted",
                "failed",
                "unknown",
                "suppressed",
                "skipped",
                name="deliverystatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("provider_message_id", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["newsletter_subscribers.id"],
            name=op.f("fk_newsletter_deliveries_subscriber_id_newsletter_subscribers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletter_deliveries")),
        # One copy per address, and so per subscriber (a subscriber has one address).
        sa.UniqueConstraint("send_id", "email", name="uq_newsletter_deliveries_address"),
    )
    with op.batch_alter_table("newsletter_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_newsletter_deliveries_claim",
            ["claim_token"],
            unique=False,
            postgresql_where=sa.text("claim_token IS NOT NULL"),
            sqlite_where=sa.text("claim_token IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_newsletter_deliveries_queued",
            ["send_id", "id"],
            unique=False,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.create_index(
            "ix_newsletter_deliveries_send_status", ["send_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_newsletter_deliveries_user",
            ["user_id"],
            unique=False,
            postgresql_where=sa.text("user_id IS NOT NULL"),
            sqlite_where=sa.text("user_id IS NOT NULL"),
        )

    op.create_table(
        "newsletter_status_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=True),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_newsletter_status_changes_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["newsletter_campaigns.id"],
            name=op.f("fk_newsletter_status_changes_campaign_id_newsletter_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["newsletter_sends.id"],
            name=op.f("fk_newsletter_status_changes_send_id_newsletter_sends"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletter_status_changes")),
    )
    with op.batch_alter_table("newsletter_status_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_newsletter_status_changes_campaign_id"), ["campaign_id"], unique=False
        )

    op.create_table(
        "newsletter_batches",
        sa.Column("claim_token", sa.String(length=32), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("attempt_started_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["newsletter_sends.id"],
            name=op.f("fk_newsletter_batches_send_id_newsletter_sends"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("claim_token", name=op.f("pk_newsletter_batches")),
    )
    with op.batch_alter_table("newsletter_batches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_newsletter_batches_send_id"), ["send_id"], unique=False
        )

    op.create_table(
        "newsletter_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provider_event_id", sa.String(length=100), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "processed",
                "delivered",
                "deferred",
                "bounce",
                "dropped",
                "spamreport",
                "unsubscribe",
                "group_unsubscribe",
                "open",
                "click",
                name="providereventkind",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("occurred_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["newsletter_deliveries.id"],
            name=op.f("fk_newsletter_events_delivery_id_newsletter_deliveries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["send_id"],
            ["newsletter_sends.id"],
            name=op.f("fk_newsletter_events_send_id_newsletter_sends"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_newsletter_events")),
        sa.UniqueConstraint(
            "provider_event_id", name=op.f("uq_newsletter_events_provider_event_id")
        ),
    )
    with op.batch_alter_table("newsletter_events", schema=None) as batch_op:
        batch_op.create_index("ix_newsletter_events_delivery", ["delivery_id"], unique=False)
        batch_op.create_index("ix_newsletter_events_send_kind", ["send_id", "kind"], unique=False)
    now = datetime.now(UTC)
    lists = sa.table(
        "newsletter_lists",
        sa.column("name", sa.String),
        sa.column("description", sa.Text),
        sa.column("visibility", sa.String),
        sa.column("required_scope", sa.String),
        sa.column("is_archived", sa.Boolean),
        sa.column("created_at", engage.db.UTCDateTime(timezone=True)),
        sa.column("updated_at", engage.db.UTCDateTime(timezone=True)),
    )
    op.bulk_insert(
        lists,
        [
            {
                "name": name,
                "description": description,
                "visibility": visibility,
                "required_scope": scope,
                "is_archived": False,
                "created_at": now,
                "updated_at": now,
            }
            for name, description, visibility, scope in DEFAULT_LISTS
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("newsletter_events", schema=None) as batch_op:
        batch_op.drop_index("ix_newsletter_events_send_kind")
        batch_op.drop_index("ix_newsletter_events_delivery")

    op.drop_table("newsletter_events")
    with op.batch_alter_table("newsletter_status_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_newsletter_status_changes_campaign_id"))

    op.drop_table("newsletter_status_changes")
    with op.batch_alter_table("newsletter_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_newsletter_deliveries_user")
        batch_op.drop_index("ix_newsletter_deliveries_send_status")
        batch_op.drop_index(
            "ix_newsletter_deliveries_queued",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.drop_index("ix_newsletter_deliveries_claim")

    with op.batch_alter_table("newsletter_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_newsletter_batches_send_id"))

    op.drop_table("newsletter_batches")
    op.drop_table("newsletter_deliveries")
    with op.batch_alter_table("newsletter_subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_newsletter_subscriptions_list_status")

    op.drop_table("newsletter_subscriptions")
    with op.batch_alter_table("newsletter_sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_newsletter_sends_status"))
        batch_op.drop_index(batch_op.f("ix_newsletter_sends_campaign_id"))

    op.drop_table("newsletter_sends")
    op.drop_table("newsletter_campaign_lists")
    op.drop_table("newsletter_subscribers")
    with op.batch_alter_table("newsletter_campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_newsletter_campaigns_status"))
        batch_op.drop_index(batch_op.f("ix_newsletter_campaigns_next_run_at"))

    op.drop_table("newsletter_campaigns")
    op.drop_table("newsletter_suppressions")
    op.drop_table("newsletter_lists")
