"""Two-step sign-in (authenticator codes and recovery codes), through the pages: setting it up,
the code step after the password, wrong and replayed codes, recovery codes, roles that require
it, turning it off, and two requests with one code at the same moment (PostgreSQL)."""

from __future__ import annotations

import re
import threading
import time
from urllib.parse import urlsplit

import pyotp
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from engage.accounts import two_factor
from engage.accounts.models import RecoveryCode, Role, User
from engage.accounts.two_factor_flow import MAX_WRONG_CODES, PENDING_KEY
from engage.app import create_app
from engage.audit import AuditEvent
from engage.db import Database
from engage.timeutil import utcnow
from tests.conftest import CSRF_META, PASSWORD, next_totp_code, post_form, sign_in

CODE_PAGE = "/sign-in/two-factor"
RECOVERY_PAGE = "/sign-in/recovery-code"
SET_UP_PAGE = "/sign-in/two-factor/set-up"
CODE_PATTERN = re.compile(r"<code>([a-z2-7]{5}-[a-z2-7]{5})</code>")


def _user(session, user_id: int) -> User:
    session.expire_all()
    return session.get(User, user_id)


def _path(response) -> str:
    return urlsplit(response.headers["Location"]).path


def _password_step(client: FlaskClient, user: User, **extra):
    """Post the right password; the answer is the redirect to the next step."""
    response = post_form(client, "/sign-in", {"email": user.email, "password": PASSWORD, **extra})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def _recovery_codes(app: Flask, user: User) -> list[str]:
    """A new set of recovery codes for ``user`` (as making new ones on the account page does)."""
    db = Database.new_session(app)
    try:
        codes = two_factor.replace_recovery_codes(db, db.get(User, user.id), utcnow())
        db.commit()
        return codes
    finally:
        db.close()


def _actions(session, user_id: int) -> list[str]:
    return list(
        session.scalars(
            sa.select(AuditEvent.action)
            .where(AuditEvent.subject_user_id == user_id)
            .order_by(AuditEvent.id)
        )
    )


# Setting it up from the account page -------------------------------------------------------------
def test_setting_up_shows_a_qr_code_and_turns_on_once_a_code_confirms_it(
    client, session, make_user, mailbox
):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)

    page = client.get("/account/two-factor")
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    secret = _user(session, user.id).totp_secret
    assert secret and _user(session, user.id).totp_enabled_at is None
    assert "<svg" in text and 'role="img"' in text and "QR code" in text
    assert " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)) in text  # typed by hand
    assert "otpauth://totp/Engage:" in text
    assert "style=" not in text.split("<svg", 1)[1].split("</svg>", 1)[0]  # the CSP allows it
    assert _user(session, user.id).totp_secret == secret  # a reload keeps the scanned secret

    wrong = post_form(client, "/account/two-factor", {"code": "000000"})
    assert wrong.status_code == 400
    assert "That code is not right" in wrong.get_data(as_text=True)
    assert _user(session, user.id).totp_enabled_at is None

    confirmed = post_form(client, "/account/two-factor", {"code": pyotp.TOTP(secret).now()})
    text = confirmed.get_data(as_text=True)
    codes = CODE_PATTERN.findall(text)
    assert confirmed.status_code == 200 and "I have saved these codes" in text
    assert len(codes) == two_factor.RECOVERY_CODE_COUNT == len(set(codes))
    assert _user(session, user.id).totp_enabled_at is not None
    stored = set(session.scalars(sa.select(RecoveryCode.code_hash)))
    assert stored == {two_factor.recovery_code_hash(code) for code in codes}
    assert not stored & set(codes)  # only hashes are kept
    assert mailbox.last_to(user.email).subject == (
        "Two-step sign-in is now on for your Engage account"
    )
    assert "two_factor_enabled" in _actions(session, user.id)
    status = client.get("/account/two-factor").get_data(as_text=True)
    assert "You have 10 unused codes." in status


