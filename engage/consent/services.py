"""What consent does: staff draft and publish form versions; participants decide per scope;
every change is appended to the hash-chained ledger, maintained in the current tables, signed
in a receipt and announced with the ``consent_changed`` signal.

Functions take the session, the acting person and ``now`` explicitly and never commit; the
caller commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

import enum
import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engage.accounts.models import RegistryEnrolment, Role, User
from engage.consent import receipts
from engage.consent.duo import DUO_TERMS
from engage.consent.ledger import GENESIS_HASH, canonical_json, event_hash, timestamp
from engage.consent.models import (
    MAX_SCOPE_CODES,
    CollectionMethod,
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
    ErasureStatus,
    ScopeKind,
    VersionStatus,
)
from engage.consent.readability import reading_level
from engage.db import advisory_xact_lock, lock_rows
from engage.signals import consent_changed, registry_enrolments_changed

SCOPE_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{1,39}$")
# Arbitrary constant naming the advisory lock between decisions (shared) and publishing a
# form version (exclusive); distinct from the scheduler's key.
CURRENT_FORM_LOCK_KEY = 0x454E4746  # "ENGF"


# Errors ---------------------------------------------------------------------------------------
class ConsentError(Exception):
    """Base of the consent domain errors; the message is safe to show."""


class NotAllowed(ConsentError):
    """The person may not do this."""


class VersionImmutable(ConsentError):
    """A published (or replaced) form version cannot be edited; make a new version."""


class DraftExists(ConsentError):
    """Only one draft version at a time."""


class InvalidScope(ConsentError):
    """A scope's code or settings are not acceptable."""


class PublishRefused(ConsentError):
    """The draft cannot be published as it is."""


class JustificationRequired(PublishRefused):
    """The summary reads above the allowed grade and no justification was written."""


class NoPublishedForm(ConsentError):
    """There is no published consent form yet."""


class VersionNotOpen(ConsentError):
    """Decisions are only taken on the current published version."""


class UnknownScope(ConsentError):
    """A scope code that is not on the form."""


class StaleState(ConsentError):
    """The page was made before the person's latest change (a replay or a stale tab)."""


class ErasureRefused(ConsentError):
    """The erasure request cannot move to that status."""


def _require_staff(actor: User) -> None:
    if not actor.is_staff:
        raise NotAllowed("Only coordination-centre staff can do this.")


def _require_participant(subject: User) -> None:
    if subject.role != Role.PARTICIPANT:
        raise NotAllowed("Consent choices are made by people with MS taking part in the programme.")
    if not subject.is_active:
        raise NotAllowed("This account is deactivated.")
    if not subject.is_email_verified:
        raise NotAllowed("Please confirm your email address first: we sent you a link.")


# Form versions (staff) ------------------------------------------------------------------------
@dataclass
class VersionDetails:
    """What staff write for a form version."""

    title: str
    body: str
    summary: str
    ethics_reference: str
    language: str


@dataclass
class ScopeDetails:
    """What staff write for a scope."""

    code: str
    title: str
    explanation: str
    kind: ScopeKind
    duo_code: str | None = None
    is_required: bool = False


def scope_content_sha256(details: ScopeDetails | ConsentScope) -> str:
    """SHA-256 of a scope's wording and settings: equal hashes mean "the same scope text"."""
    return hashlib.sha256(
        canonical_json(
            {
                "code": details.code,
                "title": details.title,
                "explanation": details.explanation,
                "kind": str(details.kind),
                "duo_code": details.duo_code,
                "is_required": bool(details.is_required),
            }
        )
    ).hexdigest()


