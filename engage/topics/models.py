"""Topic tables. Supports, support events and status changes are the history; a topic's
``support_count`` is a maintained counter that ``engage topics reconcile`` checks against the
support rows."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage.accounts.models import Role
from engage.db import Base, UTCDateTime
from engage.enums import LabelledEnum, enum_column


class TopicCategory(LabelledEnum):
    """What a topic is about."""

    TREATMENTS = "treatments", "Treatments and disease-modifying therapies"
    LIFESTYLE = "lifestyle", "Diet, exercise and lifestyle"
    SYMPTOMS = "symptoms", "Symptoms and wellbeing"
    PROGRESSION = "progression", "Progression and prediction"
    INFECTIONS = "infections", "COVID-19 and infections"
    CARE = "care", "Care and services"
    OTHER = "other", "Other"


class TopicStatus(LabelledEnum):
    """Where a topic is in its life."""

    SUBMITTED = "submitted", "Awaiting moderation"
    PUBLISHED = "published", "Open for support"
    RETURNED = "returned", "Returned to the author"
    REJECTED = "rejected", "Not accepted"
    SHORTLISTED = "shortlisted", "Shortlisted"
    ADOPTED = "adopted", "Adopted for research"
    COMPLETED = "completed", "Research completed"
    MERGED = "merged", "Merged into another topic"
    WITHDRAWN = "withdrawn", "Withdrawn by the author"

    @property
    def is_open_for_support(self) -> bool:
        """Published and shortlisted topics can be supported (and supports withdrawn)."""
        return self in OPEN_STATUSES


OPEN_STATUSES = frozenset({TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED})
# Statuses anyone may read (submitted, returned, rejected and withdrawn topics are private),
# in lifecycle order: the one definition every query, form and index uses.
PUBLIC_STATUS_ORDER = (
    TopicStatus.PUBLISHED,
    TopicStatus.SHORTLISTED,
    TopicStatus.ADOPTED,
    TopicStatus.COMPLETED,
    TopicStatus.MERGED,
)
PUBLIC_STATUSES = frozenset(PUBLIC_STATUS_ORDER)
_PUBLIC_VALUES = ", ".join(f"'{status.value}'" for status in PUBLIC_STATUS_ORDER)
# Rows of the public list: the index predicate matches the list query's conditions exactly.
PUBLIC_LIST_PREDICATE = f"is_hidden = false AND status IN ({_PUBLIC_VALUES})"



class Topic(Base):
    """A proposed research topic."""

    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(150))
    # The research question itself, plain text.
    question: Mapped[str] = mapped_column(sa.Text)
    # Why it matters: the author's Markdown source (rendered and sanitised on display).
    rationale: Mapped[str] = mapped_column(sa.Text)
    category: Mapped[TopicCategory] = mapped_column(enum_column(TopicCategory))
    status: Mapped[TopicStatus] = mapped_column(enum_column(TopicStatus), index=True)
    # Optional reference links (http or https URLs).
    reference_links: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    author_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    # Maintained in the same transaction as the support rows; reconciled by a command.
    support_count: Mapped[int] = mapped_column(default=0)
    # Set when staff merge this topic into another one.
    merged_into_id: Mapped[int | None] = mapped_column(sa.ForeignKey("topics.id"))
    # Reference of the governance proposal that adopted the topic, when there is one.
    proposal_reference: Mapped[str | None] = mapped_column(sa.String(80))
    # Hidden pending staff review after enough reports.
    is_hidden: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        # The public list reads these partial indexes in order (backwards for "most supported"
        # and "newest"), so a page costs the same however many topics there are.
        sa.Index(
            "ix_topics_public_support_count",
            "support_count",
            "id",
            sqlite_where=sa.text(PUBLIC_LIST_PREDICATE),
            postgresql_where=sa.text(PUBLIC_LIST_PREDICATE),
        ),
        sa.Index(
            "ix_topics_public_published_at",
            "published_at",
            "id",
            sqlite_where=sa.text(PUBLIC_LIST_PREDICATE),
            postgresql_where=sa.text(PUBLIC_LIST_PREDICATE),
        ),
        sa.CheckConstraint("support_count >= 0", name="support_count_not_negative"),
    )


class TopicStatusChange(Base):
    """One transition of a topic's status (append-only)."""

    __tablename__ = "topic_status_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic_id: Mapped[int] = mapped_column(
        sa.ForeignKey("topics.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[TopicStatus | None] = mapped_column(enum_column(TopicStatus))
    to_status: Mapped[TopicStatus] = mapped_column(enum_column(TopicStatus))
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    # Why (required when returning, rejecting or merging; shown to the author).
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TopicSupport(Base):
    """A person's current support of a topic: one per person per topic."""

    __tablename__ = "topic_supports"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic_id: Mapped[int] = mapped_column(sa.ForeignKey("topics.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The supporter's role when supporting, and whether a clinician was verified then.
    role: Mapped[Role] = mapped_column(enum_column(Role))
    is_verified_clinician: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        sa.UniqueConstraint("topic_id", "user_id"),
        sa.Index("ix_topic_supports_topic_id_role", "topic_id", "role", "is_verified_clinician"),
    )


class SupportAction(enum.StrEnum):
    """What happened to a support."""

    CAST = "cast"
    WITHDRAWN = "withdrawn"
    MOVED = "moved"  # carried to another topic by a merge


class TopicSupportEvent(Base):
    """Append-only history of supports cast, withdrawn and moved by merges."""

    __tablename__ = "topic_support_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic_id: Mapped[int] = mapped_column(
        sa.ForeignKey("topics.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    action: Mapped[SupportAction] = mapped_column(enum_column(SupportAction))
    role: Mapped[Role] = mapped_column(enum_column(Role))
    is_verified_clinician: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TopicComment(Base):
    """A comment on a published topic."""

    __tablename__ = "topic_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic_id: Mapped[int] = mapped_column(sa.ForeignKey("topics.id", ondelete="CASCADE"))
    author_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # Markdown source; rendered and sanitised on display.
    body: Mapped[str] = mapped_column(sa.Text)
    is_hidden: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (sa.Index("ix_topic_comments_topic_id_created_at", "topic_id", "created_at"),)


class ReportStatus(enum.StrEnum):
    """Where a report stands."""

    OPEN = "open"
    UPHELD = "upheld"  # staff agreed: the content stays hidden
    DISMISSED = "dismissed"  # staff disagreed: the content is shown again


class ContentReport(Base):
    """Someone's report of a topic or a comment (one per person per item)."""

    __tablename__ = "content_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic_id: Mapped[int] = mapped_column(
        sa.ForeignKey("topics.id", ondelete="CASCADE"), index=True
    )
    # None when the report is about the topic itself.
    comment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("topic_comments.id", ondelete="CASCADE")
    )
    reporter_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[ReportStatus] = mapped_column(enum_column(ReportStatus), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )

    __table_args__ = (
        # A person reports an item once. NULL comment ids are distinct in a unique
        # constraint, so reports of the topic itself get a partial unique index.
        sa.UniqueConstraint("comment_id", "reporter_id"),
        sa.Index(
            "uq_content_reports_topic_reporter",
            "topic_id",
            "reporter_id",
            unique=True,
            sqlite_where=sa.text("comment_id IS NULL"),
            postgresql_where=sa.text("comment_id IS NULL"),
        ),
    )


class TopicSettings(Base):
    """Settings staff change from the moderation pages (a single row, id 1)."""

    __tablename__ = "topic_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    # How many open topics one person may support at once; None means no cap.
    support_budget: Mapped[int | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
