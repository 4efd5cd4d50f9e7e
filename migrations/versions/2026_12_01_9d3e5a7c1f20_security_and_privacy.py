"""security and privacy: sessions kept on the server, two-factor sign-in and recovery codes,
data-rights requests, a pending new email address, and profile free text encrypted at rest

Revision ID: 9d3e5a7c1f20
Revises: 4f6a8c0e2b13
Create Date: 2026-12-01 21:30:00.000000

The clinicians' profession and institution and the organisation members' organisation name
become ciphertext: existing values are encrypted here with the app's first ENCRYPTION_KEYS key
(``engage db upgrade`` hands the keyring to this migration).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

import engage.db

revision = "9d3e5a7c1f20"
down_revision = "4f6a8c0e2b13"
branch_labels = None
depends_on = None

ENCRYPTED = ("profession", "institution", "organisation_name")
PLAIN_LENGTHS = {"profession": 120, "institution": 200, "organisation_name": 200}
REQUEST_KINDS = ("export", "erasure")
REQUEST_STATUSES = ("requested", "completed", "failed")


def _keyring():
    keyring = context.config.attributes.get("keyring")
    if keyring is None:
        raise RuntimeError(
            "This migration encrypts profile fields and needs the app's keys: run it with "
            "`engage db upgrade`."
        )
    return keyring


def _recode(convert) -> None:
    """Rewrite every non-empty encrypted-field value of ``users`` through ``convert``."""
    users = sa.table(
        "users", sa.column("id", sa.Integer), *(sa.column(c, sa.Text) for c in ENCRYPTED)
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(users.c.id, *(users.c[c] for c in ENCRYPTED))).all()
    changed = [row for row in rows if any(getattr(row, c) is not None for c in ENCRYPTED)]
    if not changed:
        return
    keyring = _keyring()
    for row in changed:
        values = {
            c: (convert(keyring, getattr(row, c)) if getattr(row, c) is not None else None)
            for c in ENCRYPTED
        }
        connection.execute(users.update().where(users.c.id == row.id).values(**values))


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in ENCRYPTED:
            batch_op.alter_column(
                column,
                existing_type=sa.String(length=PLAIN_LENGTHS[column]),
                type_=sa.Text(),
                existing_nullable=True,
            )
        batch_op.add_column(sa.Column("pending_email", sa.String(length=254), nullable=True))
        batch_op.add_column(sa.Column("totp_secret", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("totp_enabled_at", engage.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("totp_last_counter", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("deleted_at", engage.db.UTCDateTime(timezone=True), nullable=True)
        )
    _recode(lambda keyring, value: keyring.encrypt(value))

    op.create_table(
        "user_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("remember", sa.Boolean(), nullable=False),
        sa.Column("user_agent", sa.String(length=200), nullable=False),
        sa.Column("ip_address", sa.String(length=45), nullable=False),
        sa.Column("ended_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_reason", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_user_sessions_key_hash")),
    )
    op.create_index(
        "ix_user_sessions_user_id_ended_at", "user_sessions", ["user_id", "ended_at"], unique=False
    )

    op.create_table(
        "user_recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_recovery_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_recovery_codes")),
        sa.UniqueConstraint(
            "user_id", "code_hash", name=op.f("uq_user_recovery_codes_user_id_code_hash")
        ),
    )

    op.create_table(
        "data_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(*REQUEST_KINDS, name="datarequestkind", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(*REQUEST_STATUSES, name="datarequeststatus", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("requested_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_data_requests_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_requests")),
    )
    op.create_index(
        "ix_data_requests_status_requested_at",
        "data_requests",
        ["status", "requested_at"],
        unique=False,
    )
    op.create_index("ix_data_requests_user_id", "data_requests", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_data_requests_user_id", table_name="data_requests")
    op.drop_index("ix_data_requests_status_requested_at", table_name="data_requests")
    op.drop_table("data_requests")
    op.drop_table("user_recovery_codes")
    op.drop_index("ix_user_sessions_user_id_ended_at", table_name="user_sessions")
    op.drop_table("user_sessions")
    _recode(lambda keyring, value: keyring.decrypt(value))
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("totp_last_counter")
        batch_op.drop_column("totp_enabled_at")
        batch_op.drop_column("totp_secret")
        batch_op.drop_column("pending_email")
        for column in ENCRYPTED:
            batch_op.alter_column(
                column,
                existing_type=sa.Text(),
                type_=sa.String(length=PLAIN_LENGTHS[column]),
                existing_nullable=True,
            )
