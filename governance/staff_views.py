"""Staff pages of governance: proposals (editor, screening, dispatch), the decision matrix,
the overdue list and the variable catalogue (blueprint ``governance_staff``, /staff/governance).

Every change goes form → service → flash → redirect through :func:`commit_or_explain`; a
refused change shows the page again with what was typed and why (400, 403 for a person who
may not, 409 when the proposal has moved on).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from engage.accounts.models import Role, User
from engage.choices import LANGUAGE_CHOICES
from engage.consent.queries import current_scopes
from engage.db import get_session
from engage.forms import Form, choices
from engage.registries.queries import active_registries
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.topics.models import Topic
from engage.views import commit_or_explain, saved, signed_in_person
from governance import catalogue, cohort, proposals, queries, rules
from governance.errors import GovernanceError, InvalidProposal, InvalidTransition, NotAllowed
from governance.models import (
    AnalysisMode,
    CatalogueVariable,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ThreadStatus,
)
from governance.proposal_details import details_of
from governance.staff_forms import (
    ConfirmForm,
    DispatchForm,
    ExtendDeadlineForm,
    OptionalReasonForm,
    ProposalForm,
    ReasonForm,
)

governance_staff = Blueprint("governance_staff", __name__, url_prefix="/staff/governance")

EDITABLE_STATUSES = frozenset({ProposalStatus.DRAFT, ProposalStatus.RETURNED})


# Shared helpers -------------------------------------------------------------------------------
def refusal_status(exc: GovernanceError) -> int:
    """403 for a person who may not, 409 when the proposal or thread has moved on, else 400."""
    if isinstance(exc, NotAllowed):
        return 403
    if isinstance(exc, InvalidTransition):
        return 409
    return 400


def with_error(form: Form, exc: GovernanceError) -> Form:
    """``form`` with the refusal's message as an error of the whole form."""
    form.form_errors.append(str(exc))
    return form


def _ids_prefixed(form: Form, prefix: str) -> Form:
    """Give ``form``'s fields ids unique on a page holding several forms; their names (what
    the browser posts) stay as they are."""
    for field in form:
        field.id = f"{prefix}-{field.id}"
        field.label.field_id = field.id
    return form


def _proposal(proposal_id: int) -> Proposal:
    proposal = get_session().get(Proposal, proposal_id)
    if proposal is None:
        abort(404)
    return proposal


def _proposal_url(proposal_id: int, anchor: str = "") -> str:
    return url_for("governance_staff.proposal", proposal_id=proposal_id) + anchor


# Proposals list -------------------------------------------------------------------------------
@governance_staff.route("")
@roles_required(Role.STAFF)
def index():
    """Every proposal, grouped by status (in the order of the lifecycle), with counts."""
    grouped: dict[ProposalStatus, list[Proposal]] = {}
    for proposal in queries.proposals_for_staff(get_session()):
        grouped.setdefault(proposal.status, []).append(proposal)
    groups = [(status, grouped[status]) for status in ProposalStatus if status in grouped]
    return render_template("governance/staff/index.html", groups=groups)


# The editor -----------------------------------------------------------------------------------
def _variable_label(variable: CatalogueVariable) -> str:
    label = f"{variable.name} ({variable.code})"
    return label if variable.is_active else f"{label}: retired, cannot be requested"


def _editor_form(proposal: Proposal | None) -> tuple[ProposalForm, list[tuple[str, list[int]]]]:
    """The editor's form, its choices filled in (with what the proposal already names even
    if no longer offered, so the service can say why it cannot stay), and the variables'
    ids grouped by domain."""
    session = get_session()
    scopes = [(scope.code, scope.title) for scope in current_scopes(session)]
    variables = [
        v for group in catalogue.active_variables_by_domain(session).values() for v in group
    ]
    data: dict[str, Any] | None = None
    if proposal is not None:
        details = details_of(session, proposal)
        offered = {code for code, _title in scopes}
        scopes += [
            (code, f"{code}: not in the published consent form")
            for code in details.scope_codes
            if code not in offered
        ]
        active_ids = {variable.id for variable in variables}
        variables += [
            v for v in queries.requested_variables(session, proposal) if v.id not in active_ids
        ]
        if request.method == "GET":
            data = {
                "title": details.title,
                "lead_researcher": details.lead_researcher,
                "institution": details.institution,
                "sponsor": details.sponsor,
                "plain_summary": details.plain_summary,
                "scientific_summary": details.scientific_summary,
                "language": details.language,
                "analysis_mode": details.analysis_mode.value,
                "ethics_reference": details.ethics_reference,
                "topic_id": str(details.topic_id) if details.topic_id is not None else "",
                "decision_deadline": details.decision_deadline,
                "scope_codes": details.scope_codes,
                "variable_ids": details.variable_ids,
            }
    variables.sort(key=lambda v: (v.domain, v.name, v.id))
    groups: dict[str, list[int]] = {}
    for variable in variables:
        groups.setdefault(variable.domain, []).append(variable.id)
    topics = queries.adopted_topics(session)
    linked_id = proposal.topic_id if proposal is not None else None
    if linked_id is not None and linked_id not in {topic_id for topic_id, _title in topics}:
        linked = session.get(Topic, linked_id)
        if linked is not None:
            topics.append((linked.id, f"{linked.title}: no longer adopted"))
    form = ProposalForm(
        data=data,
        scopes=scopes,
        variables=[(v.id, _variable_label(v)) for v in variables],
        topics=topics,
    )
    languages = dict(LANGUAGE_CHOICES)
    if proposal is not None and proposal.language not in languages:
        form.language.choices = choices(
            [*languages.items(), (proposal.language, proposal.language)]
        )
    return form, list(groups.items())


