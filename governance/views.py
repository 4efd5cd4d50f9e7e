"""Governance pages for custodians (their registry's inbox, a proposal with its cohort and the
decision form, consent notices), proposers (their proposals and each registry's thread) and
everyone (the public register of projects) — blueprint ``governance``, /governance.

Emails link to /governance/registries/<code>, /governance/registries/<code>/notices and
/governance/proposals/<id>: those addresses are part of the interface.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, abort, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session
from wtforms import RadioField, TextAreaField
from wtforms.validators import InputRequired, Length

from engage.accounts.models import Role, User
from engage.accounts.reauth import fresh_auth_required
from engage.consent.queries import current_scopes
from engage.db import get_session
from engage.forms import Form, choices, strip
from engage.registries.models import Registry
from engage.security import (
    approved_custodian_required,
    require_custodian_of,
)
from engage.timeutil import utcnow
from engage.views import commit_or_explain, page_arg, refused, saved, signed_in_person
from governance import cohort, decisions, notices, queries
from governance.decisions import MAX_TEXT_LENGTH
from governance.errors import (
    GovernanceError,
    InvalidProposal,
    ReasonRequired,
    TextTooLong,
)
from governance.forms import (
    ConditionsForm,
    ConfirmForm,
    DeclineForm,
    QuestionForm,
    WithdrawApprovalForm,
)
from governance.models import (
    ConsentNotice,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ThreadStatus,
)
from governance.proposal_details import scope_codes
from governance.rules import (
    APPROVING_THREAD_STATUSES,
    OPEN_THREAD_STATUSES,
)

governance = Blueprint("governance", __name__, url_prefix="/governance")

# Who may draft proposals at all (staff, and healthcare professionals once verified).
PROPOSER_ROLES = (Role.CLINICIAN, Role.STAFF)
EDITABLE_STATUSES = frozenset({ProposalStatus.DRAFT, ProposalStatus.RETURNED})
# A proposal as one registry's custodians see it; its decision steps are posted below it.
REGISTRY_PROPOSAL = "/registries/<registry_code>/proposals/<int:proposal_id>"
# The part of that page that shows the registry's decision: focus comes back to it after a step.
DECISION_ANCHOR = "decision"
# The form where the decision is chosen: "Change the decision" comes back to it.
DECIDE_ANCHOR = "choose-decision"
APPROVE, CONDITIONS, DECLINE = "approve", "conditions", "decline"
# Each decision a custodian chooses, and the step that records it once they have checked it.
DECISION_STEPS = {
    APPROVE: "governance.approve",
    CONDITIONS: "governance.approve_with_conditions",
    DECLINE: "governance.decline",
}


_AT_MOST_MAX_TEXT = Length(
    max=MAX_TEXT_LENGTH, message=f"Use at most {MAX_TEXT_LENGTH:,} characters."
)


class DecisionForm(Form):
    """The registry's decision as a custodian chooses it on the proposal page; the next page
    shows it back to them, and only its button records it (one mis-tap records nothing)."""

    decision = RadioField(
        "What does your registry decide?",
        choices=choices(
            [
                (APPROVE, "Approve"),
                (CONDITIONS, "Approve with conditions"),
                (DECLINE, "Decline"),
            ]
        ),
        validators=[InputRequired(message="Choose approve, approve with conditions or decline.")],
        invalid_choice_message="Choose approve, approve with conditions or decline.",
    )
    conditions = TextAreaField(
        "Your conditions",
        filters=[strip],
        validators=[_AT_MOST_MAX_TEXT],
        description="Only if you approve with conditions. The proposer accepts or refuses them.",
    )
    decline_reason = TextAreaField(
        "Why your registry declines",
        filters=[strip],
        validators=[_AT_MOST_MAX_TEXT],
        description="Only if you decline. The proposer and the coordination centre read it.",
    )

    def validate(self, extra_validators: Any = None) -> bool:
        """The text the chosen decision needs is required; the other text is ignored."""
        super().validate(extra_validators)
        needed = {CONDITIONS: self.conditions, DECLINE: self.decline_reason}
        missing = {
            CONDITIONS: "Write the conditions of your approval.",
            DECLINE: "Write a reason for declining.",
        }
        for choice, text_field in needed.items():
            if self.decision.data != choice:
                text_field.errors = []
            elif not text_field.data and not text_field.errors:
                text_field.errors = [missing[choice]]
        return not any(field.errors for field in self)


def time_left(deadline: datetime, now: datetime) -> str:
    """How long until ``deadline``, in words ("3 days and 4 hours left")."""
    remaining = deadline - now
    if remaining <= timedelta(0):
        return "the deadline has passed"
    days, hours = remaining.days, remaining.seconds // 3600
    if days:
        day_text = f"{days} day{'s' if days != 1 else ''}"
        if hours:
            return f"{day_text} and {hours} hour{'s' if hours != 1 else ''} left"
        return f"{day_text} left"
    if hours:
        return f"{hours} hour{'s' if hours != 1 else ''} left"
    return "less than an hour left"


def scope_titles_by_code(session: Session) -> dict[str, str]:
    return {scope.code: scope.title for scope in current_scopes(session)}


# Custodians ---------------------------------------------------------------------------------
def _custodian_registry(registry_code: str) -> Registry:
    """The registry of ``code``; 404 if there is none, 403 unless the signed-in person is one
    of its approved custodians."""
    registry = queries.registry_by_code(get_session(), registry_code)
    if registry is None:
        abort(404)
    require_custodian_of(registry.id)
    return registry


def _registry_thread(
    registry_code: str, proposal_id: int
) -> tuple[Registry, Proposal, DecisionThread]:
    """The registry, the proposal and the registry's thread on it; 404 if it was not sent
    there."""
    registry = _custodian_registry(registry_code)
    session = get_session()
    proposal = session.get(Proposal, proposal_id)
    thread = queries.registry_thread(session, proposal_id, registry.id) if proposal else None
    if proposal is None or thread is None:
        abort(404)
    return registry, proposal, thread


def custodian_actions(proposal: Proposal, thread: DecisionThread, now: datetime) -> frozenset[str]:
    """The decision forms a custodian is offered in the thread's state (the services check
    again when one is used)."""
    actions: set[str] = set()
    before_deadline = now < decisions.effective_deadline(thread, now)
    if (
        proposal.status == ProposalStatus.SENT
        and thread.status in OPEN_THREAD_STATUSES
        and before_deadline
    ):
        if thread.status == ThreadStatus.SENT:
            actions.add("open")
        if thread.status in (ThreadStatus.SENT, ThreadStatus.IN_REVIEW):
            actions.add("ask")
        actions.update({"approve", "conditions", "decline"})
    if (
        proposal.status in decisions.WITHDRAWABLE_APPROVAL_PROPOSAL_STATUSES
        and thread.status in APPROVING_THREAD_STATUSES
    ):
        actions.add("withdraw")
    return frozenset(actions)


@governance.route("/registries/<registry_code>")
@approved_custodian_required
def registry_inbox(registry_code: str):
    """The registry's proposals: open ones first, soonest deadline first, with the time left."""
    session = get_session()
    registry = _custodian_registry(registry_code)
    now = utcnow()
    page = page_arg()
    size = queries.INBOX_PAGE_SIZE
    entries = queries.registry_inbox(
        session, registry.id, now, limit=size + 1, offset=(page - 1) * size
    )
    return render_template(
        "governance/inbox.html",
        registry=registry,
        entries=entries[:size],
        page=page,
        has_next=len(entries) > size,
        open_notice_count=notices.open_notice_count(session, registry.id),
        now=now,
        time_left=time_left,
    )


