"""Account emails: verification, sign-up attempts on an existing address, password reset."""

from __future__ import annotations

from flask import current_app

from engage import mail
from engage.accounts.models import User
from engage.accounts.services import reset_payload, verification_payload
from engage.security import make_token
from engage.urls import external_url


def send_verification(user: User) -> None:
    """Email ``user`` a signed, expiring link that confirms their address."""
    token = make_token("verify-email", verification_payload(user))
    hours = current_app.config["EMAIL_VERIFICATION_MAX_AGE"] // 3600
    mail.send_template(
        "verify_email",
        to=user.email,
        subject="Confirm your email address for Engage",
        user=user,
        link=external_url("auth.verify_email", token=token),
        hours=hours,
    )


def send_existing_account_notice(user: User) -> None:
    """Tell the owner of an address that someone tried to sign up with it again."""
    mail.send_template(
        "existing_account",
        to=user.email,
        subject="Someone tried to join Engage with your address",
        user=user,
        sign_in_link=external_url("auth.sign_in"),
        reset_link=external_url("auth.request_reset"),
    )


def send_password_reset(user: User) -> None:
    """Email ``user`` a single-use, expiring password-reset link."""
    token = make_token("reset-password", reset_payload(user))
    minutes = current_app.config["PASSWORD_RESET_MAX_AGE"] // 60
    mail.send_template(
        "reset_password",
        to=user.email,
        subject="Reset your Engage password",
        user=user,
        link=external_url("auth.reset_password", token=token),
        minutes=minutes,
    )


def send_password_changed(user: User) -> None:
    """Tell ``user`` their password changed (so they notice if it wasn't them)."""
    mail.send_template(
        "password_changed",
        to=user.email,
        subject="Your Engage password was changed",
        user=user,
        reset_link=external_url("auth.request_reset"),
    )


def send_custodian_decision(user: User, reason: str | None = None) -> None:
    """Tell a custodian whether staff approved their request (and why not, if declined)."""
    mail.send_template(
        "custodian_decision",
        to=user.email,
        subject="Your data custodian request",
        user=user,
        reason=reason,
    )
