"""WSGI entry point for servers: ``gunicorn -c engage/gunicorn_conf.py engage.wsgi:app``.

A server runs the production configuration unless told otherwise: with ``ENGAGE_CONFIG`` unset
it is ``production`` (whose checks refuse a missing or guessable secret, a SQLite database…),
``testing`` is refused (cheap password hashing, no rate limits), and ``development`` runs only
when set explicitly, with a loud warning. Refuses to start, with a message saying what to do,
when the configuration is unsafe or the database is not migrated.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from engage.app import create_app
from engage.migrate import unapplied_migrations_message
from engage.settings import Config, ConfigurationError, load_config

log = logging.getLogger(__name__)

DEVELOPMENT_WARNING = (
    "ENGAGE_CONFIG=development: Engage is serving with development settings (a public secret "
    "key unless SECRET_KEY is set, insecure cookies, keys derived for development). Never let "
    "this server be reached from the internet; unset ENGAGE_CONFIG to run production."
)


def server_config(environ: Mapping[str, str] = os.environ) -> Config:
    """The configuration a WSGI server runs: production unless ``ENGAGE_CONFIG`` says
    development; testing is refused.

    :raises ConfigurationError: ``ENGAGE_CONFIG`` names testing or no known environment.
    """
    name = (environ.get("ENGAGE_CONFIG") or "production").strip().lower() or "production"
    if name == "testing":
        raise ConfigurationError(
            "ENGAGE_CONFIG=testing is for the test suite only (cheap password hashing, no rate "
            "limits). Unset ENGAGE_CONFIG to serve production, or set it to development to try "
            "Engage on your own computer."
        )
    config = load_config(name)
    if name == "development":
        log.warning(DEVELOPMENT_WARNING)
    return config


try:
    app = create_app(server_config())
except ConfigurationError as exc:
    sys.exit(f"Engage cannot start: {exc}")

_problem = unapplied_migrations_message(app)
if _problem:
    sys.exit(f"Engage cannot start: {_problem}")
