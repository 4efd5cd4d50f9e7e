"""The second step of signing in (two-factor), between the password and the session.

Placeholder until two-factor sign-in lands: no account needs a second step yet.
"""

from __future__ import annotations

from typing import Any

from engage.accounts.models import User


def second_step_needed(user: User) -> bool:
    """Whether ``user`` must give an authenticator code (or enrol) before being signed in."""
    return False


def start_second_step(user: User, *, remember: bool, next_url: str | None) -> Any:
    """Remember the half-finished sign-in and send the person to the second step."""
    raise NotImplementedError
