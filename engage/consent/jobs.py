"""Scheduled consent work: telling participants the form is ready, and reminding them to
review a new version of it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts import queries as account_queries
from engage.consent import emails
from engage.consent.models import ConsentFormVersion, ConsentParticipant
from engage.consent.queries import current_version
from engage.outbox import OutboxMessage
from engage.roles import Role
from engage.scheduler import JobRegistry

BATCH_SIZE = 500


def queue_consent_available(session: Session, now: datetime, version: ConsentFormVersion) -> int:
    """Queue "you can now give your consent" for verified participants who have never decided
    and were never told (once per person, whatever version is current)."""
    participants = account_queries.recipient_ids(roles=[Role.PARTICIPANT]).subquery()
    told = sa.exists().where(
        OutboxMessage.dedup_key
        == sa.literal("consent-available:") + sa.cast(participants.c.id, sa.String)
    )
    waiting = session.scalars(
        sa.select(participants.c.id)
        .outerjoin(ConsentParticipant, ConsentParticipant.user_id == participants.c.id)
        .where(ConsentParticipant.reviewed_version_id.is_(None), ~told)
        .order_by(participants.c.id)
        .limit(BATCH_SIZE)
    ).all()
    return sum(emails.queue_consent_available(session, uid, version.id, now) for uid in waiting)


def send_review_reminders(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """Queue the consent emails that are owed: "you can now give your consent" once to each
    participant who never decided, and reminders to those still on an older version, every
    ``CONSENT_REVIEW_REMINDER_DAYS`` days after publication, at most ``CONSENT_MAX_REMINDERS``
    times per version. Each is queued with its reminder count in the same transaction; the
    outbox delivers them, and a job run twice queues nothing twice."""
    version = current_version(session)
    if version is None or version.published_at is None:
        return "no published consent form"
    available = queue_consent_available(session, now, version)
    interval = timedelta(days=config["CONSENT_REVIEW_REMINDER_DAYS"])
    most = config["CONSENT_MAX_REMINDERS"]
    if most <= 0 or now - version.published_at < interval:
        return f"queued {available} consent-form notice(s), 0 review reminder(s)"
    for_this_version = ConsentParticipant.reminded_version_id == version.id
    due = session.execute(
        sa.select(ConsentParticipant)
        .where(
            ConsentParticipant.user_id.in_(
                account_queries.recipient_ids(roles=[Role.PARTICIPANT]).order_by(None)
            ),
            ConsentParticipant.reviewed_version_id.is_not(None),
            ConsentParticipant.reviewed_version_id != version.id,
            sa.or_(
                ConsentParticipant.reminded_version_id.is_(None),
                ConsentParticipant.reminded_version_id != version.id,
                sa.and_(
                    for_this_version,
                    ConsentParticipant.reminder_count < most,
                    ConsentParticipant.last_reminded_at <= now - interval,
                ),
            ),
        )
        .order_by(ConsentParticipant.user_id)
        .limit(BATCH_SIZE)
        .with_for_update(of=ConsentParticipant, skip_locked=True)
    ).scalars()
    queued = 0
    for participant in due:
        count = participant.reminder_count if participant.reminded_version_id == version.id else 0
        queued += emails.queue_review_reminder(
            session, participant.user_id, version.id, count + 1, now
        )
        participant.reminded_version_id = version.id
        participant.reminder_count = count + 1
        participant.last_reminded_at = now
    return f"queued {available} consent-form notice(s), {queued} review reminder(s)"


def register(jobs: JobRegistry) -> None:
    """Register the consent jobs."""
    jobs.register(
        "consent.review_reminders",
        send_review_reminders,
        "interval",
        description="Remind participants to review a new version of the consent form",
        hours=1,
    )
