"""Topic emails: authors and supporters hear about status changes and merges.

The services queue them in the mail outbox (one row per recipient, keyed by the status change);
these renderers turn a row into the email at delivery time.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from engage import mail, outbox
from engage.accounts import queries as account_queries
from engage.accounts.queries import Recipient
from engage.topics.models import Topic, TopicStatus
from engage.urls import external_url


def _subject(session: Session, row: outbox.OutboxMessage) -> tuple[Recipient, Topic]:
    user = account_queries.recipient(session, row.user_id) if row.user_id is not None else None
    topic = session.get(Topic, row.payload.get("topic_id"))
    if user is None or topic is None:
        raise outbox.NotOwed("the account or the topic is gone, or the account is deactivated")
    return user, topic


def render_status(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """A topic's author (or a supporter) hears that staff changed its status."""
    user, topic = _subject(session, row)
    status = TopicStatus(row.payload["status"])
    is_author = user.id == topic.author_id
    return mail.render_message(
        "topic_status",
        to=user.email,
        subject=f"Your topic: {status.label.lower()}"
        if is_author
        else f"A topic you support: {status.label.lower()}",
        user=user,
        topic=topic,
        status=status,
        reason=row.payload.get("reason"),
        link=external_url("topics.detail", topic_id=topic.id),
        is_author=is_author,
    )


def render_merged(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """A topic's author and supporters hear that it was merged into another."""
    user, topic = _subject(session, row)
    return mail.render_message(
        "topic_merged",
        to=user.email,
        subject="A topic you follow was merged into another",
        user=user,
        topic=topic,
        link=external_url("topics.detail", topic_id=topic.id),
        target_title=row.payload.get("target_title", ""),
        target_link=external_url("topics.detail", topic_id=row.payload.get("target_id")),
        reason=row.payload.get("reason"),
        is_author=user.id == topic.author_id,
    )


def register_kinds(kinds: outbox.MailKinds) -> None:
    """Register the topic emails' renderers."""
    kinds.register("topic_status", render_status, "Topic status change")
    kinds.register("topic_merged", render_merged, "Topic merged")
