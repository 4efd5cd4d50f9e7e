"""The one place other packages read consent from.

- :func:`permits` — does a participant currently (or at a past time) permit all of some scopes?
- :func:`blocking_scopes` — which of them (or which required scope) stand in the way?
- :func:`count_permitting` — how many participants (of a registry) currently permit them?
- :func:`iter_permitting_ids` — their user ids, in batches.
- :func:`current_scopes` — the scopes of the published form (code, title, kind, DUO code,
  required).

Taking part needs every *required* scope of the form, so each question also asks for the
required scopes: someone who withdrew a required scope permits nothing. A decision counts only
on the wording it was made on: a scope that a newer version changed (or added) is not
permitted until the participant decides again; an unchanged one carries over.

Counts read ``consent_participants.permitted_mask`` (per registry, the same masks in
``consent_registry_masks``) through their indexes, never the events, so their cost does not
grow with the length of the history.

The plain reads that consent's own modules share (the published and draft versions, a
version's scopes, a participant's ledger head and page state token, an open erasure request)
live here too; what only consent's pages read is in :mod:`engage.consent.page_queries`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.consent.errors import UnknownScope
from engage.consent.models import (
    ConsentEvent,
    ConsentFormVersion,
    ConsentParticipant,
    ConsentRegistryMask,
    ConsentScope,
    ConsentScopeCode,
    Decision,
    ErasureRequest,
    ErasureStatus,
    ScopeKind,
    VersionStatus,
)
from engage.hashchain import GENESIS_HASH

# Up to this many masks are listed in an IN (...) for an index-only count; beyond, the count
# tests the bits of every row instead (still no events read).
MAX_LISTED_MASKS = 1024


# Form versions and their scopes -------------------------------------------------------------------
def current_version(session: Session) -> ConsentFormVersion | None:
    """The published form version, if there is one."""
    return session.scalar(
        sa.select(ConsentFormVersion).where(ConsentFormVersion.status == VersionStatus.PUBLISHED)
    )


def draft_version(session: Session) -> ConsentFormVersion | None:
    """The draft being prepared, if there is one."""
    return session.scalar(
        sa.select(ConsentFormVersion).where(ConsentFormVersion.status == VersionStatus.DRAFT)
    )


def scopes_of(session: Session, version_id: int) -> list[ConsentScope]:
    """The scopes of a version in form order."""
    return list(
        session.scalars(
            sa.select(ConsentScope)
            .where(ConsentScope.version_id == version_id)
            .order_by(ConsentScope.position, ConsentScope.id)
        )
    )


@dataclass(frozen=True)
class PublishedScope:
    """One scope of the published form, as other packages need it (no ORM row)."""

    code: str
    title: str
    kind: ScopeKind
    duo_code: str | None
    is_required: bool


def current_scopes(session: Session) -> list[PublishedScope]:
    """The published form's scopes in form order (empty while no form is published)."""
    rows = session.execute(
        sa.select(
            ConsentScope.code,
            ConsentScope.title,
            ConsentScope.kind,
            ConsentScope.duo_code,
            ConsentScope.is_required,
        )
        .join(ConsentFormVersion, ConsentFormVersion.id == ConsentScope.version_id)
        .where(ConsentFormVersion.status == VersionStatus.PUBLISHED)
        .order_by(ConsentScope.position, ConsentScope.id)
    )
    return [
        PublishedScope(
            code=row.code,
            title=row.title,
            kind=row.kind,
            duo_code=row.duo_code,
            is_required=row.is_required,
        )
        for row in rows
    ]


# A participant's ledger head and page state -------------------------------------------------------
def state_token(head_hash: str | None) -> str:
    """The token a consent page carries: it names the person's newest event."""
    return (head_hash or GENESIS_HASH)[:24]


def ledger_head(session: Session, user_id: int) -> tuple[int, str]:
    """The sequence number and hash of ``user_id``'s newest consent event (0 and the genesis
    hash before the first)."""
    row = session.execute(
        sa.select(ConsentEvent.seq, ConsentEvent.hash)
        .where(ConsentEvent.user_id == user_id)
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
    ).first()
    return (row.seq, row.hash) if row else (0, GENESIS_HASH)


def current_state(session: Session, user_id: int) -> str:
    """The state token of ``user_id``'s consent now."""
    return state_token(ledger_head(session, user_id)[1])


def open_erasure_request(session: Session, user_id: int) -> ErasureRequest | None:
    """The participant's request still awaiting staff, if any."""
    return session.scalar(
        sa.select(ErasureRequest).where(
            ErasureRequest.user_id == user_id,
            ErasureRequest.status.in_([ErasureStatus.RECEIVED, ErasureStatus.IN_PROGRESS]),
        )
    )


