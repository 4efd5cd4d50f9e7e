"""Extensions created once and bound to each app in the factory."""

from __future__ import annotations

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def rate_limit(setting: str) -> str:
    """Read a rate-limit string from the current app's config (for ``limiter.limit``)."""
    return current_app.config[setting]