def _details(form: ProposalForm) -> proposals.ProposalDetails:
    return proposals.ProposalDetails(
        title=form.title.data,
        lead_researcher=form.lead_researcher.data,
        institution=form.institution.data,
        sponsor=form.sponsor.data,
        plain_summary=form.plain_summary.data,
        scientific_summary=form.scientific_summary.data,
        language=form.language.data,
        analysis_mode=AnalysisMode(form.analysis_mode.data),
        ethics_reference=form.ethics_reference.data,
        topic_id=form.chosen_topic_id(),
        decision_deadline=form.decision_deadline.data,
        scope_codes=list(form.scope_codes.data),
        variable_ids=list(form.variable_ids.data),
    )


def _render_editor(
    form: ProposalForm,
    groups: list[tuple[str, list[int]]],
    proposal: Proposal | None,
    status: int | None = None,
):
    level = proposals.plain_summary_level(proposal) if proposal is not None else None
    return (
        render_template(
            "governance/staff/proposal_form.html",
            form=form,
            groups=groups,
            proposal=proposal,
            level=level,
            has_scopes=bool(form.scope_codes.choices),
        ),
        status or (400 if form.errors else 200),
    )


def _saved_draft(proposal: Proposal, message: str):
    level = proposals.plain_summary_level(proposal)
    if level.is_measured:
        message += f" The plain-language summary reads at {level.method.lower()} {level.grade:.1f}."
    return saved(message, _proposal_url(proposal.id))


@governance_staff.route("/proposals/new", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def new_proposal():
    """Draft a proposal on a sponsor's or researcher's behalf."""
    form, groups = _editor_form(None)
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: proposals.create_draft(
                session, signed_in_person(), _details(form), utcnow()
            ),
            errors=GovernanceError,
            explain=lambda exc: _render_editor(
                with_error(form, exc), groups, None, refusal_status(exc)
            ),
            done=lambda proposal: _saved_draft(proposal, "The draft is saved."),
        )
    return _render_editor(form, groups, None)


@governance_staff.route("/proposals/<int:proposal_id>/edit", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def edit_proposal(proposal_id: int):
    """Change a draft or a proposal returned to its proposer."""
    proposal = _proposal(proposal_id)
    if proposal.status not in EDITABLE_STATUSES:
        flash(
            f"The proposal is “{proposal.status.label.lower()}”: only a draft or a proposal "
            "returned to its proposer can be changed.",
            "error",
        )
        return redirect(_proposal_url(proposal.id), code=303)
    form, groups = _editor_form(proposal)
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: proposals.update_draft(
                session, signed_in_person(), proposal, _details(form), utcnow()
            ),
            errors=GovernanceError,
            explain=lambda exc: _render_editor(
                with_error(form, exc), groups, _proposal(proposal_id), refusal_status(exc)
            ),
            done=lambda _: _saved_draft(proposal, "Saved."),
        )
    return _render_editor(form, groups, proposal)


# One proposal ---------------------------------------------------------------------------------
def _dispatch_choices(session: Session, proposal: Proposal) -> list[tuple[int, str]]:
    """Each active registry with its eligible cohort for ``proposal`` (suppressed below the
    registry's small-cell threshold)."""
    labelled = []
    for registry in active_registries(session):
        try:
            shown = f"{cohort.eligible_cohort(session, proposal, registry).shown} eligible"
        except InvalidProposal as error:
            shown = f"eligible cohort not counted: {error}"
        labelled.append((registry.id, f"{registry.name} ({registry.code}): {shown}"))
    return labelled