# Does a participant permit these scopes; how many do ----------------------------------------------


@dataclass(frozen=True)
class _Form:
    """The current form as the questions need it: scope revisions, bits and required codes."""

    version_id: int
    revisions: dict[str, int]
    bits: dict[str, int]
    required: tuple[str, ...]


def _current_form(session: Session) -> _Form | None:
    rows = session.execute(
        sa.select(
            ConsentScope.version_id,
            ConsentScope.code,
            ConsentScope.revision,
            ConsentScope.is_required,
            ConsentScopeCode.bit,
        )
        .join(ConsentFormVersion, ConsentFormVersion.id == ConsentScope.version_id)
        .join(ConsentScopeCode, ConsentScopeCode.code == ConsentScope.code)
        .where(ConsentFormVersion.status == VersionStatus.PUBLISHED)
        .order_by(ConsentScope.position, ConsentScope.id)
    ).all()
    if not rows:
        return None
    return _Form(
        version_id=rows[0].version_id,
        revisions={row.code: row.revision for row in rows},
        bits={row.code: row.bit for row in rows},
        required=tuple(row.code for row in rows if row.is_required),
    )


def _asked(session: Session, scopes: Iterable[str]) -> list[str]:
    """The asked-for codes, in order, without repeats; codes never published are an error."""
    codes = list(dict.fromkeys(scopes))
    if not codes:
        raise ValueError("ask about at least one scope code")
    known = set(
        session.scalars(sa.select(ConsentScopeCode.code).where(ConsentScopeCode.code.in_(codes)))
    )
    unknown = [code for code in codes if code not in known]
    if unknown:
        raise UnknownScope(f"No consent form has ever had the scope {', '.join(unknown)}.")
    return codes


def _version_at(session: Session, when: datetime) -> ConsentFormVersion | None:
    return session.scalar(
        sa.select(ConsentFormVersion)
        .where(
            ConsentFormVersion.published_at.is_not(None),
            ConsentFormVersion.published_at <= when,
        )
        .order_by(ConsentFormVersion.published_at.desc(), ConsentFormVersion.number.desc())
        .limit(1)
    )


def blocking_scopes(
    session: Session, user_id: int, scopes: Iterable[str], *, as_of: datetime | None = None
) -> list[str]:
    """The scopes that keep ``user_id`` from permitting all of ``scopes`` (empty: permitted).

    The asked-for scopes come first, then any required scope not permitted. A scope the form
    (at that time) no longer has is blocking. With ``as_of``, the answer is rebuilt from the
    ledger as it stood at that moment.

    :raises UnknownScope: a code that no published form ever had (a programming error).
    """
    codes = _asked(session, scopes)
    if as_of is not None:
        return _blocking_as_of(session, user_id, codes, as_of)
    form = _current_form(session)
    if form is None:
        return codes
    mask = session.scalar(
        sa.select(ConsentParticipant.permitted_mask).where(ConsentParticipant.user_id == user_id)
    )
    mask = mask or 0
    needed = codes + [code for code in form.required if code not in codes]
    return [code for code in needed if code not in form.bits or not mask & (1 << form.bits[code])]


def _blocking_as_of(session: Session, user_id: int, codes: list[str], when: datetime) -> list[str]:
    version = _version_at(session, when)
    if version is None:
        return codes
    form_scopes = scopes_of(session, version.id)
    revisions = {scope.code: scope.revision for scope in form_scopes}
    needed = codes + [s.code for s in form_scopes if s.is_required and s.code not in codes]
    latest: dict[str, tuple[Decision, int]] = {}
    for code, decision, revision in session.execute(
        sa.select(ConsentEvent.scope_code, ConsentEvent.decision, ConsentEvent.scope_revision)
        .where(
            ConsentEvent.user_id == user_id,
            ConsentEvent.occurred_at <= when,
            ConsentEvent.scope_code.in_(needed),
        )
        .order_by(ConsentEvent.seq)
    ):
        latest[code] = (decision, revision)
    return [
        code
        for code in needed
        if code not in revisions or latest.get(code) != (Decision.PERMIT, revisions[code])
    ]


def permits(
    session: Session, user_id: int, scopes: Iterable[str], *, as_of: datetime | None = None
) -> bool:
    """Does ``user_id`` permit every one of ``scopes`` now (or at ``as_of``)?

    :raises UnknownScope: a code that no published form ever had.
    """
    return not blocking_scopes(session, user_id, scopes, as_of=as_of)


