"""Consent tables.

- ``consent_form_versions`` and ``consent_scopes``: the versioned form; a published version
  never changes (an ORM guard refuses it; changes make a new version).
- ``consent_events``: the append-only ledger of decisions, one SHA-256 hash chain per
  participant (``seq`` 1, 2, 3, … with ``prev_hash`` → ``hash``).
- ``consent_choices``: the current decision per participant and scope code, maintained in the
  same transaction as the events.
- ``consent_participants``: one row per participant who has decided anything: the
  pseudonymous id used in receipts and exports, review and reminder state, and
  ``permitted_mask``, the bits of the scopes they currently permit (what cohort counts read).
- ``consent_scope_codes``: every scope code ever published and its stable bit.
- ``consent_receipts``: the signed receipt of every change.
- ``consent_erasure_requests``: requests to erase a participant's data (a staff queue).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from engage.db import Base, UTCDateTime
from engage.enums import LabelledEnum, enum_column

# Scope codes get one bit each of a signed 64-bit mask: bits 0 to 62.
MAX_SCOPE_CODES = 63


class VersionStatus(enum.StrEnum):
    """Where a form version is in its life."""

    DRAFT = "draft"
    PUBLISHED = "published"  # the current version (at most one)
    SUPERSEDED = "superseded"  # replaced by a newer published version

    @property
    def label(self) -> str:
        """The status as staff read it."""
        return {"draft": "Draft", "published": "Current", "superseded": "Replaced"}[self.value]


class ScopeKind(LabelledEnum):
    """What a scope is about."""

    PURPOSE = "purpose", "What my data is used for"
    DATA_CATEGORY = "data_category", "Which data is included"
    CONTACT = "contact", "How you may contact me"


class Decision(enum.StrEnum):
    """A participant's decision on one scope."""

    PERMIT = "permit"
    DENY = "deny"  # never allowed (declined when asked)
    WITHDRAW = "withdraw"  # allowed before, then taken back

    @property
    def label(self) -> str:
        """The decision as people read it."""
        return {"permit": "Allowed", "deny": "Not allowed", "withdraw": "Withdrawn"}[self.value]


class CollectionMethod(enum.StrEnum):
    """How a decision reached Engage."""

    ONLINE = "online"  # the participant, on their consent pages
    PAPER = "paper"  # a signed paper form, recorded by staff on the participant's behalf

    @property
    def label(self) -> str:
        """The method as people read it."""
        if self == CollectionMethod.ONLINE:
            return "Online, by you"
        return "Paper form, recorded by coordination-centre staff"


class ErasureStatus(LabelledEnum):
    """Where a request to erase a participant's data stands."""

    RECEIVED = "received", "Received: waiting for the coordination centre"
    IN_PROGRESS = "in_progress", "In progress: the registries are erasing your data"
    COMPLETED = "completed", "Completed: your data has been erased"
    DECLINED = "declined", "Not carried out (see the reason)"


    @property
    def is_open(self) -> bool:
        """Received and in-progress requests still await staff."""
        return self in OPEN_ERASURE_STATUSES


OPEN_ERASURE_STATUSES = frozenset({ErasureStatus.RECEIVED, ErasureStatus.IN_PROGRESS})


class ConsentFormVersion(Base):
    """One version of the programme's consent form."""

    __tablename__ = "consent_form_versions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # 1, 2, 3, … in order of creation; shown to people as "version 3".
    number: Mapped[int] = mapped_column(unique=True)
    status: Mapped[VersionStatus] = mapped_column(enum_column(VersionStatus))
    title: Mapped[str] = mapped_column(sa.String(200))
    # The full text, Markdown source (rendered and sanitised on display).
    body: Mapped[str] = mapped_column(sa.Text)
    # The plain-language summary, Markdown source; its reading level gates publishing.
    summary: Mapped[str] = mapped_column(sa.Text)
    # Reference of the ethics committee's approval of this text.
    ethics_reference: Mapped[str] = mapped_column(sa.String(120))
    # ISO 639-1 code of the text's language.
    language: Mapped[str] = mapped_column(sa.String(8))
    # Flesch-Kincaid grade of the summary, fixed at publication.
    reading_grade: Mapped[float | None] = mapped_column(sa.Float)
    # Why a summary above the configured grade was published anyway.
    grade_justification: Mapped[str | None] = mapped_column(sa.Text)
    # SHA-256 (hex) of the full text's UTF-8 bytes, fixed at publication.
    text_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        # At most one draft and one current version at a time.
        sa.Index(
            "uq_consent_form_versions_one_draft",
            "status",
            unique=True,
            sqlite_where=sa.text("status = 'draft'"),
            postgresql_where=sa.text("status = 'draft'"),
        ),
        sa.Index(
            "uq_consent_form_versions_one_published",
            "status",
            unique=True,
            sqlite_where=sa.text("status = 'published'"),
            postgresql_where=sa.text("status = 'published'"),
        ),
    )

    @property
    def is_draft(self) -> bool:
        """True while the version can still be edited."""
        return self.status == VersionStatus.DRAFT


