"""research topics, supports, comments and reports

Revision ID: 7a0c1e5d2b01
Revises: 1dc8751eec99
Create Date: 2026-11-23 12:12:52.882910
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engage.db

revision = "7a0c1e5d2b01"
down_revision = "1dc8751eec99"
branch_labels = None
depends_on = None

# Kept here, not imported: a migration must not change when the models do.
PUBLIC_LIST_PREDICATE = (
    "is_hidden = false AND status IN ('published', 'shortlisted', 'adopted', 'completed', 'merged')"
)


def upgrade() -> None:
    op.create_table(
        "topic_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("support_budget", sa.Integer(), nullable=True),
        sa.Column("updated_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_settings")),
    )
    op.create_table(
        "topics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=150), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("rationale", sa.Text(), nullable=False),
        sa.Column(
            "category",
            sa.Enum(
                "treatments",
                "lifestyle",
                "symptoms",
                "progression",
                "infections",
                "care",
                "other",
                name="topiccategory",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "submitted",
                "published",
                "returned",
                "rejected",
                "shortlisted",
                "adopted",
                "completed",
                "merged",
                "withdrawn",
                name="topicstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("reference_links", sa.JSON(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("support_count", sa.Integer(), nullable=False),
        sa.Column("merged_into_id", sa.Integer(), nullable=True),
        sa.Column("proposal_reference", sa.String(length=80), nullable=True),
        sa.Column("is_hidden", sa.Boolean(), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("support_count >= 0", name=op.f("ck_topics_support_count_not_negative")),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_topics_author_id_users"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["merged_into_id"], ["topics.id"], name=op.f("fk_topics_merged_into_id_topics")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topics")),
    )
    with op.batch_alter_table("topics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_topics_author_id"), ["author_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_topics_status"), ["status"], unique=False)
        batch_op.create_index(
            "ix_topics_public_published_at",
            ["published_at", "id"],
            unique=False,
            sqlite_where=sa.text(PUBLIC_LIST_PREDICATE),
            postgresql_where=sa.text(PUBLIC_LIST_PREDICATE),
        )
        batch_op.create_index(
            "ix_topics_public_support_count",
            ["support_count", "id"],
            unique=False,
            sqlite_where=sa.text(PUBLIC_LIST_PREDICATE),
            postgresql_where=sa.text(PUBLIC_LIST_PREDICATE),
        )

    op.create_table(
        "topic_comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("is_hidden", sa.Boolean(), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("edited_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_topic_comments_author_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_topic_comments_topic_id_topics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_comments")),
    )
    with op.batch_alter_table("topic_comments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_topic_comments_author_id"), ["author_id"], unique=False
        )
        batch_op.create_index(
            "ix_topic_comments_topic_id_created_at", ["topic_id", "created_at"], unique=False
        )

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

    op.create_table(
        "topic_status_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column(
            "from_status",
            sa.Enum(
                "submitted",
                "published",
                "returned",
                "rejected",
                "shortlisted",
                "adopted",
                "completed",
                "merged",
                "withdrawn",
                name="topicstatus",
                native_enum=False,
                length=20,
            ),
            nullable=True,
        ),
        sa.Column(
            "to_status",
            sa.Enum(
                "submitted",
                "published",
                "returned",
                "rejected",
                "shortlisted",
                "adopted",
                "completed",
                "merged",
                "withdrawn",
                name="topicstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_topic_status_changes_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_topic_status_changes_topic_id_topics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_status_changes")),
    )
    with op.batch_alter_table("topic_status_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_topic_status_changes_topic_id"), ["topic_id"], unique=False
        )

    op.create_table(
        "topic_support_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "cast", "withdrawn", "moved", name="supportaction", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column(
            "role",
            sa.Enum(
                "participant",
                "clinician",
                "custodian",
                "organisation",
                "staff",
                name="role",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("is_verified_clinician", sa.Boolean(), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_topic_support_events_topic_id_topics"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_topic_support_events_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_support_events")),
    )
    with op.batch_alter_table("topic_support_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_topic_support_events_topic_id"), ["topic_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_topic_support_events_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "topic_supports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "participant",
                "clinician",
                "custodian",
                "organisation",
                "staff",
                name="role",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("is_verified_clinician", sa.Boolean(), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_topic_supports_topic_id_topics"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_topic_supports_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_supports")),
        sa.UniqueConstraint("topic_id", "user_id", name=op.f("uq_topic_supports_topic_id_user_id")),
    )
    with op.batch_alter_table("topic_supports", schema=None) as batch_op:
        batch_op.create_index(
            "ix_topic_supports_topic_id_role",
            ["topic_id", "role", "is_verified_clinician"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_topic_supports_user_id"), ["user_id"], unique=False)

    op.create_table(
        "content_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("comment_id", sa.Integer(), nullable=True),
        sa.Column("reporter_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open", "upheld", "dismissed", name="reportstatus", native_enum=False, length=20
            ),
            nullable=False,
        ),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["comment_id"],
            ["topic_comments.id"],
            name=op.f("fk_content_reports_comment_id_topic_comments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reporter_id"],
            ["users.id"],
            name=op.f("fk_content_reports_reporter_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by_id"],
            ["users.id"],
            name=op.f("fk_content_reports_resolved_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_content_reports_topic_id_topics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_reports")),
        sa.UniqueConstraint(
            "comment_id", "reporter_id", name=op.f("uq_content_reports_comment_id_reporter_id")
        ),
    )
    with op.batch_alter_table("content_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_content_reports_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_content_reports_topic_id"), ["topic_id"], unique=False)
        batch_op.create_index(
            "uq_content_reports_topic_reporter",
            ["topic_id", "reporter_id"],
            unique=True,
            sqlite_where=sa.text("comment_id IS NULL"),
            postgresql_where=sa.text("comment_id IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("content_reports", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_content_reports_topic_reporter",
            sqlite_where=sa.text("comment_id IS NULL"),
            postgresql_where=sa.text("comment_id IS NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_content_reports_topic_id"))
        batch_op.drop_index(batch_op.f("ix_content_reports_status"))

    op.drop_table("content_reports")
    with op.batch_alter_table("topic_supports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_topic_supports_user_id"))
        batch_op.drop_index("ix_topic_supports_topic_id_role")

    op.drop_table("topic_supports")
    with op.batch_alter_table("topic_support_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_topic_support_events_user_id"))
        batch_op.drop_index(batch_op.f("ix_topic_support_events_topic_id"))

    op.drop_table("topic_support_events")
    with op.batch_alter_table("topic_status_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_topic_status_changes_topic_id"))

    op.drop_table("topic_status_changes")
    with op.batch_alter_table("topic_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_topic_notifications_pending")

    op.drop_table("topic_notifications")
    with op.batch_alter_table("topic_comments", schema=None) as batch_op:
        batch_op.drop_index("ix_topic_comments_topic_id_created_at")
        batch_op.drop_index(batch_op.f("ix_topic_comments_author_id"))

    op.drop_table("topic_comments")
    with op.batch_alter_table("topics", schema=None) as batch_op:
        batch_op.drop_index("ix_topics_public_support_count")
        batch_op.drop_index("ix_topics_public_published_at")
        batch_op.drop_index(batch_op.f("ix_topics_status"))
        batch_op.drop_index(batch_op.f("ix_topics_author_id"))

    op.drop_table("topics")
    op.drop_table("topic_settings")
