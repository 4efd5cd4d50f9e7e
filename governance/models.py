"""Governance tables: research project proposals, the core variable catalogue, one decision
thread per (proposal, registry), the hash-chained decision events, and consent notices.

Status changes and decisions are append-only events; a proposal's and a thread's ``status``
columns are maintained in the same transaction as the event that changes them.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage.db import Base, UTCDateTime
from engage.enums import LabelledEnum, enum_column


class ProposalStatus(LabelledEnum):
    """Where a research project proposal is in its life."""

    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted for screening"
    RETURNED = "returned", "Returned to the proposer"
    SCREENING = "screening", "Being screened by staff"
    REJECTED = "rejected", "Not accepted"
    SENT = "sent", "Sent to registries"
    DECISIONS_CLOSED = "decisions_closed", "Decisions closed"
    ACTIVE = "active", "Active project"
    NOT_FEASIBLE = "not_feasible", "Not feasible (no registry took part)"
    COMPLETED = "completed", "Completed"
    CLOSED = "closed", "Closed"
    WITHDRAWN = "withdrawn", "Withdrawn by the proposer"


class AnalysisMode(LabelledEnum):
    """How the data is analysed."""

    POOLED = "pooled", "Pooled (data brought together)"
    FEDERATED = "federated", "Federated (analysis runs at each registry)"


class ThreadStatus(LabelledEnum):
    """Where one registry's decision on one proposal stands."""

    SENT = "sent", "Waiting for review"
    IN_REVIEW = "in_review", "In review"
    INFO_REQUESTED = "info_requested", "Waiting for the proposer's answer"
    APPROVED = "approved", "Approved"
    CONDITIONS_SET = "conditions_set", "Approved with conditions (waiting for the proposer)"
    CONDITIONS_ACCEPTED = "conditions_accepted", "Approved with conditions (accepted)"
    CONDITIONS_REFUSED = "conditions_refused", "Conditions refused by the proposer"
    DECLINED = "declined", "Declined"
    APPROVAL_WITHDRAWN = "approval_withdrawn", "Approval withdrawn"
    EXPIRED = "expired", "No decision by the deadline"


class DecisionEventKind(LabelledEnum):
    """One step in a decision thread (append-only, hash-chained per proposal)."""

    SENT = "sent", "Sent to the registry"
    OPENED = "opened", "Opened for review"
    INFO_REQUESTED = "info_requested", "Asked for information"
    INFO_ANSWERED = "info_answered", "Proposer answered"
    APPROVED = "approved", "Approved"
    CONDITIONS_SET = "conditions_set", "Approved with conditions"
    CONDITIONS_ACCEPTED = "conditions_accepted", "Conditions accepted"
    CONDITIONS_REFUSED = "conditions_refused", "Conditions refused"
    DECLINED = "declined", "Declined"
    APPROVAL_WITHDRAWN = "approval_withdrawn", "Approval withdrawn"
    DEADLINE_EXTENDED = "deadline_extended", "Deadline extended"
    EXPIRED = "expired", "Expired at the deadline"


