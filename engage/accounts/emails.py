"""Account emails: verification, sign-up attempts on an existing address, password reset and
change, custodian decisions.

Each is queued in the mail outbox inside the caller's transaction (``queue_*``) and rendered at
delivery time by the renderers registered in :func:`register_kinds`. Emails a person waits for
(links) are sent as soon as the request commits; if the provider is down they stay queued and
the request still succeeds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy.orm import Session

from engage import mail, outbox
from engage.accounts.models import CustodianStatus, User
from engage.accounts.services import reset_payload, verification_payload
from engage.security import make_token
from engage.urls import external_url

# A repeated sign-up with an address gets at most one email per window.
SIGN_UP_REPEAT_WINDOW = timedelta(minutes=15)
EXISTING_ACCOUNT_WINDOW = timedelta(hours=1)


def _window(now: datetime, width: timedelta) -> int:
    return int(now.timestamp() // width.total_seconds())


def queue_verification(session: Session, user: User, now: datetime, *, reason: str) -> bool:
    """Queue the link that confirms ``user``'s address (at most one per window and reason).

    :param reason: why it is sent ("sign-up", "resend"), part of the deduplication key.
    """
    key = f"verify-email:{user.id}:{reason}:{_window(now, SIGN_UP_REPEAT_WINDOW)}"
    return (
        outbox.enqueue(
            session, kind="verify_email", dedup_key=key, now=now, user_id=user.id, deliver_now=True
        )
        is not None
    )


def queue_sign_up_repeat(session: Session, user: User, now: datetime) -> None:
    """Someone signed up with an address that has an account.

    A repeat within minutes of the account's creation is the same person (a double-click, a
    reload): the confirmation is on its way, so nothing more is sent. An unconfirmed account
    gets its link again; a confirmed one is warned, at most once an hour.
    """
    if user.email_verified_at is None:
        if now - user.created_at < SIGN_UP_REPEAT_WINDOW:
            return
        queue_verification(session, user, now, reason="sign-up-again")
        return
    outbox.enqueue(
        session,
        kind="existing_account",
        dedup_key=f"existing-account:{user.id}:{_window(now, EXISTING_ACCOUNT_WINDOW)}",
        now=now,
        user_id=user.id,
        deliver_now=True,
    )


def queue_password_reset(session: Session, user: User, now: datetime) -> None:
    """Queue a single-use, expiring password-reset link."""
    outbox.enqueue(
        session,
        kind="reset_password",
        dedup_key=f"reset-password:{user.id}:{now.isoformat()}",
        now=now,
        user_id=user.id,
        deliver_now=True,
    )


def queue_password_changed(session: Session, user: User, now: datetime) -> None:
    """Tell ``user`` their password changed (so they notice if it wasn't them)."""
    outbox.enqueue(
        session,
        kind="password_changed",
        dedup_key=f"password-changed:{user.id}:{user.session_version}",
        now=now,
        user_id=user.id,
        deliver_now=True,
    )


def queue_custodian_decision(
    session: Session, user: User, now: datetime, *, approved: bool, reason: str | None
) -> None:
    """Tell a custodian whether staff approved their request (and why not, if declined)."""
    outbox.enqueue(
        session,
        kind="custodian_decision",
        dedup_key=f"custodian-decision:{user.id}:{now.isoformat()}",
        now=now,
        user_id=user.id,
        payload={"approved": approved, "reason": reason},
        deliver_now=True,
    )


# Renderers (at delivery time) ----------------------------------------------------------------
def _recipient(session: Session, row: outbox.OutboxMessage, *, active_only: bool = True) -> User:
    user = session.get(User, row.user_id) if row.user_id is not None else None
    if user is None:
        raise outbox.NotOwed("the account no longer exists")
    if active_only and not user.is_active:
        raise outbox.NotOwed("the account is deactivated")
    return user


def render_verification(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The verification link (nothing is sent once the address is confirmed)."""
    user = _recipient(session, row)
    if user.email_verified_at is not None:
        raise outbox.NotOwed("the address is already confirmed")
    token = make_token("verify-email", verification_payload(user))
    return mail.render_message(
        "verify_email",
        to=user.email,
        subject="Confirm your email address for Engage",
        user=user,
        link=external_url("auth.verify_email", token=token),
        hours=current_app.config["EMAIL_VERIFICATION_MAX_AGE"] // 3600,
    )


def render_existing_account(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The notice that someone tried to sign up with the address again."""
    user = _recipient(session, row)
    return mail.render_message(
        "existing_account",
        to=user.email,
        subject="Someone tried to join Engage with your address",
        user=user,
        sign_in_link=external_url("auth.sign_in"),
        reset_link=external_url("auth.request_reset"),
    )


def render_password_reset(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The password-reset link (it stops working once the password changes)."""
    user = _recipient(session, row)
    token = make_token("reset-password", reset_payload(user))
    return mail.render_message(
        "reset_password",
        to=user.email,
        subject="Reset your Engage password",
        user=user,
        link=external_url("auth.reset_password", token=token),
        minutes=current_app.config["PASSWORD_RESET_MAX_AGE"] // 60,
    )


def render_password_changed(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The notice that the password changed."""
    user = _recipient(session, row)
    return mail.render_message(
        "password_changed",
        to=user.email,
        subject="Your Engage password was changed",
        user=user,
        reset_link=external_url("auth.request_reset"),
    )


def render_custodian_decision(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """Staff's decision on a custodian request, as it was when they made it."""
    user = _recipient(session, row, active_only=False)
    approved = bool(row.payload.get("approved"))
    return mail.render_message(
        "custodian_decision",
        to=user.email,
        subject="Your data custodian request",
        user=user,
        approved=approved and user.custodian_status == CustodianStatus.APPROVED,
        reason=row.payload.get("reason"),
    )


def register_kinds(kinds: outbox.MailKinds) -> None:
    """Register the account emails' renderers (called by the composition root)."""
    kinds.register("verify_email", render_verification, "Email address confirmation")
    kinds.register("existing_account", render_existing_account, "Sign-up with an existing address")
    kinds.register("reset_password", render_password_reset, "Password reset link")
    kinds.register("password_changed", render_password_changed, "Password changed notice")
    kinds.register("custodian_decision", render_custodian_decision, "Custodian request decision")
