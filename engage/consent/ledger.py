"""The consent ledger's hash chains: how an event's hash is made, and how chains are checked.

Each participant's events form a chain ordered by ``seq`` (1, 2, 3, …). An event's ``hash`` is
the SHA-256 (hex) of the canonical JSON (keys sorted, no white space, UTF-8) of its fields and
``prev_hash``, the hash of the participant's previous event (64 zeros for the first). Changing
any stored field, deleting or inserting an event breaks the chain from that event on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.consent.models import (
    ConsentChoice,
    ConsentEvent,
    ConsentFormVersion,
    ConsentParticipant,
    ConsentRegistryMask,
    ConsentScope,
    ConsentScopeCode,
    Decision,
    VersionStatus,
)
from engage.hashchain import GENESIS_HASH, LedgerReport, chain_hash, timestamp
from engage.registries.queries import enrolments_select


def event_hash(
    *,
    user_id: int,
    seq: int,
    scope_code: str,
    decision: str,
    form_version_id: int,
    scope_revision: int,
    occurred_at: datetime,
    method: str,
    actor_id: int | None,
    receipt_id: str,
    prev_hash: str,
) -> str:
    """The SHA-256 (hex) of an event's canonical JSON, ``prev_hash`` included."""
    fields = {
        "user_id": user_id,
        "seq": seq,
        "scope_code": scope_code,
        "decision": str(decision),
        "form_version_id": form_version_id,
        "scope_revision": scope_revision,
        "occurred_at": timestamp(occurred_at),
        "method": str(method),
        "actor_id": actor_id,
        "receipt_id": receipt_id,
    }
    return chain_hash(fields, prev_hash)


def hash_of(event: ConsentEvent) -> str:
    """What ``event``'s hash should be, from its stored fields."""
    return event_hash(
        user_id=event.user_id,
        seq=event.seq,
        scope_code=event.scope_code,
        decision=event.decision,
        form_version_id=event.form_version_id,
        scope_revision=event.scope_revision,
        occurred_at=event.occurred_at,
        method=event.method,
        actor_id=event.actor_id,
        receipt_id=event.receipt_id,
        prev_hash=event.prev_hash,
    )


@dataclass(frozen=True)
class LedgerProblem:
    """Something in the ledger that does not add up."""

    user_id: int
    event_id: int | None
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = f"consent event {self.event_id} (participant {self.user_id}, seq {self.seq})"
        if self.event_id is None:
            where = f"participant {self.user_id}"
        return f"{where}: {self.message}"


def _events_in_chain_order(session: Session, batch_size: int) -> Iterator[ConsentEvent]:
    """Every event, by participant then ``seq``, read in keyset batches (bounded memory)."""
    last: tuple[int, int] = (0, 0)
    while True:
        batch = list(
            session.scalars(
                sa.select(ConsentEvent)
                .where(sa.tuple_(ConsentEvent.user_id, ConsentEvent.seq) > sa.tuple_(*last))
                .order_by(ConsentEvent.user_id, ConsentEvent.seq)
                .limit(batch_size)
            )
        )
        if not batch:
            return
        yield from batch
        last = (batch[-1].user_id, batch[-1].seq)
        session.expunge_all()


def verify_chains(session: Session, batch_size: int = 5000) -> tuple[int, list[LedgerProblem]]:
    """Walk every participant's chain; return (events checked, problems found).

    A problem is an event whose hash does not match its fields, whose ``prev_hash`` is not the
    previous event's hash, or a gap in ``seq`` (an event deleted).
    """
    problems: list[LedgerProblem] = []
    checked = 0
    user_id: int | None = None
    expected_prev, expected_seq = GENESIS_HASH, 1
    for event in _events_in_chain_order(session, batch_size):
        checked += 1
        if event.user_id != user_id:
            user_id, expected_prev, expected_seq = event.user_id, GENESIS_HASH, 1
        if event.seq != expected_seq:
            problems.append(
                LedgerProblem(
                    event.user_id,
                    event.id,
                    event.seq,
                    f"expected seq {expected_seq}: an event is missing before this one",
                )
            )
        if event.prev_hash != expected_prev:
            problems.append(
                LedgerProblem(
                    event.user_id,
                    event.id,
                    event.seq,
                    "prev_hash is not the hash of the participant's previous event",
                )
            )
        if hash_of(event) != event.hash:
            problems.append(
                LedgerProblem(
                    event.user_id,
                    event.id,
                    event.seq,
                    "hash does not match the event's stored fields (the row was changed)",
                )
            )
        expected_prev, expected_seq = event.hash, event.seq + 1
    return checked, problems


