"""Scheduled topic work: emailing authors and supporters about status changes and merges."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import mail
from engage.accounts.models import User
from engage.scheduler import JobRegistry
from engage.topics.models import Topic, TopicNotification, TopicStatus
from engage.urls import external_url

BATCH_SIZE = 200
MAX_ATTEMPTS = 5


def _message(notification: TopicNotification, user: User, topic: Topic):
    link = external_url("topics.detail", topic_id=topic.id)
    details = notification.details or {}
    if notification.kind == "merged":
        target_link = external_url("topics.detail", topic_id=details.get("target_id"))
        return mail.render_message(
            "topic_merged",
            to=user.email,
            subject="A topic you follow was merged into another",
            user=user,
            topic=topic,
            link=link,
            target_title=details.get("target_title", ""),
            target_link=target_link,
            reason=details.get("reason"),
            is_author=user.id == topic.author_id,
        )
    status = TopicStatus(details.get("status", topic.status.value))
    return mail.render_message(
        "topic_status",
        to=user.email,
        subject=f"Your topic: {status.label.lower()}"
        if user.id == topic.author_id
        else f"A topic you support: {status.label.lower()}",
        user=user,
        topic=topic,
        status=status,
        reason=details.get("reason"),
        link=link,
        is_author=user.id == topic.author_id,
    )


def send_topic_notifications(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """Send owed topic emails in a batch; transient failures are retried at the next tick."""
    due = session.execute(
        sa.select(TopicNotification, User, Topic)
        .join(User, User.id == TopicNotification.user_id)
        .join(Topic, Topic.id == TopicNotification.topic_id)
        .where(TopicNotification.sent_at.is_(None), TopicNotification.attempts < MAX_ATTEMPTS)
        .order_by(TopicNotification.id)
        .limit(BATCH_SIZE)
    ).all()
    sent = failed = 0
    for notification, user, topic in due:
        notification.attempts += 1
        if not user.is_active:
            notification.sent_at = now
            notification.last_error = "account inactive: not sent"
            continue
        try:
            mail.send(_message(notification, user, topic))
        except mail.MailError as exc:
            failed += 1
            notification.last_error = str(exc)[:200]
            if not exc.transient:
                notification.attempts = MAX_ATTEMPTS
            continue
        notification.sent_at = now
        sent += 1
    return f"sent {sent}, failed {failed} topic email(s)"


def register(jobs: JobRegistry) -> None:
    """Register the topic jobs."""
    jobs.register(
        "topics.send_notifications",
        send_topic_notifications,
        "interval",
        description="Email authors and supporters about topic status changes",
        minutes=1,
    )
