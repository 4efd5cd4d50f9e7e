"""governance: proposals, the core variable catalogue (seeded), one decision thread per
(proposal, registry) with hash-chained decision events, consent notices, and each registry's
small-cell threshold

Revision ID: db2b55943972
Revises: 5e1f0a7c9b12
Create Date: 2026-12-01 16:43:44.296627
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import engage.db

revision = "db2b55943972"
down_revision = "5e1f0a7c9b12"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "governance_variables",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("domain", sa.String(length=80), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_governance_variables")),
        sa.UniqueConstraint("code", name=op.f("uq_governance_variables_code")),
    )
    op.create_table(
        "governance_proposals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("lead_researcher", sa.String(length=200), nullable=False),
        sa.Column("institution", sa.String(length=200), nullable=False),
        sa.Column("sponsor", sa.String(length=200), nullable=False),
        sa.Column("plain_summary", sa.Text(), nullable=False),
        sa.Column("scientific_summary", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column(
            "analysis_mode",
            sa.Enum("pooled", "federated", name="analysismode", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("ethics_reference", sa.String(length=120), nullable=False),
        sa.Column("topic_id", sa.Integer(), nullable=True),
        sa.Column("decision_deadline", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("proposer_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "draft",
                "submitted",
                "returned",
                "screening",
                "rejected",
                "sent",
                "decisions_closed",
                "active",
                "not_feasible",
                "completed",
                "closed",
                "withdrawn",
                name="proposalstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["proposer_id"],
            ["users.id"],
            name=op.f("fk_governance_proposals_proposer_id_users"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_governance_proposals_topic_id_topics"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_governance_proposals")),
    )
    with op.batch_alter_table("governance_proposals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_governance_proposals_proposer_id"), ["proposer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_governance_proposals_status"), ["status"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_governance_proposals_topic_id"), ["topic_id"], unique=False
        )

    op.create_table(
        "governance_consent_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("registry_id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sa.String(length=36), nullable=False),
        sa.Column("scope_code", sa.String(length=40), nullable=False),
        sa.Column("receipt_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["acknowledged_by_id"],
            ["users.id"],
            name=op.f("fk_governance_consent_notices_acknowledged_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["governance_proposals.id"],
            name=op.f("fk_governance_consent_notices_proposal_id_governance_proposals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_governance_consent_notices_registry_id_registries"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_governance_consent_notices")),
        sa.UniqueConstraint(
            "receipt_id",
            "registry_id",
            "proposal_id",
            "scope_code",
            name=op.f(
                "uq_governance_consent_notices_receipt_id_registry_id_proposal_id_scope_code"
            ),
        ),
    )
    with op.batch_alter_table("governance_consent_notices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_governance_consent_notices_open", ["registry_id", "acknowledged_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_governance_consent_notices_registry_id"), ["registry_id"], unique=False
        )

    op.create_table(
        "governance_decision_threads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("registry_id", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "sent",
                "in_review",
                "info_requested",
                "approved",
                "conditions_set",
                "conditions_accepted",
                "conditions_refused",
                "declined",
                "approval_withdrawn",
                "expired",
                name="threadstatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("deadline", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("paused_since", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_at", engage.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("conditions", sa.Text(), nullable=True),
        sa.Column("created_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["governance_proposals.id"],
            name=op.f("fk_governance_decision_threads_proposal_id_governance_proposals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_governance_decision_threads_registry_id_registries"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_governance_decision_threads")),
        sa.UniqueConstraint(
            "proposal_id",
            "registry_id",
            name=op.f("uq_governance_decision_threads_proposal_id_registry_id"),
        ),
    )
    with op.batch_alter_table("governance_decision_threads", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_governance_decision_threads_deadline"), ["deadline"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_governance_decision_threads_registry_id"), ["registry_id"], unique=False
        )

    op.create_table(
        "governance_proposal_scopes",
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("scope_code", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["governance_proposals.id"],
            name=op.f("fk_governance_proposal_scopes_proposal_id_governance_proposals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "proposal_id", "scope_code", name=op.f("pk_governance_proposal_scopes")
        ),
    )
    op.create_table(
        "governance_proposal_status_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column(
            "from_status",
            sa.Enum(
                "draft",
                "submitted",
                "returned",
                "screening",
                "rejected",
                "sent",
                "decisions_closed",
                "active",
                "not_feasible",
                "completed",
                "closed",
                "withdrawn",
                name="proposalstatus",
                native_enum=False,
                length=20,
            ),
            nullable=True,
        ),
        sa.Column(
            "to_status",
            sa.Enum(
                "draft",
                "submitted",
                "returned",
                "screening",
                "rejected",
                "sent",
                "decisions_closed",
                "active",
                "not_feasible",
                "completed",
                "closed",
                "withdrawn",
                name="proposalstatus",
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
            name=op.f("fk_governance_proposal_status_changes_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["governance_proposals.id"],
            name=op.f("fk_governance_proposal_status_changes_proposal_id_governance_proposals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_governance_proposal_status_changes")),
    )
    with op.batch_alter_table("governance_proposal_status_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_governance_proposal_status_changes_proposal_id"),
            ["proposal_id"],
            unique=False,
        )

    op.create_table(
        "governance_proposal_variables",
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("variable_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["governance_proposals.id"],
            name=op.f("fk_governance_proposal_variables_proposal_id_governance_proposals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["variable_id"],
            ["governance_variables.id"],
            name=op.f("fk_governance_proposal_variables_variable_id_governance_variables"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint(
            "proposal_id", "variable_id", name=op.f("pk_governance_proposal_variables")
        ),
    )
    op.create_table(
        "governance_decision_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "sent",
                "opened",
                "info_requested",
                "info_answered",
                "approved",
                "conditions_set",
                "conditions_accepted",
                "conditions_refused",
                "declined",
                "approval_withdrawn",
                "deadline_extended",
                "expired",
                name="decisioneventkind",
                native_enum=False,
                length=30,
            ),
            nullable=False,
        ),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("occurred_at", engage.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_governance_decision_events_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["proposal_id"],
            ["governance_proposals.id"],
            name=op.f("fk_governance_decision_events_proposal_id_governance_proposals"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["governance_decision_threads.id"],
            name=op.f("fk_governance_decision_events_thread_id_governance_decision_threads"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_governance_decision_events")),
        sa.UniqueConstraint(
            "proposal_id", "seq", name=op.f("uq_governance_decision_events_proposal_id_seq")
        ),
    )
    with op.batch_alter_table("governance_decision_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_governance_decision_events_thread_id"), ["thread_id"], unique=False
        )

    with op.batch_alter_table("registries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("small_cell_threshold", sa.Integer(), server_default="5", nullable=False)
        )
    _seed_catalogue()


# The network's core data model: what every project's own data model is drawn from.
CORE_VARIABLES = [
    ("SEX", "Sex", "Demographics", "Sex recorded at birth."),
    ("BIRTH_YEAR", "Year of birth", "Demographics", "Year of birth (never the full date)."),
    ("COUNTRY", "Country of residence", "Demographics", "ISO 3166-1 country code."),
    ("ONSET_DATE", "Date of first symptoms", "Diagnosis", "Month and year of MS onset."),
    ("DIAGNOSIS_DATE", "Date of diagnosis", "Diagnosis", "Month and year of MS diagnosis."),
    (
        "MS_COURSE",
        "MS course",
        "Disease course",
        "Relapsing-remitting, secondary or primary progressive, with the date of each change.",
    ),
    (
        "EDSS",
        "EDSS scores",
        "Disability",
        "Expanded Disability Status Scale scores with their dates.",
    ),
    ("RELAPSES", "Relapses", "Disease course", "Dates of relapses and whether they were treated."),
    (
        "DMT_EXPOSURE",
        "Disease-modifying therapies",
        "Treatment",
        "Each disease-modifying therapy with its start and stop dates and the reason for stopping.",
    ),
    (
        "MRI",
        "MRI findings",
        "Imaging",
        "Dates of MRI scans, new or enlarging T2 lesions and gadolinium-enhancing lesions.",
    ),
    (
        "ADVERSE_EVENTS",
        "Adverse events",
        "Safety",
        "Serious adverse events during treatment, coded with MedDRA.",
    ),
    (
        "COVID19_OUTCOMES",
        "COVID-19 outcomes",
        "Infections",
        "Confirmed infections, their severity (hospitalisation, intensive care, death) and vaccination status.",
    ),
    (
        "PREGNANCY",
        "Pregnancies",
        "Life events",
        "Pregnancies and their outcomes, with the treatment at conception.",
    ),
    (
        "PROS",
        "Patient-reported outcomes",
        "Wellbeing",
        "Questionnaire scores such as MSIS-29 and fatigue scales, with their dates.",
    ),
]


def _seed_catalogue() -> None:
    variables = sa.table(
        "governance_variables",
        sa.column("code", sa.String),
        sa.column("name", sa.String),
        sa.column("domain", sa.String),
        sa.column("description", sa.Text),
        sa.column("is_active", sa.Boolean),
        sa.column("created_at", engage.db.UTCDateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    op.bulk_insert(
        variables,
        [
            {
                "code": code,
                "name": name,
                "domain": domain,
                "description": description,
                "is_active": True,
                "created_at": now,
            }
            for code, name, domain, description in CORE_VARIABLES
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("registries", schema=None) as batch_op:
        batch_op.drop_column("small_cell_threshold")

    with op.batch_alter_table("governance_decision_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_governance_decision_events_thread_id"))

    op.drop_table("governance_decision_events")
    op.drop_table("governance_proposal_variables")
    with op.batch_alter_table("governance_proposal_status_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_governance_proposal_status_changes_proposal_id"))

    op.drop_table("governance_proposal_status_changes")
    op.drop_table("governance_proposal_scopes")
    with op.batch_alter_table("governance_decision_threads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_governance_decision_threads_registry_id"))
        batch_op.drop_index(batch_op.f("ix_governance_decision_threads_deadline"))

    op.drop_table("governance_decision_threads")
    with op.batch_alter_table("governance_consent_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_governance_consent_notices_registry_id"))
        batch_op.drop_index("ix_governance_consent_notices_open")

    op.drop_table("governance_consent_notices")
    with op.batch_alter_table("governance_proposals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_governance_proposals_topic_id"))
        batch_op.drop_index(batch_op.f("ix_governance_proposals_status"))
        batch_op.drop_index(batch_op.f("ix_governance_proposals_proposer_id"))

    op.drop_table("governance_proposals")
    op.drop_table("governance_variables")