class ConsentScope(Base):
    """One scope of a form version: a purpose, a data category or a way of contact."""

    __tablename__ = "consent_scopes"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("consent_form_versions.id", ondelete="CASCADE")
    )
    # Stable code across versions, e.g. "GENOMIC_DATA" (capital letters, digits, underscores).
    code: Mapped[str] = mapped_column(sa.String(40))
    # Order on the form.
    position: Mapped[int] = mapped_column(default=0)
    title: Mapped[str] = mapped_column(sa.String(200))
    # What it means, in plain language.
    explanation: Mapped[str] = mapped_column(sa.Text)
    kind: Mapped[ScopeKind] = mapped_column(enum_column(ScopeKind))
    # GA4GH Data Use Ontology shorthand where one fits, e.g. "DS-MS", "HMB", "NPU".
    duo_code: Mapped[str | None] = mapped_column(sa.String(20))
    # Required scopes are the condition of taking part at all.
    is_required: Mapped[bool] = mapped_column(default=False)
    # SHA-256 of the scope's wording and settings: same code and hash means "unchanged".
    content_sha256: Mapped[str] = mapped_column(sa.String(64))
    # Number of the version whose wording this is (an unchanged scope keeps its revision);
    # decisions count only for the revision they were made on. Set at publication.
    revision: Mapped[int | None] = mapped_column()

    __table_args__ = (sa.UniqueConstraint("version_id", "code"),)


class ConsentScopeCode(Base):
    """A scope code that has been published, and its bit in ``permitted_mask``."""

    __tablename__ = "consent_scope_codes"

    code: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    bit: Mapped[int] = mapped_column(unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (sa.CheckConstraint("bit >= 0 AND bit < 63", name="bit_in_range"),)


class ConsentParticipant(Base):
    """Consent state of one participant (created with their first decision)."""

    __tablename__ = "consent_participants"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), primary_key=True
    )
    # Random UUID: the participant's id in receipts and exports (never the user id or email).
    pseudonym: Mapped[str] = mapped_column(sa.String(36), unique=True)
    # Bits (see consent_scope_codes) of the scopes currently permitted: a decision "permit"
    # on the current form's revision of the scope. Maintained with every change and cleared
    # for changed or removed scopes when a version is published.
    permitted_mask: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # The newest version the participant has fully decided on (nothing left to review).
    reviewed_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("consent_form_versions.id", ondelete="RESTRICT")
    )
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Review reminders sent for ``reminded_version_id`` (reset for each new version).
    reminded_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("consent_form_versions.id", ondelete="RESTRICT")
    )
    reminder_count: Mapped[int] = mapped_column(default=0)
    last_reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        # Cohort counts: "permitted_mask IN (masks that include every asked-for bit)" is an
        # index-only scan, never a walk through the events.
        sa.Index("ix_consent_participants_permitted_mask", "permitted_mask", "user_id"),
        sa.Index("ix_consent_participants_reviewed_version_id", "reviewed_version_id"),
    )


class ConsentRegistryMask(Base):
    """A participant's ``permitted_mask`` once per registry they are enrolled in.

    Cohort counts of one registry read only the (registry_id, permitted_mask, user_id) index of
    this table, like the overall count reads consent_participants': no join with the
    enrolments, so the cost follows the registry's matching participants, not all of them.
    Rows are kept equal to consent_participants.permitted_mask in the same transaction (every
    decision, every publication) and follow enrolment changes through the
    ``registry_enrolments_changed`` signal; removing an enrolment or a participant removes the
    row by cascade. ``engage audit verify`` reports any row that disagrees.
    """

    __tablename__ = "consent_registry_masks"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("consent_participants.user_id", ondelete="CASCADE"), primary_key=True
    )
    registry_id: Mapped[int] = mapped_column(primary_key=True)
    permitted_mask: Mapped[int] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["user_id", "registry_id"],
            ["registry_enrolments.user_id", "registry_enrolments.registry_id"],
            ondelete="CASCADE",
        ),
        sa.Index(
            "ix_consent_registry_masks_registry_id_permitted_mask",
            "registry_id",
            "permitted_mask",
            "user_id",
        ),
    )


class ConsentReceipt(Base):
    """The signed receipt of one change (append-only)."""

    __tablename__ = "consent_receipts"

    # A random UUID, also the receipt's id inside the signed document.
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"))
    form_version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("consent_form_versions.id", ondelete="RESTRICT")
    )
    method: Mapped[CollectionMethod] = mapped_column(enum_column(CollectionMethod))
    # Staff member who recorded a paper form (a plain id, so the history survives them).
    actor_id: Mapped[int | None] = mapped_column()
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The receipt exactly as signed and handed out, signature included.
    document: Mapped[dict[str, Any]] = mapped_column(sa.JSON)

    __table_args__ = (sa.Index("ix_consent_receipts_user_id_issued_at", "user_id", "issued_at"),)


