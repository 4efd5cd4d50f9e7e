"""Governance emails: deadline reminders to custodians, the decisions summary to the proposer,
and consent notices to custodians.

Each is queued in the mail outbox (one row per recipient, with a deduplication key naming what
it is about) in the transaction of the job or change it tells about, and rendered at delivery
time by the renderers registered in :func:`register_kinds`. A renderer re-checks that the email
is still owed (the recipient still acts for the registry, the thread is still open) and raises
``outbox.NotOwed`` otherwise.

The governance pages are not built yet; the links point at the paths they are planned under
(see :func:`registry_inbox_url` and friends).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from flask import current_app
from sqlalchemy.orm import Session

from engage import mail, outbox
from engage.accounts import queries as account_queries
from engage.accounts.queries import Recipient
from engage.consent import queries as consent_queries
from engage.registries.models import Registry
from governance.models import ConsentNotice, DecisionThread, Proposal, ProposalStatus, ThreadStatus
from governance.rules import OPEN_THREAD_STATUSES

REMINDER = "governance_reminder"
DECISIONS_CLOSED = "governance_decisions_closed"
CONSENT_NOTICE = "governance_consent_notice"


# Links -------------------------------------------------------------------------------------
# The governance blueprint does not exist yet, so these are built from BASE_URL by hand rather
# than with ``external_url``; switch to endpoints when the pages land.
def _site() -> str:
    return current_app.config["BASE_URL"].rstrip("/")


def registry_inbox_url(registry_code: str) -> str:
    """The registry's governance inbox: the proposals its custodians decide on."""
    return f"{_site()}/governance/registries/{registry_code}"


def registry_notices_url(registry_code: str) -> str:
    """The registry's open consent notices, where custodians acknowledge them."""
    return f"{_site()}/governance/registries/{registry_code}/notices"


def proposal_url(proposal_id: int) -> str:
    """The proposal's page (its proposer reads each registry's decision there)."""
    return f"{_site()}/governance/proposals/{proposal_id}"


def when(moment: datetime) -> str:
    """A moment as people read it in an email, e.g. "3 March 2025, 14:00 UTC"."""
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


# Queueing ----------------------------------------------------------------------------------
def reminder_key(thread_id: int, days: int, user_id: int) -> str:
    """The deduplication key of one custodian's reminder ``days`` before a thread's deadline."""
    return f"governance-reminder:{thread_id}:{days}d:{user_id}"


def queue_reminder(
    session: Session, thread_id: int, days: int, user_id: int, now: datetime
) -> bool:
    """Remind custodian ``user_id`` that their registry's decision is due in ``days`` days;
    False when that reminder was queued before."""
    return (
        outbox.enqueue(
            session,
            kind=REMINDER,
            dedup_key=reminder_key(thread_id, days, user_id),
            now=now,
            user_id=user_id,
            payload={"thread_id": thread_id, "days": days},
        )
        is not None
    )


def decisions_closed_key(proposal_id: int, outcome: ProposalStatus) -> str:
    """The deduplication key of the proposer's summary when a proposal reached ``outcome``."""
    return f"governance-decisions-closed:{proposal_id}:{outcome.value}"


def queue_decisions_closed(
    session: Session,
    proposal: Proposal,
    outcome: ProposalStatus,
    decisions: Sequence[tuple[int, ThreadStatus]],
    now: datetime,
) -> bool:
    """Tell the proposer that decisions closed with ``outcome``, listing each registry's
    decision as it stood then (``decisions``: (registry id, thread status) pairs)."""
    return (
        outbox.enqueue(
            session,
            kind=DECISIONS_CLOSED,
            dedup_key=decisions_closed_key(proposal.id, outcome),
            now=now,
            user_id=proposal.proposer_id,
            payload={
                "proposal_id": proposal.id,
                "outcome": outcome.value,
                "decisions": [[registry_id, status.value] for registry_id, status in decisions],
            },
        )
        is not None
    )


def consent_notice_key(notice_id: int, user_id: int) -> str:
    """The deduplication key of one custodian's email about one consent notice."""
    return f"governance-consent-notice:{notice_id}:{user_id}"


def queue_consent_notice(session: Session, notice_id: int, user_id: int, now: datetime) -> bool:
    """Tell custodian ``user_id`` about consent notice ``notice_id`` (once)."""
    return (
        outbox.enqueue(
            session,
            kind=CONSENT_NOTICE,
            dedup_key=consent_notice_key(notice_id, user_id),
            now=now,
            user_id=user_id,
            payload={"notice_id": notice_id},
        )
        is not None
    )


# Renderers ---------------------------------------------------------------------------------
def _recipient(session: Session, row: outbox.OutboxMessage) -> Recipient:
    user = account_queries.recipient(session, row.user_id) if row.user_id is not None else None
    if user is None:
        raise outbox.NotOwed("the account is gone, deactivated or unconfirmed")
    return user


