"""Alembic wiring: the migration config for an app, and the schema-is-current check."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask

from engage import crypto
from engage.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(app: Flask) -> AlembicConfig:
    """An Alembic config whose env.py migrates ``app``'s database."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.attributes["engine"] = Database.engine(app)
    # Migrations that encrypt or decrypt stored values use the app's keys.
    config.attributes["keyring"] = crypto.keyring(app)
    return config


def head_revisions(app: Flask) -> set[str]:
    """The newest revisions in ``migrations/versions``."""
    return set(ScriptDirectory.from_config(alembic_config(app)).get_heads())


def current_revisions(app: Flask) -> set[str]:
    """The revisions the database is at (empty when never migrated)."""
    with Database.engine(app).connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def unapplied_migrations_message(app: Flask) -> str | None:
    """A sentence telling what to run when the database is behind, or None when current."""
    current = current_revisions(app)
    if current == head_revisions(app):
        return None
    if not current:
        return (
            "The database has not been set up yet. Run `engage db upgrade` (or `make run`), "
            "then start Engage again."
        )
    return (
        "The database schema is older than this version of Engage. Run `engage db upgrade`, "
        "then start Engage again."
    )
