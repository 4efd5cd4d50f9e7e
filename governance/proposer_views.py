"""Governance pages for proposers (their proposals, drafting, each registry's thread) and the
public register of projects, on the ``governance`` blueprint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import abort, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from engage.consent.queries import current_scopes
from engage.db import get_session
from engage.security import (
    roles_required,
    sign_in_required,
)
from engage.timeutil import utcnow
from engage.views import commit_or_explain, refused, saved, signed_in_person
from governance import catalogue, decisions, proposals, queries
from governance.errors import (
    GovernanceError,
    NotAllowed,
)
from governance.forms import (
    AnswerForm,
    ProposalForm,
    WithdrawProposalForm,
)
from governance.models import (
    DecisionThread,
    Proposal,
    ProposalStatus,
    ThreadStatus,
)
from governance.proposal_details import details_of, scope_codes
from governance.rules import (
    WITHDRAWABLE_STATUSES,
)
from governance.views import (
    EDITABLE_STATUSES,
    PROPOSER_ROLES,
    governance,
    scope_titles_by_code,
    time_left,
)

# The part of the status page saying where the proposal stands.
STATUS_ANCHOR = "proposal-status"
# The two ways of analysing the data, in the words of the people who read the form.
ANALYSIS_HELP = (
    "Pooled: the de-identified data (names and contact details removed) are analysed together "
    "in the network's secure environment. Federated: the data stay at each registry and only "
    "the results are shared."
)


# Proposers ----------------------------------------------------------------------------------
def _proposal_of_viewer(proposal_id: int, *, staff_may_view: bool = False) -> Proposal:
    """The proposal if the signed-in person made it (or, to read it, is staff); 404 if there
    is none, 403 otherwise."""
    proposal = get_session().get(Proposal, proposal_id)
    if proposal is None:
        abort(404)
    viewer = signed_in_person()
    if viewer.id != proposal.proposer_id and not (staff_may_view and viewer.is_staff):
        abort(403)
    return proposal


def _status_page(proposal_id: int, anchor: str | None = None) -> str:
    """The proposal's status page; ``anchor`` names the part that changed (focus goes there)."""
    return url_for("governance.proposal_status", proposal_id=proposal_id, _anchor=anchor)


def _proposal_form(session: Session, *args: Any, **kwargs: Any) -> ProposalForm:
    """The proposal form offering the published consent scopes, the catalogue's active
    variables and the topics adopted for research."""
    variables = catalogue.active_variables_by_domain(session)
    form = ProposalForm(
        *args,
        scopes=[(s.code, s.title) for s in current_scopes(session)],
        variables=[(v.id, v.name) for group in variables.values() for v in group],
        topics=queries.adopted_topics(session),
        **kwargs,
    )
    form.analysis_mode.description = ANALYSIS_HELP
    return form


def _proposal_form_page(
    form: ProposalForm, proposal: Proposal | None, status: int | None = None
) -> ResponseReturnValue:
    session = get_session()
    return (
        render_template(
            "governance/proposal_form.html",
            form=form,
            proposal=proposal,
            groups=catalogue.active_variables_by_domain(session),
            can_propose=proposals.can_propose(signed_in_person()),
        ),
        status or (400 if form.errors else 200),
    )


@governance.route("/proposals")
@roles_required(*PROPOSER_ROLES)
def my_proposals():
    """The signed-in person's proposals, most recently changed first."""
    me = signed_in_person()
    return render_template(
        "governance/my_proposals.html",
        proposals=queries.proposals_by(get_session(), me.id),
        can_propose=proposals.can_propose(me),
    )


@governance.route("/proposals/new", methods=["GET", "POST"])
@roles_required(*PROPOSER_ROLES)
def new_proposal():
    """Draft a research project proposal (staff and verified healthcare professionals)."""
    session = get_session()
    form = _proposal_form(session)
    if not form.validate_on_submit():
        return _proposal_form_page(form, None)
    me = signed_in_person()

    def not_drafted(error: GovernanceError) -> ResponseReturnValue:
        form.form_errors.append(str(error))
        return _proposal_form_page(form, None, 403 if isinstance(error, NotAllowed) else 400)

    return commit_or_explain(
        lambda s: proposals.create_draft(s, me, form.details(), utcnow()),
        errors=GovernanceError,
        explain=not_drafted,
        done=lambda proposal: saved(
            "Your draft is saved. Check it, then submit it to the coordination centre.",
            _status_page(proposal.id),
            status=302,
        ),
    )