class ConsentEvent(Base):
    """One decision on one scope (append-only, hash-chained per participant)."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"))
    # Position in the participant's chain: 1, 2, 3, … (unique, so two writers cannot fork it).
    seq: Mapped[int] = mapped_column()
    scope_code: Mapped[str] = mapped_column(sa.String(40))
    decision: Mapped[Decision] = mapped_column(enum_column(Decision))
    form_version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("consent_form_versions.id", ondelete="RESTRICT")
    )
    # The scope wording's revision the decision was made on.
    scope_revision: Mapped[int] = mapped_column()
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    method: Mapped[CollectionMethod] = mapped_column(enum_column(CollectionMethod))
    # Staff member who recorded a paper form (None when the participant acted).
    actor_id: Mapped[int | None] = mapped_column()
    receipt_id: Mapped[str] = mapped_column(
        sa.ForeignKey("consent_receipts.id", ondelete="RESTRICT"), index=True
    )
    # SHA-256 (hex) of the previous event of this participant ("0" * 64 for the first) and of
    # this event's canonical JSON including ``prev_hash``.
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))

    __table_args__ = (sa.UniqueConstraint("user_id", "seq"),)


class ConsentChoice(Base):
    """A participant's current decision on one scope code (derived from the events)."""

    __tablename__ = "consent_choices"

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), primary_key=True
    )
    scope_code: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    decision: Mapped[Decision] = mapped_column(enum_column(Decision))
    scope_revision: Mapped[int] = mapped_column()
    form_version_id: Mapped[int] = mapped_column(
        sa.ForeignKey("consent_form_versions.id", ondelete="RESTRICT")
    )
    # The event that made this the current decision.
    event_id: Mapped[int] = mapped_column(sa.ForeignKey("consent_events.id", ondelete="RESTRICT"))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ErasureRequest(Base):
    """A participant's request to erase their data, handled by staff."""

    __tablename__ = "consent_erasure_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    status: Mapped[ErasureStatus] = mapped_column(enum_column(ErasureStatus))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    handled_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    # What staff tell the participant (required when declining).
    note: Mapped[str | None] = mapped_column(sa.Text)

    __table_args__ = (
        # One open request per participant at a time.
        sa.Index(
            "uq_consent_erasure_requests_one_open",
            "user_id",
            unique=True,
            sqlite_where=sa.text("status IN ('received', 'in_progress')"),
            postgresql_where=sa.text("status IN ('received', 'in_progress')"),
        ),
        sa.Index("ix_consent_erasure_requests_status", "status", "requested_at"),
    )


class ConsentHistoryIsAppendOnly(RuntimeError):
    """Something tried to change or delete a consent event, a receipt or a published form."""


@event.listens_for(Session, "before_flush")
def _refuse_history_changes(session: Session, _context: Any, _instances: Any) -> None:
    """Keep events and receipts append-only and published versions (and their scopes) fixed."""
    for obj in list(session.dirty) + list(session.deleted):
        deleted = obj in session.deleted
        if isinstance(obj, ConsentEvent | ConsentReceipt) and (deleted or session.is_modified(obj)):
            raise ConsentHistoryIsAppendOnly("consent events and receipts are append-only")
        if isinstance(obj, ConsentScope) and (deleted or session.is_modified(obj)):
            # Scopes get their revision when their version is published: from then on, fixed.
            history = sa.inspect(obj).attrs.revision.history
            revision_before = history.deleted[0] if history.deleted else obj.revision
            if revision_before is not None:
                raise ConsentHistoryIsAppendOnly("a published form version cannot change")
        if isinstance(obj, ConsentFormVersion) and (deleted or session.is_modified(obj)):
            history = sa.inspect(obj).attrs.status.history
            was_draft = (history.deleted or [obj.status])[0] == VersionStatus.DRAFT
            if not was_draft and _content_changed(obj, deleted):
                raise ConsentHistoryIsAppendOnly("a published form version cannot change")


_FROZEN_VERSION_FIELDS = (
    "number",
    "title",
    "body",
    "summary",
    "ethics_reference",
    "language",
    "reading_grade",
    "grade_justification",
    "text_sha256",
    "published_at",
)


def _content_changed(version: ConsentFormVersion, deleted: bool) -> bool:
    """True when a deletion or a change to a published version's content is pending."""
    if deleted:
        return True
    state = sa.inspect(version)
    return any(state.attrs[name].history.has_changes() for name in _FROZEN_VERSION_FIELDS)
