"""dynamic consent: form versions and scopes, the hash-chained ledger, current choices,
participants (pseudonym, permitted-scope mask), receipts and erasure requests

Cohort counts read ``consent_participants.permitted_mask`` through the index on
(permitted_mask, user_id), and per registry ``consent_registry_masks`` through the index on
(registry_id, permitted_mask, user_id), so they never touch ``consent_events``.

Revision ID: c3b5e0a9d401
Revises: 7a0c1e5d2b01
Create Date: 2026-11-23 14:27:32.933071
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engage.db

revision = "c3b5e0a9d401"
down_revision = "7a0c1e5d2b01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_scope_codes",
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("bit", sa.Integer(), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "bit >= 0 AND bit < 63", name=op.f("ck_consent_scope_codes_bit_in_range")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_consent_scope_codes")),
        sa.UniqueConstraint("bit", name=op.f("uq_consent_scope_codes_bit")),
    )
    op.create_table(
        "consent_erasure_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "received",
                "in_progress",
                "completed",
                "declined",
                name="erasurestatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("requested_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("handled_by_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["handled_by_id"],
            ["users.id"],
            name=op.f("fk_consent_erasure_requests_handled_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_consent_erasure_requests_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_erasure_requests")),
    )
    with op.batch_alter_table("consent_erasure_requests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_erasure_requests_status", ["status", "requested_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consent_erasure_requests_user_id"), ["user_id"], unique=False
        )
        batch_op.create_index(
            "uq_consent_erasure_requests_one_open",
            ["user_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('received', 'in_progress')"),
            postgresql_where=sa.text("status IN ('received', 'in_progress')"),
        )

    op.create_table(
        "consent_form_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "published",
                "superseded",
                name="versionstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("ethics_reference", sa.String(length=120), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("reading_grade", sa.Float(), nullable=True),
        sa.Column("grade_justification", sa.Text(), nullable=True),
        sa.Column("text_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_by_id", sa.Integer(), nullable=True),
        sa.Column("published_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("superseded_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["users.id"],
            name=op.f("fk_consent_form_versions_created_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["published_by_id"],
            ["users.id"],
            name=op.f("fk_consent_form_versions_published_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_form_versions")),
        sa.UniqueConstraint("number", name=op.f("uq_consent_form_versions_number")),
    )
    with op.batch_alter_table("consent_form_versions", schema=None) as batch_op:
        batch_op.create_index(
            "uq_consent_form_versions_one_draft",
            ["status"],
            unique=True,
            sqlite_where=sa.text("status = 'draft'"),
            postgresql_where=sa.text("status = 'draft'"),
        )
        batch_op.create_index(
            "uq_consent_form_versions_one_published",
            ["status"],
            unique=True,
            sqlite_where=sa.text("status = 'published'"),
            postgresql_where=sa.text("status = 'published'"),
        )

    op.create_table(
        "consent_participants",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(length=36), nullable=False),
        sa.Column("permitted_mask", sa.BigInteger(), nullable=False),
        sa.Column("reviewed_version_id", sa.Integer(), nullable=True),
        sa.Column("reviewed_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reminded_version_id", sa.Integer(), nullable=True),
        sa.Column("reminder_count", sa.Integer(), nullable=False),
        sa.Column("last_reminded_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reminded_version_id"],
            ["consent_form_versions.id"],
            name=op.f("fk_consent_participants_reminded_version_id_consent_form_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["reviewed_version_id"],
            ["consent_form_versions.id"],
            name=op.f("fk_consent_participants_reviewed_version_id_consent_form_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_consent_participants_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_consent_participants")),
        sa.UniqueConstraint("pseudonym", name=op.f("uq_consent_participants_pseudonym")),
    )
    with op.batch_alter_table("consent_participants", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_participants_permitted_mask", ["permitted_mask", "user_id"], unique=False
        )
        batch_op.create_index(
            "ix_consent_participants_reviewed_version_id", ["reviewed_version_id"], unique=False
        )

    op.create_table(
        "consent_receipts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("form_version_id", sa.Integer(), nullable=False),
        sa.Column(
            "method",
            sa.Enum("online", "paper", name="collectionmethod", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("issued_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["form_version_id"],
            ["consent_form_versions.id"],
            name=op.f("fk_consent_receipts_form_version_id_consent_form_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_consent_receipts_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_receipts")),
    )
    with op.batch_alter_table("consent_receipts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_receipts_user_id_issued_at", ["user_id", "issued_at"], unique=False
        )

    op.create_table(
        "consent_scopes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "purpose",
                "data_category",
                "contact",
                name="scopekind",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("duo_code", sa.String(length=20), nullable=True),
        sa.Column("is_required", sa.Boolean(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["consent_form_versions.id"],
            name=op.f("fk_consent_scopes_version_id_consent_form_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_scopes")),
        sa.UniqueConstraint("version_id", "code", name=op.f("uq_consent_scopes_version_id_code")),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("scope_code", sa.String(length=40), nullable=False),
        sa.Column(
            "decision",
            sa.Enum("permit", "deny", "withdraw", name="decision", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("form_version_id", sa.Integer(), nullable=False),
        sa.Column("scope_revision", sa.Integer(), nullable=False),
        sa.Column("occurred_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "method",
            sa.Enum("online", "paper", name="collectionmethod", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("receipt_id", sa.String(length=36), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["form_version_id"],
            ["consent_form_versions.id"],
            name=op.f("fk_consent_events_form_version_id_consent_form_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["receipt_id"],
            ["consent_receipts.id"],
            name=op.f("fk_consent_events_receipt_id_consent_receipts"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_consent_events_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
        sa.UniqueConstraint("user_id", "seq", name=op.f("uq_consent_events_user_id_seq")),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_events_receipt_id"), ["receipt_id"], unique=False
        )

    op.create_table(
        "consent_choices",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("scope_code", sa.String(length=40), nullable=False),
        sa.Column(
            "decision",
            sa.Enum("permit", "deny", "withdraw", name="decision", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("scope_revision", sa.Integer(), nullable=False),
        sa.Column("form_version_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("decided_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["consent_events.id"],
            name=op.f("fk_consent_choices_event_id_consent_events"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["form_version_id"],
            ["consent_form_versions.id"],
            name=op.f("fk_consent_choices_form_version_id_consent_form_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_consent_choices_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("user_id", "scope_code", name=op.f("pk_consent_choices")),
    )

    op.create_table(
        "consent_registry_masks",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("registry_id", sa.Integer(), nullable=False),
        sa.Column("permitted_mask", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id", "registry_id"],
            ["registry_enrolments.user_id", "registry_enrolments.registry_id"],
            name=op.f("fk_consent_registry_masks_user_id_registry_enrolments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["consent_participants.user_id"],
            name=op.f("fk_consent_registry_masks_user_id_consent_participants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "registry_id", name=op.f("pk_consent_registry_masks")),
    )
    with op.batch_alter_table("consent_registry_masks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_registry_masks_registry_id_permitted_mask",
            ["registry_id", "permitted_mask", "user_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("consent_registry_masks", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_registry_masks_registry_id_permitted_mask")

    op.drop_table("consent_registry_masks")
    op.drop_table("consent_choices")
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_events_receipt_id"))

    op.drop_table("consent_events")
    op.drop_table("consent_scopes")
    with op.batch_alter_table("consent_receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_receipts_user_id_issued_at")

    op.drop_table("consent_receipts")
    with op.batch_alter_table("consent_participants", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_participants_reviewed_version_id")
        batch_op.drop_index("ix_consent_participants_permitted_mask")

    op.drop_table("consent_participants")
    with op.batch_alter_table("consent_form_versions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_consent_form_versions_one_published",
            sqlite_where=sa.text("status = 'published'"),
            postgresql_where=sa.text("status = 'published'"),
        )
        batch_op.drop_index(
            "uq_consent_form_versions_one_draft",
            sqlite_where=sa.text("status = 'draft'"),
            postgresql_where=sa.text("status = 'draft'"),
        )

    op.drop_table("consent_form_versions")
    with op.batch_alter_table("consent_erasure_requests", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_consent_erasure_requests_one_open",
            sqlite_where=sa.text("status IN ('received', 'in_progress')"),
            postgresql_where=sa.text("status IN ('received', 'in_progress')"),
        )
        batch_op.drop_index(batch_op.f("ix_consent_erasure_requests_user_id"))
        batch_op.drop_index("ix_consent_erasure_requests_status")

    op.drop_table("consent_erasure_requests")
    op.drop_table("consent_scope_codes")
