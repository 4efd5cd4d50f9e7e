"""Account emails: verification, sign-up attempts on an existing address, password reset and
change, a change of address, custodian decisions.

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
from engage.accounts import email_change
from engage.accounts.models import CustodianStatus, User
from engage.accounts.services import reset_payload, verification_payload
from engage.security import fingerprint, make_token
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


def queue_sign_up_repeat(
    session: Session, user: User, now: datetime, *, same_password: bool = False
) -> None:
    """Someone signed up with an address that has an account.

    For an unconfirmed account, a repeat with the account's own password is the same person (a
    double-click, a reload, a lost email): within minutes of the sign-up the confirmation is on
    its way, so nothing more is sent; later, the link is sent again. A repeat with another
    password may be the address's owner finding that someone else signed up with it: the
    address gets a link to set a new password (which confirms the address and makes the
    account theirs), at most once an hour. A confirmed account is warned, at most once an hour.

    :param same_password: whether the password typed was the account's.
    """
    if user.email_verified_at is None:
        if same_password:
            if now - user.created_at >= SIGN_UP_REPEAT_WINDOW:
                queue_verification(session, user, now, reason="sign-up-again")
            return
        outbox.enqueue(
            session,
            kind="unconfirmed_account",
            dedup_key=f"unconfirmed-account:{user.id}:{_window(now, EXISTING_ACCOUNT_WINDOW)}",
            now=now,
            user_id=user.id,
            deliver_now=True,
        )
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


def queue_email_change(session: Session, asked: email_change.ChangeAsked, now: datetime) -> None:
    """Queue the emails of a requested change of address.

    The new address gets the confirmation link, or, when an account already uses it, a notice
    saying so (the person asking is never told which). The old address is told about the
    request, so its owner notices a change they did not ask for.
    """
    user = asked.user
    new_fingerprint = fingerprint(asked.new_address)
    window = _window(now, SIGN_UP_REPEAT_WINDOW)
    outbox.enqueue(
        session,
        kind="email_change_in_use" if asked.address_in_use else "email_change_confirm",
        dedup_key=f"email-change:{user.id}:{new_fingerprint[:16]}:{window}",
        now=now,
        user_id=user.id,
        payload={"email": new_fingerprint},
        deliver_now=True,
    )
    outbox.enqueue(
        session,
        kind="email_change_requested",
        dedup_key=f"email-change-requested:{user.id}:{new_fingerprint[:16]}:{window}",
        now=now,
        to_address=asked.old_address,
        payload={"uid": user.id},
        deliver_now=True,
    )


def queue_email_changed(
    session: Session, changed: email_change.AddressChanged, now: datetime
) -> None:
    """Tell the old address that the account's address changed (it no longer gets our mail)."""
    outbox.enqueue(
        session,
        kind="email_changed",
        dedup_key=f"email-changed:{changed.user.id}:{now.isoformat()}",
        now=now,
        to_address=changed.old_address,
        payload={"uid": changed.user.id},
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


# Two-step sign-in notices, so the owner notices a change that was not theirs: kind → (subject,
# what staff read in the outbox).
TWO_FACTOR_NOTICES = {
    "two_factor_enabled": (
        "Two-step sign-in is now on for your Engage account",
        "Two-step sign-in turned on",
    ),
    "two_factor_disabled": (
        "Two-step sign-in is now off for your Engage account",
        "Two-step sign-in turned off",
    ),
    "recovery_code_used": (
        "A recovery code was used to sign in to Engage",
        "Recovery code used to sign in",
    ),
}


def queue_two_factor_notice(
    session: Session, user: User, now: datetime, *, kind: str, remaining: int | None = None
) -> None:
    """Tell ``user`` that two-step sign-in was turned on or off, or a recovery code used.

    :param kind: one of ``TWO_FACTOR_NOTICES``.
    :param remaining: for a used recovery code, how many unused ones are left.
    """
    if kind not in TWO_FACTOR_NOTICES:
        raise ValueError(f"unknown two-step sign-in notice {kind!r}")
    outbox.enqueue(
        session,
        kind=kind,
        dedup_key=f"{kind}:{user.id}:{now.isoformat()}",
        now=now,
        user_id=user.id,
        payload={} if remaining is None else {"remaining": remaining},
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


def render_unconfirmed_account(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """A link to set a new password, for an unconfirmed account's address after a sign-up
    with another password (nothing is sent once the address is confirmed)."""
    user = _recipient(session, row)
    if user.email_verified_at is not None:
        raise outbox.NotOwed("the address is already confirmed")
    token = make_token("reset-password", reset_payload(user))
    return mail.render_message(
        "unconfirmed_account",
        to=user.email,
        subject="Finish joining Engage: set your password",
        link=external_url("auth.reset_password", token=token),
        minutes=current_app.config["PASSWORD_RESET_MAX_AGE"] // 60,
        days=current_app.config["UNVERIFIED_ACCOUNT_RETENTION_DAYS"],
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


def _pending_recipient(session: Session, row: outbox.OutboxMessage) -> User:
    """The account whose pending address the row was queued for (nothing is sent once that
    change was confirmed, cancelled or replaced)."""
    user = _recipient(session, row)
    if user.pending_email is None or fingerprint(user.pending_email) != row.payload.get("email"):
        raise outbox.NotOwed("the change of address was confirmed, cancelled or replaced")
    return user


def render_email_change_confirm(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The link that confirms a new address, sent to that address."""
    user = _pending_recipient(session, row)
    token = make_token(email_change.TOKEN_PURPOSE, email_change.change_payload(user))
    return mail.render_message(
        "email_change_confirm",
        to=user.pending_email or "",
        subject="Confirm your new email address for Engage",
        link=external_url("auth.confirm_email_change", token=token),
        hours=current_app.config["EMAIL_CHANGE_MAX_AGE"] // 3600,
    )


def render_email_change_in_use(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The notice to a new address that already has an account (instead of a link)."""
    user = _pending_recipient(session, row)
    return mail.render_message(
        "email_change_in_use",
        to=user.pending_email or "",
        subject="Someone asked to use your address on Engage",
        sign_in_link=external_url("auth.sign_in"),
        reset_link=external_url("auth.request_reset"),
    )


def _old_address_owner(session: Session, row: outbox.OutboxMessage) -> User:
    uid = row.payload.get("uid")
    user = session.get(User, uid) if isinstance(uid, int) else None
    if user is None or row.to_address is None:
        raise outbox.NotOwed("the account no longer exists")
    return user


def render_email_change_requested(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The notice to the old address that a new one was asked for."""
    user = _old_address_owner(session, row)
    return mail.render_message(
        "email_change_requested",
        to=row.to_address or "",
        subject="A new email address was asked for on your Engage account",
        user=user,
        account_link=external_url("account.profile"),
        reset_link=external_url("auth.request_reset"),
    )


def render_email_changed(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The notice to the old address that the account's address changed."""
    user = _old_address_owner(session, row)
    return mail.render_message(
        "email_changed",
        to=row.to_address or "",
        subject="The email address of your Engage account was changed",
        user=user,
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


def render_two_factor_notice(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """A two-step sign-in notice (the row's kind names which)."""
    user = _recipient(session, row)
    subject, _label = TWO_FACTOR_NOTICES[row.kind]
    return mail.render_message(
        row.kind,
        to=user.email,
        subject=subject,
        user=user,
        remaining=row.payload.get("remaining"),
        settings_link=external_url("account.two_factor_settings"),
        reset_link=external_url("auth.request_reset"),
    )


def register_kinds(kinds: outbox.MailKinds) -> None:
    """Register the account emails' renderers (called by the composition root)."""
    kinds.register("verify_email", render_verification, "Email address confirmation")
    kinds.register("existing_account", render_existing_account, "Sign-up with an existing address")
    kinds.register(
        "unconfirmed_account", render_unconfirmed_account, "Sign-up with an unconfirmed address"
    )
    kinds.register(
        "email_change_confirm", render_email_change_confirm, "New email address confirmation"
    )
    kinds.register(
        "email_change_in_use", render_email_change_in_use, "New email address already in use"
    )
    kinds.register(
        "email_change_requested", render_email_change_requested, "Email change asked (old address)"
    )
    kinds.register("email_changed", render_email_changed, "Email address changed (old address)")
    kinds.register("reset_password", render_password_reset, "Password reset link")
    kinds.register("password_changed", render_password_changed, "Password changed notice")
    kinds.register("custodian_decision", render_custodian_decision, "Custodian request decision")
    for kind, (_subject, label) in TWO_FACTOR_NOTICES.items():
        kinds.register(kind, render_two_factor_notice, label)
