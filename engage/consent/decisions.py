"""Participants' consent decisions: every change is appended to the participant's
hash-chained ledger, kept in the current tables and masks, signed in a receipt and announced
with the ``consent_changed`` signal.

The entry points come first (online decisions, paper forms recorded by staff, withdrawing
everything optional, leaving the programme); below them, how one change is made: check and
lock (:func:`_begin`), plan (:func:`_record`), then append events, choices and the receipt
(:func:`_append_events`).

Functions take the session, the person and ``now`` explicitly and never commit; the caller
commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.consent import receipts
from engage.consent.erasure import request_erasure
from engage.consent.errors import (
    ConsentError,
    NoPublishedForm,
    StaleState,
    UnknownScope,
    VersionNotOpen,
    require_participant,
    require_staff,
)
from engage.consent.ledger import event_hash
from engage.consent.masks import permitted_mask, sync_registry_masks
from engage.consent.models import (
    CollectionMethod,
    ConsentChoice,
    ConsentEvent,
    ConsentFormVersion,
    ConsentParticipant,
    ConsentReceipt,
    ConsentScope,
    Decision,
    ErasureRequest,
    ScopeKind,
    VersionStatus,
)
from engage.consent.queries import current_version, ledger_head, scopes_of, state_token
from engage.consent.versions import CURRENT_FORM_LOCK_KEY
from engage.db import advisory_xact_lock, lock_rows
from engage.hashchain import timestamp
from engage.signals import consent_changed


# What a change records ----------------------------------------------------------------------------
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


# Changes a participant (or staff, from a paper form) asks for -------------------------------------
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


# Leaving the programme ----------------------------------------------------------------------------
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


# How one change is made ---------------------------------------------------------------------------
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
        require_staff(actor)
    require_participant(subject)
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
    seq, head_hash = ledger_head(session, subject.id)
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
        current = choice.decision if choice and choice.scope_revision == scope.revision else None
        if current == decision or (current, decision) == (Decision.WITHDRAW, Decision.DENY):
            continue  # already so on this wording ("not allowed" after a withdrawal: a replay)
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
    participant.permitted_mask = permitted_mask(
        session, [scope.code for scope in ctx.scopes], ctx.is_permitted
    )
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
