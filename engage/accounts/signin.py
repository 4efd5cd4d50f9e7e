"""Finishing a sign-in: the one place a person becomes signed in.

Both the password step (when no second step is needed) and the two-factor step end here.
"""

from __future__ import annotations

import time
from typing import Any

from flask import flash, redirect, session, url_for
from flask_login import login_user

from engage.accounts.models import User
from engage.security import is_safe_next

# When this browser last proved who it is (password, and code when enrolled): seconds since
# the epoch, in the Flask session. Re-authentication before sensitive actions reads it.
AUTHENTICATED_AT = "authenticated_at"


def finish_sign_in(user: User, *, remember: bool, next_url: str | None) -> Any:
    """Sign ``user`` in on this browser and redirect to ``next_url`` (when safe) or home."""
    login_user(user, remember=remember)
    session[AUTHENTICATED_AT] = int(time.time())
    flash(f"Welcome, {user.display_name}.", "success")
    return redirect(next_url if is_safe_next(next_url) else url_for("pages.home"))
