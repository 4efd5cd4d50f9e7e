"""What the browser tests share: signing in through the sign-in page as a person would."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tests.conftest import PASSWORD, totp_code_for


def browser_sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    """Sign in through the sign-in page, and its code step when the account uses two-step
    sign-in (staff and custodians that ``make_user`` set up)."""
    page.goto("/sign-in")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: urlsplit(url).path != "/sign-in")
    if urlsplit(page.url).path == "/sign-in/two-factor":
        page.get_by_label("Code from your authenticator app").fill(totp_code_for(email))
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(lambda url: urlsplit(url).path != "/sign-in/two-factor")
