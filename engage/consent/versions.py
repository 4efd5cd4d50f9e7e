"""Consent form versions, the staff side: drafting a version's texts and scopes, comparing
versions, and publishing a draft, after which it never changes.

Functions take the session, the acting person and ``now`` explicitly and never commit; the
caller commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.consent import masks
from engage.consent.duo import DUO_TERMS
from engage.consent.errors import (
    DraftExists,
    InvalidScope,
    JustificationRequired,
    PublishRefused,
    VersionImmutable,
    require_staff,
)
from engage.consent.models import (
    ConsentFormVersion,
    ConsentScope,
    ScopeKind,
    VersionStatus,
)
from engage.consent.queries import current_version, draft_version, scopes_of
from engage.consent.readability import reading_level
from engage.db import advisory_xact_lock, lock_rows
from engage.hashchain import canonical_json

SCOPE_CODE_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]{1,39}$")
# Arbitrary constant naming the advisory lock between decisions (shared) and publishing a
# form version (exclusive); distinct from the scheduler's key.
CURRENT_FORM_LOCK_KEY = 0x454E4746  # "ENGF"


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
    require_staff(actor)
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
    require_staff(actor)
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
    require_staff(actor)
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
    require_staff(actor)
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
    require_staff(actor)
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
    require_staff(actor)
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
    # Graded only where a formula for the summary's language exists (None otherwise: the
    # summary then needs a native speaker's review rather than an English formula's number).
    grade = reading_level(version.summary, version.language).grade
    if grade is not None and grade > max_grade and not justification:
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
    masks.register_codes(session, [scope.code for scope in scopes], now)
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
    masks.clear_bits(
        session, [old.code for old, _new in diff.changed] + [s.code for s in diff.removed]
    )
    return PublishOutcome(version=version, diff=diff, replaced=current)


def _pairs(old: list[ConsentScope], new: list[ConsentScope]):
    """(old, new) scopes with the same code and the same wording: decisions on them carry over."""
    before = {scope.code: scope for scope in old}
    for scope in new:
        previous = before.get(scope.code)
        if previous is not None and previous.content_sha256 == scope.content_sha256:
            yield previous, scope
