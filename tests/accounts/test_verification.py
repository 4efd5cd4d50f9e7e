"""Confirming a new account's address: opening the link changes nothing, the account's password
confirms it, and someone who signs up with another person's address can neither have it
confirmed for them nor keep the owner out (finding 14)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from engage.accounts.models import RecoveryCode, User, UserSession
from engage.accounts.services import verification_payload
from engage.app import create_app
from engage.audit import AuditEvent
from engage.db import Database
from engage.security import make_token
from tests.conftest import post_form

BASE = "http://engage.test"
SIGN_UP = {
    "role": "participant",
    "display_name": "Sam",
    "country": "SE",
    "language": "sv",
}
OWNER = "owner@example.org"
OWNERS_PASSWORD = "the owner's own passphrase"
ATTACKERS_PASSWORD = "an attacker's chosen passphrase"


def _sign_up(client, email: str, password: str, **fields: str):
    return post_form(
        client,
        "/sign-up",
        {**SIGN_UP, "email": email, "password": password, "password_confirm": password, **fields},
    )


def _user(session, email: str) -> User:
    session.expire_all()
    return session.scalar(sa.select(User).where(User.email == email))


def _actions(session, user_id: int) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(
            sa.select(AuditEvent.action)
            .where(AuditEvent.subject_user_id == user_id)
            .order_by(AuditEvent.id)
        )
    )


def _path(link: str) -> str:
    return link.removeprefix(BASE)


def _signed_in(client) -> bool:
    return client.get("/account").status_code == 200


def test_opening_the_link_changes_nothing_and_asks_for_the_password(client, session, mailbox):
    _sign_up(client, OWNER, OWNERS_PASSWORD)
    path = _path(mailbox.last_to(OWNER).link("/verify-email/"))
    for _ in range(2):  # a mail scanner, then the person
        page = client.get(path)
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        assert "<h1>Confirm your email address</h1>" in html
        assert 'type="password"' in html and 'name="password"' in html
        assert "Didn't sign up, or don't know this password?" in html
        assert 'href="/reset-password"' in html
    user = _user(session, OWNER)
    assert user.email_verified_at is None
    assert "email_verified" not in _actions(session, user.id)


def test_confirming_needs_the_accounts_password(app, client, session, mailbox):
    _sign_up(client, OWNER, OWNERS_PASSWORD)
    path = _path(mailbox.last_to(OWNER).link("/verify-email/"))
    browser = app.test_client()  # the person opens the link elsewhere, not signed in

    empty = post_form(browser, path, {})
    assert empty.status_code == 400
    assert "Enter the password of the account." in empty.get_data(as_text=True)
    wrong = post_form(browser, path, {"password": ATTACKERS_PASSWORD})
    assert wrong.status_code == 400
    assert "That is not this account&#39;s password." in wrong.get_data(as_text=True)
    assert _user(session, OWNER).email_verified_at is None
    assert not _signed_in(browser)

    right = post_form(browser, path, {"password": OWNERS_PASSWORD})
    assert right.status_code == 302 and right.headers["Location"] == "/"
    user = _user(session, OWNER)
    assert user.email_verified_at is not None
    home = browser.get("/").get_data(as_text=True)
    assert "Thank you: your email address is confirmed." in home
    assert "Welcome, Sam." in home
    assert _signed_in(browser)
    assert _actions(session, user.id) == ["sign_up", "email_verified", "sign_in"]
    # Used once: the link then explains that the address is confirmed.
    again = browser.get(path)
    assert again.status_code == 400
    assert "This link has already been used" in again.get_data(as_text=True)


def test_wrong_passwords_on_the_confirmation_page_are_rate_limited(
    database_url, session, make_user
):
    user = make_user(email="limited@example.org", password=OWNERS_PASSWORD, email_verified=False)
    limited = create_app(
        {
            "ENGAGE_CONFIG": "testing",
            "DATABASE_URL": database_url,
            "RATELIMIT_ENABLED": True,
            "RESET_RATE_LIMIT": "3 per minute",
        }
    )
    client = limited.test_client()
    try:
        with limited.app_context():
            path = "/verify-email/" + make_token("verify-email", verification_payload(user))
        statuses = [
            post_form(client, path, {"password": "not the password at all"}).status_code
            for _ in range(4)
        ]
        page = client.get(path).status_code  # opening the page is not counted
        right_but_too_many = post_form(client, path, {"password": OWNERS_PASSWORD}).status_code
    finally:
        Database.engine(limited).dispose()
    assert statuses == [400, 400, 400, 429]
    assert page == 200
    assert right_but_too_many == 429
    assert _user(session, "limited@example.org").email_verified_at is None


def test_someone_who_signs_up_with_anothers_address_cannot_keep_it(app, session, mailbox):
    attacker = app.test_client()
    owner = app.test_client()

    # The attacker signs up with the owner's address, choosing the password, and signs in.
    assert _sign_up(attacker, OWNER, ATTACKERS_PASSWORD).status_code == 302
    signed_in = post_form(attacker, "/sign-in", {"email": OWNER, "password": ATTACKERS_PASSWORD})
    assert signed_in.status_code == 302
    assert _signed_in(attacker)
    account = _user(session, OWNER)
    verification = _path(mailbox.last_to(OWNER).link("/verify-email/"))

    # The owner (or their mail scanner) opens the verification link: nothing is confirmed.
    assert owner.get(verification).status_code == 200
    assert _user(session, OWNER).email_verified_at is None

    # The owner signs up themselves: the same answer as any sign-up, and the email they get is
    # a link to set their own password, not the verification link.
    mails_before = len(mailbox.to(OWNER))
    answer = _sign_up(owner, OWNER, OWNERS_PASSWORD)
    assert answer.status_code == 302
    assert answer.headers["Location"].endswith("/sign-up/check-email")
    assert len(mailbox.to(OWNER)) == mails_before + 1
    message = mailbox.last_to(OWNER)
    assert message.subject == "Finish joining Engage: set your password"
    assert "/verify-email/" not in message.text
    assert "Sam" not in message.text  # the name the attacker chose is not echoed
    reset = _path(message.link("/reset-password/"))

    response = post_form(
        owner, reset, {"password": OWNERS_PASSWORD, "password_confirm": OWNERS_PASSWORD}
    )
    assert response.status_code == 302

    # The owner has the account: confirmed, their password; the attacker's password no longer
    # works and the attacker's session is over.
    user = _user(session, OWNER)
    assert user.id == account.id
    assert user.email_verified_at is not None
    assert not _signed_in(attacker)
    live = session.scalars(
        sa.select(UserSession).where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
    ).all()
    assert live == []
    refused = post_form(
        app.test_client(), "/sign-in", {"email": OWNER, "password": ATTACKERS_PASSWORD}
    )
    assert refused.status_code == 400
    assert (
        post_form(owner, "/sign-in", {"email": OWNER, "password": OWNERS_PASSWORD}).status_code
        == 302
    )
    assert _signed_in(owner)
    # The old verification link is spent.
    assert owner.get(verification).status_code == 400


def test_the_owner_can_also_take_over_from_the_verification_page(app, session, mailbox):
    """The page's "Set a new password" leads to the reset flow, which proves the address."""
    attacker, owner = app.test_client(), app.test_client()
    _sign_up(attacker, OWNER, ATTACKERS_PASSWORD)
    verification = _path(mailbox.last_to(OWNER).link("/verify-email/"))
    assert "/reset-password" in owner.get(verification).get_data(as_text=True)
    assert post_form(owner, "/reset-password", {"email": OWNER}).status_code == 200
    reset = _path(mailbox.last_to(OWNER).link("/reset-password/"))
    post_form(owner, reset, {"password": OWNERS_PASSWORD, "password_confirm": OWNERS_PASSWORD})
    user = _user(session, OWNER)
    assert user.email_verified_at is not None
    assert "password_reset" in _actions(session, user.id)
    assert (
        post_form(owner, "/sign-in", {"email": OWNER, "password": OWNERS_PASSWORD}).status_code
        == 302
    )


