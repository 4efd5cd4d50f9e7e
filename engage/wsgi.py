"""WSGI entry point for production servers: ``gunicorn 'engage.wsgi:app'``.

Refuses to start, with a message saying what to run, when the configuration is unsafe or the
database is not migrated.
"""

from __future__ import annotations

import sys

from engage.app import create_app
from engage.migrate import unapplied_migrations_message
from engage.settings import ConfigurationError

try:
    app = create_app()
except ConfigurationError as exc:
    sys.exit(f"Engage cannot start: {exc}")

_problem = unapplied_migrations_message(app)
if _problem:
    sys.exit(f"Engage cannot start: {_problem}")