class CatalogueVariable(Base):
    """A variable of the network's core data model that proposals request."""

    __tablename__ = "governance_variables"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stable code, e.g. "EDSS" or "DMT_EXPOSURE".
    code: Mapped[str] = mapped_column(sa.String(40), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    # The group it is listed under, e.g. "Disease course".
    domain: Mapped[str] = mapped_column(sa.String(80))
    description: Mapped[str] = mapped_column(sa.Text)
    # Retired variables stay for the proposals that requested them.
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Proposal(Base):
    """A research project proposal, decided on by each registry it is sent to."""

    __tablename__ = "governance_proposals"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    lead_researcher: Mapped[str] = mapped_column(sa.String(200))
    institution: Mapped[str] = mapped_column(sa.String(200))
    sponsor: Mapped[str] = mapped_column(sa.String(200))
    # Markdown sources (rendered and sanitised on display).
    plain_summary: Mapped[str] = mapped_column(sa.Text)
    scientific_summary: Mapped[str] = mapped_column(sa.Text)
    # ISO 639-1 code of the plain-language summary (its reading level is graded in it).
    language: Mapped[str] = mapped_column(sa.String(8), default="en")
    analysis_mode: Mapped[AnalysisMode] = mapped_column(enum_column(AnalysisMode))
    ethics_reference: Mapped[str] = mapped_column(sa.String(120))
    # The adopted research topic the project answers, if any.
    topic_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("topics.id", ondelete="SET NULL"), index=True
    )
    # When registries must have decided (each thread may be extended on its own).
    decision_deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    proposer_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[ProposalStatus] = mapped_column(enum_column(ProposalStatus), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ProposalScope(Base):
    """A consent scope the proposal needs (a code of the published consent form)."""

    __tablename__ = "governance_proposal_scopes"

    proposal_id: Mapped[int] = mapped_column(
        sa.ForeignKey("governance_proposals.id", ondelete="CASCADE"), primary_key=True
    )
    scope_code: Mapped[str] = mapped_column(sa.String(40), primary_key=True)


class ProposalVariable(Base):
    """A catalogue variable the proposal requests."""

    __tablename__ = "governance_proposal_variables"

    proposal_id: Mapped[int] = mapped_column(
        sa.ForeignKey("governance_proposals.id", ondelete="CASCADE"), primary_key=True
    )
    variable_id: Mapped[int] = mapped_column(
        sa.ForeignKey("governance_variables.id", ondelete="RESTRICT"), primary_key=True
    )


class ProposalStatusChange(Base):
    """One change of a proposal's status: who, when and why (append-only)."""

    __tablename__ = "governance_proposal_status_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(
        sa.ForeignKey("governance_proposals.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[ProposalStatus | None] = mapped_column(enum_column(ProposalStatus))
    to_status: Mapped[ProposalStatus] = mapped_column(enum_column(ProposalStatus))
    # None when the scheduler changed it (decisions closed at the deadline).
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DecisionThread(Base):
    """One registry's decision on one proposal (exactly one per pair)."""

    __tablename__ = "governance_decision_threads"

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(
        sa.ForeignKey("governance_proposals.id", ondelete="CASCADE")
    )
    registry_id: Mapped[int] = mapped_column(
        sa.ForeignKey("registries.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[ThreadStatus] = mapped_column(enum_column(ThreadStatus))
    # This registry's deadline (the proposal's, extended by staff or by paused time).
    deadline: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # Set while the registry waits for the proposer's answer: its clock is paused.
    paused_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the registry's own decision (or the expiry) was recorded.
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Conditions of an approval with conditions, as the custodian wrote them.
    conditions: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (sa.UniqueConstraint("proposal_id", "registry_id"),)


class DecisionEvent(Base):
    """One step of a decision thread; each proposal's events form one hash chain."""

    __tablename__ = "governance_decision_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(
        sa.ForeignKey("governance_proposals.id", ondelete="RESTRICT")
    )
    thread_id: Mapped[int] = mapped_column(
        sa.ForeignKey("governance_decision_threads.id", ondelete="RESTRICT"), index=True
    )
    # Position in the proposal's chain, from 1.
    seq: Mapped[int] = mapped_column()
    kind: Mapped[DecisionEventKind] = mapped_column(enum_column(DecisionEventKind, length=30))
    # None for the scheduler (expiry).
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    # The reason, conditions, question or answer, as written.
    text: Mapped[str | None] = mapped_column(sa.Text)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))

    __table_args__ = (sa.UniqueConstraint("proposal_id", "seq"),)


class ConsentNotice(Base):
    """A participant's consent change that removed a scope an active project relies on, for
    the custodians of one of their registries to acknowledge (the participant is named only by
    their consent pseudonym)."""

    __tablename__ = "governance_consent_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    registry_id: Mapped[int] = mapped_column(
        sa.ForeignKey("registries.id", ondelete="RESTRICT"), index=True
    )
    proposal_id: Mapped[int] = mapped_column(
        sa.ForeignKey("governance_proposals.id", ondelete="CASCADE")
    )
    pseudonym: Mapped[str] = mapped_column(sa.String(36))
    scope_code: Mapped[str] = mapped_column(sa.String(40))
    # The consent receipt of the change (one notice per change, registry, project and scope).
    receipt_id: Mapped[str] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )

    __table_args__ = (
        sa.UniqueConstraint("receipt_id", "registry_id", "proposal_id", "scope_code"),
        sa.Index("ix_governance_consent_notices_open", "registry_id", "acknowledged_at"),
    )


class ApiToken(Base):
    """A custodian's token for the registry API (``/api/v1``). Only its SHA-256 hash is kept:
    the token itself is shown once, when it is created."""

    __tablename__ = "governance_api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The custodian it acts for (with exactly their rights, checked at every request).
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # What its owner calls it, e.g. "Nightly sync".
    name: Mapped[str] = mapped_column(sa.String(80))
    # The token's first characters (not secret), so its owner can tell tokens apart.
    display_prefix: Mapped[str] = mapped_column(sa.String(16))
    # Hex SHA-256 of the whole token: a stolen database cannot be replayed against the API.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Updated at most once a minute, so reading the API does not write on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set when its owner revoked it; a revoked token never works again.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