def _page_forms(session: Session, proposal: Proposal, rows: list[Any]) -> dict[str, Any]:
    """A fresh form for every action the page may offer, ids unique on the page."""
    forms: dict[str, Any] = {
        "submit_form": _ids_prefixed(ConfirmForm(formdata=None), "submit"),
        "screening_form": _ids_prefixed(ConfirmForm(formdata=None), "screening"),
        "return_form": _ids_prefixed(ReasonForm(formdata=None), "return"),
        "reject_form": _ids_prefixed(ReasonForm(formdata=None), "reject"),
        "complete_form": _ids_prefixed(OptionalReasonForm(formdata=None), "complete"),
        "close_form": _ids_prefixed(OptionalReasonForm(formdata=None), "close"),
    }
    if proposal.status == ProposalStatus.SCREENING:
        forms["send_form"] = _ids_prefixed(
            DispatchForm(formdata=None, registries=_dispatch_choices(session, proposal)), "send"
        )
    forms["extend_forms"] = {
        row.thread_id: _ids_prefixed(ExtendDeadlineForm(formdata=None), f"thread-{row.thread_id}")
        for row in rows
        if row.status in rules.OPEN_THREAD_STATUSES
    }
    return forms


def _chart_bars(rows: list[Any]) -> list[tuple[str, int]]:
    """(status label, number of registries) for each status the decisions have, in the
    order of the statuses."""
    counts = Counter(row.status for row in rows)
    return [(status.label, counts[status]) for status in ThreadStatus if counts[status]]


def _render_proposal(
    proposal: Proposal, status: int = 200, *, failed: Form | None = None, **overrides: Any
):
    """The proposal page; ``failed`` is the form whose change was refused (shown in the
    error summary) and ``overrides`` put it, as typed, in its place on the page."""
    session = get_session()
    rows = queries.matrix(session, proposal)
    allowed = rules.PROPOSAL_TRANSITIONS.get(proposal.status, frozenset())
    viewer = signed_in_person()
    titles = {scope.code: scope.title for scope in current_scopes(session)}
    forms = _page_forms(session, proposal, rows)
    extend_override = overrides.pop("extend_form", None)
    if extend_override is not None:
        thread_id, form = extend_override
        forms["extend_forms"][thread_id] = form
    forms.update(overrides)
    proposer = session.get(User, proposal.proposer_id)
    return (
        render_template(
            "governance/staff/proposal.html",
            proposal=proposal,
            proposer_name=proposer.display_name if proposer else None,
            topic=session.get(Topic, proposal.topic_id) if proposal.topic_id else None,
            scopes=[(code, titles.get(code)) for code in cohort.scope_codes(session, proposal)],
            variables=queries.requested_variables(session, proposal),
            level=proposals.plain_summary_level(proposal),
            history=queries.status_history(session, proposal),
            rows=rows,
            bars=_chart_bars(rows),
            can_edit=proposal.status in EDITABLE_STATUSES,
            can_submit=ProposalStatus.SUBMITTED in allowed and viewer.id == proposal.proposer_id,
            can_screen=ProposalStatus.SCREENING in allowed,
            can_return=ProposalStatus.RETURNED in allowed,
            can_reject=ProposalStatus.REJECTED in allowed,
            can_send=ProposalStatus.SENT in allowed,
            can_complete=ProposalStatus.COMPLETED in allowed,
            can_close=ProposalStatus.CLOSED in allowed,
            can_extend=proposal.status == ProposalStatus.SENT,
            failed=failed,
            **forms,
        ),
        status,
    )


@governance_staff.route("/proposals/<int:proposal_id>")
@roles_required(Role.STAFF)
def proposal(proposal_id: int):
    """A proposal: its details, status history, the actions its status allows and the
    decision matrix."""
    return _render_proposal(_proposal(proposal_id))


def _status_step(
    proposal_id: int,
    form: Form,
    prefix: str,
    change: Callable[[Session, Proposal, Form], Any],
    message: Callable[[Proposal], str],
    anchor: str = "#proposal-status",
):
    """Validate ``form``, run ``change`` and go back to the proposal (focus on ``anchor``, the
    part that changed), or show the page again with ``form`` as typed and why nothing
    changed."""
    found = _proposal(proposal_id)
    _ids_prefixed(form, prefix)
    override = {f"{prefix}_form": form}
    if not form.validate_on_submit():
        return _render_proposal(found, 400, failed=form, **override)
    return commit_or_explain(
        lambda session: change(session, found, form),
        errors=GovernanceError,
        explain=lambda exc: _render_proposal(
            _proposal(proposal_id), refusal_status(exc), failed=with_error(form, exc), **override
        ),
        done=lambda _: saved(message(found), _proposal_url(found.id, anchor)),
    )


@governance_staff.route("/proposals/<int:proposal_id>/submit", methods=["POST"])
@roles_required(Role.STAFF)
def submit_proposal(proposal_id: int):
    """Submit a draft this staff member wrote for screening."""
    return _status_step(
        proposal_id,
        ConfirmForm(),
        "submit",
        lambda session, found, _form: proposals.submit(
            session, signed_in_person(), found, utcnow()
        ),
        lambda _found: "Submitted: the proposal is waiting for screening.",
    )


