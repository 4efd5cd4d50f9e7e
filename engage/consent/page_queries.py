"""What consent's own pages read: the participant's dashboard, timeline and history (also
behind the exports), and the lists on the staff pages.

Other packages never read these: they ask :mod:`engage.consent.queries`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts import queries as account_queries
from engage.accounts.queries import Person
from engage.consent.models import (
    ConsentChoice,
    ConsentEvent,
    ConsentFormVersion,
    ConsentParticipant,
    ConsentReceipt,
    ConsentScope,
    Decision,
    ErasureRequest,
    ErasureStatus,
    VersionStatus,
)
from engage.consent.queries import current_version, scopes_of, state_token
from engage.consent.versions import VersionDiff, diff_scopes


# The participant's own pages ----------------------------------------------------------------------
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
    erasures = erasure_requests_of(session, user_id)
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


def erasure_requests_of(session: Session, user_id: int) -> list[ErasureRequest]:
    """The participant's erasure requests, newest first."""
    return list(
        session.scalars(
            sa.select(ErasureRequest)
            .where(ErasureRequest.user_id == user_id)
            .order_by(ErasureRequest.requested_at.desc(), ErasureRequest.id.desc())
        )
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


# Staff pages --------------------------------------------------------------------------------------
def form_version(session: Session, number: int) -> ConsentFormVersion | None:
    """Version ``number`` of the form if it was ever published (drafts are not shown)."""
    return session.scalar(
        sa.select(ConsentFormVersion).where(
            ConsentFormVersion.number == number,
            ConsentFormVersion.status != VersionStatus.DRAFT,
        )
    )


def all_versions(session: Session) -> list[ConsentFormVersion]:
    """Every version of the form, newest first."""
    return list(
        session.scalars(sa.select(ConsentFormVersion).order_by(ConsentFormVersion.number.desc()))
    )


@dataclass
class VersionPage:
    """A version's scopes, what its page compares it with, and how the scopes differ."""

    scopes: list[ConsentScope]
    compare_to: ConsentFormVersion | None = None
    diff: VersionDiff | None = None


def version_page(session: Session, version: ConsentFormVersion) -> VersionPage:
    """``version``'s scopes, compared with the current version's, or for a replaced version
    with the version before it (the current version itself has nothing to compare with)."""
    scopes = scopes_of(session, version.id)
    current = current_version(session)
    compare_to = current if current is not None and current.id != version.id else None
    if version.status == VersionStatus.SUPERSEDED:
        compare_to = session.scalar(
            sa.select(ConsentFormVersion)
            .where(
                ConsentFormVersion.number < version.number,
                ConsentFormVersion.status != VersionStatus.DRAFT,
            )
            .order_by(ConsentFormVersion.number.desc())
            .limit(1)
        )
    diff = (
        diff_scopes(scopes_of(session, compare_to.id), scopes) if compare_to is not None else None
    )
    return VersionPage(scopes=scopes, compare_to=compare_to, diff=diff)


def open_erasure_count(session: Session) -> int:
    """How many erasure requests await staff."""
    return session.scalar(
        sa.select(sa.func.count())
        .select_from(ErasureRequest)
        .where(ErasureRequest.status.in_([ErasureStatus.RECEIVED, ErasureStatus.IN_PROGRESS]))
    )


def erasure_queue(session: Session) -> list[tuple[ErasureRequest, Person]]:
    """Every erasure request with its participant: received first, then in progress, then the
    closed ones, oldest first within each (two statements; people through accounts.queries)."""
    requests = list(
        session.scalars(
            sa.select(ErasureRequest).order_by(
                sa.case(
                    (ErasureRequest.status == ErasureStatus.RECEIVED, 0),
                    (ErasureRequest.status == ErasureStatus.IN_PROGRESS, 1),
                    else_=2,
                ),
                ErasureRequest.requested_at,
            )
        )
    )
    found = account_queries.people(session, [request.user_id for request in requests])
    return [(request, found[request.user_id]) for request in requests if request.user_id in found]
