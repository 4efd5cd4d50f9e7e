"""newsletters: a send remembers how far its audience has been written (is_freezing,
freeze_query, freeze_after_id), so a start cut off by a crash resumes where it stopped

Revision ID: 4f6a8c0e2b13
Revises: 120b35071e7a
Create Date: 2026-12-01 23:20:00.000000

Databases set up while these columns were still part of ``120b35071e7a`` already have them;
only missing columns are added.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "4f6a8c0e2b13"
down_revision = "120b35071e7a"
branch_labels = None
depends_on = None

NAMES = ("is_freezing", "freeze_query", "freeze_after_id")


def _columns() -> list[sa.Column]:
    """New column objects each time (a column belongs to one table once added)."""
    return [
        sa.Column("is_freezing", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("freeze_query", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("freeze_after_id", sa.Integer(), nullable=False, server_default="0"),
    ]


def _existing() -> set[str]:
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns("newsletter_sends")}


def upgrade() -> None:
    existing = _existing()
    missing = [column for column in _columns() if column.name not in existing]
    if not missing:
        return
    with op.batch_alter_table("newsletter_sends", schema=None) as batch_op:
        for column in missing:
            batch_op.add_column(column)
    # The model gives these values on insert; the server defaults only filled existing rows.
    with op.batch_alter_table("newsletter_sends", schema=None) as batch_op:
        for column in missing:
            batch_op.alter_column(column.name, server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("newsletter_sends", schema=None) as batch_op:
        for name in reversed(NAMES):
            batch_op.drop_column(name)
