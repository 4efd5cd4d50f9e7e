"""Sign-in hardening: a new browser session and CSRF token at sign-in (no fixation), redirects
after sign-in that never leave the site, and rate limits per address (behind trusted proxies)
and per account that lock out neither a whole network nor an account's owner."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from config import ConfigurationError, load_config
from engage.accounts import services
from engage.accounts.models import Role, User, UserSession
from engage.app import create_app
from engage.db import Database
from engage.security import is_safe_next, make_token
from tests.conftest import CSRF_META, PASSWORD, post_form

WRONG = "not the password at all"
NEW_PASSWORD = "a brand new passphrase"
PAUSED = "You tried to sign in to this account too many times"


def _raw_csrf_secret(app: Flask, client: FlaskClient) -> str | None:
    """The CSRF secret kept in the client's signed session cookie."""
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    serializer = app.session_interface.get_signing_serializer(app)
    return serializer.loads(cookie.value).get("csrf_token") if cookie else None


def _page_token(response: Any) -> str:
    match = CSRF_META.search(response.get_data(as_text=True))
    assert match, "no csrf-token meta tag"
    return match.group(1)


# A new session and CSRF token at sign-in --------------------------------------------------------
def test_sign_in_issues_a_new_csrf_token_and_refuses_the_old_one(app, client, make_user):
    user = make_user(Role.PARTICIPANT)
    before = _page_token(client.get("/sign-in"))
    secret_before = _raw_csrf_secret(app, client)
    response = client.post(
        "/sign-in", data={"email": user.email, "password": PASSWORD, "csrf_token": before}
    )
    assert response.status_code == 302
    after = _page_token(client.get("/"))
    assert after != before
    assert _raw_csrf_secret(app, client) not in (None, secret_before)

    profile = {"display_name": "Renamed", "country": "SE", "language": "en"}
    refused = client.post("/account", data={**profile, "csrf_token": before})
    assert refused.status_code == 400
    assert "Your form expired" in refused.get_data(as_text=True)
    accepted = client.post("/account", data={**profile, "csrf_token": after})
    assert accepted.status_code == 302


