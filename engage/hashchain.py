"""Hash chains for append-only histories, and the ledger verifiers ``engage audit verify`` runs.

Every event of a chain stores ``hash = SHA-256(canonical JSON of its fields + prev_hash)``, the
first one chaining from :data:`GENESIS_HASH`; changing, removing or reordering an event breaks
every hash after it. Each package that keeps such a history (consent events, registry
decisions, …) registers a verifier at composition time; ``engage audit verify`` runs them all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app
from sqlalchemy.orm import Session

from engage.timeutil import as_utc

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON: sorted keys, no white space, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def timestamp(value: datetime) -> str:
    """A UTC time as ISO 8601 with microseconds (what every database gives back exactly)."""
    return as_utc(value).isoformat(timespec="microseconds")


def chain_hash(fields: Mapping[str, Any], prev_hash: str) -> str:
    """The SHA-256 (hex) of ``fields`` with ``prev_hash``, as canonical JSON."""
    if "prev_hash" in fields:
        raise ValueError("prev_hash is given separately")
    return hashlib.sha256(canonical_json({**fields, "prev_hash": prev_hash})).hexdigest()


@dataclass(frozen=True)
class ChainLink:
    """One stored event of a chain, as a verifier reads it."""

    # What a person reads to find it, e.g. "consent event 12 (participant 3, seq 2)".
    where: str
    fields: Mapping[str, Any]
    prev_hash: str
    hash: str


def verify_chain(links: Iterator[ChainLink]) -> Iterator[str]:
    """Check one chain, oldest first: each link's hash and its link to the one before.

    Yields a problem description for each link that does not add up.
    """
    expected_prev = GENESIS_HASH
    for link in links:
        if link.prev_hash != expected_prev:
            yield f"{link.where}: does not follow the event before it (chain broken)"
        if chain_hash(link.fields, link.prev_hash) != link.hash:
            yield f"{link.where}: its content does not match its hash (changed after the fact)"
        expected_prev = link.hash


@dataclass
class LedgerReport:
    """What one ledger's verifier found."""

    checked: int
    problems: list[str] = field(default_factory=list)


def chain_head(
    session: Session, seq: sa.ColumnElement[int], hash_: sa.ColumnElement[str], *where: Any
) -> tuple[int, str]:
    """The newest ``(seq, hash)`` of a chain whose events are numbered from 1 (the events
    matching ``where``), or ``(0, GENESIS_HASH)`` when it has none yet. Callers hold a lock on
    the chain's owner, so the next event's ``seq`` is this one's plus one."""
    row = session.execute(sa.select(seq, hash_).where(*where).order_by(seq.desc()).limit(1)).first()
    return (row[0], row[1]) if row else (0, GENESIS_HASH)


def verify_numbered_chain(links: Iterable[ChainLink], report: LedgerReport) -> None:
    """Check one chain whose links carry ``seq`` from 1, oldest first (streamed): each hash,
    each link to the one before, and no gap in ``seq`` (a deleted event); count the links and
    add the problems to ``report``."""
    found: list[str] = []
    expected_seq = 1

    def numbered() -> Iterator[ChainLink]:
        nonlocal expected_seq
        for link in links:
            if link.fields["seq"] != expected_seq:
                found.append(
                    f"{link.where}: expected seq {expected_seq}: an event is missing before it"
                )
            expected_seq = int(link.fields["seq"]) + 1
            report.checked += 1
            yield link

    for problem in verify_chain(numbered()):
        found.append(problem)
    report.problems.extend(found)


Verifier = Callable[[Session], LedgerReport]


@dataclass
class Ledgers:
    """The verifiers the packages registered, by ledger name (bound at composition time)."""

    verifiers: dict[str, Verifier] = field(default_factory=dict)

    def register(self, name: str, verifier: Verifier) -> None:
        """Register ``verifier`` for the ledger called ``name`` (e.g. "consent")."""
        if name in self.verifiers:
            raise ValueError(f"ledger {name!r} is already registered")
        self.verifiers[name] = verifier

    def verify_all(self, session: Session) -> dict[str, LedgerReport]:
        """Run every verifier, in registration order."""
        return {name: verifier(session) for name, verifier in self.verifiers.items()}


def init_app(app: Flask, ledgers: Ledgers) -> None:
    """Bind the registered ledgers to ``app``."""
    app.extensions["engage.ledgers"] = ledgers


def ledgers(app: Flask | None = None) -> Ledgers:
    """The app's registered ledgers."""
    return (app or current_app).extensions["engage.ledgers"]