@governance_staff.route("/proposals/<int:proposal_id>/screening", methods=["POST"])
@roles_required(Role.STAFF)
def start_screening(proposal_id: int):
    """Take a submitted proposal into screening."""
    return _status_step(
        proposal_id,
        ConfirmForm(),
        "screening",
        lambda session, found, _form: proposals.start_screening(
            session, signed_in_person(), found, utcnow()
        ),
        lambda _found: (
            "Screening started: send the proposal to registries, return it or reject it."
        ),
    )


@governance_staff.route("/proposals/<int:proposal_id>/return", methods=["POST"])
@roles_required(Role.STAFF)
def return_proposal(proposal_id: int):
    """Return a proposal to its proposer with a reason they can act on."""
    return _status_step(
        proposal_id,
        ReasonForm(),
        "return",
        lambda session, found, form: proposals.return_to_proposer(
            session, signed_in_person(), found, form.reason.data, utcnow()
        ),
        lambda _found: "Returned to the proposer with your reason.",
    )


@governance_staff.route("/proposals/<int:proposal_id>/reject", methods=["POST"])
@roles_required(Role.STAFF)
def reject_proposal(proposal_id: int):
    """Decline a proposal under screening (final)."""
    return _status_step(
        proposal_id,
        ReasonForm(),
        "reject",
        lambda session, found, form: proposals.reject(
            session, signed_in_person(), found, form.reason.data, utcnow()
        ),
        lambda _found: "The proposal is not accepted; the proposer can read your reason.",
    )


@governance_staff.route("/proposals/<int:proposal_id>/send", methods=["POST"])
@roles_required(Role.STAFF)
def send_proposal(proposal_id: int):
    """Send a screened proposal to the chosen registries."""
    found = _proposal(proposal_id)
    form = DispatchForm(registries=_dispatch_choices(get_session(), found))
    return _status_step(
        proposal_id,
        form,
        "send",
        lambda session, current, form: proposals.send_to_registries(
            session, signed_in_person(), current, list(form.registry_ids.data), utcnow()
        ),
        lambda _found: (
            f"Sent to {len(form.registry_ids.data)} "
            f"registr{'y' if len(form.registry_ids.data) == 1 else 'ies'}."
        ),
        "#decisions",
    )


@governance_staff.route("/proposals/<int:proposal_id>/complete", methods=["POST"])
@roles_required(Role.STAFF)
def complete_proposal(proposal_id: int):
    """Mark an active project completed."""
    return _status_step(
        proposal_id,
        OptionalReasonForm(),
        "complete",
        lambda session, found, form: proposals.complete(
            session, signed_in_person(), found, utcnow(), form.reason.data
        ),
        lambda _found: "The project is completed.",
    )


@governance_staff.route("/proposals/<int:proposal_id>/close", methods=["POST"])
@roles_required(Role.STAFF)
def close_proposal(proposal_id: int):
    """Close an active project without completing it."""
    return _status_step(
        proposal_id,
        OptionalReasonForm(),
        "close",
        lambda session, found, form: proposals.close(
            session, signed_in_person(), found, utcnow(), form.reason.data
        ),
        lambda _found: "The project is closed.",
    )


@governance_staff.route("/threads/<int:thread_id>/deadline", methods=["POST"])
@roles_required(Role.STAFF)
def extend_deadline(thread_id: int):
    """Give one registry more time to decide."""
    thread = get_session().get(DecisionThread, thread_id)
    if thread is None:
        abort(404)
    proposal_id = thread.proposal_id
    form = _ids_prefixed(ExtendDeadlineForm(), f"thread-{thread_id}")
    override = {"extend_form": (thread_id, form)}
    if not form.validate_on_submit():
        return _render_proposal(_proposal(proposal_id), 400, failed=form, **override)
    return commit_or_explain(
        lambda session: proposals.extend_deadline(
            session, signed_in_person(), thread, form.deadline.data, form.reason.data, utcnow()
        ),
        errors=GovernanceError,
        explain=lambda exc: _render_proposal(
            _proposal(proposal_id), refusal_status(exc), failed=with_error(form, exc), **override
        ),
        done=lambda _: saved(
            f"The registry now has until {form.deadline.data:%d %B %Y %H:%M} UTC.",
            _proposal_url(proposal_id, "#decisions"),
        ),
    )


# Overdue decisions ----------------------------------------------------------------------------
@governance_staff.route("/overdue")
@roles_required(Role.STAFF)
def overdue():
    """Open decisions past their deadline or due within a day, soonest first."""
    return render_template(
        "governance/staff/overdue.html",
        rows=queries.overdue(get_session(), utcnow()),
        warning=queries.OVERDUE_WARNING,
    )
