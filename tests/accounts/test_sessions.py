"""Sessions kept on the server: signing out ends them for every copy of the cookies, they
expire, the signed-in devices page lists and ends them, password changes, resets and
deactivation end them, and old rows are deleted."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from engage.accounts import services, sessions, staff_services
from engage.accounts.models import Role, User, UserSession
from engage.audit import AuditEvent
from engage.security import make_token
from engage.timeutil import utcnow
from tests.conftest import PASSWORD, post_form, sign_in

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
NEW_PASSWORD = "a brand new passphrase"


def _device(app: Flask, user_agent: str) -> FlaskClient:
    """A client whose requests carry ``user_agent``, like one browser."""
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = user_agent
    return client


def _rows(session, user_id: int) -> list[UserSession]:
    session.expire_all()
    return list(
        session.scalars(
            sa.select(UserSession).where(UserSession.user_id == user_id).order_by(UserSession.id)
        )
    )


def _live(session, user_id: int) -> list[UserSession]:
    return [row for row in _rows(session, user_id) if sessions.is_live(row, utcnow())]


def _actions(session, user_id: int) -> list[str]:
    session.expire_all()
    query = sa.select(AuditEvent.action).where(AuditEvent.subject_user_id == user_id)
    return list(session.scalars(query.order_by(AuditEvent.id)))


def _cookie(client: FlaskClient, name: str) -> str:
    cookie = client.get_cookie(name)
    assert cookie is not None, f"no {name} cookie"
    return cookie.value


def _replay(app: Flask, name: str, value: str) -> int:
    """The status of /account for a fresh browser holding only cookie ``name`` = ``value``."""
    stranger = app.test_client()
    stranger.set_cookie(name, value)
    return stranger.get("/account").status_code


def _identity(app: Flask, client: FlaskClient) -> str:
    """Flask-Login's identity in the client's (signed) session cookie."""
    serializer = app.session_interface.get_signing_serializer(app)
    return serializer.loads(_cookie(client, app.config["SESSION_COOKIE_NAME"]))["_user_id"]


# Signing out ----------------------------------------------------------------------------------
def test_sign_out_ends_the_session_and_copied_cookies_stop_working(app, client, make_user):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user, remember="y")
    session_cookie = _cookie(client, app.config["SESSION_COOKIE_NAME"])
    remember_cookie = _cookie(client, "remember_token")
    # Before signing out, a copy of either cookie signs a stranger in.
    assert _replay(app, app.config["SESSION_COOKIE_NAME"], session_cookie) == 200
    assert _replay(app, "remember_token", remember_cookie) == 200

    assert post_form(client, "/sign-out").status_code == 302

    assert client.get("/account").status_code == 302
    assert _replay(app, app.config["SESSION_COOKIE_NAME"], session_cookie) == 302
    assert _replay(app, "remember_token", remember_cookie) == 302
    response = app.test_client()
    response.set_cookie("remember_token", remember_cookie)
    page = response.get("/account")
    assert page.status_code == 302 and page.headers["Location"].startswith("/sign-in")


def test_signing_out_records_why_the_session_ended(app, client, session, make_user):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    post_form(client, "/sign-out")
    [row] = _rows(session, user.id)
    assert row.ended_at is not None and row.ended_reason == "signed-out"
    assert _actions(session, user.id)[-1] == "sign_out"


def test_only_a_hash_of_the_session_key_is_stored(app, client, session, make_user):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    user_id, _, key = _identity(app, client).partition(":")
    assert user_id == str(user.id) and len(key) >= 40
    [row] = _rows(session, user.id)
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    stored = session.execute(sa.select(UserSession.__table__)).all()
    assert all(key not in str(value) for stored_row in stored for value in stored_row)


def test_a_forged_identity_with_another_account_id_is_nobody(app, client, make_user):
    # The key of one person's session, put with another account's id, signs nobody in.
    victim = make_user(Role.STAFF)
    me = make_user(Role.PARTICIPANT)
    sign_in(client, me)
    _, _, key = _identity(app, client).partition(":")
    forged = app.test_client()
    with forged.session_transaction() as browser_session:
        browser_session["_user_id"] = f"{victim.id}:{key}"
        browser_session["_fresh"] = True
    assert forged.get("/account").status_code == 302


# Expiry ---------------------------------------------------------------------------------------
def test_a_session_without_keep_me_signed_in_ends_after_the_idle_limit(
    app, client, session, make_user
):
    user = make_user(Role.PARTICIPANT)
    before = utcnow()
    sign_in(client, user)
    [row] = _rows(session, user.id)
    idle = timedelta(hours=app.config["SESSION_IDLE_HOURS"])
    assert before + idle <= row.expires_at <= utcnow() + idle
    assert not row.remember
    row.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    assert client.get("/account").status_code == 302


def test_activity_moves_the_idle_limit_at_most_every_few_minutes(app, client, session, make_user):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    [row] = _rows(session, user.id)
    # Recent activity is not written again.
    first_seen = row.last_seen_at
    assert client.get("/account").status_code == 200
    assert _rows(session, user.id)[0].last_seen_at == first_seen
    # Activity after a quiet spell is, and the idle limit starts again from it.
    quiet = utcnow() - timedelta(minutes=10)
    row.last_seen_at, row.expires_at = quiet, utcnow() + timedelta(minutes=1)
    session.commit()
    assert client.get("/account").status_code == 200
    [row] = _rows(session, user.id)
    assert row.last_seen_at > quiet
    assert row.expires_at > utcnow() + timedelta(hours=app.config["SESSION_IDLE_HOURS"] - 1)


def test_keep_me_signed_in_lasts_from_sign_in_whatever_the_activity(
    app, client, session, make_user
):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user, remember="y")
    [row] = _rows(session, user.id)
    duration = timedelta(seconds=app.config["REMEMBER_COOKIE_DURATION"])
    assert row.remember
    assert abs(row.expires_at - (row.created_at + duration)) < timedelta(seconds=1)
    expires = utcnow() + timedelta(hours=1)
    row.last_seen_at, row.expires_at = utcnow() - timedelta(minutes=10), expires
    session.commit()
    assert client.get("/account").status_code == 200
    [row] = _rows(session, user.id)
    assert row.expires_at == expires  # activity does not extend it
    row.expires_at = utcnow() - timedelta(seconds=1)
    session.commit()
    remember = _cookie(client, "remember_token")
    assert client.get("/account").status_code == 302
    assert _replay(app, "remember_token", remember) == 302


@pytest.mark.parametrize("change", ["deactivated", "deleted"])
def test_a_deactivated_or_deleted_account_is_signed_out(app, client, session, make_user, change):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    assert client.get("/account").status_code == 200
    row = session.get(User, user.id)
    if change == "deactivated":
        row.is_active = False
    else:
        row.deleted_at = utcnow()
    session.commit()
    assert client.get("/account").status_code == 302


# Signed-in devices ------------------------------------------------------------------------------
def test_the_devices_page_lists_live_sessions_with_this_device_first(app, session, make_user):
    user = make_user(Role.PARTICIPANT)
    laptop, phone = _device(app, FIREFOX_LINUX), _device(app, SAFARI_IPHONE)
    sign_in(phone, user)
    sign_in(laptop, user)
    ended = _device(app, CHROME_WINDOWS)
    sign_in(ended, user)
    post_form(ended, "/sign-out")

    response = laptop.get("/account/sessions")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<caption id="devices-caption">' in page and "This device" in page
    assert page.index("Firefox on Linux") < page.index("Safari on iPhone")
    assert "Chrome on Windows" not in page  # signed out: no longer listed
    assert "127.0.0.1" in page
    started = utcnow()
    # The other device's button names it; this device has none of its own.
    assert (
        f'Sign out<span class="visually-hidden"> Safari on iPhone, signed in {started.day} ' in page
    )
    assert "Firefox on Linux, signed in" not in page
    assert "Sign out all other devices" in page and "Sign out everywhere" in page
    assert 'href="/account/sessions"' in laptop.get("/account").get_data(as_text=True)


def test_signing_out_another_device(app, session, make_user):
    user = make_user(Role.PARTICIPANT)
    laptop, phone = _device(app, FIREFOX_LINUX), _device(app, SAFARI_IPHONE)
    sign_in(laptop, user)
    sign_in(phone, user)
    phone_row = next(r for r in _rows(session, user.id) if "iPhone" in r.user_agent)

    response = post_form(laptop, "/account/sessions/sign-out", {"session_id": str(phone_row.id)})

    assert response.status_code == 303 and response.headers["Location"] == "/account/sessions"
    assert "Safari on iPhone is signed out." in laptop.get("/account/sessions").get_data(
        as_text=True
    )
    assert phone.get("/account").status_code == 302
    assert laptop.get("/account").status_code == 200
    assert [r.ended_reason for r in _rows(session, user.id)] == [None, "signed-out-elsewhere"]
    assert _actions(session, user.id)[-1] == "device_signed_out"


def test_another_persons_session_is_not_found_and_keeps_going(app, client, session, make_user):
    me, other = make_user(Role.PARTICIPANT), make_user(Role.PARTICIPANT)
    other_device = app.test_client()
    sign_in(other_device, other)
    sign_in(client, me)
    [their_row] = _rows(session, other.id)

    for session_id in (str(their_row.id), "2147483647"):
        response = post_form(client, "/account/sessions/sign-out", {"session_id": session_id})
        assert response.status_code == 404
        assert '<div class="notice notice-error" data-announce>' in response.get_data(as_text=True)
    assert other_device.get("/account").status_code == 200
    assert _rows(session, other.id)[0].ended_at is None
    assert "device_signed_out" not in _actions(session, me.id)


@pytest.mark.parametrize("data", [{}, {"session_id": "x"}, {"session_id": "-1"}])
def test_a_sign_out_button_that_names_no_device_changes_nothing(client, session, make_user, data):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    response = post_form(client, "/account/sessions/sign-out", data)
    assert response.status_code == 400
    assert '<div class="notice notice-error" data-announce>' in response.get_data(as_text=True)
    assert len(_live(session, user.id)) == 1


def test_signing_out_all_other_devices_keeps_this_one(app, session, make_user):
    user = make_user(Role.PARTICIPANT)
    here = _device(app, FIREFOX_LINUX)
    others = [_device(app, SAFARI_IPHONE), _device(app, CHROME_WINDOWS)]
    for device in (here, *others):
        sign_in(device, user)

    response = post_form(here, "/account/sessions/sign-out-all", {"which": "others"})

    assert response.status_code == 303
    assert here.get("/account").status_code == 200
    assert [device.get("/account").status_code for device in others] == [302, 302]
    assert len(_live(session, user.id)) == 1
    assert _actions(session, user.id)[-1] == "other_devices_signed_out"


def test_signing_out_everywhere_includes_this_device(app, session, make_user):
    user = make_user(Role.PARTICIPANT)
    here, there = _device(app, FIREFOX_LINUX), _device(app, SAFARI_IPHONE)
    sign_in(here, user, remember="y")
    sign_in(there, user, remember="y")
    remember = _cookie(here, "remember_token")

    response = post_form(here, "/account/sessions/sign-out-all", {"which": "everywhere"})

    assert response.status_code == 303 and response.headers["Location"] == "/sign-in"
    assert here.get("/account").status_code == 302
    assert there.get("/account").status_code == 302
    assert _replay(app, "remember_token", remember) == 302
    assert _live(session, user.id) == []
    assert {r.ended_reason for r in _rows(session, user.id)} == {"signed-out-everywhere"}
    [event] = [
        e
        for e in session.scalars(sa.select(AuditEvent).where(AuditEvent.subject_user_id == user.id))
        if e.action == "signed_out_everywhere"
    ]
    assert event.actor_id == user.id and event.details == {"ended": 2}


@pytest.mark.parametrize("data", [{}, {"which": "all"}, {"which": "Everywhere"}])
def test_sign_out_all_needs_a_known_choice(client, session, make_user, data):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    assert post_form(client, "/account/sessions/sign-out-all", data).status_code == 400
    assert client.get("/account").status_code == 200


def test_the_devices_page_needs_a_signed_in_person(client):
    response = client.get("/account/sessions")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=/account/sessions")
    response = post_form(client, "/account/sessions/sign-out-all", {"which": "everywhere"})
    assert response.status_code == 302


# Password changes, resets and deactivation end sessions -----------------------------------------
def test_a_password_change_ends_other_sessions_and_their_remember_cookies(
    app, client, session, make_user
):
    user = make_user(Role.PARTICIPANT)
    other = app.test_client()
    sign_in(other, user, remember="y")
    remember = _cookie(other, "remember_token")
    sign_in(client, user)

    response = post_form(
        client,
        "/account/password",
        {"current_password": PASSWORD, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert client.get("/account").status_code == 200
    assert other.get("/account").status_code == 302
    assert _replay(app, "remember_token", remember) == 302
    reasons = [row.ended_reason for row in _rows(session, user.id)]
    assert reasons == ["password-changed", None]


def test_a_password_reset_ends_every_session(app, client, session, make_user):
    user = make_user(Role.PARTICIPANT)
    elsewhere = app.test_client()
    sign_in(elsewhere, user, remember="y")
    sign_in(client, user)
    with app.app_context():
        token = make_token("reset-password", services.reset_payload(session.get(User, user.id)))

    response = post_form(
        client,
        f"/reset-password/{token}",
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert client.get("/account").status_code == 302
    assert elsewhere.get("/account").status_code == 302
    assert {row.ended_reason for row in _rows(session, user.id)} == {"password-reset"}


def test_deactivation_by_staff_ends_the_accounts_sessions(app, client, session, make_user):
    user, staff = make_user(Role.PARTICIPANT), make_user(Role.STAFF)
    sign_in(client, user, remember="y")
    remember = _cookie(client, "remember_token")

    staff_services.set_active(
        session, session.get(User, staff.id), session.get(User, user.id), False, utcnow()
    )
    session.commit()

    assert {row.ended_reason for row in _rows(session, user.id)} == {"deactivated"}
    assert client.get("/account").status_code == 302
    assert _replay(app, "remember_token", remember) == 302


# Housekeeping ----------------------------------------------------------------------------------
def _add_row(session, user_id: int, **times: Any) -> int:
    now = utcnow()
    row = UserSession(
        user_id=user_id,
        key_hash=hashlib.sha256(str(times).encode() + str(now).encode()).hexdigest(),
        created_at=times.get("created_at", now),
        last_seen_at=times.get("created_at", now),
        expires_at=times.get("expires_at", now + timedelta(hours=12)),
        ended_at=times.get("ended_at"),
        ended_reason="signed-out" if times.get("ended_at") else None,
    )
    session.add(row)
    session.commit()
    return row.id


def test_sessions_ended_or_expired_over_the_retention_period_are_deleted(app, session, make_user):
    user = make_user(Role.PARTICIPANT)
    now = utcnow()
    days = app.config["SESSION_RETENTION_DAYS"]
    long_ago = now - timedelta(days=days + 1)
    recently = now - timedelta(days=days - 1)
    old_ended = _add_row(session, user.id, created_at=long_ago, ended_at=long_ago)
    old_expired = _add_row(session, user.id, created_at=long_ago, expires_at=long_ago)
    recent_ended = _add_row(session, user.id, created_at=long_ago, ended_at=recently)
    recent_expired = _add_row(session, user.id, created_at=long_ago, expires_at=recently)
    live = _add_row(session, user.id)

    job = app.extensions["engage.jobs"]["accounts.remove_old_sessions"]
    summary = job.func(session, now, app.config)
    session.commit()

    assert summary == "removed 2 old session(s)"
    remaining = {row.id for row in _rows(session, user.id)}
    assert remaining == {recent_ended, recent_expired, live}
    assert not remaining & {old_ended, old_expired}


@pytest.mark.parametrize(
    ("user_agent", "described"),
    [
        (FIREFOX_LINUX, "Firefox on Linux"),
        (SAFARI_IPHONE, "Safari on iPhone"),
        (CHROME_WINDOWS, "Chrome on Windows"),
        (CHROME_WINDOWS + " Edg/131.0.0.0", "Edge on Windows"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) Version/18.1 Safari/605.1.15",
            "Safari on macOS",
        ),
        ("curl/8.5.0", "curl"),
        ("", "Unknown browser"),
    ],
)
def test_browsers_are_described_in_a_few_words(user_agent, described):
    assert sessions.describe_browser(user_agent) == described


def test_session_keys_in_cookies_are_random_and_distinct(app, make_user):
    user = make_user(Role.PARTICIPANT)
    keys = set()
    for _ in range(3):
        device = app.test_client()
        sign_in(device, user)
        keys.add(_identity(app, device).partition(":")[2])
    assert len(keys) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", key) for key in keys)
