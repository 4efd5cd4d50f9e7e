"""mail outbox: one table for every email, replacing topic_notifications

Unsent topic notifications move into the outbox (kind topic_status or topic_merged) so nothing
owed is lost; sent ones are history the outbox does not need.

Revision ID: 5e1f0a7c9b12
Revises: c3b5e0a9d401
Create Date: 2026-12-01 16:10:00.000000
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

import engage.db

revision = "5e1f0a7c9b12"
down_revision = "c3b5e0a9d401"
branch_labels = None
depends_on = None

STATUSES = ("pending", "claimed", "sent", "failed", "unknown", "cancelled")


def upgrade() -> None:
    op.create_table(
        "outbox_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("dedup_key", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("to_address", sa.String(length=320), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column(
            "status",
            sa.Enum(*STATUSES, name="outboxstatus", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempt_started_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("transport", sa.String(length=20), nullable=True),
        sa.Column("sent_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("resolved_by_id", sa.Integer(), nullable=True),
        sa.Column("resolved_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolution", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["resolved_by_id"],
            ["users.id"],
            name=op.f("fk_outbox_messages_resolved_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_outbox_messages_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_outbox_messages_dedup_key")),
    )
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_messages_due", ["status", "next_attempt_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_outbox_messages_kind_status", ["kind", "status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_outbox_messages_user_id"), ["user_id"], unique=False
        )

    connection = op.get_bind()
    notifications = sa.table(
        "topic_notifications",
        sa.column("id", sa.Integer),
        sa.column("user_id", sa.Integer),
        sa.column("topic_id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("details", sa.JSON),
        sa.column("created_at", engage.db.UTCDateTime(timezone=True)),
        sa.column("sent_at", engage.db.UTCDateTime(timezone=True)),
        sa.column("attempts", sa.Integer),
    )
    outbox = sa.table(
        "outbox_messages",
        sa.column("kind", sa.String),
        sa.column("dedup_key", sa.String),
        sa.column("user_id", sa.Integer),
        sa.column("payload", sa.JSON),
        sa.column("token", sa.String),
        sa.column("status", sa.String),
        sa.column("attempts", sa.Integer),
        sa.column("created_at", engage.db.UTCDateTime(timezone=True)),
        sa.column("next_attempt_at", engage.db.UTCDateTime(timezone=True)),
    )
    owed = connection.execute(
        sa.select(notifications).where(
            notifications.c.sent_at.is_(None), notifications.c.attempts < 5
        )
    ).all()
    if owed:
        connection.execute(
            outbox.insert(),
            [
                {
                    "kind": "topic_merged" if row.kind == "merged" else "topic_status",
                    "dedup_key": f"topic-notification:{row.id}",
                    "user_id": row.user_id,
                    "payload": {"topic_id": row.topic_id, **(row.details or {})},
                    "token": secrets.token_hex(8),
                    "status": "pending",
                    "attempts": 0,
                    "created_at": row.created_at,
                    "next_attempt_at": row.created_at,
                }
                for row in owed
            ],
        )
    with op.batch_alter_table("topic_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_topic_notifications_pending")
    op.drop_table("topic_notifications")


def downgrade() -> None:
    op.create_table(
        "topic_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_topic_notifications_topic_id_topics"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_topic_notifications_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_notifications")),
    )
    with op.batch_alter_table("topic_notifications", schema=None) as batch_op:
        batch_op.create_index("ix_topic_notifications_pending", ["sent_at", "id"], unique=False)
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_messages_user_id"))
        batch_op.drop_index("ix_outbox_messages_kind_status")
        batch_op.drop_index("ix_outbox_messages_due")
    op.drop_table("outbox_messages")
