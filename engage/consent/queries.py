"""The one place other packages read consent from.

- :func:`permits` — does a participant currently (or at a past time) permit all of some scopes?
- :func:`blocking_scopes` — which of them (or which required scope) stand in the way?
- :func:`count_permitting` — how many participants (of a registry) currently permit them?
- :func:`iter_permitting_ids` — their user ids, in batches.

Taking part needs every *required* scope of the form, so each question also asks for the
required scopes: someone who withdrew a required scope permits nothing. A decision counts only
on the wording it was made on: a scope that a newer version changed (or added) is not
permitted until the participant decides again; an unchanged one carries over.

Counts read ``consent_participants.permitted_mask`` (per registry, the same masks in
``consent_registry_masks``) through their indexes, never the events, so their cost does not
grow with the length of the history. The page helpers below
(:func:`dashboard`, :func:`timeline`, :func:`history`) serve this package's own views.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.consent.models import (
    ConsentChoice,
    ConsentEvent,
    ConsentFormVersion,
    ConsentParticipant,
    ConsentReceipt,
    ConsentRegistryMask,
    ConsentScope,
    ConsentScopeCode,
    Decision,
    ErasureRequest,
    VersionStatus,
)
from engage.consent.services import (
    UnknownScope,
    VersionDiff,
    current_version,
    diff_scopes,
    scopes_of,
    state_token,
)

# Up to this many masks are listed in an IN (...) for an index-only count; beyond, the count
# tests the bits of every row instead (still no events read).
MAX_LISTED_MASKS = 1024


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


# The participant's own pages --------------------------------------------------------------------
@dataclass
class ScopeRow:
    """One scope on the dashboard with the participant's current choice."""

    scope: ConsentScope
    choice: ConsentChoice | None
    choice_version: int | None  # number of the version the choice was made on

    @property
    def is_current(self) -> bool:
        """The choice was made on this wording of the scope."""
        return self.choice is not None and self.choice.scope_revision == self.scope.revision

    @property
    def is_permitted(self) -> bool:
        """Permitted now."""
        return self.is_current and self.choice.decision == Decision.PERMIT

    @property
    def needs_decision(self) -> bool:
        """New, changed, or never decided: counts as not permitted until decided."""
        return not self.is_current

    @property
    def was_permitted_before(self) -> bool:
        """Allowed on an earlier wording (shown so the person knows what they had said)."""
        return self.choice is not None and self.choice.decision == Decision.PERMIT


@dataclass
class Dashboard:
    """Everything the consent dashboard shows."""

    version: ConsentFormVersion | None
    rows: list[ScopeRow] = field(default_factory=list)
    participant: ConsentParticipant | None = None
    state: str = state_token(None)
    reviewed_version: ConsentFormVersion | None = None
    diff: VersionDiff | None = None
    erasure_requests: list[ErasureRequest] = field(default_factory=list)
    latest_receipt_id: str | None = None

    @property
    def has_decided(self) -> bool:
        """The participant has made at least one decision."""
        return any(row.choice is not None for row in self.rows) or self.participant is not None

    @property
    def is_taking_part(self) -> bool:
        """Every required scope is permitted."""
        required = [row for row in self.rows if row.scope.is_required]
        return bool(required) and all(row.is_permitted for row in required)

    @property
    def needs_review(self) -> bool:
        """A newer version than the last one reviewed, or scopes awaiting a decision."""
        if self.version is None or not self.has_decided:
            return False
        reviewed = self.participant.reviewed_version_id if self.participant else None
        return reviewed != self.version.id or any(row.needs_decision for row in self.rows)

    @property
    def optional_permitted(self) -> list[ScopeRow]:
        """Optional scopes the participant allows (what "withdraw everything optional" ends)."""
        return [
            row
            for row in self.rows
            if not row.scope.is_required
            and row.choice is not None
            and row.choice.decision == Decision.PERMIT
        ]