# The code step after the password -------------------------------------------------------------
def test_an_enrolled_participant_is_not_signed_in_until_the_code(client, session, make_user):
    user = make_user(Role.PARTICIPANT, two_factor=True)

    response = _password_step(client, user)

    assert _path(response) == CODE_PAGE
    assert client.get("/account").status_code == 302  # still a visitor
    page = client.get(CODE_PAGE)
    assert page.status_code == 200 and "Use a recovery code" in page.get_data(as_text=True)
    done = post_form(client, CODE_PAGE, {"code": next_totp_code(client.application, user.email)})
    assert done.status_code == 302 and _path(done) == "/"
    assert client.get("/account").status_code == 200


def test_the_code_step_goes_where_the_sign_in_was_going_with_remember_me(client, make_user):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    response = post_form(
        client,
        "/sign-in?next=/account",
        {"email": user.email, "password": PASSWORD, "remember": "y"},
    )
    assert _path(response) == CODE_PAGE
    done = post_form(client, CODE_PAGE, {"code": next_totp_code(client.application, user.email)})
    assert done.headers["Location"] == "/account"
    assert any(c.startswith("remember_token=") for c in done.headers.getlist("Set-Cookie"))


def test_wrong_codes_are_refused_and_too_many_end_the_half_finished_sign_in(
    client, session, make_user
):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    _password_step(client, user)

    for _ in range(MAX_WRONG_CODES - 1):
        wrong = post_form(client, CODE_PAGE, {"code": "123456"})
        assert wrong.status_code == 400
        assert "That code is not right" in wrong.get_data(as_text=True)
    last = post_form(client, CODE_PAGE, {"code": "123456"})
    assert last.status_code == 303 and _path(last) == "/sign-in"
    assert "Too many wrong codes" in client.get("/sign-in").get_data(as_text=True)

    # The right code no longer helps: the password step must be done again.
    late = post_form(client, CODE_PAGE, {"code": next_totp_code(client.application, user.email)})
    assert _path(late) == "/sign-in"
    assert client.get("/account").status_code == 302
    assert _actions(session, user.id).count("two_factor_code_refused") == MAX_WRONG_CODES


def test_a_code_is_never_accepted_twice(app, client, make_user):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    code = next_totp_code(app, user.email)
    _password_step(client, user)
    assert post_form(client, CODE_PAGE, {"code": code}).status_code == 302

    other = app.test_client()
    _password_step(other, user)
    replay = post_form(other, CODE_PAGE, {"code": code})

    assert replay.status_code == 400
    assert "already used" in replay.get_data(as_text=True)
    assert other.get("/account").status_code == 302


def test_an_older_code_after_a_newer_one_is_refused(app, session, make_user):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    db = Database.new_session(app)
    try:
        row = db.get(User, user.id)
        now = utcnow()
        counter = two_factor.current_counter(now)
        two_factor.verify_code(db, row, two_factor.code_at(row.totp_secret, counter + 1), now)
        with pytest.raises(two_factor.WrongCode):
            two_factor.verify_code(db, row, two_factor.code_at(row.totp_secret, counter), now)
        with pytest.raises(two_factor.WrongCode):  # outside the window of one step
            two_factor.verify_code(db, row, two_factor.code_at(row.totp_secret, counter + 3), now)
    finally:
        db.rollback()
        db.close()


def test_the_half_finished_sign_in_lasts_ten_minutes(client, make_user):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    _password_step(client, user)
    with client.session_transaction() as flask_session:
        pending = dict(flask_session[PENDING_KEY])
        flask_session[PENDING_KEY] = {**pending, "started_at": pending["started_at"] - 601}

    response = post_form(
        client, CODE_PAGE, {"code": next_totp_code(client.application, user.email)}
    )

    assert _path(response) == "/sign-in"
    assert client.get("/account").status_code == 302


def test_the_code_pages_without_a_password_step_send_to_sign_in(client):
    for page in (CODE_PAGE, RECOVERY_PAGE, SET_UP_PAGE):
        response = client.get(page)
        assert response.status_code == 303 and _path(response) == "/sign-in"


