"""Consent emails: the form is ready, review reminders, paper forms recorded by staff, erasure
request status.

Each is queued in the mail outbox in the same transaction as the change it tells about, so it is
sent exactly when that change is saved, and rendered at delivery time by the renderers
registered in :func:`register_kinds`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from engage import mail, outbox
from engage.accounts import queries as account_queries
from engage.accounts.models import User
from engage.accounts.queries import Recipient
from engage.consent.models import ConsentFormVersion, ConsentReceipt, ErasureRequest
from engage.urls import external_url


def queue_consent_available(session: Session, user_id: int, version_id: int, now: datetime) -> bool:
    """Tell a participant who has not decided yet that they can now give consent (once ever)."""
    return (
        outbox.enqueue(
            session,
            kind="consent_available",
            dedup_key=consent_available_key(user_id),
            now=now,
            user_id=user_id,
            payload={"version_id": version_id},
        )
        is not None
    )


def consent_available_key(user_id: int) -> str:
    """The deduplication key of a participant's "you can now give consent" email."""
    return f"consent-available:{user_id}"


def queue_review_reminder(
    session: Session, user_id: int, version_id: int, number: int, now: datetime
) -> bool:
    """Remind a participant to review version ``version_id`` (``number``: 1st, 2nd, …)."""
    return (
        outbox.enqueue(
            session,
            kind="consent_review_reminder",
            dedup_key=f"consent-review:{version_id}:{user_id}:{number}",
            now=now,
            user_id=user_id,
            payload={"version_id": version_id, "number": number},
        )
        is not None
    )


def queue_paper_consent_recorded(
    session: Session, user: User, receipt: ConsentReceipt, now: datetime
) -> None:
    """Tell the participant staff recorded their paper form, with a link to the receipt."""
    session.flush()
    outbox.enqueue(
        session,
        kind="consent_paper_recorded",
        dedup_key=f"consent-paper:{receipt.id}",
        now=now,
        user_id=user.id,
        payload={"receipt_id": receipt.id},
        deliver_now=True,
    )


def queue_erasure_status(
    session: Session, user_id: int, request: ErasureRequest, now: datetime
) -> None:
    """Tell the participant where their erasure request stands (its status as staff set it)."""
    outbox.enqueue(
        session,
        kind="consent_erasure_status",
        dedup_key=f"consent-erasure:{request.id}:{request.status.value}:{now.isoformat()}",
        now=now,
        user_id=user_id,
        payload={"request_id": request.id, "status": request.status.value},
        deliver_now=True,
    )


# Renderers ---------------------------------------------------------------------------------
def _participant(session: Session, row: outbox.OutboxMessage) -> Recipient:
    user = account_queries.recipient(session, row.user_id) if row.user_id is not None else None
    if user is None:
        raise outbox.NotOwed("the account is gone, deactivated or unconfirmed")
    return user


def render_consent_available(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The consent form is ready to decide on."""
    user = _participant(session, row)
    version = session.get(ConsentFormVersion, row.payload["version_id"])
    if version is None:
        raise outbox.NotOwed("the form version no longer exists")
    return mail.render_message(
        "consent_available",
        to=user.email,
        subject="You can now give your consent",
        user=user,
        version=version,
        link=external_url("consent.dashboard"),
    )


def render_review_reminder(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The reminder to review a new version of the consent form."""
    user = _participant(session, row)
    version = session.get(ConsentFormVersion, row.payload["version_id"])
    if version is None:
        raise outbox.NotOwed("the form version no longer exists")
    return mail.render_message(
        "consent_review_reminder",
        to=user.email,
        subject="Please review the updated consent form",
        user=user,
        version=version,
        number=int(row.payload.get("number", 1)),
        link=external_url("consent.review"),
        dashboard_link=external_url("consent.dashboard"),
    )


def render_paper_consent_recorded(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """Staff recorded the participant's paper form."""
    user = _participant(session, row)
    return mail.render_message(
        "consent_paper_recorded",
        to=user.email,
        subject="Your paper consent form has been recorded",
        user=user,
        receipt_link=external_url("consent.receipt", receipt_id=row.payload["receipt_id"]),
        dashboard_link=external_url("consent.dashboard"),
    )


def render_erasure_status(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """Where the participant's erasure request stands (as it stood when staff changed it)."""
    from engage.consent.models import ErasureStatus

    user = account_queries.recipient(session, row.user_id) if row.user_id is not None else None
    request = session.get(ErasureRequest, row.payload["request_id"])
    if user is None or request is None:
        raise outbox.NotOwed("the account or the request no longer exists")
    message = mail.render_message(
        "consent_erasure_status",
        to=user.email,
        subject="Your request to erase your data",
        user=user,
        request=request,
        status=ErasureStatus(row.payload.get("status", request.status.value)),
        dashboard_link=external_url("consent.dashboard"),
    )
    return message


def register_kinds(kinds: outbox.MailKinds) -> None:
    """Register the consent emails' renderers."""
    kinds.register("consent_available", render_consent_available, "Consent form ready")
    kinds.register("consent_review_reminder", render_review_reminder, "Consent review reminder")
    kinds.register(
        "consent_paper_recorded", render_paper_consent_recorded, "Paper consent recorded"
    )
    kinds.register("consent_erasure_status", render_erasure_status, "Erasure request status")