def _mask_condition(
    form: _Form, codes: list[str], column: sa.ColumnElement[int]
) -> sa.ColumnElement[bool] | None:
    """Rows whose mask holds every bit of ``codes`` and of the required scopes (None: nobody)."""
    needed = set(codes) | set(form.required)
    if any(code not in form.bits for code in needed):
        return None  # a scope the current form no longer has: nobody permits it
    required = sum(1 << form.bits[code] for code in needed)
    # Masks only hold bits of the current form's scopes (publishing clears the others), so
    # the matching masks are ``required`` plus any combination of the other current bits.
    free = [bit for code, bit in form.bits.items() if code not in needed]
    if 2 ** len(free) > MAX_LISTED_MASKS:
        return column.op("&")(required) == required
    masks = [
        required | sum(1 << bit for bit in combination)
        for size in range(len(free) + 1)
        for combination in itertools.combinations(free, size)
    ]
    return column.in_(masks)


def _permitting(
    session: Session, scopes: Iterable[str], registry_id: int | None
) -> tuple[sa.Select, sa.ColumnElement[int]] | None:
    """The query of permitting user ids and its id column (None: nobody can permit).

    Overall it reads consent_participants; for one registry, consent_registry_masks (the same
    masks, once per enrolment), each through its own mask index and without a join.
    """
    codes = _asked(session, scopes)
    form = _current_form(session)
    if form is None:
        return None
    if registry_id is None:
        table, where = ConsentParticipant, []
    else:
        table, where = ConsentRegistryMask, [ConsentRegistryMask.registry_id == registry_id]
    condition = _mask_condition(form, codes, table.permitted_mask)
    if condition is None:
        return None
    return sa.select(table.user_id).where(condition, *where), table.user_id


def count_permitting(
    session: Session, scopes: Iterable[str], *, registry_id: int | None = None
) -> int:
    """How many participants (enrolled in ``registry_id``) currently permit all of ``scopes``.

    :raises UnknownScope: a code that no published form ever had.
    """
    permitting = _permitting(session, scopes, registry_id)
    if permitting is None:
        return 0
    query, _user_id = permitting
    return session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0


def count_permitting_by_registry(
    session: Session, scopes: Iterable[str], registry_ids: Iterable[int]
) -> dict[int, int]:
    """How many participants of each of ``registry_ids`` currently permit all of ``scopes``,
    by registry id (0 for a registry with none), in one grouped statement whatever the number
    of registries (plus the two that read the asked codes and the current form).

    :raises UnknownScope: a code that no published form ever had.
    """
    ids = sorted(set(registry_ids))
    counts = dict.fromkeys(ids, 0)
    if not ids:
        return counts
    codes = _asked(session, scopes)
    form = _current_form(session)
    if form is None:
        return counts
    condition = _mask_condition(form, codes, ConsentRegistryMask.permitted_mask)
    if condition is None:
        return counts
    rows = session.execute(
        sa.select(ConsentRegistryMask.registry_id, sa.func.count())
        .where(condition, ConsentRegistryMask.registry_id.in_(ids))
        .group_by(ConsentRegistryMask.registry_id)
    )
    counts.update({registry_id: count for registry_id, count in rows})
    return counts


def iter_permitting_ids(
    session: Session,
    scopes: Iterable[str],
    *,
    registry_id: int | None = None,
    batch_size: int = 1000,
) -> Iterator[list[int]]:
    """User ids of the participants who currently permit all of ``scopes``, in ascending
    batches of at most ``batch_size`` (each batch is one query, so memory stays bounded).

    :raises UnknownScope: a code that no published form ever had.
    """
    permitting = _permitting(session, scopes, registry_id)
    if permitting is None:
        return
    query, user_id = permitting
    last = 0
    while True:
        batch = list(
            session.scalars(query.where(user_id > last).order_by(user_id).limit(batch_size))
        )
        if not batch:
            return
        yield batch
        last = batch[-1]


def permitting_ids(session: Session, scopes: Iterable[str]) -> sa.Select[tuple[int]] | None:
    """A query of the user ids of the participants who currently permit all of ``scopes``, for
    other packages to use as a subquery (a newsletter audience); None when nobody can.

    :raises UnknownScope: a code that no published form ever had.
    """
    permitting = _permitting(session, scopes, None)
    return None if permitting is None else permitting[0]


def permitting_among(session: Session, scopes: Iterable[str], user_ids: Iterable[int]) -> set[int]:
    """Which of ``user_ids`` currently permit all of ``scopes`` (one statement).

    :raises UnknownScope: a code that no published form ever had.
    """
    ids = sorted(set(user_ids))
    permitting = _permitting(session, scopes, None) if ids else None
    if permitting is None:
        return set()
    query, user_id = permitting
    return set(session.scalars(query.where(user_id.in_(ids))))