def text_sha256(text: str) -> str:
    """SHA-256 (hex) of a form's full text, as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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


def _apply_version(version: ConsentFormVersion, details: VersionDetails) -> None:
    version.title = details.title.strip()
    version.body = details.body.strip()
    version.summary = details.summary.strip()
    version.ethics_reference = details.ethics_reference.strip()
    version.language = details.language


def create_draft(
    session: Session, actor: User, details: VersionDetails, now: datetime
) -> ConsentFormVersion:
    """Start a new version; the current version's scopes are copied into it."""
    _require_staff(actor)
    existing = draft_version(session)
    if existing is not None:
        raise DraftExists(
            f"Version {existing.number} is already a draft: edit or publish it before starting "
            "another."
        )
    number = (session.scalar(sa.select(sa.func.max(ConsentFormVersion.number))) or 0) + 1
    version = ConsentFormVersion(
        number=number,
        status=VersionStatus.DRAFT,
        created_by_id=actor.id,
        created_at=now,
        updated_at=now,
    )
    _apply_version(version, details)
    session.add(version)
    # No savepoint: on SQLite a savepoint opened before any write commits when released.
    # The unique index settles a race; the caller rolls back on the domain error.
    try:
        session.flush()
    except IntegrityError:
        raise DraftExists("Another draft was started at the same time: edit that one.") from None
    current = current_version(session)
    if current is not None:
        for scope in scopes_of(session, current.id):
            session.add(
                ConsentScope(
                    version_id=version.id,
                    code=scope.code,
                    position=scope.position,
                    title=scope.title,
                    explanation=scope.explanation,
                    kind=scope.kind,
                    duo_code=scope.duo_code,
                    is_required=scope.is_required,
                    content_sha256=scope.content_sha256,
                )
            )
        session.flush()
    return version


def _require_draft(version: ConsentFormVersion) -> None:
    if not version.is_draft:
        raise VersionImmutable(
            f"Version {version.number} is published and can no longer change. Start a new "
            "version to change the form."
        )


def update_draft(
    session: Session,
    actor: User,
    version: ConsentFormVersion,
    details: VersionDetails,
    now: datetime,
) -> None:
    """Change a draft's texts (published versions are immutable)."""
    _require_staff(actor)
    _require_draft(version)
    _apply_version(version, details)
    version.updated_at = now


def _check_scope(details: ScopeDetails) -> None:
    if not SCOPE_CODE_PATTERN.match(details.code or ""):
        raise InvalidScope(
            "A scope code is 2 to 40 capital letters, digits or underscores, starting with a "
            "letter, e.g. GENOMIC_DATA."
        )
    if details.duo_code is not None and details.duo_code not in DUO_TERMS:
        raise InvalidScope(f"“{details.duo_code}” is not a Data Use Ontology code we know.")
    if details.kind not in set(ScopeKind):
        raise InvalidScope("Choose what kind of scope this is.")


def _apply_scope(scope: ConsentScope, details: ScopeDetails) -> None:
    scope.code = details.code
    scope.title = details.title.strip()
    scope.explanation = details.explanation.strip()
    scope.kind = details.kind
    scope.duo_code = details.duo_code or None
    scope.is_required = bool(details.is_required)
    scope.content_sha256 = scope_content_sha256(scope)


def add_scope(
    session: Session,
    actor: User,
    version: ConsentFormVersion,
    details: ScopeDetails,
    now: datetime,
) -> ConsentScope:
    """Add a scope to a draft (codes are unique within a version)."""
    _require_staff(actor)
    _require_draft(version)
    _check_scope(details)
    position = (
        session.scalar(
            sa.select(sa.func.max(ConsentScope.position)).where(
                ConsentScope.version_id == version.id
            )
        )
        or 0
    ) + 1
    clash = session.scalar(
        sa.select(ConsentScope.id).where(
            ConsentScope.version_id == version.id, ConsentScope.code == details.code
        )
    )
    if clash is not None:
        raise InvalidScope(f"This version already has a scope with the code {details.code}.")
    scope = ConsentScope(version_id=version.id, position=position)
    _apply_scope(scope, details)
    session.add(scope)
    try:
        session.flush()
    except IntegrityError:  # the same code added at the same moment
        raise InvalidScope(
            f"This version already has a scope with the code {details.code}."
        ) from None
    version.updated_at = now
    return scope


def update_scope(
    session: Session, actor: User, scope: ConsentScope, details: ScopeDetails, now: datetime
) -> None:
    """Change a scope of a draft."""
    _require_staff(actor)
    version = session.get(ConsentFormVersion, scope.version_id)
    _require_draft(version)
    _check_scope(details)
    clash = session.scalar(
        sa.select(ConsentScope.id).where(
            ConsentScope.version_id == version.id,
            ConsentScope.code == details.code,
            ConsentScope.id != scope.id,
        )
    )
    if clash is not None:
        raise InvalidScope(f"This version already has a scope with the code {details.code}.")
    _apply_scope(scope, details)
    version.updated_at = now


def remove_scope(session: Session, actor: User, scope: ConsentScope, now: datetime) -> None:
    """Remove a scope from a draft."""
    _require_staff(actor)
    version = session.get(ConsentFormVersion, scope.version_id)
    _require_draft(version)
    session.delete(scope)
    version.updated_at = now