@governance.route("/proposals/<int:proposal_id>/edit", methods=["GET", "POST"])
@sign_in_required
def edit_proposal(proposal_id: int):
    """The proposer changes a draft or a proposal staff returned to them."""
    session = get_session()
    proposal = _proposal_of_viewer(proposal_id)
    if proposal.status not in EDITABLE_STATUSES:
        return refused(
            f"The proposal is “{proposal.status.label.lower()}”: only a draft or a proposal "
            "returned to you can be changed.",
            _status_page(proposal.id),
        )
    # The saved details fill the form only on GET: a POST missing a field must not fall back
    # to them (it would be "saved" without the person having sent it).
    saved_details = details_of(session, proposal) if request.method == "GET" else None
    form = _proposal_form(session, obj=saved_details)
    if not form.validate_on_submit():
        return _proposal_form_page(form, proposal)
    me = signed_in_person()

    def not_saved(error: GovernanceError) -> ResponseReturnValue:
        form.form_errors.append(str(error))
        return _proposal_form_page(form, proposal)

    return commit_or_explain(
        lambda s: proposals.update_draft(s, me, proposal, form.details(), utcnow()),
        errors=GovernanceError,
        explain=not_saved,
        done=lambda _none: saved("Your changes are saved.", _status_page(proposal.id), status=302),
    )


def proposer_actions(proposal: Proposal) -> frozenset[str]:
    """What the proposer is offered on the status page for the proposal as a whole."""
    actions = set()
    if proposal.status in EDITABLE_STATUSES:
        actions.update({"edit", "submit"})
    if proposal.status in WITHDRAWABLE_STATUSES:
        actions.add("withdraw")
    return frozenset(actions)


def thread_actions(proposal: Proposal, status: ThreadStatus) -> frozenset[str]:
    """What the proposer is offered in one registry's thread."""
    if status == ThreadStatus.INFO_REQUESTED and proposal.status == ProposalStatus.SENT:
        return frozenset({"answer"})
    if (
        status == ThreadStatus.CONDITIONS_SET
        and proposal.status in decisions.CONDITIONS_ANSWERABLE_PROPOSAL_STATUSES
    ):
        return frozenset({"accept", "refuse"})
    return frozenset()


def _answer_prefix(thread_id: int) -> str:
    # One answer form per registry on the page: the prefix keeps their ids apart.
    return f"thread-{thread_id}"


def _proposal_status_page(
    proposal: Proposal,
    *,
    withdraw_form: WithdrawProposalForm | None = None,
    answer_form: AnswerForm | None = None,
    answer_thread_id: int | None = None,
    status: int = 200,
) -> ResponseReturnValue:
    session = get_session()
    viewer = signed_in_person()
    view = queries.thread_view(session, viewer, proposal)
    answer_forms = {
        row.thread_id: AnswerForm(prefix=_answer_prefix(row.thread_id))
        for row in view.others
        if "answer" in thread_actions(proposal, row.status)
    }
    if answer_form is not None and answer_thread_id is not None:
        answer_forms[answer_thread_id] = answer_form
    return (
        render_template(
            "governance/proposal_status.html",
            proposal=proposal,
            is_proposer=viewer.id == proposal.proposer_id,
            rows=view.others,
            events=queries.thread_events(session, proposal),
            history=queries.status_history(session, proposal),
            scopes=scope_codes(session, proposal),
            scope_titles=scope_titles_by_code(session),
            variables=queries.requested_variables(session, proposal),
            actions=proposer_actions(proposal),
            thread_actions=thread_actions,
            withdraw_form=withdraw_form or WithdrawProposalForm(),
            answer_forms=answer_forms,
            now=utcnow(),
            time_left=time_left,
        ),
        status,
    )


@governance.route("/proposals/<int:proposal_id>")
@sign_in_required
def proposal_status(proposal_id: int):
    """The proposal's status and each registry's thread (the proposer; staff may read it)."""
    return _proposal_status_page(_proposal_of_viewer(proposal_id, staff_may_view=True))


