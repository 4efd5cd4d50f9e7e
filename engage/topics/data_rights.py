"""Topics' part of the data rights (see ``engage.accounts.data_rights``): what a person proposed,
supported, wrote and reported, and what deleting their account does to it.

Published topics and comments stay where they are, shown as by "Deleted account" (names are
read from the account at display time), and supports stay counted, so the public tallies stay
right. Topics that never became public (waiting for moderation, or returned to the author) are
withdrawn: nobody is left to answer the moderators, and they must not be published without
their author.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.data_rights import DataRights, iso
from engage.accounts.models import User
from engage.db import lock_rows
from engage.topics.models import (
    ContentReport,
    Topic,
    TopicComment,
    TopicStatus,
    TopicStatusChange,
    TopicSupport,
    TopicSupportEvent,
)

# Topics only their author and the moderators ever saw.
UNPUBLISHED_STATUSES = (TopicStatus.SUBMITTED, TopicStatus.RETURNED)
WITHDRAWN_REASON = "The author deleted their account."


def export_topics(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> dict[str, Any]:
    """Topics proposed (with their status history), supports, comments and reports: one
    statement per kind of row."""
    topics = list(
        session.scalars(
            sa.select(Topic).where(Topic.author_id == user.id).order_by(Topic.created_at, Topic.id)
        )
    )
    changes = session.scalars(
        sa.select(TopicStatusChange)
        .join(Topic, Topic.id == TopicStatusChange.topic_id)
        .where(Topic.author_id == user.id)
        .order_by(TopicStatusChange.created_at, TopicStatusChange.id)
    )
    history: dict[int, list[dict[str, Any]]] = {}
    for change in changes:
        history.setdefault(change.topic_id, []).append(
            {
                "status": change.to_status.label,
                "at": iso(change.created_at),
                "reason": change.reason,
            }
        )
    supports = session.execute(
        sa.select(TopicSupport, Topic.title)
        .join(Topic, Topic.id == TopicSupport.topic_id)
        .where(TopicSupport.user_id == user.id)
        .order_by(TopicSupport.created_at, TopicSupport.id)
    ).all()
    support_events = session.execute(
        sa.select(TopicSupportEvent, Topic.title)
        .join(Topic, Topic.id == TopicSupportEvent.topic_id)
        .where(TopicSupportEvent.user_id == user.id)
        .order_by(TopicSupportEvent.created_at, TopicSupportEvent.id)
    ).all()
    comments = session.execute(
        sa.select(TopicComment, Topic.title)
        .join(Topic, Topic.id == TopicComment.topic_id)
        .where(TopicComment.author_id == user.id)
        .order_by(TopicComment.created_at, TopicComment.id)
    ).all()
    reports = session.execute(
        sa.select(ContentReport, Topic.title)
        .join(Topic, Topic.id == ContentReport.topic_id)
        .where(ContentReport.reporter_id == user.id)
        .order_by(ContentReport.created_at, ContentReport.id)
    ).all()
    return {
        "proposed": [
            {
                "topic_id": topic.id,
                "title": topic.title,
                "question": topic.question,
                "rationale": topic.rationale,
                "category": topic.category.label,
                "reference_links": list(topic.reference_links or []),
                "status": topic.status.label,
                "supports": topic.support_count,
                "proposed_at": iso(topic.created_at),
                "published_at": iso(topic.published_at),
                "status_history": history.get(topic.id, []),
            }
            for topic in topics
        ],
        "supports": [
            {
                "topic_id": support.topic_id,
                "topic": title,
                "as": support.role.label,
                "as_verified_professional": support.is_verified_clinician,
                "since": iso(support.created_at),
            }
            for support, title in supports
        ],
        "support_history": [
            {
                "topic_id": event.topic_id,
                "topic": title,
                "what": event.action.value,
                "at": iso(event.created_at),
            }
            for event, title in support_events
        ],
        "comments": [
            {
                "topic_id": comment.topic_id,
                "topic": title,
                "text": comment.body,
                "hidden_by_moderators": comment.is_hidden,
                "written_at": iso(comment.created_at),
                "edited_at": iso(comment.edited_at),
            }
            for comment, title in comments
        ],
        "reports": [
            {
                "topic_id": report.topic_id,
                "topic": title,
                "about_a_comment": report.comment_id is not None,
                "reason": report.reason,
                "status": report.status.value,
                "reported_at": iso(report.created_at),
            }
            for report, title in reports
        ],
    }


def erase_topics(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> str | None:
    """Withdraw the person's unpublished topics; published topics, comments, supports and
    reports stay (their author is then shown as "Deleted account")."""
    candidate_ids = list(
        session.scalars(
            sa.select(Topic.id).where(
                Topic.author_id == user.id, Topic.status.in_(UNPUBLISHED_STATUSES)
            )
        )
    )
    withdrawn = 0
    if candidate_ids:
        # Locked, then re-read: a moderator's decision arriving now queues behind this one.
        lock_rows(session, Topic, candidate_ids)
        topics = session.scalars(
            sa.select(Topic)
            .where(Topic.id.in_(candidate_ids), Topic.status.in_(UNPUBLISHED_STATUSES))
            .execution_options(populate_existing=True)
        ).all()
        for topic in topics:
            session.add(
                TopicStatusChange(
                    topic_id=topic.id,
                    from_status=topic.status,
                    to_status=TopicStatus.WITHDRAWN,
                    actor_id=user.id,
                    reason=WITHDRAWN_REASON,
                    created_at=now,
                )
            )
            topic.status = TopicStatus.WITHDRAWN
            topic.updated_at = now
            withdrawn += 1
    kept_topics = session.scalar(
        sa.select(sa.func.count())
        .select_from(Topic)
        .where(Topic.author_id == user.id, Topic.status != TopicStatus.WITHDRAWN)
    )
    kept_comments = session.scalar(
        sa.select(sa.func.count())
        .select_from(TopicComment)
        .where(TopicComment.author_id == user.id)
    )
    supports = session.scalar(
        sa.select(sa.func.count()).select_from(TopicSupport).where(TopicSupport.user_id == user.id)
    )
    if not (withdrawn or kept_topics or kept_comments or supports):
        return None
    return (
        f"Topics: {withdrawn} unpublished topic(s) withdrawn; {kept_topics} topic(s) and "
        f"{kept_comments} comment(s) kept as by “Deleted account”; {supports} support(s) "
        "still counted."
    )


def register(rights: DataRights) -> None:
    """Add topics' section and eraser (called by the composition root)."""
    rights.add_exporter("topics", export_topics)
    rights.add_eraser("topics", erase_topics)