@dataclass
class VersionDiff:
    """How one version's scopes differ from another's, by code and wording."""

    added: list[ConsentScope] = field(default_factory=list)
    changed: list[tuple[ConsentScope, ConsentScope]] = field(default_factory=list)  # (old, new)
    removed: list[ConsentScope] = field(default_factory=list)
    unchanged: list[ConsentScope] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        """True when any scope was added, changed or removed."""
        return bool(self.added or self.changed or self.removed)


def diff_scopes(old: list[ConsentScope], new: list[ConsentScope]) -> VersionDiff:
    """Compare two versions' scopes: same code and same wording means unchanged."""
    before = {scope.code: scope for scope in old}
    after = {scope.code: scope for scope in new}
    diff = VersionDiff()
    for scope in new:
        previous = before.get(scope.code)
        if previous is None:
            diff.added.append(scope)
        elif previous.content_sha256 != scope.content_sha256:
            diff.changed.append((previous, scope))
        else:
            diff.unchanged.append(scope)
    diff.removed = [scope for scope in old if scope.code not in after]
    return diff


@dataclass
class PublishOutcome:
    """The version now current, and how it differs from the one it replaced."""

    version: ConsentFormVersion
    diff: VersionDiff
    replaced: ConsentFormVersion | None


def publish_version(
    session: Session,
    actor: User,
    version: ConsentFormVersion,
    *,
    justification: str | None,
    now: datetime,
    max_grade: float,
) -> PublishOutcome:
    """Make a draft the current version; it can never change again.

    Unchanged scopes keep their revision, so decisions on them carry over; new and changed
    scopes start a new revision, so nobody permits them until they decide. A summary above
    ``max_grade`` (Flesch-Kincaid) needs a written justification.
    """
    _require_staff(actor)
    lock_rows(session, ConsentFormVersion, [version.id])
    # Wait for decisions in flight: each computed its mask from the version it read, which
    # this publication replaces; later decisions wait for us and see the new version.
    advisory_xact_lock(session, CURRENT_FORM_LOCK_KEY)
    session.refresh(version)
    _require_draft(version)
    scopes = scopes_of(session, version.id)
    if not scopes:
        raise PublishRefused("Add at least one scope before publishing.")
    if not any(scope.is_required for scope in scopes):
        raise PublishRefused("Mark at least one scope as required: it says what taking part means.")
    justification = (justification or "").strip() or None
    grade = reading_level(version.summary).grade
    if grade > max_grade and not justification:
        raise JustificationRequired(
            f"The summary reads at grade {grade:.1f}, above the limit of {max_grade:g}. Write it "
            "more simply, or explain why it cannot be simpler."
        )
    current = current_version(session)
    old_scopes = scopes_of(session, current.id) if current is not None else []
    diff = diff_scopes(old_scopes, scopes)
    carried = {scope.code: previous.revision for previous, scope in _pairs(old_scopes, scopes)}
    for scope in scopes:
        scope.revision = carried.get(scope.code) or version.number
    _register_codes(session, [scope.code for scope in scopes], now)
    if current is not None:
        current.status = VersionStatus.SUPERSEDED
        current.superseded_at = now
        session.flush()  # one published version at a time (a unique index checks it)
    version.status = VersionStatus.PUBLISHED
    version.reading_grade = grade
    version.grade_justification = justification
    version.text_sha256 = text_sha256(version.body)
    version.published_at = now
    version.published_by_id = actor.id
    version.updated_at = now
    session.flush()
    # Decisions on changed or removed scopes no longer permit anything.
    stale_codes = [old.code for old, _new in diff.changed] + [s.code for s in diff.removed]
    if stale_codes:
        stale_bits = sum(1 << bit for bit in _bits(session, stale_codes).values())
        keep = ((1 << MAX_SCOPE_CODES) - 1) & ~stale_bits
        session.execute(
            sa.update(ConsentParticipant)
            .where(ConsentParticipant.permitted_mask.op("&")(stale_bits) != 0)
            .values(permitted_mask=ConsentParticipant.permitted_mask.op("&")(keep))
            .execution_options(synchronize_session=False)
        )
        session.execute(
            sa.update(ConsentRegistryMask)
            .where(ConsentRegistryMask.permitted_mask.op("&")(stale_bits) != 0)
            .values(permitted_mask=ConsentRegistryMask.permitted_mask.op("&")(keep))
            .execution_options(synchronize_session=False)
        )
    return PublishOutcome(version=version, diff=diff, replaced=current)