# Recovery codes -------------------------------------------------------------------------------
def test_a_recovery_code_signs_in_once_and_says_how_many_are_left(
    app, client, session, make_user, mailbox
):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    codes = _recovery_codes(app, user)
    _password_step(client, user)

    response = post_form(client, RECOVERY_PAGE, {"recovery_code": codes[0].upper()})

    assert response.status_code == 302 and _path(response) == "/"
    assert "You have 9 recovery codes left." in client.get("/").get_data(as_text=True)
    assert client.get("/account").status_code == 200
    notice = mailbox.last_to(user.email)
    assert notice.subject == "A recovery code was used to sign in to Engage"
    assert "9 unused codes left" in notice.text
    assert codes[0] not in notice.text

    other = app.test_client()
    _password_step(other, user)
    again = post_form(other, RECOVERY_PAGE, {"recovery_code": codes[0]})
    assert again.status_code == 400
    assert "not right or was already used" in again.get_data(as_text=True)
    assert post_form(other, RECOVERY_PAGE, {"recovery_code": codes[1]}).status_code == 302
    assert two_factor.unused_recovery_codes(session, _user(session, user.id)) == 8


def test_new_recovery_codes_stop_the_old_ones(app, client, session, make_user):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    old = _recovery_codes(app, user)
    sign_in(client, user)

    response = post_form(client, "/account/two-factor/recovery-codes", {"button": "new-codes"})
    new = CODE_PATTERN.findall(response.get_data(as_text=True))

    assert response.status_code == 200 and len(new) == 10 and not set(new) & set(old)
    other = app.test_client()
    _password_step(other, user)
    assert post_form(other, RECOVERY_PAGE, {"recovery_code": old[0]}).status_code == 400
    assert post_form(other, RECOVERY_PAGE, {"recovery_code": new[0]}).status_code == 302


# Roles that require it --------------------------------------------------------------------------
@pytest.mark.parametrize("role", [Role.STAFF, Role.CUSTODIAN])
def test_required_roles_set_it_up_before_they_are_signed_in(
    client, session, make_user, mailbox, role
):
    user = make_user(role, two_factor=False)

    response = _password_step(client, user)

    assert _path(response) == SET_UP_PAGE
    # Until it is set up the browser is anonymous: every page answers as to a visitor.
    for page in ("/account", "/staff/users", "/account/two-factor"):
        answer = client.get(page)
        assert answer.status_code == 302 and _path(answer) == "/sign-in", page
    setup = client.get(SET_UP_PAGE)
    assert setup.status_code == 200 and "<svg" in setup.get_data(as_text=True)
    secret = _user(session, user.id).totp_secret
    wrong = post_form(client, SET_UP_PAGE, {"code": "000000"})
    assert wrong.status_code == 400
    assert client.get("/account").status_code == 302

    done = post_form(client, SET_UP_PAGE, {"code": pyotp.TOTP(secret).now()})

    text = done.get_data(as_text=True)
    assert done.status_code == 200 and len(CODE_PATTERN.findall(text)) == 10
    assert 'href="/"' in text and "I have saved these codes" in text
    assert client.get("/account").status_code == 200
    assert _user(session, user.id).totp_enabled_at is not None
    assert mailbox.last_to(user.email).subject.startswith("Two-step sign-in is now on")


def test_required_roles_cannot_turn_it_off(client, session, make_user):
    staff = make_user(Role.STAFF)
    sign_in(client, staff)
    assert "cannot be turned off" in client.get("/account/two-factor").get_data(as_text=True)

    response = post_form(client, "/account/two-factor/turn-off", {"button": "turn-off"})

    assert response.status_code == 303
    assert "required for coordination-centre staff accounts" in client.get(
        response.headers["Location"]
    ).get_data(as_text=True)
    assert two_factor.is_enabled(_user(session, staff.id))


def test_someone_given_a_required_role_while_signed_in_must_set_it_up_first(
    app, client, session, make_user
):
    person = make_user(Role.PARTICIPANT)
    sign_in(client, person)
    db = Database.new_session(app)
    try:
        db.get(User, person.id).role = Role.STAFF
        db.commit()
    finally:
        db.close()

    response = client.get("/staff/users")

    assert response.status_code in (302, 303)
    assert _path(response) in ("/account/two-factor", "/sign-in")