def dashboard(session: Session, user_id: int) -> Dashboard:
    """The dashboard of ``user_id`` in a fixed number of queries, whatever the history."""
    version = current_version(session)
    if version is None:
        return Dashboard(version=None)
    scopes = scopes_of(session, version.id)
    participant = session.get(ConsentParticipant, user_id)
    choices = {
        choice.scope_code: (choice, number)
        for choice, number in session.execute(
            sa.select(ConsentChoice, ConsentFormVersion.number)
            .join(ConsentFormVersion, ConsentFormVersion.id == ConsentChoice.form_version_id)
            .where(ConsentChoice.user_id == user_id)
        )
    }
    head = session.scalar(
        sa.select(ConsentEvent.hash)
        .where(ConsentEvent.user_id == user_id)
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
    )
    reviewed = diff = None
    if participant is not None and participant.reviewed_version_id not in (None, version.id):
        reviewed = session.get(ConsentFormVersion, participant.reviewed_version_id)
        diff = diff_scopes(scopes_of(session, reviewed.id), scopes)
    erasures = list(
        session.scalars(
            sa.select(ErasureRequest)
            .where(ErasureRequest.user_id == user_id)
            .order_by(ErasureRequest.requested_at.desc(), ErasureRequest.id.desc())
        )
    )
    latest_receipt = session.scalar(
        sa.select(ConsentReceipt.id)
        .where(ConsentReceipt.user_id == user_id)
        .order_by(ConsentReceipt.issued_at.desc())
        .limit(1)
    )
    rows = [
        ScopeRow(
            scope=scope,
            choice=choices.get(scope.code, (None, None))[0],
            choice_version=choices.get(scope.code, (None, None))[1],
        )
        for scope in scopes
    ]
    return Dashboard(
        version=version,
        rows=rows,
        participant=participant,
        state=state_token(head),
        reviewed_version=reviewed,
        diff=diff,
        erasure_requests=erasures,
        latest_receipt_id=latest_receipt,
    )


@dataclass
class TimelineDecision:
    """One scope decision within a change."""

    code: str
    title: str
    decision: Decision


@dataclass
class TimelineEntry:
    """One change on the timeline: when, how, on which version, and its decisions."""

    occurred_at: datetime
    version_number: int
    method: str
    by_staff: bool
    receipt_id: str
    decisions: list[TimelineDecision]


def timeline(session: Session, user_id: int) -> list[TimelineEntry]:
    """The participant's whole consent history, newest change first (one query)."""
    rows = session.execute(
        sa.select(ConsentEvent, ConsentFormVersion.number, ConsentScope.title)
        .join(ConsentFormVersion, ConsentFormVersion.id == ConsentEvent.form_version_id)
        .outerjoin(
            ConsentScope,
            sa.and_(
                ConsentScope.version_id == ConsentEvent.form_version_id,
                ConsentScope.code == ConsentEvent.scope_code,
            ),
        )
        .where(ConsentEvent.user_id == user_id)
        .order_by(ConsentEvent.seq.desc())
    )
    entries: list[TimelineEntry] = []
    for event, number, title in rows:
        if not entries or entries[-1].receipt_id != event.receipt_id:
            entries.append(
                TimelineEntry(
                    occurred_at=event.occurred_at,
                    version_number=number,
                    method=event.method.label,
                    by_staff=event.actor_id is not None,
                    receipt_id=event.receipt_id,
                    decisions=[],
                )
            )
        entries[-1].decisions.insert(
            0, TimelineDecision(event.scope_code, title or event.scope_code, event.decision)
        )
    return entries


@dataclass
class History:
    """A participant's consent history, as the exports need it."""

    participant: ConsentParticipant | None
    events: list[ConsentEvent]
    versions: dict[int, ConsentFormVersion]
    scopes: dict[tuple[int, str], ConsentScope]
    choices: list[ConsentChoice]
    current_version_id: int | None
    erasure_requests: list[ErasureRequest]


def history(session: Session, user_id: int) -> History:
    """Everything recorded about ``user_id``'s consent, oldest event first."""
    events = list(
        session.scalars(
            sa.select(ConsentEvent)
            .where(ConsentEvent.user_id == user_id)
            .order_by(ConsentEvent.seq)
        )
    )
    version_ids = {event.form_version_id for event in events}
    current = current_version(session)
    if current is not None:
        version_ids.add(current.id)
    versions = {
        version.id: version
        for version in session.scalars(
            sa.select(ConsentFormVersion).where(ConsentFormVersion.id.in_(version_ids))
        )
    }
    scopes = {
        (scope.version_id, scope.code): scope
        for scope in session.scalars(
            sa.select(ConsentScope).where(ConsentScope.version_id.in_(version_ids))
        )
    }
    return History(
        participant=session.get(ConsentParticipant, user_id),
        events=events,
        versions=versions,
        scopes=scopes,
        choices=list(
            session.scalars(
                sa.select(ConsentChoice)
                .where(ConsentChoice.user_id == user_id)
                .order_by(ConsentChoice.scope_code)
            )
        ),
        current_version_id=current.id if current else None,
        erasure_requests=list(
            session.scalars(
                sa.select(ErasureRequest)
                .where(ErasureRequest.user_id == user_id)
                .order_by(ErasureRequest.requested_at)
            )
        ),
    )