def _pairs(old: list[ConsentScope], new: list[ConsentScope]):
    before = {scope.code: scope for scope in old}
    for scope in new:
        previous = before.get(scope.code)
        if previous is not None and previous.content_sha256 == scope.content_sha256:
            yield previous, scope


def _bits(session: Session, codes: list[str]) -> dict[str, int]:
    return dict(
        session.execute(
            sa.select(ConsentScopeCode.code, ConsentScopeCode.bit).where(
                ConsentScopeCode.code.in_(codes)
            )
        ).all()
    )


def _register_codes(session: Session, codes: list[str], now: datetime) -> None:
    """Give each new scope code the lowest free bit."""
    known = dict(session.execute(sa.select(ConsentScopeCode.code, ConsentScopeCode.bit)).all())
    free = iter(sorted(set(range(MAX_SCOPE_CODES)) - set(known.values())))
    for code in codes:
        if code in known:
            continue
        bit = next(free, None)
        if bit is None:
            raise PublishRefused(
                f"The platform tracks at most {MAX_SCOPE_CODES} different scope codes; reuse an "
                "existing code."
            )
        session.add(ConsentScopeCode(code=code, bit=bit, created_at=now))
        known[code] = bit
    session.flush()


# Participants' decisions ----------------------------------------------------------------------
@dataclass(frozen=True)
class ScopeChange:
    """One scope's decision before and after a change."""

    code: str
    before: Decision | None
    after: Decision
    was_permitted: bool
    is_permitted: bool


@dataclass(frozen=True)
class ConsentChange:
    """What the ``consent_changed`` signal carries (see ``engage.signals``)."""

    user_id: int
    pseudonym: str
    receipt_id: str
    form_version_id: int
    method: CollectionMethod
    actor_id: int | None
    occurred_at: datetime
    scopes: tuple[ScopeChange, ...]


@dataclass
class ChangeOutcome:
    """The result of a request to change decisions."""

    change: ConsentChange | None = None
    receipt: ConsentReceipt | None = None
    reviewed: bool = False

    @property
    def changed(self) -> bool:
        """True when at least one decision was recorded."""
        return self.change is not None


def state_token(head_hash: str | None) -> str:
    """The token a consent page carries: it names the person's newest event."""
    return (head_hash or GENESIS_HASH)[:24]


def _head(session: Session, user_id: int) -> tuple[int, str]:
    row = session.execute(
        sa.select(ConsentEvent.seq, ConsentEvent.hash)
        .where(ConsentEvent.user_id == user_id)
        .order_by(ConsentEvent.seq.desc())
        .limit(1)
    ).first()
    return (row.seq, row.hash) if row else (0, GENESIS_HASH)


def current_state(session: Session, user_id: int) -> str:
    """The state token of ``user_id``'s consent now."""
    return state_token(_head(session, user_id)[1])


@dataclass
class _Context:
    """Everything a change needs, read after locking the participant."""

    subject: User
    version: ConsentFormVersion
    scopes: list[ConsentScope]
    choices: dict[str, ConsentChoice]
    participant: ConsentParticipant | None
    seq: int
    head_hash: str

    @property
    def by_code(self) -> dict[str, ConsentScope]:
        return {scope.code: scope for scope in self.scopes}

    def is_permitted(self, code: str) -> bool:
        choice, scope = self.choices.get(code), self.by_code.get(code)
        return (
            choice is not None
            and scope is not None
            and choice.decision == Decision.PERMIT
            and choice.scope_revision == scope.revision
        )


def _begin(
    session: Session,
    subject: User,
    *,
    version_id: int,
    state: str | None,
    actor: User | None,
) -> _Context:
    """Check who acts, lock the participant, then check the form version and the page state."""
    if actor is not None:
        _require_staff(actor)
    _require_participant(subject)
    # Lock first: two requests of one person queue here, so the chain cannot fork and the
    # state check below sees the other request's events.
    lock_rows(session, User, [subject.id])
    # Shared with other decisions, exclusive with publishing: the version read next stays
    # current until this change commits, so the mask computed from it is not overwritten by,
    # nor overwrites, a publication's cleared bits.
    advisory_xact_lock(session, CURRENT_FORM_LOCK_KEY, shared=True)
    version = current_version(session)
    if version is None:
        raise NoPublishedForm("There is no consent form to decide on yet.")
    if version_id != version.id:
        asked = session.get(ConsentFormVersion, version_id)
        if asked is not None and asked.status == VersionStatus.SUPERSEDED:
            raise VersionNotOpen(
                f"Version {asked.number} of the consent form has been replaced by version "
                f"{version.number}. Nothing was changed: please look at the current version."
            )
        raise VersionNotOpen(
            "That consent form version is not open for decisions. Nothing was changed."
        )
    seq, head_hash = _head(session, subject.id)
    if state is not None and state != state_token(head_hash):
        raise StaleState(
            "Your consent changed since this page was opened (perhaps in another tab), so "
            "nothing was changed. Please check your choices below and try again."
        )
    choices = {
        choice.scope_code: choice
        for choice in session.scalars(
            sa.select(ConsentChoice).where(ConsentChoice.user_id == subject.id)
        )
    }
    return _Context(
        subject=subject,
        version=version,
        scopes=scopes_of(session, version.id),
        choices=choices,
        participant=session.get(ConsentParticipant, subject.id),
        seq=seq,
        head_hash=head_hash,
    )