def test_a_repeat_with_the_same_password_is_the_same_person(app, client, session, mailbox):
    _sign_up(client, OWNER, OWNERS_PASSWORD)
    assert len(mailbox.to(OWNER)) == 1
    # A double click or a reload: the first link is on its way, nothing more is sent.
    _sign_up(client, OWNER, OWNERS_PASSWORD)
    assert len(mailbox.to(OWNER)) == 1
    # Later (the first email got lost): the verification link again, not a reset link.
    user = _user(session, OWNER)
    user.created_at = user.created_at - timedelta(minutes=20)
    session.commit()
    _sign_up(client, OWNER, OWNERS_PASSWORD)
    messages = mailbox.to(OWNER)
    assert len(messages) == 2
    assert messages[-1].subject == "Confirm your email address for Engage"
    assert "/verify-email/" in messages[-1].text


def test_repeats_with_another_password_send_one_reset_link_an_hour(client, session, mailbox):
    _sign_up(client, OWNER, ATTACKERS_PASSWORD)
    for _ in range(3):
        assert _sign_up(client, OWNER, OWNERS_PASSWORD).status_code == 302
    subjects = [m.subject for m in mailbox.to(OWNER)]
    assert subjects == [
        "Confirm your email address for Engage",
        "Finish joining Engage: set your password",
    ]
    assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 1


def test_what_the_first_holder_set_up_does_not_bind_the_owner(app, session, mailbox):
    """An authenticator, recovery codes or a new address the person who signed up with
    someone else's address set up go when the owner takes the account over."""
    attacker, owner = app.test_client(), app.test_client()
    _sign_up(attacker, OWNER, ATTACKERS_PASSWORD)
    account = _user(session, OWNER)
    account.totp_secret = "JBSWY3DPEHPK3PXP"
    account.totp_enabled_at = account.created_at
    account.pending_email = "attacker@example.org"
    session.add(RecoveryCode(user_id=account.id, code_hash="0" * 64, created_at=account.created_at))
    session.commit()

    _sign_up(owner, OWNER, OWNERS_PASSWORD)
    reset = _path(mailbox.last_to(OWNER).link("/reset-password/"))
    post_form(owner, reset, {"password": OWNERS_PASSWORD, "password_confirm": OWNERS_PASSWORD})

    user = _user(session, OWNER)
    assert (user.totp_secret, user.totp_enabled_at, user.pending_email) == (None, None, None)
    codes = session.scalar(
        sa.select(sa.func.count()).select_from(RecoveryCode).where(RecoveryCode.user_id == user.id)
    )
    assert codes == 0
    signed_in = post_form(owner, "/sign-in", {"email": OWNER, "password": OWNERS_PASSWORD})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/"
