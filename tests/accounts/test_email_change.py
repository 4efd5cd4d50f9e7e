"""Changing one's email address: a pending address, a link to it confirmed with the password, a
notice to the old one; never a hint at request time that the new address has an account."""

from __future__ import annotations

import threading
import time
from contextlib import suppress

import pytest
import sqlalchemy as sa

from engage.accounts import email_change
from engage.accounts.models import Role, User
from engage.accounts.signin import AUTHENTICATED_AT
from engage.audit import AuditEvent
from engage.db import Database
from engage.timeutil import utcnow
from tests.conftest import PASSWORD, post_form, sign_in

BASE = "http://engage.test"
NEW = "sam.new@example.org"
CONFIRM_SUBJECT = "Confirm your new email address for Engage"
ASKED_SUBJECT = "A new email address was asked for on your Engage account"
CHANGED_SUBJECT = "The email address of your Engage account was changed"
IN_USE_SUBJECT = "Someone asked to use your address on Engage"


def _fresh(session, user_id: int) -> User:
    session.expire_all()
    return session.get(User, user_id)


def _actions(session, user_id: int) -> list[str]:
    session.expire_all()
    return list(
        session.scalars(
            sa.select(AuditEvent.action)
            .where(AuditEvent.subject_user_id == user_id)
            .order_by(AuditEvent.id)
        )
    )


def _ask(client, address: str):
    return post_form(client, "/account/email", {"email": address})


def _flash_after(client, response) -> str:
    return client.get(response.headers["Location"]).get_data(as_text=True)


def _confirm_link(mailbox, address: str = NEW) -> str:
    return mailbox.last_to(address).link("/confirm-new-email/").removeprefix(BASE)


def test_the_whole_change(app, client, session, mailbox, as_role):
    user = as_role(Role.PARTICIPANT)
    old = user.email
    elsewhere = app.test_client()
    sign_in(elsewhere, user)

    page = client.get("/account/email")
    assert page.status_code == 200
    assert "<h1>Change my email address</h1>" in page.get_data(as_text=True)
    response = _ask(client, "  Sam.New@Example.org ")
    assert response.status_code == 302 and response.headers["Location"] == "/account"
    profile = _flash_after(client, response)
    assert f"We sent a link to {NEW}." in profile
    assert f"until then your address stays {old}" in profile
    assert f"Waiting for you to confirm your new address {NEW}" in profile
    assert "Cancel this change" in profile
    row = _fresh(session, user.id)
    assert (row.email, row.pending_email) == (old, NEW)
    assert mailbox.last_to(NEW).subject == CONFIRM_SUBJECT
    notice = mailbox.last_to(old)
    assert notice.subject == ASKED_SUBJECT
    assert "/confirm-new-email/" not in notice.text and NEW not in notice.text

    path = _confirm_link(mailbox)
    opened = client.get(path)
    assert opened.status_code == 200
    assert f"To make {NEW} the address of your Engage account" in opened.get_data(as_text=True)
    assert _fresh(session, user.id).email == old  # opening the link changes nothing
    wrong = post_form(client, path, {"password": "not my password at all"})
    assert wrong.status_code == 400
    assert "That is not your password." in wrong.get_data(as_text=True)
    assert _fresh(session, user.id).email == old

    confirmed = post_form(client, path, {"password": PASSWORD})
    assert confirmed.status_code == 302 and confirmed.headers["Location"] == "/account"
    assert f"Your email address is now {NEW}." in _flash_after(client, confirmed)
    row = _fresh(session, user.id)
    assert (row.email, row.pending_email) == (NEW, None)
    assert row.email_verified_at is not None
    assert mailbox.last_to(old).subject == CHANGED_SUBJECT
    actions = _actions(session, user.id)
    assert actions.index("email_change_requested") < actions.index("email_changed")
    # This browser stays signed in; the other device is signed out.
    assert client.get("/account").status_code == 200
    assert elsewhere.get("/account").status_code == 302
    # The new address signs in; the old one no longer does. The link is spent.
    assert (
        post_form(app.test_client(), "/sign-in", {"email": old, "password": PASSWORD}).status_code
        == 400
    )
    sign_in(app.test_client(), row)
    assert client.get(path).status_code == 400


