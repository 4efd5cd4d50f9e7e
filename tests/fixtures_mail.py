"""Pytest fixtures for mail tests; registered from conftest with ``pytest_plugins``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_sendgrid import FakeSendGrid


@pytest.fixture
def fake_sendgrid() -> Iterator[FakeSendGrid]:
    """A running fake SendGrid API server, stopped after the test."""
    server = FakeSendGrid().start()
    try:
        yield server
    finally:
        server.stop()