def _registry_proposal_page(
    registry: Registry,
    proposal: Proposal,
    thread: DecisionThread,
    forms: dict[str, Any] | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    session = get_session()
    now = utcnow()
    view = queries.thread_view(session, signed_in_person(), proposal)
    try:
        count, count_problem = cohort.eligible_cohort(session, proposal, registry), None
    except InvalidProposal as error:
        count, count_problem = None, str(error)
    page_forms = {
        "confirm": ConfirmForm(),
        "ask": QuestionForm(),
        "decide": DecisionForm(formdata=None),
        "withdraw": WithdrawApprovalForm(),
    }
    for key, form in (forms or {}).items():
        if key in (CONDITIONS, DECLINE):
            key, form = "decide", _as_decision_form(key, form)
        page_forms[key] = form
    return (
        render_template(
            "governance/registry_proposal.html",
            registry=registry,
            proposal=proposal,
            thread=thread,
            view=view,
            cohort=count,
            cohort_problem=count_problem,
            scopes=scope_codes(session, proposal),
            scope_titles=scope_titles_by_code(session),
            variables=queries.requested_variables(session, proposal),
            actions=custodian_actions(proposal, thread, now),
            deadline=decisions.effective_deadline(thread, now),
            forms=page_forms,
            now=now,
            time_left=time_left,
        ),
        status,
    )


def _as_decision_form(choice: str, form: Any) -> DecisionForm:
    """The decision form as ``form`` (the step recording ``choice``) was sent, with its
    problems, so the page shows them where the decision is chosen."""
    texts = [name for name in ("conditions", "decline_reason") if name in form]
    decision = DecisionForm(
        formdata=None, data={"decision": choice, **{name: form[name].data for name in texts}}
    )
    for name in [*texts, "csrf_token"]:
        if name in form and form[name].errors:
            decision[name].errors = list(form[name].errors)
    decision.form_errors.extend(form.form_errors)
    return decision


def _registry_proposal_url(registry: Registry, proposal: Proposal, anchor: str) -> str:
    return url_for(
        "governance.registry_proposal",
        registry_code=registry.code,
        proposal_id=proposal.id,
        _anchor=anchor,
    )


@governance.route(REGISTRY_PROPOSAL)
@approved_custodian_required
def registry_proposal(registry_code: str, proposal_id: int):
    """A proposal sent to the registry, its eligible cohort, this registry's thread and the
    decision forms open in the thread's state."""
    return _registry_proposal_page(*_registry_thread(registry_code, proposal_id))


@governance.route(f"{REGISTRY_PROPOSAL}/decide", methods=["POST"])
@approved_custodian_required
def check_decision(registry_code: str, proposal_id: int):
    """Show the chosen decision back to the custodian with the one button that sends it
    (nothing is recorded here). "Change the decision" posts here too, and gets the proposal
    page with the decision form as it was filled in."""
    registry, proposal, thread = _registry_thread(registry_code, proposal_id)
    form = DecisionForm()
    if "change" in request.form:
        return _registry_proposal_page(registry, proposal, thread, {"decide": form})
    if not form.validate_on_submit():
        return _registry_proposal_page(registry, proposal, thread, {"decide": form}, 400)
    if form.decision.data not in custodian_actions(proposal, thread, utcnow()):
        return refused(
            "Your registry can no longer decide on this proposal: it has already decided, or "
            "its deadline has passed. Nothing was sent.",
            _registry_proposal_url(registry, proposal, DECISION_ANCHOR),
        )
    return render_template(
        "governance/registry_decision_check.html",
        registry=registry,
        proposal=proposal,
        form=form,
        send_to=url_for(
            DECISION_STEPS[form.decision.data],
            registry_code=registry.code,
            proposal_id=proposal.id,
        ),
        change_to=url_for(
            "governance.check_decision",
            registry_code=registry.code,
            proposal_id=proposal.id,
            _anchor=DECIDE_ANCHOR,
        ),
        back_to=_registry_proposal_url(registry, proposal, DECIDE_ANCHOR),
    )


def _decide(
    registry_code: str,
    proposal_id: int,
    key: str,
    form: Any,
    change: Callable[[Session, User, DecisionThread, datetime], Any],
    message: str,
) -> ResponseReturnValue:
    """Validate ``form`` and record the custodian's step, or explain why nothing was recorded
    (a text problem next to the field, anything else as a message on the page)."""
    registry, proposal, thread = _registry_thread(registry_code, proposal_id)
    page = _registry_proposal_url(registry, proposal, DECISION_ANCHOR)
    if not form.validate_on_submit():
        return _registry_proposal_page(registry, proposal, thread, {key: form}, 400)
    actor = signed_in_person()

    def not_recorded(error: GovernanceError) -> ResponseReturnValue:
        text_fields = [f for f in form if f.type == "TextAreaField"]
        if isinstance(error, ReasonRequired | TextTooLong) and text_fields:
            text_fields[0].errors = [str(error)]
            return _registry_proposal_page(registry, proposal, thread, {key: form}, 400)
        return refused(str(error), page)

    return commit_or_explain(
        lambda session: change(session, actor, thread, utcnow()),
        errors=GovernanceError,
        explain=not_recorded,
        done=lambda _event: saved(message, page),
    )


@governance.route(f"{REGISTRY_PROPOSAL}/open", methods=["POST"])
@approved_custodian_required
def open_for_review(registry_code: str, proposal_id: int):
    """Start reviewing the proposal for the registry."""
    return _decide(
        registry_code,
        proposal_id,
        "confirm",
        ConfirmForm(),
        decisions.open_for_review,
        "You are reviewing this proposal for your registry.",
    )


@governance.route(f"{REGISTRY_PROPOSAL}/ask", methods=["POST"])
@approved_custodian_required
def ask_for_information(registry_code: str, proposal_id: int):
    """Ask the proposer a question (the registry's deadline pauses until the answer)."""
    form = QuestionForm()
    return _decide(
        registry_code,
        proposal_id,
        "ask",
        form,
        lambda s, actor, thread, now: decisions.ask_for_information(
            s, actor, thread, form.question.data, now
        ),
        "Your question is sent to the proposer. Your deadline is paused until they answer.",
    )


@governance.route(f"{REGISTRY_PROPOSAL}/approve", methods=["POST"])
@approved_custodian_required
@fresh_auth_required
def approve(registry_code: str, proposal_id: int):
    """Approve the proposal for the registry."""
    return _decide(
        registry_code,
        proposal_id,
        "confirm",
        ConfirmForm(),
        decisions.approve,
        "Your registry's approval is recorded.",
    )


@governance.route(f"{REGISTRY_PROPOSAL}/approve-with-conditions", methods=["POST"])
@approved_custodian_required
@fresh_auth_required
def approve_with_conditions(registry_code: str, proposal_id: int):
    """Approve on conditions the proposer must accept."""
    form = ConditionsForm()
    return _decide(
        registry_code,
        proposal_id,
        "conditions",
        form,
        lambda s, actor, thread, now: decisions.approve_with_conditions(
            s, actor, thread, form.conditions.data, now
        ),
        "Your approval with conditions is recorded. The proposer will accept or refuse them.",
    )


@governance.route(f"{REGISTRY_PROPOSAL}/decline", methods=["POST"])
@approved_custodian_required
@fresh_auth_required
def decline(registry_code: str, proposal_id: int):
    """Decline the proposal for the registry (a reason is required)."""
    form = DeclineForm()
    return _decide(
        registry_code,
        proposal_id,
        "decline",
        form,
        lambda s, actor, thread, now: decisions.decline(
            s, actor, thread, form.decline_reason.data, now
        ),
        "Your registry's decision to decline is recorded.",
    )


@governance.route(f"{REGISTRY_PROPOSAL}/withdraw-approval", methods=["POST"])
@approved_custodian_required
@fresh_auth_required
def withdraw_approval(registry_code: str, proposal_id: int):
    """Take back the registry's approval (a reason is required)."""
    form = WithdrawApprovalForm()
    return _decide(
        registry_code,
        proposal_id,
        "withdraw",
        form,
        lambda s, actor, thread, now: decisions.withdraw_approval(
            s, actor, thread, form.withdraw_reason.data, now
        ),
        "Your registry's approval is withdrawn.",
    )


@governance.route("/registries/<registry_code>/notices")
@approved_custodian_required
def registry_notices(registry_code: str):
    """Consent withdrawals that concern the registry's active projects, not yet dealt with."""
    session = get_session()
    registry = _custodian_registry(registry_code)
    open_notices = notices.open_notices(session, registry.id)
    return render_template(
        "governance/notices.html",
        registry=registry,
        notices=open_notices,
        titles=queries.proposal_titles(session, {n.proposal_id for n in open_notices}),
        scope_titles=scope_titles_by_code(session),
        limit=notices.OPEN_NOTICES_LIMIT,
    )


@governance.route(
    "/registries/<registry_code>/notices/<int:notice_id>/acknowledge", methods=["POST"]
)
@approved_custodian_required
def acknowledge_notice(registry_code: str, notice_id: int):
    """Mark a consent notice as dealt with."""
    registry = _custodian_registry(registry_code)
    notice = get_session().get(ConsentNotice, notice_id)
    if notice is None or notice.registry_id != registry.id:
        abort(404)
    page = url_for("governance.registry_notices", registry_code=registry.code, _anchor="notices")
    actor = signed_in_person()
    return commit_or_explain(
        lambda session: notices.acknowledge_notice(session, actor, notice, utcnow()),
        errors=GovernanceError,
        explain=lambda error: refused(str(error), page, "info"),
        done=lambda _notice: saved("The notice is marked as dealt with.", page),
    )