def _normalise(ctx: _Context, code: str, allow: bool) -> Decision:
    """Allowing is "permit"; not allowing is "withdraw" after a permit, else "deny"."""
    if allow:
        return Decision.PERMIT
    choice = ctx.choices.get(code)
    return Decision.WITHDRAW if choice and choice.decision == Decision.PERMIT else Decision.DENY


def _record(
    session: Session,
    ctx: _Context,
    allow_by_code: Mapping[str, bool],
    *,
    now: datetime,
    issuer: receipts.ReceiptIssuer,
    method: CollectionMethod,
    actor: User | None,
    review: bool,
    paper_reference: str | None = None,
) -> ChangeOutcome:
    by_code = ctx.by_code
    unknown = sorted(set(allow_by_code) - set(by_code))
    if unknown:
        raise UnknownScope(
            f"{', '.join(unknown)} is not a scope of the consent form. Nothing was changed."
        )
    if review:
        missing = [scope.title for scope in ctx.scopes if scope.code not in allow_by_code]
        if missing:
            raise ConsentError("Decide on every scope: " + "; ".join(missing) + ".")
    planned: list[tuple[ConsentScope, Decision]] = []
    for scope in ctx.scopes:
        if scope.code not in allow_by_code:
            continue
        decision = _normalise(ctx, scope.code, allow_by_code[scope.code])
        choice = ctx.choices.get(scope.code)
        if choice and choice.decision == decision and choice.scope_revision == scope.revision:
            continue  # already so, on this wording
        planned.append((scope, decision))

    participant = ctx.participant
    if planned and participant is None:
        participant = ConsentParticipant(
            user_id=ctx.subject.id,
            pseudonym=str(uuid.uuid4()),
            permitted_mask=0,
            reminder_count=0,
            created_at=now,
        )
        session.add(participant)
        session.flush()
        ctx.participant = participant
    outcome = ChangeOutcome()
    if planned:
        outcome = _append_events(
            session,
            ctx,
            planned,
            now=now,
            issuer=issuer,
            method=method,
            actor=actor,
            paper_reference=paper_reference,
        )
    pending = [
        scope
        for scope in ctx.scopes
        if (choice := ctx.choices.get(scope.code)) is None
        or choice.scope_revision != scope.revision
    ]
    if participant is not None and not pending and (review or planned):
        if participant.reviewed_version_id != ctx.version.id:
            participant.reviewed_version_id = ctx.version.id
            participant.reviewed_at = now
        outcome.reviewed = True
    if outcome.change is not None:
        consent_changed.send("engage.consent", session=session, change=outcome.change)
    return outcome


