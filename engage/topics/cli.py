"""``engage topics ...`` commands."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from engage.db import get_session
from engage.topics import services


@click.group("topics")
def topics_group() -> None:
    """Research topics."""


@topics_group.command("reconcile")
@click.option("--fix", is_flag=True, help="Set mismatching counters to the row counts.")
@with_appcontext
def reconcile(fix: bool) -> None:
    """Check every topic's support counter against its support rows (exit 1 on a mismatch)."""
    session = get_session()
    mismatches = services.reconcile_support_counts(session, fix=fix)
    for topic_id, counter, rows in mismatches:
        click.echo(f"topic {topic_id}: counter {counter}, support rows {rows}")
    if fix:
        session.commit()
        click.echo(f"Fixed {len(mismatches)} topic(s).")
        return
    if mismatches:
        raise click.ClickException(f"{len(mismatches)} topic(s) have a wrong support counter.")
    click.echo("All support counters equal their support rows.")
