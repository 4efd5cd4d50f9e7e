"""Absolute links for emails, built the same inside and outside a request."""

from __future__ import annotations

from typing import Any

from flask import current_app


def external_url(endpoint: str, **values: Any) -> str:
    """``BASE_URL`` plus the path of ``endpoint`` (scheduled jobs have no request to use)."""
    adapter = current_app.url_map.bind("engage.invalid")
    path = adapter.build(endpoint, values)
    return current_app.config["BASE_URL"].rstrip("/") + path
