"""Scheduled consent work: reminding participants to review a new version of the form."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import mail
from engage.accounts.models import Role, User
from engage.consent import emails
from engage.consent.models import ConsentParticipant
from engage.consent.services import current_version
from engage.scheduler import JobRegistry

BATCH_SIZE = 500


def send_review_reminders(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """Email participants still on an older version of the form, every
    ``CONSENT_REVIEW_REMINDER_DAYS`` days after publication, at most ``CONSENT_MAX_REMINDERS``
    times per version. A failed send is tried again at the next tick."""
    version = current_version(session)
    if version is None or version.published_at is None:
        return "no published consent form"
    interval = timedelta(days=config["CONSENT_REVIEW_REMINDER_DAYS"])
    most = config["CONSENT_MAX_REMINDERS"]
    if most <= 0 or now - version.published_at < interval:
        return "sent 0 review reminder(s)"
    for_this_version = ConsentParticipant.reminded_version_id == version.id
    due = session.execute(
        sa.select(ConsentParticipant, User)
        .join(User, User.id == ConsentParticipant.user_id)
        .where(
            ConsentParticipant.reviewed_version_id.is_not(None),
            ConsentParticipant.reviewed_version_id != version.id,
            User.role == Role.PARTICIPANT,
            User.is_active.is_(True),
            User.email_verified_at.is_not(None),
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
    )
    sent = failed = 0
    for participant, user in due:
        count = participant.reminder_count if participant.reminded_version_id == version.id else 0
        try:
            mail.send(emails.review_reminder(user, version, count + 1))
        except mail.MailError:
            failed += 1
            continue
        participant.reminded_version_id = version.id
        participant.reminder_count = count + 1
        participant.last_reminded_at = now
        sent += 1
    return f"sent {sent} review reminder(s)" + (f", {failed} failed" if failed else "")


def register(jobs: JobRegistry) -> None:
    """Register the consent jobs."""
    jobs.register(
        "consent.review_reminders",
        send_review_reminders,
        "interval",
        description="Remind participants to review a new version of the consent form",
        hours=1,
    )
