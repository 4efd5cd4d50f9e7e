"""Extensions created once and bound to each app in the factory."""

from __future__ import annotations

import math
import time

from flask import current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf import CSRFProtect
from limits import parse_many

csrf = CSRFProtect()
login_manager = LoginManager()
# Keyed by the client's address: the proxy's client address when TRUSTED_PROXY_COUNT > 0
# (ProxyFix, see engage.app), the connecting peer's otherwise.
limiter = Limiter(key_func=get_remote_address, default_limits=[])


def rate_limit(setting: str) -> str:
    """Read a rate-limit string from the current app's config (for ``limiter.limit``)."""
    return current_app.config[setting]


class FailureLimit:
    """A rate limit on failures per key (an account, say), kept in the limiter's storage.

    Unlike ``limiter.limit`` it counts only what the caller reports as a failure, and its key is
    whatever the caller chooses, so it can limit per account rather than per address. When rate
    limiting is off (``RATELIMIT_ENABLED``) it never limits.

    :param setting: the config key holding the limits, e.g. ``"10 per minute;30 per hour"``.
    :param scope: a name that keeps these counts apart from every other limit's.
    """

    def __init__(self, setting: str, scope: str) -> None:
        self.setting = setting
        self.scope = scope

    def _items(self):
        return parse_many(current_app.config[self.setting])

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again (at least 1), or None when it is not limited."""
        if not limiter.enabled:
            return None
        strategy = limiter.limiter
        waits = [
            strategy.get_window_stats(item, self.scope, key).reset_time - time.time()
            for item in self._items()
            if not strategy.test(item, self.scope, key)
        ]
        return max(1, math.ceil(max(waits))) if waits else None

    def count_failure(self, key: str) -> None:
        """Count one failure of ``key`` in every window."""
        if limiter.enabled:
            for item in self._items():
                limiter.limiter.hit(item, self.scope, key)

    def forget(self, key: str) -> None:
        """Clear ``key``'s failures (e.g. once its owner has proved who they are)."""
        if limiter.enabled:
            for item in self._items():
                limiter.limiter.clear(item, self.scope, key)
