"""Alembic environment: migrates the engine handed over by engage.migrate."""

from __future__ import annotations

from alembic import context

from engage.app import import_models
from engage.db import Base

import_models()  # every table on Base.metadata
config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Run migrations on the app's engine (SQLite uses batch mode for ALTERs)."""
    engine = config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported; run `engage db upgrade`.")
run_migrations_online()
