"""The core's commands: ``engage run``, ``db``, ``demo``, ``scheduler`` and ``outbox``.

The composition root (``engage.app``) adds them, and each package's own group (``users``,
``topics``, ``consent``, ``audit``), to ``app.cli``; ``engage.cli`` is the console script over it.
"""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext


# engage run ---------------------------------------------------------------------------------
@click.command("run")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--with-scheduler/--without-scheduler",
    default=None,
    help="Run the scheduler inside this process (default: SCHEDULER_IN_PROCESS).",
)
@with_appcontext
def run_command(host: str, port: int, with_scheduler: bool | None) -> None:
    """Serve Engage for development (use gunicorn in production)."""
    from werkzeug.serving import run_simple

    from engage.migrate import unapplied_migrations_message
    from engage.scheduler import build_scheduler

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    problem = unapplied_migrations_message(app)
    if problem:
        raise click.ClickException(problem)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    in_process = app.config["SCHEDULER_IN_PROCESS"] if with_scheduler is None else with_scheduler
    scheduler = None
    if in_process:
        scheduler = build_scheduler(app, background=True)
        scheduler.start()
        click.echo(
            f"Scheduler running in this process with {len(app.extensions['engage.jobs'])} job(s)."
        )
    if app.config["MAIL_BACKEND"] == "file":
        click.echo(f"Mail is written as .eml files to {app.config['MAIL_OUTBOX_DIR']}")
    click.echo(f"Engage is at http://{host}:{port}/  (Ctrl+C to stop)")
    try:
        run_simple(host, port, app, use_debugger=app.debug, use_reloader=False, threaded=True)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)


# engage db ----------------------------------------------------------------------------------
@click.group("db")
def db_group() -> None:
    """Database migrations (Alembic)."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from alembic import command

    from engage.migrate import alembic_config

    command.upgrade(alembic_config(current_app), revision)
    click.echo(f"Database is at {revision}.")


@db_group.command("downgrade")
@click.argument("revision", default="-1")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Undo migrations down to REVISION (default: one step back)."""
    from alembic import command

    from engage.migrate import alembic_config

    command.downgrade(alembic_config(current_app), revision)
    click.echo(f"Database downgraded to {revision}.")


@db_group.command("current")
@with_appcontext
def db_current() -> None:
    """Show the database's revision and whether it is the newest."""
    from engage.migrate import current_revisions, head_revisions

    current, heads = current_revisions(current_app), head_revisions(current_app)
    click.echo(f"current: {', '.join(sorted(current)) or '(not migrated)'}")
    click.echo(f"newest:  {', '.join(sorted(heads))}")
    click.echo("up to date" if current == heads else "behind: run `engage db upgrade`")


@db_group.command("revision")
@click.option("-m", "--message", required=True, help="What the change does.")
@click.option("--autogenerate/--empty", default=True, show_default=True)
@with_appcontext
def db_revision(message: str, autogenerate: bool) -> None:
    """Write a new migration (review it before committing)."""
    from alembic import command

    from engage.migrate import alembic_config

    command.revision(alembic_config(current_app), message=message, autogenerate=autogenerate)


# engage demo --------------------------------------------------------------------------------
@click.group("demo")
def demo_group() -> None:
    """Demonstration data for development."""


@demo_group.command("seed")
@with_appcontext
def demo_seed() -> None:
    """Create the network's registries, one demo account per role, and the packages' demo
    data (idempotent)."""
    import json

    from engage.db import get_session
    from engage.demo import DemoRefused, credentials_file, demo_seeders, seed_demo
    from engage.timeutil import utcnow

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    path = credentials_file(app)
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    session = get_session()
    try:
        lines = seed_demo(session, app.config, known, utcnow(), demo_seeders(app))
    except DemoRefused as exc:
        raise click.ClickException(str(exc)) from None
    session.commit()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(known, indent=2))
    path.chmod(0o600)
    for line in lines:
        click.echo(line)


