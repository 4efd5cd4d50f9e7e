"""``engage consent ...`` commands."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from engage.consent import receipts


@click.group("consent")
def consent_group() -> None:
    """Consent receipts and forms."""


@consent_group.command("verify-receipt")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def verify_receipt(file: Path) -> None:
    """Check that FILE is a consent receipt this platform signed, unchanged (exit 1 if not)."""
    try:
        document = receipts.load(file.read_bytes())
    except (OSError, receipts.ReceiptFormatError) as exc:
        raise click.ClickException(f"{file}: not a readable JSON receipt ({exc}).") from None
    check = receipts.verify(document, current_app.config["CONSENT_RECEIPT_KEY"])
    if not check.is_valid:
        raise click.ClickException(f"INVALID: {check.reason}.")
    click.echo(
        f"VALID: receipt {document.get('receipt_id')} issued {document.get('issued_at')}: "
        f"{check.reason}."
    )
