"""priority-setting rounds: rounds with a shortlist and evidence checks, ranked ballots (one per
person per round) with their hash-chained events, and the final workshop's agreed Top 10

Revision ID: 113bb52f7bf0
Revises: 9d3e5a7c1f20
Create Date: 2026-12-02 01:35:41.996330
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engage.db

revision = "113bb52f7bf0"
down_revision = "9d3e5a7c1f20"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "priority_rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("max_ranks", sa.Integer(), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("opens_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closes_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("closed_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("ballot_file", sa.JSON(), nullable=True),
        sa.Column("workshop_recorded_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("workshop_note", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "closes_at > opens_at", name=op.f("ck_priority_rounds_closes_after_opening")
        ),
        sa.CheckConstraint(
            "max_ranks BETWEEN 1 AND 30", name=op.f("ck_priority_rounds_max_ranks_range")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_priority_rounds_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_priority_rounds")),
    )
    with op.batch_alter_table("priority_rounds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_priority_rounds_closes_at"), ["closes_at"], unique=False
        )

    op.create_table(
        "round_agreed_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column("change_reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["priority_rounds.id"],
            name=op.f("fk_round_agreed_items_round_id_priority_rounds"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_round_agreed_items_topic_id_topics"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round_agreed_items")),
        sa.UniqueConstraint(
            "round_id", "position", name=op.f("uq_round_agreed_items_round_id_position")
        ),
        sa.UniqueConstraint(
            "round_id", "topic_id", name=op.f("uq_round_agreed_items_round_id_topic_id")
        ),
    )
    with op.batch_alter_table("round_agreed_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_round_agreed_items_round_id"), ["round_id"], unique=False
        )

    op.create_table(
        "round_ballot_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ballot_uid", sa.String(length=36), nullable=False),
        sa.Column("group_code", sa.String(length=40), nullable=False),
        sa.Column("ranking", sa.JSON(), nullable=False),
        sa.Column("cast_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["priority_rounds.id"],
            name=op.f("fk_round_ballot_events_round_id_priority_rounds"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round_ballot_events")),
        sa.UniqueConstraint("round_id", "seq", name=op.f("uq_round_ballot_events_round_id_seq")),
    )
    with op.batch_alter_table("round_ballot_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_round_ballot_events_ballot_uid"), ["ballot_uid"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_round_ballot_events_round_id"), ["round_id"], unique=False
        )

    op.create_table(
        "round_ballots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("ballot_uid", sa.String(length=36), nullable=False),
        sa.Column("group_code", sa.String(length=40), nullable=False),
        sa.Column("ranking", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("cast_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["priority_rounds.id"],
            name=op.f("fk_round_ballots_round_id_priority_rounds"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_round_ballots_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round_ballots")),
        sa.UniqueConstraint("ballot_uid", name=op.f("uq_round_ballots_ballot_uid")),
        sa.UniqueConstraint("round_id", "user_id", name=op.f("uq_round_ballots_round_id_user_id")),
    )
    with op.batch_alter_table("round_ballots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_round_ballots_round_id"), ["round_id"], unique=False)

    op.create_table(
        "round_shortlist_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=False),
        sa.Column(
            "evidence_status",
            sa.Enum(
                "unanswered",
                "partly_answered",
                "answered",
                name="evidencestatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("evidence_note", sa.Text(), nullable=False),
        sa.Column("evidence_url", sa.String(length=500), nullable=False),
        sa.Column("checked_by_id", sa.Integer(), nullable=True),
        sa.Column("added_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["checked_by_id"],
            ["users.id"],
            name=op.f("fk_round_shortlist_items_checked_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["priority_rounds.id"],
            name=op.f("fk_round_shortlist_items_round_id_priority_rounds"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_round_shortlist_items_topic_id_topics"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round_shortlist_items")),
        sa.UniqueConstraint(
            "round_id", "topic_id", name=op.f("uq_round_shortlist_items_round_id_topic_id")
        ),
    )
    with op.batch_alter_table("round_shortlist_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_round_shortlist_items_round_id"), ["round_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("round_shortlist_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_round_shortlist_items_round_id"))

    op.drop_table("round_shortlist_items")
    with op.batch_alter_table("round_ballots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_round_ballots_round_id"))

    op.drop_table("round_ballots")
    with op.batch_alter_table("round_ballot_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_round_ballot_events_round_id"))
        batch_op.drop_index(batch_op.f("ix_round_ballot_events_ballot_uid"))

    op.drop_table("round_ballot_events")
    with op.batch_alter_table("round_agreed_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_round_agreed_items_round_id"))

    op.drop_table("round_agreed_items")
    with op.batch_alter_table("priority_rounds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_priority_rounds_closes_at"))

    op.drop_table("priority_rounds")