# engage scheduler ---------------------------------------------------------------------------
@click.group("scheduler")
def scheduler_group() -> None:
    """Scheduled jobs."""


@scheduler_group.command("list")
@with_appcontext
def scheduler_list() -> None:
    """List the registered jobs and their triggers."""
    for job in current_app.extensions["engage.jobs"]:
        args = ", ".join(f"{k}={v}" for k, v in job.trigger_args.items())
        click.echo(f"{job.id}\t{job.trigger}({args})\t{job.description}")


@scheduler_group.command("run")
@with_appcontext
def scheduler_run() -> None:
    """Run the scheduler in this process until stopped (exactly one per deployment)."""
    from engage.migrate import unapplied_migrations_message
    from engage.scheduler import (
        RunningJobs,
        build_scheduler,
        single_scheduler_lock,
        stop_on_signals,
    )

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    problem = unapplied_migrations_message(app)
    if problem:
        raise click.ClickException(problem)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with single_scheduler_lock(app):
        scheduler = build_scheduler(app, background=False)
        stop_on_signals(app, scheduler)
        click.echo(f"Scheduler started with {len(app.extensions['engage.jobs'])} job(s).")
        scheduler.start()
        # start() returns once a signal stopped it: wait for the jobs still finishing.
        running: RunningJobs | None = app.extensions.get("engage.running_jobs")
        if running is not None:
            running.wait_idle()
        click.echo("Scheduler stopped.")


@scheduler_group.command("run-job")
@click.argument("job_id")
@with_appcontext
def scheduler_run_job(job_id: str) -> None:
    """Run one job now, once (waiting while the scheduler or another process runs it)."""
    from engage.scheduler import run_job

    try:
        job = current_app.extensions["engage.jobs"][job_id]
    except KeyError:
        raise click.ClickException(
            f"No job named {job_id!r}; see `engage scheduler list`."
        ) from None
    summary = run_job(current_app._get_current_object(), job)  # type: ignore[attr-defined]
    click.echo(summary or "done")


# engage outbox ------------------------------------------------------------------------------
@click.group("outbox")
def outbox_group() -> None:
    """The mail outbox."""


@outbox_group.command("deliver")
@click.option("--limit", type=int, default=None, help="Claim at most this many emails.")
@with_appcontext
def outbox_deliver(limit: int | None) -> None:
    """Deliver due emails once, as an extra delivery worker (any number may run at once)."""
    import signal
    import threading

    from engage import delivery

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stop = threading.Event()
    # SIGTERM finishes the message being sent and hands the rest of the claim back.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    report = delivery.deliver(app, limit=limit, stop=stop)
    click.echo(report.summary())


@outbox_group.command("status")
@with_appcontext
def outbox_status() -> None:
    """Emails by kind and status; failed and unknown ones with their errors."""
    from engage import outbox
    from engage.db import get_session

    session = get_session()
    for row in outbox.counts(session):
        click.echo(f"{row.kind}\t{row.status.value}\t{row.count}")
    for message in outbox.problems(session):
        click.echo(f"#{message.id}\t{message.kind}\t{message.status.value}\t{message.last_error}")


# engage audit --------------------------------------------------------------------------------
@click.group("audit")
def audit_group() -> None:
    """Tamper-evident histories."""


@audit_group.command("verify")
@with_appcontext
def audit_verify() -> None:
    """Walk every registered ledger's hash chains and check the tables kept from them (exit 1
    on any problem)."""
    from engage import hashchain
    from engage.db import get_session

    session = get_session()
    failed = []
    for name, report in hashchain.ledgers().verify_all(session).items():
        for problem in report.problems:
            click.echo(problem)
        if report.problems:
            failed.append(
                f"{len(report.problems)} problem(s) in the {name} ledger "
                f"({report.checked} event(s) checked)"
            )
        else:
            click.echo(
                f"{name.capitalize()} ledger intact: {report.checked} event(s) checked, "
                "every chain verified."
            )
    if failed:
        raise click.ClickException("; ".join(failed) + ".")
