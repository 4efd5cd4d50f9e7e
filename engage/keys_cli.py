"""``engage keys rotate``: re-encrypt every encrypted column under the first key of
``ENCRYPTION_KEYS``.

Rotating a key: put the new key first in ``ENCRYPTION_KEYS`` (the old ones after it), restart
the app (it now writes with the new key and still reads the old), run ``engage keys rotate``,
then remove the old keys. The command finds the columns by their type (every
:class:`~engage.crypto.EncryptedText` column of every table), works through each table in
batches of rows with one commit per batch, leaves values already under the first key alone, and
may be run again at any time (a second run changes nothing). Plain text is never printed.
"""

from __future__ import annotations

from dataclasses import dataclass

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import with_appcontext

from engage import crypto
from engage.db import Base, Database

DEFAULT_BATCH_SIZE = 500


@dataclass
class ColumnRotation:
    """What rotating one column did."""

    table: str
    column: str
    rotated: int = 0
    already_current: int = 0
    # Changed by someone else between the read and the write (written with the first key).
    changed_meanwhile: int = 0

    @property
    def name(self) -> str:
        """``table.column``."""
        return f"{self.table}.{self.column}"


def encrypted_columns(metadata: sa.MetaData) -> list[tuple[sa.Table, list[sa.Column]]]:
    """Every table with encrypted columns, and those columns, in a stable order."""
    found = []
    for table in metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, crypto.EncryptedText)]
        if columns:
            found.append((table, columns))
    return found


def rotate_table(
    engine: sa.Engine,
    keyring: crypto.Keyring,
    table: sa.Table,
    columns: list[sa.Column],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[ColumnRotation]:
    """Re-encrypt ``columns`` of ``table`` under the first key, ``batch_size`` rows per
    transaction, in primary-key order.

    The columns are read and written as plain text (the ciphertext as stored), so nothing is
    decrypted into Python except inside :meth:`Keyring.rotate`. Each write is conditional on
    the value being unchanged since the read, so a concurrent edit is never overwritten.

    :raises KeyringError: a value cannot be decrypted with any of the keys.
    """
    (key,) = table.primary_key.columns  # every Engage table has a one-column key
    raw = sa.table(
        table.name,
        sa.column(key.name, key.type),
        *(sa.column(column.name, sa.Text()) for column in columns),
    )
    counts = {column.name: ColumnRotation(table.name, column.name) for column in columns}
    last = None
    while True:
        query = (
            sa.select(raw.c[key.name], *(raw.c[c.name] for c in columns))
            .where(sa.or_(*(raw.c[c.name].is_not(None) for c in columns)))
            .order_by(raw.c[key.name])
        )
        if last is not None:
            query = query.where(raw.c[key.name] > last)
        with engine.begin() as connection:
            rows = connection.execute(query.limit(batch_size)).all()
            for row in rows:
                for column in columns:
                    value = row._mapping[column.name]
                    if value is None:
                        continue
                    count = counts[column.name]
                    if keyring.is_current(value):
                        count.already_current += 1
                        continue
                    result = connection.execute(
                        raw.update()
                        .where(
                            raw.c[key.name] == row._mapping[key.name],
                            raw.c[column.name] == value,
                        )
                        .values({column.name: keyring.rotate(value)})
                    )
                    if result.rowcount:
                        count.rotated += 1
                    else:
                        count.changed_meanwhile += 1
        if len(rows) < batch_size:
            break
        last = rows[-1]._mapping[key.name]
    return list(counts.values())


def rotate_all(app: Flask, *, batch_size: int = DEFAULT_BATCH_SIZE) -> list[ColumnRotation]:
    """Rotate every encrypted column of ``app``'s database (its models are all imported by
    ``create_app``, so ``Base.metadata`` knows every table)."""
    engine = Database.engine(app)
    keyring = crypto.keyring(app)
    found = []
    for table, columns in encrypted_columns(Base.metadata):
        found.extend(rotate_table(engine, keyring, table, columns, batch_size=batch_size))
    return found


@click.group("keys")
def keys_group() -> None:
    """Encryption keys of the fields encrypted at rest (ENCRYPTION_KEYS)."""


@keys_group.command("rotate")
@click.option(
    "--batch-size",
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rows per transaction.",
)
@with_appcontext
def rotate_command(batch_size: int) -> None:
    """Re-encrypt every encrypted value under the first key of ENCRYPTION_KEYS."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        results = rotate_all(app, batch_size=batch_size)
    except crypto.KeyringError as exc:
        raise click.ClickException(
            f"{exc} Values rotated before this one stay rotated; fix ENCRYPTION_KEYS and run "
            "the command again."
        ) from None
    for result in results:
        line = (
            f"{result.name}: {result.rotated} re-encrypted, "
            f"{result.already_current} already under the first key"
        )
        if result.changed_meanwhile:
            line += f", {result.changed_meanwhile} changed meanwhile (already under it)"
        click.echo(line)
    total = sum(result.rotated for result in results)
    click.echo(f"Done: {total} value(s) re-encrypted under the first key.")
