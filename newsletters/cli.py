"""``engage newsletters …``: run a delivery worker by hand, start due campaigns, show status."""

from __future__ import annotations

import signal
import threading

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from engage.db import get_session
from engage.timeutil import utcnow


@click.group("newsletters")
def newsletters_group() -> None:
    """Newsletters: delivery workers, due campaigns, status."""


@newsletters_group.command("deliver")
@click.option("--max-batches", type=int, default=None, help="Claim at most this many batches.")
@click.option(
    "--follow",
    is_flag=True,
    help="Keep running: look for due batches every --poll seconds until stopped (SIGTERM).",
)
@click.option("--poll", type=float, default=5.0, show_default=True)
@click.option("--send", "send_ids", type=int, multiple=True, help="Only these sends.")
@with_appcontext
def deliver_command(
    max_batches: int | None, follow: bool, poll: float, send_ids: tuple[int, ...]
) -> None:
    """Run one delivery worker (any number may run at once: they never share a batch).

    SIGTERM or Ctrl-C finishes the batch in hand and stops.
    """
    from newsletters import delivery

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    while True:
        report = delivery.deliver(
            app, stop=stop, max_batches=max_batches, send_ids=list(send_ids) or None
        )
        click.echo(report.summary(), err=True)
        if not follow or stop.is_set() or max_batches is not None:
            return
        stop.wait(poll)
        if stop.is_set():
            return


@newsletters_group.command("start-due")
@with_appcontext
def start_due_command() -> None:
    """Start every campaign whose scheduled occurrence is due (freezing its audience)."""
    from newsletters import sending

    session = get_session()
    summary = sending.start_due(session, utcnow(), dict(current_app.config))
    session.commit()
    click.echo(summary)


@newsletters_group.command("status")
@with_appcontext
def status_command() -> None:
    """Deliveries of every send still sending or paused, by status."""
    from newsletters.models import Delivery, Send, SendStatus

    session = get_session()
    rows = session.execute(
        sa.select(Send.id, Send.campaign_id, Send.status, Delivery.status, sa.func.count())
        .join(Delivery, Delivery.send_id == Send.id)
        .where(Send.status.in_([SendStatus.SENDING, SendStatus.PAUSED]))
        .group_by(Send.id, Send.campaign_id, Send.status, Delivery.status)
        .order_by(Send.id)
    ).all()
    if not rows:
        click.echo("No newsletter is being sent.")
    for send_id, campaign_id, send_status, delivery_status, count in rows:
        click.echo(
            f"send {send_id} (campaign {campaign_id}, {send_status.value})\t"
            f"{delivery_status.value}\t{count}"
        )