def _custodian(session: Session, row: outbox.OutboxMessage, registry_id: int) -> Recipient:
    """The recipient, if they still act for ``registry_id`` (custodians move and are revoked)."""
    for custodian in account_queries.custodians_of(session, registry_id):
        if custodian.id == row.user_id:
            return custodian
    raise outbox.NotOwed("the recipient no longer acts for this registry")


def render_reminder(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """A custodian is reminded that their registry's decision on a proposal is due."""
    thread = session.get(DecisionThread, row.payload.get("thread_id"))
    if thread is None:
        raise outbox.NotOwed("the decision thread no longer exists")
    proposal = session.get(Proposal, thread.proposal_id)
    registry = session.get(Registry, thread.registry_id)
    # Decided, expired or withdrawn since it was queued: nothing is due any more.
    if (
        proposal is None
        or registry is None
        or proposal.status != ProposalStatus.SENT
        or thread.status not in OPEN_THREAD_STATUSES
    ):
        raise outbox.NotOwed("the registry's decision is no longer due")
    user = _custodian(session, row, thread.registry_id)
    days = int(row.payload.get("days", 1))
    due = f"in {days} day" + ("" if days == 1 else "s")
    return mail.render_message(
        REMINDER,
        to=user.email,
        subject=f"Decision due {due}: {proposal.title}",
        user=user,
        proposal=proposal,
        registry=registry,
        due=due,
        deadline=when(thread.deadline),
        is_paused=thread.paused_since is not None,
        link=registry_inbox_url(registry.code),
    )


OUTCOME_SUBJECTS = {
    ProposalStatus.ACTIVE: "Registries have decided: your project can start",
    ProposalStatus.NOT_FEASIBLE: "Registries have decided: no registry will take part",
    ProposalStatus.DECISIONS_CLOSED: "Registries have decided: please answer their conditions",
}


def render_decisions_closed(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The proposer reads each registry's decision once decisions on their proposal closed."""
    user = _recipient(session, row)
    proposal = session.get(Proposal, row.payload.get("proposal_id"))
    if proposal is None:
        raise outbox.NotOwed("the proposal no longer exists")
    outcome = ProposalStatus(row.payload["outcome"])
    pairs = [(int(rid), ThreadStatus(status)) for rid, status in row.payload.get("decisions", [])]
    names = {
        registry.id: registry.name
        for registry in (session.get(Registry, rid) for rid, _ in pairs)
        if registry is not None
    }
    decisions = [
        {"registry": names.get(rid, "A registry"), "status": status} for rid, status in pairs
    ]
    return mail.render_message(
        DECISIONS_CLOSED,
        to=user.email,
        subject=f"{OUTCOME_SUBJECTS[outcome]} ({proposal.title})",
        user=user,
        proposal=proposal,
        is_active=outcome == ProposalStatus.ACTIVE,
        is_not_feasible=outcome == ProposalStatus.NOT_FEASIBLE,
        decisions=sorted(decisions, key=lambda d: d["registry"]),
        has_conditions=any(status == ThreadStatus.CONDITIONS_SET for _, status in pairs),
        link=proposal_url(proposal.id),
    )


def _scope_title(session: Session, code: str) -> str:
    """The scope's title on the published form, or its code when the form no longer has it."""
    titles = {scope.code: scope.title for scope in consent_queries.current_scopes(session)}
    return titles.get(code, code)


def render_consent_notice(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """A custodian hears that a participant of their registry withdrew a scope an active
    project relies on. The email never identifies the participant: custodians see the
    notice's pseudonym only on the notices page, after signing in."""
    notice = session.get(ConsentNotice, row.payload.get("notice_id"))
    if notice is None:
        raise outbox.NotOwed("the notice no longer exists")
    if notice.acknowledged_at is not None:
        raise outbox.NotOwed("a custodian has already acknowledged the notice")
    proposal = session.get(Proposal, notice.proposal_id)
    registry = session.get(Registry, notice.registry_id)
    if proposal is None or registry is None:
        raise outbox.NotOwed("the project or the registry no longer exists")
    user = _custodian(session, row, notice.registry_id)
    return mail.render_message(
        CONSENT_NOTICE,
        to=user.email,
        subject=f"Consent withdrawn for a project your registry takes part in: {proposal.title}",
        user=user,
        proposal=proposal,
        registry=registry,
        scope_title=_scope_title(session, notice.scope_code),
        link=registry_notices_url(registry.code),
    )


def register_kinds(kinds: outbox.MailKinds) -> None:
    """Register the governance emails' renderers."""
    kinds.register(REMINDER, render_reminder, "Governance decision reminder")
    kinds.register(DECISIONS_CLOSED, render_decisions_closed, "Governance decisions summary")
    kinds.register(CONSENT_NOTICE, render_consent_notice, "Governance consent notice")