def _proposer_step(
    proposal: Proposal, change: Callable[[Session], Any], message: str, anchor: str
) -> ResponseReturnValue:
    page = _status_page(proposal.id, anchor)
    return commit_or_explain(
        change,
        errors=GovernanceError,
        explain=lambda error: refused(str(error), page),
        done=lambda _outcome: saved(message, page),
    )


@governance.route("/proposals/<int:proposal_id>/submit", methods=["POST"])
@sign_in_required
def submit_proposal(proposal_id: int):
    """Submit a draft (or a returned proposal) to the coordination centre for screening."""
    proposal = _proposal_of_viewer(proposal_id)
    me = signed_in_person()
    return _proposer_step(
        proposal,
        lambda s: proposals.submit(s, me, proposal, utcnow()),
        "Your proposal is submitted. Staff will screen it and tell you what happens next.",
        STATUS_ANCHOR,
    )


@governance.route("/proposals/<int:proposal_id>/withdraw", methods=["POST"])
@sign_in_required
def withdraw_proposal(proposal_id: int):
    """Withdraw the proposal before it becomes a project (a reason is required)."""
    proposal = _proposal_of_viewer(proposal_id)
    form = WithdrawProposalForm()
    if not form.validate_on_submit():
        return _proposal_status_page(proposal, withdraw_form=form, status=400)
    me = signed_in_person()
    return _proposer_step(
        proposal,
        lambda s: proposals.withdraw(s, me, proposal, form.reason.data, utcnow()),
        "Your proposal is withdrawn.",
        STATUS_ANCHOR,
    )


def _thread_anchor(thread: DecisionThread) -> str:
    """The part of the status page showing one registry's thread."""
    return f"registry-{thread.id}"


def _proposal_thread(proposal_id: int, thread_id: int) -> tuple[Proposal, DecisionThread]:
    proposal = _proposal_of_viewer(proposal_id)
    thread = get_session().get(DecisionThread, thread_id)
    if thread is None or thread.proposal_id != proposal.id:
        abort(404)
    return proposal, thread


@governance.route("/proposals/<int:proposal_id>/threads/<int:thread_id>/answer", methods=["POST"])
@sign_in_required
def answer_information(proposal_id: int, thread_id: int):
    """Answer a registry's question (its deadline starts running again)."""
    proposal, thread = _proposal_thread(proposal_id, thread_id)
    form = AnswerForm(prefix=_answer_prefix(thread.id))
    if not form.validate_on_submit():
        return _proposal_status_page(
            proposal, answer_form=form, answer_thread_id=thread.id, status=400
        )
    me = signed_in_person()
    return _proposer_step(
        proposal,
        lambda s: decisions.answer_information(s, me, thread, form.answer.data, utcnow()),
        "Your answer is sent to the registry.",
        _thread_anchor(thread),
    )


@governance.route(
    "/proposals/<int:proposal_id>/threads/<int:thread_id>/accept-conditions", methods=["POST"]
)
@sign_in_required
def accept_conditions(proposal_id: int, thread_id: int):
    """Accept a registry's conditions: it takes part on them."""
    proposal, thread = _proposal_thread(proposal_id, thread_id)
    me = signed_in_person()
    return _proposer_step(
        proposal,
        lambda s: decisions.accept_conditions(s, me, thread, utcnow()),
        "You accepted the registry's conditions: it takes part in the project on them.",
        _thread_anchor(thread),
    )


@governance.route(
    "/proposals/<int:proposal_id>/threads/<int:thread_id>/refuse-conditions", methods=["POST"]
)
@sign_in_required
def refuse_conditions(proposal_id: int, thread_id: int):
    """Refuse a registry's conditions: it does not take part."""
    proposal, thread = _proposal_thread(proposal_id, thread_id)
    me = signed_in_person()
    return _proposer_step(
        proposal,
        lambda s: decisions.refuse_conditions(s, me, thread, utcnow()),
        "You refused the registry's conditions: it will not take part in the project.",
        _thread_anchor(thread),
    )


# Everyone -----------------------------------------------------------------------------------
@governance.route("/projects")
def projects():
    """The public register of active and completed research projects."""
    return render_template(
        "governance/projects.html", projects=queries.public_projects(get_session())
    )
