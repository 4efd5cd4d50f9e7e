"""governance: custodians' API tokens for the registry API (only a hash of each is stored)

Revision ID: c2295e488ab7
Revises: db2b55943972
Create Date: 2026-12-01 16:56:12.331223
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import engage.db

revision = "c2295e488ab7"
down_revision = "db2b55943972"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "governance_api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("display_prefix", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_governance_api_tokens_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_governance_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_governance_api_tokens_token_hash")),
    )
    with op.batch_alter_table("governance_api_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_governance_api_tokens_user_id"), ["user_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("governance_api_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_governance_api_tokens_user_id"))
    op.drop_table("governance_api_tokens")