# Turning it off ---------------------------------------------------------------------------------
def test_turning_it_off_forgets_the_secret_and_codes_and_tells_the_owner(
    app, client, session, make_user, mailbox
):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    _recovery_codes(app, user)
    sign_in(client, user)

    response = post_form(client, "/account/two-factor/turn-off", {"button": "turn-off"})

    assert response.status_code == 303
    row = _user(session, user.id)
    assert row.totp_secret is None and row.totp_enabled_at is None
    assert session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
    assert mailbox.last_to(user.email).subject == (
        "Two-step sign-in is now off for your Engage account"
    )
    post_form(client, "/sign-out")
    assert _path(_password_step(client, user)) == "/"  # the password alone signs in again


# Rate limits --------------------------------------------------------------------------------------
def test_code_attempts_are_rate_limited(database_url, make_user):
    limited = create_app(
        {"ENGAGE_CONFIG": "testing", "DATABASE_URL": database_url, "RATELIMIT_ENABLED": True}
    )
    limited.config["TWO_FACTOR_RATE_LIMIT"] = "3 per minute"
    client = limited.test_client()
    try:
        user = make_user(Role.PARTICIPANT, two_factor=True)
        _password_step(client, user)
        statuses = [post_form(client, CODE_PAGE, {"code": "123456"}).status_code for _ in range(4)]
        page = client.get(CODE_PAGE).status_code
    finally:
        Database.engine(limited).dispose()
    assert statuses == [400, 400, 400, 429]
    assert page == 200  # showing the page is not an attempt


# Two requests with one code at the same moment (PostgreSQL) --------------------------------------
def _pending_clients(app: Flask, user: User, count: int) -> list[tuple[FlaskClient, str]]:
    """``count`` browsers that each passed the password step, with their CSRF tokens."""
    found = []
    for _ in range(count):
        client = app.test_client()
        token = CSRF_META.search(client.get("/").get_data(as_text=True)).group(1)
        post_form(client, "/sign-in", {"email": user.email, "password": PASSWORD})
        found.append((client, token))
    return found


def _at_once(calls) -> list:
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index: int) -> None:
        try:
            barrier.wait(10)
            results[index] = calls[index]()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a request is stuck (a deadlock?)"
    return results


def _slow_locks(monkeypatch) -> None:
    """Hold each request's row lock a moment, so the two requests surely overlap."""
    original = two_factor.lock_rows

    def lock_then_wait(*args, **kwargs):
        original(*args, **kwargs)
        time.sleep(0.2)

    monkeypatch.setattr(two_factor, "lock_rows", lock_then_wait)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session")
def test_one_code_sent_twice_at_the_same_moment_signs_in_once(app, make_user, monkeypatch):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    (first, first_token), (second, second_token) = _pending_clients(app, user, 2)
    code = next_totp_code(app, user.email)
    _slow_locks(monkeypatch)

    results = _at_once(
        [
            lambda: first.post(CODE_PAGE, data={"code": code, "csrf_token": first_token}),
            lambda: second.post(CODE_PAGE, data={"code": code, "csrf_token": second_token}),
        ]
    )

    statuses = sorted(r.status_code if hasattr(r, "status_code") else repr(r) for r in results)
    assert statuses == [302, 400]
    signed_in = [c.get("/account").status_code for c in (first, second)]
    assert sorted(signed_in) == [200, 302]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session")
def test_one_recovery_code_sent_twice_at_the_same_moment_signs_in_once(
    app, session, make_user, monkeypatch
):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    code = _recovery_codes(app, user)[0]
    (first, first_token), (second, second_token) = _pending_clients(app, user, 2)
    _slow_locks(monkeypatch)

    results = _at_once(
        [
            lambda: first.post(
                RECOVERY_PAGE, data={"recovery_code": code, "csrf_token": first_token}
            ),
            lambda: second.post(
                RECOVERY_PAGE, data={"recovery_code": code, "csrf_token": second_token}
            ),
        ]
    )

    statuses = sorted(r.status_code if hasattr(r, "status_code") else repr(r) for r in results)
    assert statuses == [302, 400]
    assert two_factor.unused_recovery_codes(session, _user(session, user.id)) == 9