def _append_events(
    session: Session,
    ctx: _Context,
    planned: list[tuple[ConsentScope, Decision]],
    *,
    now: datetime,
    issuer: receipts.ReceiptIssuer,
    method: CollectionMethod,
    actor: User | None,
    paper_reference: str | None,
) -> ChangeOutcome:
    participant = ctx.participant
    assert participant is not None
    was_permitted = {scope.code: ctx.is_permitted(scope.code) for scope, _ in planned}
    before = {
        scope.code: (ctx.choices[scope.code].decision if scope.code in ctx.choices else None)
        for scope, _ in planned
    }
    receipt_id = str(uuid.uuid4())
    actor_id = actor.id if actor is not None else None
    # Decisions after the change, for the receipt (events and choices follow below).
    after = {code: (c.decision, c.scope_revision) for code, c in ctx.choices.items()}
    for scope, decision in planned:
        after[scope.code] = (decision, scope.revision)
    document = receipts.sign(
        _receipt_document(
            ctx,
            receipt_id=receipt_id,
            after=after,
            changed={scope.code for scope, _ in planned},
            now=now,
            issuer=issuer,
            method=method,
            paper_reference=paper_reference,
        ),
        issuer.key,
    )
    receipt = ConsentReceipt(
        id=receipt_id,
        user_id=ctx.subject.id,
        form_version_id=ctx.version.id,
        method=method,
        actor_id=actor_id,
        issued_at=now,
        document=document,
    )
    session.add(receipt)
    session.flush()

    seq, prev_hash = ctx.seq, ctx.head_hash
    events = []
    for scope, decision in planned:
        seq += 1
        digest = event_hash(
            user_id=ctx.subject.id,
            seq=seq,
            scope_code=scope.code,
            decision=decision,
            form_version_id=ctx.version.id,
            scope_revision=scope.revision,
            occurred_at=now,
            method=method,
            actor_id=actor_id,
            receipt_id=receipt_id,
            prev_hash=prev_hash,
        )
        event = ConsentEvent(
            user_id=ctx.subject.id,
            seq=seq,
            scope_code=scope.code,
            decision=decision,
            form_version_id=ctx.version.id,
            scope_revision=scope.revision,
            occurred_at=now,
            method=method,
            actor_id=actor_id,
            receipt_id=receipt_id,
            prev_hash=prev_hash,
            hash=digest,
        )
        session.add(event)
        events.append((scope, decision, event))
        prev_hash = digest
    session.flush()
    ctx.seq, ctx.head_hash = seq, prev_hash

    for scope, decision, event in events:
        choice = ctx.choices.get(scope.code)
        if choice is None:
            choice = ConsentChoice(user_id=ctx.subject.id, scope_code=scope.code)
            session.add(choice)
            ctx.choices[scope.code] = choice
        choice.decision = decision
        choice.scope_revision = scope.revision
        choice.form_version_id = ctx.version.id
        choice.event_id = event.id
        choice.decided_at = now
    participant.permitted_mask = _mask(session, ctx)
    session.flush()
    sync_registry_masks(session, ctx.subject.id)

    change = ConsentChange(
        user_id=ctx.subject.id,
        pseudonym=participant.pseudonym,
        receipt_id=receipt_id,
        form_version_id=ctx.version.id,
        method=method,
        actor_id=actor_id,
        occurred_at=now,
        scopes=tuple(
            ScopeChange(
                code=scope.code,
                before=before[scope.code],
                after=decision,
                was_permitted=was_permitted[scope.code],
                is_permitted=ctx.is_permitted(scope.code),
            )
            for scope, decision in planned
        ),
    )
    return ChangeOutcome(change=change, receipt=receipt)


def _mask(session: Session, ctx: _Context) -> int:
    bits = _bits(session, [scope.code for scope in ctx.scopes])
    return sum(1 << bits[scope.code] for scope in ctx.scopes if ctx.is_permitted(scope.code))


def sync_registry_masks(session: Session, user_id: int) -> None:
    """Make the participant's ``consent_registry_masks`` rows equal their enrolments, each with
    their current ``permitted_mask`` (nothing to do for someone who never decided).

    The mask is read ``FOR UPDATE`` (on PostgreSQL): an enrolment saved while a decision or a
    publication is changing the mask waits for it, then copies the new mask; a decision that
    comes after sees the new enrolment's row and updates it.
    """
    mask = session.scalar(
        sa.select(ConsentParticipant.permitted_mask)
        .where(ConsentParticipant.user_id == user_id)
        .with_for_update()
    )
    if mask is None:
        return
    enrolled = set(
        session.scalars(
            sa.select(RegistryEnrolment.registry_id).where(RegistryEnrolment.user_id == user_id)
        )
    )
    rows = dict(
        session.execute(
            sa.select(ConsentRegistryMask.registry_id, ConsentRegistryMask.permitted_mask).where(
                ConsentRegistryMask.user_id == user_id
            )
        ).all()
    )
    if set(rows) - enrolled:
        session.execute(
            sa.delete(ConsentRegistryMask).where(
                ConsentRegistryMask.user_id == user_id,
                ConsentRegistryMask.registry_id.in_(set(rows) - enrolled),
            )
        )
    if any(rows[registry_id] != mask for registry_id in set(rows) & enrolled):
        session.execute(
            sa.update(ConsentRegistryMask)
            .where(ConsentRegistryMask.user_id == user_id)
            .values(permitted_mask=mask)
        )
    for registry_id in sorted(enrolled - set(rows)):
        session.add(
            ConsentRegistryMask(user_id=user_id, registry_id=registry_id, permitted_mask=mask)
        )
    session.flush()