def test_messages_waiting_before_sign_in_are_still_shown(app, client, make_user):
    user = make_user(Role.PARTICIPANT)
    token = _page_token(client.get("/sign-in"))
    with client.session_transaction() as browser_session:
        browser_session["_flashes"] = [("info", "A message from before signing in.")]
    response = client.post(
        "/sign-in", data={"email": user.email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "A message from before signing in." in page
    assert f"Welcome, {user.display_name}." in page


def test_a_session_cookie_planted_before_sign_in_gains_the_attacker_nothing(app, make_user):
    victim = make_user(Role.PARTICIPANT)
    attacker = app.test_client()
    attacker_token = _page_token(attacker.get("/sign-in"))
    planted = attacker.get_cookie(app.config["SESSION_COOKIE_NAME"]).value

    browser = app.test_client()
    browser.set_cookie(app.config["SESSION_COOKIE_NAME"], planted)
    # The victim signs in on the planted session (its token is the attacker's).
    response = browser.post(
        "/sign-in",
        data={"email": victim.email, "password": PASSWORD, "csrf_token": attacker_token},
    )
    assert response.status_code == 302
    assert browser.get("/account").status_code == 200
    assert browser.get_cookie(app.config["SESSION_COOKIE_NAME"]).value != planted

    # The attacker's copy of the planted cookie is still nobody's session...
    assert attacker.get("/account").status_code == 302
    # ...and the token the attacker knows no longer works in the victim's session.
    forged = browser.post(
        "/account",
        data={
            "display_name": "Pwned",
            "country": "SE",
            "language": "en",
            "csrf_token": attacker_token,
        },
    )
    assert forged.status_code == 400


# Redirects after sign-in --------------------------------------------------------------------------
HOSTILE_NEXT = [
    "/%09/evil.example",
    "/%5C/evil",
    "/%5c%5cevil.example",
    "/%0A/evil.example",
    "/%20/evil",
    "/%00/x",
    "///evil",
    "////evil.example",
    "javascript:alert(1)",
    "https://evil",
    "https:evil.example",
    "//evil.example",
    "/%E2%80%AE/evil",
]
HOSTILE_NEXT_DECODED = ["/\t/evil.example", "/\\/evil", "/ /evil", "/\x00/x", "/\r\n/evil"]


def _assert_stays_on_site(response: Any, asked: str) -> str:
    assert response.status_code == 302
    location = response.headers["Location"]
    # Where a browser would go, resolving the header against the page it asked for.
    target = urlsplit(urljoin(f"http://localhost{asked}", location))
    assert target.netloc == "localhost", location
    assert not any(char.isspace() or ord(char) < 32 for char in location), location
    return location


@pytest.mark.parametrize("raw_next", HOSTILE_NEXT)
def test_sign_in_never_redirects_off_site(client, make_user, raw_next):
    user = make_user(Role.PARTICIPANT)
    asked = f"/sign-in?next={raw_next}"  # as typed in the address bar: not encoded again
    response = post_form(client, asked, {"email": user.email, "password": PASSWORD})
    assert _assert_stays_on_site(response, asked) == "/"
    # Signed in already, the sign-in page redirects at once: the same check applies.
    assert _assert_stays_on_site(client.get(asked), asked) == "/"


@pytest.mark.parametrize("next_url", HOSTILE_NEXT_DECODED)
def test_sign_in_never_redirects_off_site_whatever_the_encoding(client, make_user, next_url):
    user = make_user(Role.PARTICIPANT)
    response = post_form(
        client,
        "/sign-in",
        {"email": user.email, "password": PASSWORD},
        query_string={"next": next_url},
    )
    assert _assert_stays_on_site(response, "/sign-in") == "/"


@pytest.mark.parametrize("next_url", ["/topics?page=2", "/account", "/topics/3#comments"])
def test_sign_in_returns_to_pages_of_the_site(client, make_user, next_url):
    user = make_user(Role.PARTICIPANT)
    response = post_form(
        client,
        "/sign-in",
        {"email": user.email, "password": PASSWORD},
        query_string={"next": next_url},
    )
    assert response.headers["Location"] == next_url


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/topics?page=2", True),
        ("/", True),
        ("/topics/é", True),
        (None, False),
        ("", False),
        ("topics", False),
        ("/\t/evil.example", False),
        ("/\\/evil", False),
        ("///evil", False),
        ("/ /evil", False),
        ("/\x00/x", False),
        ("/\u2028/evil", False),
        ("/\u202e/evil", False),
        ("javascript:alert(1)", False),
        ("https://evil", False),
    ],
)
def test_is_safe_next(target, safe):
    assert is_safe_next(target) is safe


# Rate limits -------------------------------------------------------------------------------------
@contextmanager
def limited_app(database_url: str, **config: Any) -> Iterator[Flask]:
    """An app on the test database with rate limiting on (fresh counts), and ``config``."""
    app = create_app(
        {
            "ENGAGE_CONFIG": "testing",
            "DATABASE_URL": database_url,
            "RATELIMIT_ENABLED": True,
            **config,
        }
    )
    try:
        yield app
    finally:
        Database.engine(app).dispose()


def _attempt(client: FlaskClient, email: str, password: str, address: str | None = None) -> Any:
    headers = {"X-Forwarded-For": address} if address else {}
    return post_form(client, "/sign-in", {"email": email, "password": password}, headers=headers)


