"""``engage consent ...`` and ``engage audit ...`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from engage.consent import receipts
from engage.consent.ledger import verify_chains, verify_current_state
from engage.db import get_session


@click.group("consent")
def consent_group() -> None:
    """Consent receipts and forms."""


@consent_group.command("verify-receipt")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def verify_receipt(file: Path) -> None:
    """Check that FILE is a consent receipt this platform signed, unchanged (exit 1 if not)."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise click.ClickException(f"{file}: not a readable JSON receipt ({exc}).") from None
    check = receipts.verify(document, current_app.config["CONSENT_RECEIPT_KEY"])
    if not check.is_valid:
        raise click.ClickException(f"INVALID: {check.reason}.")
    click.echo(
        f"VALID: receipt {document.get('receipt_id')} issued {document.get('issued_at')}: "
        f"{check.reason}."
    )


@click.group("audit")
def audit_group() -> None:
    """Tamper-evident histories."""


@audit_group.command("verify")
@with_appcontext
def audit_verify() -> None:
    """Walk every consent hash chain and check the current tables (exit 1 on any problem)."""
    session = get_session()
    checked, problems = verify_chains(session)
    problems += verify_current_state(session)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        raise click.ClickException(
            f"{len(problems)} problem(s) in the consent ledger ({checked} event(s) checked)."
        )
    click.echo(f"Consent ledger intact: {checked} event(s) checked, every chain verified.")