def _on_enrolments_changed(_sender: object, *, session: Session, user_id: int) -> None:
    sync_registry_masks(session, user_id)


def connect_receivers() -> None:
    """Follow other packages' changes that consent's own tables mirror (called by create_app)."""
    registry_enrolments_changed.connect(_on_enrolments_changed)


def _receipt_document(
    ctx: _Context,
    *,
    receipt_id: str,
    after: dict[str, tuple[Decision, int]],
    changed: set[str],
    now: datetime,
    issuer: receipts.ReceiptIssuer,
    method: CollectionMethod,
    paper_reference: str | None,
) -> dict:
    participant = ctx.participant
    assert participant is not None
    version = ctx.version
    scopes = []
    for scope in ctx.scopes:
        decision, revision = after.get(scope.code, (None, None))
        current = decision is not None and revision == scope.revision
        scopes.append(
            {
                "code": scope.code,
                "title": scope.title,
                "kind": scope.kind.value,
                "duo_code": scope.duo_code,
                "required": scope.is_required,
                "revision": scope.revision,
                "decision": decision.value if current else None,
                "permitted": bool(current and decision == Decision.PERMIT),
                "changed_now": scope.code in changed,
            }
        )
    document = {
        "format": receipts.RECEIPT_FORMAT,
        "receipt_id": receipt_id,
        "issued_at": timestamp(now),
        "jurisdiction": issuer.jurisdiction,
        "controller": {"name": issuer.controller},
        "collection_method": method.value,
        "recorded_by_staff": method == CollectionMethod.PAPER,
        "participant": participant.pseudonym,
        "form": {
            "version": version.number,
            "title": version.title,
            "language": version.language,
            "ethics_reference": version.ethics_reference,
            "published_at": timestamp(version.published_at) if version.published_at else None,
            "text_sha256": version.text_sha256,
        },
        "taking_part": all(s["permitted"] for s in scopes if s["required"]),
        "scopes": scopes,
    }
    if paper_reference:
        document["paper_reference"] = paper_reference
    return document


def record_decisions(
    session: Session,
    subject: User,
    allow_by_code: Mapping[str, bool],
    *,
    version_id: int,
    state: str | None,
    now: datetime,
    issuer: receipts.ReceiptIssuer,
    review: bool = False,
) -> ChangeOutcome:
    """The participant allows (True) or does not allow (False) scopes of the current form.

    Only decisions that change something are recorded (one event each, one receipt for all).
    With ``review``, every scope must be decided and the version counts as reviewed.

    :param version_id: the form version the page showed; only the current one is accepted.
    :param state: the page's state token; a page older than the newest change is refused.
    """
    ctx = _begin(session, subject, version_id=version_id, state=state, actor=None)
    return _record(
        session,
        ctx,
        allow_by_code,
        now=now,
        issuer=issuer,
        method=CollectionMethod.ONLINE,
        actor=None,
        review=review,
    )


def record_paper_consent(
    session: Session,
    actor: User,
    subject: User,
    allow_by_code: Mapping[str, bool],
    *,
    version_id: int,
    state: str | None,
    reference: str,
    now: datetime,
    issuer: receipts.ReceiptIssuer,
) -> ChangeOutcome:
    """Staff record a signed paper form on the participant's behalf (every scope decided)."""
    ctx = _begin(session, subject, version_id=version_id, state=state, actor=actor)
    return _record(
        session,
        ctx,
        allow_by_code,
        now=now,
        issuer=issuer,
        method=CollectionMethod.PAPER,
        actor=actor,
        review=True,
        paper_reference=reference.strip() or None,
    )


def withdraw_all_optional(
    session: Session,
    subject: User,
    *,
    version_id: int,
    state: str | None,
    now: datetime,
    issuer: receipts.ReceiptIssuer,
) -> ChangeOutcome:
    """Withdraw every optional scope the participant allows, in one step."""
    ctx = _begin(session, subject, version_id=version_id, state=state, actor=None)
    allow = {
        scope.code: False
        for scope in ctx.scopes
        if not scope.is_required
        and scope.code in ctx.choices
        and ctx.choices[scope.code].decision == Decision.PERMIT
    }
    return _record(
        session,
        ctx,
        allow,
        now=now,
        issuer=issuer,
        method=CollectionMethod.ONLINE,
        actor=None,
        review=False,
    )


