"""The schema comes from Alembic, the same on every database, and matches the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from engage.app import create_app, import_models
from engage.db import Base, Database
from engage.migrate import alembic_config, unapplied_migrations_message
from tests.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def empty_app(request, make_database_url):
    """An app on a brand-new, never-migrated database of each backend."""
    app = create_app({"ENGAGE_CONFIG": "testing", "DATABASE_URL": make_database_url(request.param)})
    yield app
    Database.engine(app).dispose()


def _differences(app) -> list:
    import_models()
    with Database.engine(app).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_migrated_schema_equals_the_models(empty_app):
    command.upgrade(alembic_config(empty_app), "head")
    assert _differences(empty_app) == []


def test_downgrade_to_base_and_upgrade_again(empty_app):
    config = alembic_config(empty_app)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    with Database.engine(empty_app).connect() as connection:
        tables = set(Database.engine(empty_app).dialect.get_table_names(connection))
    assert tables <= {"alembic_version"}
    command.upgrade(config, "head")
    assert _differences(empty_app) == []


def test_unmigrated_database_gets_a_clear_message(empty_app):
    message = unapplied_migrations_message(empty_app)
    assert message is not None and "engage db upgrade" in message
    command.upgrade(alembic_config(empty_app), "head")
    assert unapplied_migrations_message(empty_app) is None


def test_engage_run_refuses_an_unmigrated_database(empty_app):
    result = empty_app.test_cli_runner().invoke(args=["run", "--port", "5999"])
    assert result.exit_code != 0
    assert "has not been set up yet" in result.output
    assert "engage db upgrade" in result.output
    assert "Traceback" not in result.output


def test_db_commands_report_the_revision(empty_app):
    runner = empty_app.test_cli_runner()
    before = runner.invoke(args=["db", "current"])
    assert "(not migrated)" in before.output and "behind" in before.output
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    after = runner.invoke(args=["db", "current"])
    assert "up to date" in after.output
    assert runner.invoke(args=["db", "downgrade", "base"]).exit_code == 0
    assert "(not migrated)" in runner.invoke(args=["db", "current"]).output


def test_wsgi_entry_point_refuses_an_unmigrated_database(tmp_path):
    import subprocess
    import sys

    env = {
        "PATH": "/usr/bin:/bin",
        "ENGAGE_CONFIG": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'new.sqlite'}",
    }
    result = subprocess.run(
        [sys.executable, "-c", "import engage.wsgi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Engage cannot start: The database has not been set up yet." in result.stderr
    assert "engage db upgrade" in result.stderr and "Traceback" not in result.stderr


def test_sends_get_their_freeze_columns_whether_or_not_an_earlier_setup_added_them(empty_app):
    """Databases set up while the freeze columns were part of the newsletters revision already
    have them; revision 4f6a8c0e2b13 adds only what is missing, keeping existing sends."""
    config = alembic_config(empty_app)
    command.upgrade(config, "120b35071e7a")
    engine = Database.engine(empty_app)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "ALTER TABLE newsletter_sends ADD COLUMN is_freezing BOOLEAN NOT NULL DEFAULT false"
        )
    command.upgrade(config, "head")
    assert _differences(empty_app) == []
    command.downgrade(config, "120b35071e7a")
    with engine.connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("newsletter_sends")}
    assert not columns & {"is_freezing", "freeze_query", "freeze_after_id"}