def test_people_behind_a_trusted_proxy_are_limited_by_their_own_address(
    database_url, session, make_user
):
    users = [make_user(Role.PARTICIPANT) for _ in range(3)]
    with limited_app(
        database_url,
        TRUSTED_PROXY_COUNT=1,
        SIGN_IN_RATE_LIMIT="3 per minute",
        SIGN_IN_ACCOUNT_RATE_LIMIT="100 per minute",
    ) as app:
        client = app.test_client()
        first = [_attempt(client, users[0].email, WRONG, "203.0.113.1") for _ in range(4)]
        assert [r.status_code for r in first] == [400, 400, 400, 429]
        # Others behind the same proxy are not held back by that address's failures.
        assert _attempt(client, users[1].email, WRONG, "203.0.113.2").status_code == 400
        signed_in = app.test_client()
        assert _attempt(signed_in, users[2].email, PASSWORD, "203.0.113.3").status_code == 302
    # The session lists the person's own address, not the proxy's.
    session.expire_all()
    [row] = session.scalars(sa.select(UserSession).where(UserSession.user_id == users[2].id))
    assert row.ip_address == "203.0.113.3"


def test_forwarded_addresses_are_ignored_without_a_trusted_proxy(database_url, make_user):
    users = [make_user(Role.PARTICIPANT) for _ in range(2)]
    with limited_app(
        database_url, SIGN_IN_RATE_LIMIT="3 per minute", SIGN_IN_ACCOUNT_RATE_LIMIT="100 per minute"
    ) as app:
        assert app.config["TRUSTED_PROXY_COUNT"] == 0
        client = app.test_client()
        statuses = [
            _attempt(client, users[0].email, WRONG, "203.0.113.1").status_code for _ in range(3)
        ]
        assert statuses == [400, 400, 400]
        # A made-up X-Forwarded-For does not give the same client a fresh count.
        assert _attempt(client, users[1].email, WRONG, "203.0.113.2").status_code == 429


def test_successful_sign_ins_do_not_use_up_the_address_limit(database_url, make_user):
    users = [make_user(Role.PARTICIPANT) for _ in range(5)]
    with limited_app(database_url, SIGN_IN_RATE_LIMIT="3 per minute") as app:
        statuses = [_attempt(app.test_client(), u.email, PASSWORD).status_code for u in users]
    assert statuses == [302] * 5


def test_failures_on_one_account_pause_only_that_account(database_url, make_user):
    target, other = make_user(Role.PARTICIPANT), make_user(Role.PARTICIPANT)
    with limited_app(database_url) as app:
        limit = int(app.config["SIGN_IN_ACCOUNT_RATE_LIMIT"].split()[0])
        client = app.test_client()
        first_failure = time.monotonic()
        statuses = [_attempt(client, target.email, WRONG).status_code for _ in range(limit)]
        # Even the right password is refused while the account is paused.
        paused = _attempt(client, target.email, PASSWORD)
        elapsed = time.monotonic() - first_failure
        other_from_same_address = _attempt(client, other.email, PASSWORD)
    assert statuses == [400] * limit
    page = paused.get_data(as_text=True)
    assert paused.status_code == 429 and PAUSED in page
    assert "Please try again in 1 minute." in page  # the minute window ends; nothing permanent
    # The wait is what is left of the minute that began with the first failure.
    assert 60 - elapsed - 1 <= int(paused.headers["Retry-After"]) <= 60
    assert other_from_same_address.status_code == 302


def test_unknown_addresses_are_paused_like_accounts(database_url, make_user):
    known = make_user(Role.PARTICIPANT)
    unknown = "nobody-here@example.org"
    with limited_app(database_url, SIGN_IN_ACCOUNT_RATE_LIMIT="2 per minute") as app:
        client = app.test_client()
        pages = {}
        for email in (known.email, unknown):
            for _ in range(2):
                assert _attempt(client, email, WRONG).status_code == 400
            response = _attempt(client, email, WRONG)
            assert response.status_code == 429
            text = re.sub(
                r'(csrf[-_]token" (?:content|value)=)"[^"]+"',
                r"\1",
                response.get_data(as_text=True),
            )
            pages[email] = text.replace(email, "ADDRESS")
    # The same page: a pause does not tell whether the address has an account.
    assert pages[known.email] == pages[unknown]
    assert PAUSED in pages[unknown]