class LeaveOption(enum.StrEnum):
    """What a participant who withdraws a required scope asks for."""

    STOP_CONTACT = "stop_contact"
    STOP_USE = "stop_use"
    ERASE = "erase"

    @property
    def label(self) -> str:
        """The option as people read it."""
        return LEAVE_LABELS[self]


LEAVE_LABELS = {
    LeaveOption.STOP_CONTACT: "Stop contacting me. You keep taking part and your data is still "
    "used as you allowed.",
    LeaveOption.STOP_USE: "Stop future use of my data. You leave the programme: every "
    "permission is withdrawn and your data is not used in any new project.",
    LeaveOption.ERASE: "Ask for my data to be erased. You leave the programme, and the "
    "coordination centre asks the registries to erase your data where the law allows.",
}


@dataclass
class LeaveOutcome:
    """What leaving recorded, and the erasure request if one was asked for."""

    change: ChangeOutcome
    erasure: ErasureRequest | None = None


def leave_programme(
    session: Session,
    subject: User,
    option: LeaveOption,
    *,
    version_id: int,
    state: str | None,
    now: datetime,
    issuer: receipts.ReceiptIssuer,
) -> LeaveOutcome:
    """Stop contact, stop all future use, or stop all use and ask for erasure, in one step."""
    ctx = _begin(session, subject, version_id=version_id, state=state, actor=None)
    permitted = [
        scope
        for scope in ctx.scopes
        if scope.code in ctx.choices and ctx.choices[scope.code].decision == Decision.PERMIT
    ]
    if option == LeaveOption.STOP_CONTACT:
        permitted = [scope for scope in permitted if scope.kind == ScopeKind.CONTACT]
    change = _record(
        session,
        ctx,
        {scope.code: False for scope in permitted},
        now=now,
        issuer=issuer,
        method=CollectionMethod.ONLINE,
        actor=None,
        review=False,
    )
    erasure = None
    if option == LeaveOption.ERASE:
        erasure = request_erasure(session, subject, now)
    return LeaveOutcome(change=change, erasure=erasure)


# Erasure requests ---------------------------------------------------------------------------
def open_erasure_request(session: Session, user_id: int) -> ErasureRequest | None:
    """The participant's request still awaiting staff, if any."""
    return session.scalar(
        sa.select(ErasureRequest).where(
            ErasureRequest.user_id == user_id,
            ErasureRequest.status.in_([ErasureStatus.RECEIVED, ErasureStatus.IN_PROGRESS]),
        )
    )


def request_erasure(session: Session, subject: User, now: datetime) -> ErasureRequest:
    """Queue a request to erase the participant's data (an open one is returned as it is).

    The participant's row is locked first, so their concurrent requests queue here; a unique
    index allows one open request per participant whatever happens.
    """
    _require_participant(subject)
    lock_rows(session, User, [subject.id])
    existing = open_erasure_request(session, subject.id)
    if existing is not None:
        return existing
    request = ErasureRequest(
        user_id=subject.id,
        status=ErasureStatus.RECEIVED,
        requested_at=now,
        updated_at=now,
    )
    session.add(request)
    session.flush()
    return request


ERASURE_TRANSITIONS = {
    ErasureStatus.RECEIVED: frozenset(
        {ErasureStatus.IN_PROGRESS, ErasureStatus.COMPLETED, ErasureStatus.DECLINED}
    ),
    ErasureStatus.IN_PROGRESS: frozenset({ErasureStatus.COMPLETED, ErasureStatus.DECLINED}),
}


def set_erasure_status(
    session: Session,
    actor: User,
    request: ErasureRequest,
    status: ErasureStatus,
    note: str | None,
    now: datetime,
) -> None:
    """Staff move an erasure request on; declining needs a note the participant reads."""
    _require_staff(actor)
    if status not in ERASURE_TRANSITIONS.get(request.status, frozenset()):
        raise ErasureRefused(
            f"A request that is “{request.status.label.split(':')[0].lower()}” cannot become "
            f"“{status.label.split(':')[0].lower()}”."
        )
    note = (note or "").strip() or None
    if status == ErasureStatus.DECLINED and not note:
        raise ErasureRefused("Explain to the participant why the request is not carried out.")
    request.status = status
    request.updated_at = now
    request.handled_by_id = actor.id
    if note:
        request.note = note
