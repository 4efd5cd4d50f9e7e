"""Changing one's email address: the new address waits in ``users.pending_email`` until its
owner confirms it from a link sent there, giving the account's password.

Asking never says whether the new address already has an account (that address is told
instead); confirming checks again, because another account may have taken the address since.
Functions take the session, the person and ``now`` explicitly and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts import sessions as user_sessions
from engage.accounts.models import User
from engage.accounts.services import (
    AccountError,
    InvalidLink,
    WrongPassword,
    find_user_by_email,
    normalise_email,
)
from engage.audit import AuditAction
from engage.db import lock_rows, savepoint
from engage.security import fingerprint, verify_password

TOKEN_PURPOSE = "change-email"  # noqa: S105 - a signing purpose, not a secret


class AddressUnchanged(AccountError):
    """The new address is the account's address already."""


class AddressTaken(AccountError):
    """Another account took the new address before the change was confirmed."""


@dataclass
class ChangeAsked:
    """What asking for a new address did: the emails to send depend on ``address_in_use``,
    which the person asking is never told."""

    user: User
    old_address: str
    new_address: str
    address_in_use: bool


@dataclass
class AddressChanged:
    """A confirmed change: the account, and the address it had before (to tell it)."""

    user: User
    old_address: str


def change_payload(user: User) -> dict[str, object]:
    """What a confirmation link carries: the account and (a fingerprint of) the address it
    confirms, so a link to an address the person has since replaced or cancelled stops working.
    """
    return {"uid": user.id, "email": fingerprint(user.pending_email or "")}


def request_email_change(
    session: Session, user: User, new_email: str, now: datetime
) -> ChangeAsked:
    """Make ``new_email`` the account's pending address (replacing any earlier one).

    :raises AddressUnchanged: it is the account's address already.
    """
    address = normalise_email(new_email)
    if address == user.email:
        raise AddressUnchanged("That is already your email address.")
    user.pending_email = address
    audit.record(
        session,
        AuditAction.EMAIL_CHANGE_REQUESTED,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
    )
    return ChangeAsked(
        user=user,
        old_address=user.email,
        new_address=address,
        address_in_use=find_user_by_email(session, address) is not None,
    )


def cancel_email_change(session: Session, user: User, now: datetime) -> bool:
    """Forget the pending address (its link stops working); False when there was none."""
    if user.pending_email is None:
        return False
    user.pending_email = None
    audit.record(
        session,
        AuditAction.EMAIL_CHANGE_CANCELLED,
        now=now,
        actor_id=user.id,
        subject_user_id=user.id,
    )
    return True


def user_for_change(session: Session, payload: dict[str, object]) -> User:
    """The account a confirmation link is for, or ``InvalidLink`` when the change it names was
    confirmed, cancelled or replaced by a newer one. Changes nothing."""
    uid = payload.get("uid")
    user = session.get(User, uid) if isinstance(uid, int) else None
    if (
        user is None
        or not user.is_active
        or user.pending_email is None
        or payload.get("email") != fingerprint(user.pending_email)
    ):
        raise InvalidLink(
            "This link no longer works: the change it confirms was already made, cancelled, "
            "or replaced by a newer one."
        )
    return user


def confirm_email_change(
    session: Session,
    payload: dict[str, object],
    password: str,
    now: datetime,
    *,
    keep_session_id: int | None = None,
) -> AddressChanged:
    """Make the pending address in a confirmation link the account's address, given the
    account's password (so a stranger who receives a mistyped address's link cannot take it).

    The address counts as confirmed from now, and every other session of the account ends.
    The account's row is locked first, so two confirmations at once make one change.

    :param keep_session_id: the session the link was opened in, when it is this account's; it
        stays signed in.

    :raises InvalidLink: the link no longer names the pending address.
    :raises WrongPassword: the password is not the account's (nothing changes).
    :raises AddressTaken: another account uses the address now (nothing changes).
    """
    user = user_for_change(session, payload)
    lock_rows(session, User, [user.id])
    session.refresh(user)
    user = user_for_change(session, payload)
    if not verify_password(user.password_hash, password):
        raise WrongPassword("That is not your password. Enter the password of your account.")
    new_address = user.pending_email or ""
    taken = AddressTaken(
        "Another account uses this address now, so your address was not changed. "
        "You can ask for a different address on your account page."
    )
    if find_user_by_email(session, new_address) is not None:
        raise taken
    old_address = user.email
    user.email = new_address
    user.pending_email = None
    user.email_verified_at = now
    try:
        # The unique address decides between two accounts confirming the same one at once.
        with savepoint(session):
            session.flush()
    except IntegrityError:
        raise taken from None
    user_sessions.end_all(
        session,
        user.id,
        now,
        user_sessions.EndReason.EMAIL_CHANGED,
        keep_id=keep_session_id,
    )
    audit.record(
        session, AuditAction.EMAIL_CHANGED, now=now, actor_id=user.id, subject_user_id=user.id
    )
    return AddressChanged(user=user, old_address=old_address)