def test_the_owner_of_a_paused_account_can_reset_the_password_and_sign_in(
    database_url, session, make_user
):
    user = make_user(Role.PARTICIPANT)
    with limited_app(database_url, SIGN_IN_ACCOUNT_RATE_LIMIT="3 per minute;5 per hour") as app:
        attacker = app.test_client()
        for _ in range(3):
            _attempt(attacker, user.email, WRONG)
        owner = app.test_client()
        assert _attempt(owner, user.email, PASSWORD).status_code == 429
        # Asking for a reset link is not blocked by the sign-in pause.
        assert post_form(owner, "/reset-password", {"email": user.email}).status_code == 200
        with app.app_context():
            token = make_token("reset-password", services.reset_payload(session.get(User, user.id)))
        response = post_form(
            owner,
            f"/reset-password/{token}",
            {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        )
        assert response.status_code == 302
        # The reset cleared the account's failures: the owner signs in at once.
        assert _attempt(owner, user.email, NEW_PASSWORD).status_code == 302


def test_the_pause_is_counted_under_a_keyed_hash_not_the_address(database_url, make_user):
    from engage.extensions import limiter

    user = make_user(Role.PARTICIPANT)
    with limited_app(database_url) as app:
        _attempt(app.test_client(), user.email, WRONG)
        stored = repr(vars(limiter.storage))
    assert user.email not in stored
    assert user.email.split("@")[0] not in stored


# Production settings ------------------------------------------------------------------------
@pytest.fixture
def production_env(monkeypatch):
    monkeypatch.setenv("ENGAGE_CONFIG", "production")
    monkeypatch.setenv("SECRET_KEY", "x" * 64)
    monkeypatch.setenv("CONSENT_RECEIPT_KEY", "r" * 64)
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://engage@db.internal/engage")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
    monkeypatch.setenv("ENCRYPTION_KEYS", "qUf3z3OpN0mCkzS1sSlsj8P0EjvQJxSfBYqXc8Lx3Sg=")
    monkeypatch.delenv("RATELIMIT_STORAGE_URI", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    return monkeypatch


def _rate_limit_problems() -> list[str]:
    return [p for p in load_config().problems() if "RATELIMIT_STORAGE_URI" in p]


def test_production_refuses_in_memory_rate_limits_with_several_workers(production_env):
    assert _rate_limit_problems() and "redis://" in _rate_limit_problems()[0]
    production_env.setenv("WEB_CONCURRENCY", "4")
    assert _rate_limit_problems()
    production_env.setenv("WEB_CONCURRENCY", "1")
    assert _rate_limit_problems() == []
    production_env.setenv("WEB_CONCURRENCY", "4")
    production_env.setenv("RATELIMIT_STORAGE_URI", "redis://redis.internal:6379/0")
    assert _rate_limit_problems() == []


def test_a_negative_proxy_count_is_refused(monkeypatch):
    monkeypatch.setenv("TRUSTED_PROXY_COUNT", "-1")
    with pytest.raises(ConfigurationError, match="TRUSTED_PROXY_COUNT"):
        load_config("development").validate()


def test_sign_in_limits_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("SIGN_IN_RATE_LIMIT", "60 per minute")
    monkeypatch.setenv("SIGN_IN_ACCOUNT_RATE_LIMIT", "3 per minute")
    monkeypatch.setenv("TRUSTED_PROXY_COUNT", "2")
    config = load_config("development")
    assert (
        config.SIGN_IN_RATE_LIMIT,
        config.SIGN_IN_ACCOUNT_RATE_LIMIT,
        config.TRUSTED_PROXY_COUNT,
    ) == ("60 per minute", "3 per minute", 2)
