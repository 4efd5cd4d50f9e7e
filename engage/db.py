"""Database access: the declarative base, a UTC datetime type and per-app-context sessions.

Views and CLI commands get a session from :func:`get_session`; services receive it as an
argument and never commit; the caller commits once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, g
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from engage.timeutil import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every Engage model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores it naive, in UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        """Refuse naive datetimes and store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use engage.timeutil.utcnow()")
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> Any:
        """Return an aware UTC datetime."""
        return None if value is None else as_utc(value)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Turn on foreign keys and a busy timeout for every SQLite connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` with the settings Engage relies on.

    Statement parameters (addresses, tokens, names) are kept out of log lines and out of the
    text of database errors (``hide_parameters``), which end up in tracebacks and logs.
    """
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 5}, hide_parameters=True)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)


class Database:
    """The app's engine and session factory, bound to one Flask app by :meth:`init_app`."""

    def init_app(self, app: Flask) -> None:
        """Create the engine for the app's ``DATABASE_URL`` and close sessions after requests."""
        engine = make_engine(app.config["DATABASE_URL"])
        factory = sessionmaker(bind=engine, expire_on_commit=False)
        app.extensions["engage.db"] = {"engine": engine, "sessionmaker": factory}
        app.teardown_appcontext(_close_session)

    @staticmethod
    def engine(app: Flask | None = None) -> Engine:
        """Return the engine of ``app`` (default: the current app)."""
        return (app or current_app).extensions["engage.db"]["engine"]

    @staticmethod
    def new_session(app: Flask | None = None) -> Session:
        """Open a new session the caller owns (jobs, CLI, tests)."""
        return (app or current_app).extensions["engage.db"]["sessionmaker"]()


def get_session() -> Session:
    """Return the session of the current app context, opening it on first use."""
    if "db_session" not in g:
        g.db_session = Database.new_session()
    return g.db_session


def _close_session(_exc: BaseException | None) -> None:
    """Roll back anything uncommitted and close the app context's session."""
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.rollback()
        session.close()


db = Database()


def lock_rows(session: Session, model: type[Base], ids: list[int]) -> None:
    """Lock rows of ``model`` until the transaction ends, so concurrent writers queue.

    PostgreSQL takes row locks (``SELECT ... FOR NO KEY UPDATE``, in id order to avoid
    deadlocks).
    SQLite has no row locks: a no-op UPDATE takes the database write lock now, before the
    caller reads what it is about to check.
    """
    id_column = model.id  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            sa.update(model)
            .where(id_column.in_(ids))
            .values({id_column: id_column})
            .execution_options(synchronize_session=False)
        )
    else:
        # FOR NO KEY UPDATE: it queues writers of these rows like FOR UPDATE, but does not
        # block the KEY SHARE lock that inserting a row referring to them takes (a support,
        # an email queued for the person), which would deadlock two such transactions.
        session.execute(
            sa.select(id_column)
            .where(id_column.in_(ids))
            .order_by(id_column)
            .with_for_update(key_share=True)
        )


def advisory_xact_lock(session: Session, key: int, *, shared: bool = False) -> None:
    """Hold PostgreSQL advisory lock ``key`` until the transaction ends (commit or rollback).

    Shared holders run side by side; an exclusive holder waits for them and they for it. So
    many writers that depend on one setting take it shared, and the rare writer that changes
    the setting takes it exclusive. SQLite needs nothing: callers have already taken its one
    database write lock (see :func:`lock_rows`), which serialises them anyway.

    :param key: a constant naming what is protected (distinct from every other lock's key).
    :param shared: take the lock shared instead of exclusive.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    session.execute(sa.text(f"SELECT {function}(:key)"), {"key": key})


def savepoint(session: Session) -> Any:
    """``session.begin_nested()`` that cannot outlive the caller's rollback on SQLite.

    pysqlite begins a transaction only before a data-changing statement; a SAVEPOINT issued
    while only reads have run opens the outermost transaction itself, and releasing it then
    commits (a later rollback of the request would not undo what it saved). A statement that
    changes nothing makes pysqlite begin the real transaction first, so the savepoint nests in
    it. (SQLAlchemy's documented alternative, emitting every BEGIN ourselves, turns each read
    into a transaction that holds a snapshot, which changes what long-lived sessions see.)
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(sa.text("UPDATE alembic_version SET version_num = version_num WHERE 0"))
    return session.begin_nested()