def test_the_new_addresss_owner_confirms_from_another_device(
    app, client, session, mailbox, as_role
):
    user = as_role(Role.ORGANISATION)
    _ask(client, NEW)
    phone = app.test_client()  # not signed in
    path = _confirm_link(mailbox)
    assert post_form(phone, path, {}).status_code == 400
    response = post_form(phone, path, {"password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/sign-in"
    assert f"Your email address is now {NEW}. Use it to sign in." in _flash_after(phone, response)
    assert _fresh(session, user.id).email == NEW


def test_asking_never_says_whether_the_address_has_an_account(
    client, session, mailbox, as_role, make_user
):
    make_user(Role.CLINICIAN, email="taken@example.org")
    user = as_role(Role.PARTICIPANT)
    free = _ask(client, "free@example.org")
    free_page = _flash_after(client, free)
    taken = _ask(client, "taken@example.org")
    taken_page = _flash_after(client, taken)
    assert (free.status_code, free.headers["Location"]) == (
        taken.status_code,
        taken.headers["Location"],
    )
    assert "We sent a link to taken@example.org." in taken_page
    assert "We sent a link to free@example.org." in free_page
    # The address with an account is told instead, with no link that could change anything.
    message = mailbox.last_to("taken@example.org")
    assert message.subject == IN_USE_SUBJECT
    assert "/confirm-new-email/" not in message.text
    assert _fresh(session, user.id).pending_email == "taken@example.org"


def test_an_address_taken_meanwhile_is_refused_with_a_clear_message(
    client, session, mailbox, as_role, make_user
):
    user = as_role(Role.PARTICIPANT)
    _ask(client, NEW)
    path = _confirm_link(mailbox)
    make_user(Role.PARTICIPANT, email=NEW)  # someone else joins with it first
    response = post_form(client, path, {"password": PASSWORD})
    assert response.status_code == 400
    assert "Another account uses this address now" in response.get_data(as_text=True)
    row = _fresh(session, user.id)
    assert row.email != NEW and row.pending_email == NEW
    assert "email_changed" not in _actions(session, user.id)


def test_an_expired_link_changes_nothing(app, client, session, mailbox, as_role):
    user = as_role(Role.PARTICIPANT)
    _ask(client, NEW)
    path = _confirm_link(mailbox)
    app.config["EMAIL_CHANGE_MAX_AGE"] = -1
    for response in (client.get(path), post_form(client, path, {"password": PASSWORD})):
        assert response.status_code == 400
        assert "This link has expired." in response.get_data(as_text=True)
    assert _fresh(session, user.id).email == user.email


def test_cancelling_makes_the_link_stop_working(client, session, mailbox, as_role):
    user = as_role(Role.PARTICIPANT)
    _ask(client, NEW)
    path = _confirm_link(mailbox)
    response = post_form(client, "/account/email/cancel")
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    page = _flash_after(client, response)
    assert "The change of your email address is cancelled." in page
    assert "Cancel this change" not in page
    assert _fresh(session, user.id).pending_email is None
    refused = post_form(client, path, {"password": PASSWORD})
    assert refused.status_code == 400
    assert "This link no longer works" in refused.get_data(as_text=True)
    assert _fresh(session, user.id).email == user.email
    assert "email_change_cancelled" in _actions(session, user.id)
    # Cancelling with nothing pending changes nothing.
    again = post_form(client, "/account/email/cancel")
    assert "There was no change of email address waiting." in _flash_after(client, again)


def test_a_newer_request_replaces_the_older_link(client, session, mailbox, as_role):
    user = as_role(Role.PARTICIPANT)
    _ask(client, "first@example.org")
    first = _confirm_link(mailbox, "first@example.org")
    _ask(client, NEW)
    second = _confirm_link(mailbox, NEW)
    assert post_form(client, first, {"password": PASSWORD}).status_code == 400
    assert post_form(client, second, {"password": PASSWORD}).status_code == 302
    assert _fresh(session, user.id).email == NEW


def test_the_current_address_is_not_a_change(client, session, mailbox, as_role):
    user = as_role(Role.PARTICIPANT)
    sent = len(mailbox.messages)
    response = _ask(client, user.email.upper())
    assert response.status_code == 400
    assert "That is already your email address." in response.get_data(as_text=True)
    assert _fresh(session, user.id).pending_email is None
    assert len(mailbox.messages) == sent


def test_a_reset_link_sent_to_the_old_address_stops_working(app, client, session, mailbox, as_role):
    user = as_role(Role.PARTICIPANT)
    old = user.email
    post_form(app.test_client(), "/reset-password", {"email": old})
    reset = mailbox.last_to(old).link("/reset-password/").removeprefix(BASE)
    _ask(client, NEW)
    post_form(client, _confirm_link(mailbox), {"password": PASSWORD})
    assert _fresh(session, user.id).email == NEW
    response = post_form(
        app.test_client(),
        reset,
        {"password": "a brand new passphrase", "password_confirm": "a brand new passphrase"},
    )
    assert response.status_code == 400
    assert "no longer valid" in response.get_data(as_text=True)


def test_asking_needs_a_recent_proof_of_identity(client, session, as_role):
    user = as_role(Role.PARTICIPANT)
    with client.session_transaction() as browser:
        browser[AUTHENTICATED_AT] = int(time.time()) - 24 * 3600
    page = client.get("/account/email").get_data(as_text=True)
    assert 'name="reauth_password"' in page
    assert "<h1>Change my email address</h1>" not in page
    response = _ask(client, NEW)
    assert _fresh(session, user.id).pending_email is None
    assert response.status_code in (200, 400)


def test_visitors_cannot_ask_or_cancel(client, session, make_user):
    make_user(Role.PARTICIPANT)
    assert client.get("/account/email").headers["Location"].startswith("/sign-in")
    assert (
        post_form(client, "/account/email", {"email": NEW})
        .headers["Location"]
        .startswith("/sign-in")
    )
    assert post_form(client, "/account/email/cancel").headers["Location"].startswith("/sign-in")
    assert session.scalar(sa.select(sa.func.count()).where(User.pending_email.is_not(None))) == 0


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session")
def test_two_accounts_confirming_one_address_at_once_change_one(
    app, session, make_user, monkeypatch
):
    """Both find the address free before either saves: the unique address decides, and the
    second is told the address is taken (never a 500)."""
    people = [session.get(User, make_user(Role.PARTICIPANT).id) for _ in range(2)]
    for person in people:
        person.pending_email = NEW
    session.commit()
    with app.app_context():
        payloads = [email_change.change_payload(person) for person in people]
    checked = threading.Barrier(2)
    original = email_change.find_user_by_email

    def check_then_wait(*args, **kwargs):
        found = original(*args, **kwargs)
        with suppress(threading.BrokenBarrierError):
            checked.wait(10)
        return found

    monkeypatch.setattr(email_change, "find_user_by_email", check_then_wait)
    results: list[object] = [None, None]

    def confirm(index: int) -> None:
        own = Database.new_session(app)
        try:
            with app.app_context():
                results[index] = email_change.confirm_email_change(
                    own, payloads[index], PASSWORD, utcnow()
                )
            own.commit()
        except Exception as error:  # noqa: BLE001 - handed to the test
            own.rollback()
            results[index] = error
        finally:
            own.close()

    workers = [threading.Thread(target=confirm, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert not worker.is_alive(), "a thread is stuck (a deadlock?)"

    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], email_change.AddressTaken), results
    session.expire_all()
    owners = session.scalars(sa.select(User.id).where(User.email == NEW)).all()
    assert len(owners) == 1
