"""Home, health check, error pages and security headers."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

from engage.accounts.models import Role
from engage.app import create_app
from engage.db import Database
from tests.conftest import PASSWORD, post_form


def test_home_page_says_what_the_network_is_and_what_each_role_can_do(client):
    page = client.get("/").get_data(as_text=True)
    for phrase in (
        "People with MS",
        "Healthcare professionals",
        "Data custodians",
        "MS organisations",
        "Join Engage",
        "Sign in",
    ):
        assert phrase in page


def test_healthz_answers_200_when_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_healthz_answers_503_when_the_database_is_unreachable(tmp_path):
    app = create_app(
        {
            "ENGAGE_CONFIG": "testing",
            "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1",
        }
    )
    try:
        response = app.test_client().get("/healthz")
    finally:
        Database.engine(app).dispose()
    assert response.status_code == 503
    assert response.get_json()["database"] == "unreachable"


def test_security_headers_and_no_inline_script(client):
    response = client.get("/sign-in")
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in response.get_data(as_text=True)
    assert "HttpOnly" in response.headers.get("Set-Cookie", "")


def test_friendly_404_and_405(client):
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert "<h1>" in missing.get_data(as_text=True)
    wrong_method = client.delete("/sign-in")
    assert wrong_method.status_code == 405
    assert "GET" in wrong_method.headers["Allow"]


def _header_sign_in_link(page: str) -> str:
    """The href of the header's "Sign in" link."""
    header = page.split("</header>", 1)[0]
    return html.unescape(re.search(r'<a href="([^"]*)"[^>]*>Sign in</a>', header).group(1))


def test_header_sign_in_link_brings_you_back_to_the_page_you_were_on(client, make_user):
    link = _header_sign_in_link(client.get("/topics?category=lifestyle&sort=new").get_data(True))
    assert urlsplit(link).path == "/sign-in"
    assert parse_qs(urlsplit(link).query) == {"next": ["/topics?category=lifestyle&sort=new"]}
    # On the sign-in page itself the link keeps where the visitor was going, if it is safe.
    on_sign_in = client.get("/sign-in?next=/topics/7").get_data(as_text=True)
    assert parse_qs(urlsplit(_header_sign_in_link(on_sign_in)).query) == {"next": ["/topics/7"]}
    unsafe = client.get("/sign-in?next=//evil.example/x").get_data(as_text=True)
    assert _header_sign_in_link(unsafe) == "/sign-in"
    # Following the link signs in and returns to the page.
    user = make_user(Role.PARTICIPANT)
    response = post_form(client, link, {"email": user.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response.headers["Location"] == "/topics?category=lifestyle&sort=new"


def test_friendly_500_without_details(app, client):
    @app.get("/explode-for-test")
    def explode():
        raise RuntimeError("secret internal detail")

    response = client.get("/explode-for-test")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "secret internal detail" not in page and "Traceback" not in page
    assert "<h1>" in page


def test_rate_limit_answers_429_with_a_friendly_page(database_url, make_user):
    """Sign-in posts are limited per address (10 per minute by default)."""
    limited = create_app(
        {"ENGAGE_CONFIG": "testing", "DATABASE_URL": database_url, "RATELIMIT_ENABLED": True}
    )
    client = limited.test_client()
    user = make_user(Role.PARTICIPANT)
    wrong = {"email": user.email, "password": "wrong password x"}
    try:
        statuses = [post_form(client, "/sign-in", wrong).status_code for _ in range(12)]
        page = post_form(client, "/sign-in", wrong).get_data(as_text=True)
        form_status = client.get("/sign-in").status_code
    finally:
        Database.engine(limited).dispose()
    assert statuses == [400] * 10 + [429, 429]
    assert "<h1>" in page and "too many times" in page
    # Viewing the form is not limited.
    assert form_status == 200