def verify_current_state(session: Session) -> list[LedgerProblem]:
    """Check the maintained tables against the ledger.

    Every current choice must be its scope's newest event; every scope with events must have a
    current choice; every participant's ``permitted_mask`` must equal the scopes they permit on
    the current form, and each of their registries' ``consent_registry_masks`` row that mask.
    """
    problems: list[LedgerProblem] = []
    newest = (
        sa.select(
            ConsentEvent.user_id,
            ConsentEvent.scope_code,
            sa.func.max(ConsentEvent.seq).label("seq"),
        )
        .group_by(ConsentEvent.user_id, ConsentEvent.scope_code)
        .subquery()
    )
    latest = (
        sa.select(ConsentEvent)
        .join(
            newest,
            sa.and_(
                newest.c.user_id == ConsentEvent.user_id,
                newest.c.scope_code == ConsentEvent.scope_code,
                newest.c.seq == ConsentEvent.seq,
            ),
        )
        .subquery()
    )
    rows = session.execute(
        sa.select(
            latest.c.user_id,
            latest.c.scope_code,
            latest.c.id,
            latest.c.seq,
            latest.c.decision,
            latest.c.scope_revision,
            ConsentChoice.event_id,
            ConsentChoice.decision,
            ConsentChoice.scope_revision,
        )
        .outerjoin(
            ConsentChoice,
            sa.and_(
                ConsentChoice.user_id == latest.c.user_id,
                ConsentChoice.scope_code == latest.c.scope_code,
            ),
        )
        .where(
            sa.or_(
                ConsentChoice.event_id.is_(None),
                ConsentChoice.event_id != latest.c.id,
                ConsentChoice.decision != latest.c.decision,
                ConsentChoice.scope_revision != latest.c.scope_revision,
            )
        )
        .order_by(latest.c.user_id, latest.c.scope_code)
    )
    for user_id, code, event_id, seq, *_rest in rows:
        problems.append(
            LedgerProblem(
                user_id,
                event_id,
                seq,
                f"the current choice for {code} is not this newest event of the ledger",
            )
        )
    problems.extend(_mask_problems(session))
    problems.extend(_registry_mask_problems(session))
    return problems


def _registry_mask_problems(session: Session) -> list[LedgerProblem]:
    """Enrolments of participants without their mask row, and rows whose mask differs."""
    enrolments = enrolments_select().subquery()
    missing = session.execute(
        sa.select(enrolments.c.user_id, enrolments.c.registry_id)
        .join(ConsentParticipant, ConsentParticipant.user_id == enrolments.c.user_id)
        .outerjoin(
            ConsentRegistryMask,
            sa.and_(
                ConsentRegistryMask.user_id == enrolments.c.user_id,
                ConsentRegistryMask.registry_id == enrolments.c.registry_id,
            ),
        )
        .where(ConsentRegistryMask.user_id.is_(None))
        .order_by(enrolments.c.user_id, enrolments.c.registry_id)
    )
    differing = session.execute(
        sa.select(ConsentRegistryMask.user_id, ConsentRegistryMask.registry_id)
        .join(ConsentParticipant, ConsentParticipant.user_id == ConsentRegistryMask.user_id)
        .where(ConsentRegistryMask.permitted_mask != ConsentParticipant.permitted_mask)
        .order_by(ConsentRegistryMask.user_id, ConsentRegistryMask.registry_id)
    )
    return [
        LedgerProblem(user_id, None, None, f"no registry mask for registry {registry_id}")
        for user_id, registry_id in missing
    ] + [
        LedgerProblem(
            user_id,
            None,
            None,
            f"the registry mask for registry {registry_id} differs from permitted_mask",
        )
        for user_id, registry_id in differing
    ]


def _mask_problems(session: Session) -> list[LedgerProblem]:
    current = session.scalar(
        sa.select(ConsentFormVersion).where(ConsentFormVersion.status == VersionStatus.PUBLISHED)
    )
    if current is None:
        return []
    revisions = dict(
        session.execute(
            sa.select(ConsentScope.code, ConsentScope.revision).where(
                ConsentScope.version_id == current.id
            )
        ).all()
    )
    bits = dict(session.execute(sa.select(ConsentScopeCode.code, ConsentScopeCode.bit)).all())
    problems = []
    expected: dict[int, int] = {}
    for user_id, code, revision in session.execute(
        sa.select(ConsentChoice.user_id, ConsentChoice.scope_code, ConsentChoice.scope_revision)
        .where(ConsentChoice.decision == Decision.PERMIT)
        .order_by(ConsentChoice.user_id)
        .execution_options(yield_per=10_000)
    ):
        if revisions.get(code) == revision and code in bits:
            expected[user_id] = expected.get(user_id, 0) | (1 << bits[code])
    for user_id, mask in session.execute(
        sa.select(ConsentParticipant.user_id, ConsentParticipant.permitted_mask)
        .order_by(ConsentParticipant.user_id)
        .execution_options(yield_per=10_000)
    ):
        if mask != expected.get(user_id, 0):
            problems.append(
                LedgerProblem(
                    user_id,
                    None,
                    None,
                    "permitted_mask does not match the current choices on the current form",
                )
            )
    return problems


def verify(session: Session) -> LedgerReport:
    """The consent ledger's verifier for ``engage audit verify``: every chain, and the
    maintained tables against it."""
    checked, problems = verify_chains(session)
    problems += verify_current_state(session)
    return LedgerReport(checked=checked, problems=[str(problem) for problem in problems])
