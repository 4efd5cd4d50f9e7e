"""Consent pages of the signed-in participant: the dashboard, reviewing the form, the timeline,
receipts and exports; and the published versions of the form, which anyone may read.

These pages only ever show and change the signed-in participant's own consent: no URL or form
field names a person (receipts are found by id *and* owner, 404 otherwise). The staff pages
are in :mod:`engage.consent.staff_views`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from engage.accounts.models import Role
from engage.consent import page_queries, queries
from engage.consent.decisions import (
    ChangeOutcome,
    LeaveOption,
    LeaveOutcome,
    leave_programme,
    record_decisions,
    withdraw_all_optional,
)
from engage.consent.errors import ConsentError, StaleState, VersionNotOpen
from engage.consent.exports import history_document
from engage.consent.fhir import consent_bundle
from engage.consent.forms import (
    ALLOW,
    ChoiceForm,
    LeaveForm,
    WithdrawOptionalForm,
    decisions_form,
)
from engage.consent.models import ConsentReceipt, ScopeKind
from engage.consent.page_queries import Dashboard
from engage.consent.receipts import ReceiptIssuer
from engage.db import get_session
from engage.forms import Form
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.views import commit_or_explain, saved, signed_in_person

consent = Blueprint("consent", __name__, url_prefix="/consent")

# Refusals because the page is out of date (another tab, a replay, a newer form version).
CONFLICT = 409


def receipt_issuer() -> ReceiptIssuer:
    """Who signs receipts, and with which key (from the app's configuration)."""
    return ReceiptIssuer.from_config(current_app.config)


def refusal_status(exc: ConsentError) -> int:
    """The status of a refused change: 409 when the page is out of date, else 400."""
    return CONFLICT if isinstance(exc, StaleState | VersionNotOpen) else 400


# The participant's dashboard ----------------------------------------------------------------------
def _render_dashboard(status: int = 200, failed: Form | None = None, error: str | None = None):
    """The dashboard, optionally with the form that failed and why (status 400 or 409)."""
    board = page_queries.dashboard(get_session(), current_user.id)
    return (
        render_template(
            "consent/dashboard.html",
            board=board,
            failed=failed,
            error=error,
            leave_form=failed if isinstance(failed, LeaveForm) else LeaveForm(),
            ScopeKind=ScopeKind,
        ),
        status,
    )


def _to_dashboard(message: str, category: str = "success"):
    """Flash ``message`` and go back to the dashboard."""
    return saved(message, url_for("consent.dashboard"), category)


@consent.route("")
@roles_required(Role.PARTICIPANT)
def dashboard():
    """Each scope's current choice, since when and under which version; changes in one step."""
    return _render_dashboard()


def _already_as_asked(form: Form, asked: Callable[[Dashboard], bool]) -> bool:
    """After a refused stale page: is the person's consent now exactly what this request
    asked for, on the version its page showed? Then an earlier identical request (the first
    of a double click) saved it, and this one has nothing left to do."""
    board = page_queries.dashboard(get_session(), current_user.id)
    return board.version is not None and board.version.id == form.version_id.data and asked(board)


def _refused(form: Form, exc: ConsentError, asked: Callable[[Dashboard], bool], done: str):
    """The answer to a change the service refused: a calm "saved" when the refusal only means
    the same change was saved a moment ago (a double click), else the dashboard with why."""
    if isinstance(exc, StaleState) and _already_as_asked(form, asked):
        return _to_dashboard(done)
    return _render_dashboard(refusal_status(exc), form, str(exc))


def _decided(board: Dashboard, allow_by_code: dict[str, bool]) -> bool:
    """Each scope of ``allow_by_code`` is decided now, on its current wording, as asked."""
    rows = {row.scope.code: row for row in board.rows}
    return all(
        code in rows and rows[code].is_current and rows[code].is_permitted == allow
        for code, allow in allow_by_code.items()
    )


def _change_and_return(
    form: Form,
    change: Callable[..., ChangeOutcome],
    *,
    asked: Callable[[Dashboard], bool],
    done: str,
    nothing: str,
):
    """Run one participant change from the dashboard: commit and go back with a message, or
    roll back and show the dashboard with why (400, or 409 for an out-of-date page).

    :param change: the service call, given the session and the page's state as keywords.
    :param asked: whether a dashboard shows what the request asked for (see ``_refused``).
    """
    return commit_or_explain(
        lambda session: change(
            session,
            version_id=form.version_id.data,
            state=form.state.data,
            now=utcnow(),
            issuer=receipt_issuer(),
        ),
        errors=ConsentError,
        explain=lambda exc: _refused(form, exc, asked, done),
        done=lambda outcome: (
            _to_dashboard(done) if outcome.changed else _to_dashboard(nothing, "info")
        ),
    )


@consent.route("/choice", methods=["POST"])
@roles_required(Role.PARTICIPANT)
def change_choice():
    """Allow or stop allowing one scope (one button)."""
    form = ChoiceForm(scopes=queries.current_scopes(get_session()))
    if not form.validate_on_submit():
        return _render_dashboard(400, form)
    asked = {form.scope.data: form.decision.data == ALLOW}
    return _change_and_return(
        form,
        lambda session, **state: record_decisions(session, signed_in_person(), asked, **state),
        asked=lambda board: _decided(board, asked),
        done="Saved. Your receipt for this change is in your consent history.",
        nothing="Nothing changed: that was already your choice.",
    )


@consent.route("/withdraw-optional", methods=["POST"])
@roles_required(Role.PARTICIPANT)
def withdraw_optional():
    """Withdraw every optional scope in one step."""
    form = WithdrawOptionalForm()
    if not form.validate_on_submit():
        return _render_dashboard(400, form)
    return _change_and_return(
        form,
        lambda session, **state: withdraw_all_optional(session, signed_in_person(), **state),
        asked=lambda board: not board.optional_permitted,
        done="Done: you no longer allow anything optional.",
        nothing="You did not allow anything optional, so nothing changed.",
    )


LEFT_MESSAGES = {
    LeaveOption.STOP_CONTACT: "Done: we will not contact you any more.",
    LeaveOption.STOP_USE: "Done: you have left the programme. Your data will not be used in any "
    "new project.",
    LeaveOption.ERASE: "Done: you have left the programme and your erasure request is with the "
    "coordination centre. You can follow it on this page.",
}


@consent.route("/leave", methods=["POST"])
@roles_required(Role.PARTICIPANT)
def leave():
    """Withdraw a required scope: stop contact, stop future use, or ask for erasure."""
    form = LeaveForm()
    if not form.validate_on_submit():
        return _render_dashboard(400, form)
    option = LeaveOption(form.option.data)
    return commit_or_explain(
        lambda session: leave_programme(
            session,
            signed_in_person(),
            option,
            version_id=form.version_id.data,
            state=form.state.data,
            now=utcnow(),
            issuer=receipt_issuer(),
        ),
        errors=ConsentError,
        explain=lambda exc: _refused(
            form, exc, lambda board: _has_left(board, option), LEFT_MESSAGES[option]
        ),
        done=lambda outcome: _to_dashboard(
            LEFT_MESSAGES[option] if _leaving_changed(outcome) else "Nothing needed to change."
        ),
    )


def _leaving_changed(outcome: LeaveOutcome) -> bool:
    """Leaving recorded a decision or queued an erasure request."""
    return outcome.change.changed or outcome.erasure is not None


def _has_left(board: Dashboard, option: LeaveOption) -> bool:
    """The dashboard shows what leaving with ``option`` leads to."""
    if option == LeaveOption.STOP_CONTACT:
        return not any(
            row.scope.kind == ScopeKind.CONTACT and row.was_permitted_before for row in board.rows
        )
    nothing_allowed = not any(row.was_permitted_before for row in board.rows)
    if option == LeaveOption.ERASE:
        return nothing_allowed and any(erasure.status.is_open for erasure in board.erasure_requests)
    return nothing_allowed


# Reviewing the form -------------------------------------------------------------------------------
@consent.route("/review", methods=["GET", "POST"])
@roles_required(Role.PARTICIPANT)
def review():
    """Read the current form, see what changed, and decide on every scope at once."""
    board = page_queries.dashboard(get_session(), current_user.id)
    if board.version is None:
        abort(404)
    form_class = decisions_form([row.scope for row in board.rows])
    form = form_class()
    if request.method == "GET":
        form.version_id.data = board.version.id
        form.state.data = board.state
        for row in board.rows:
            if row.is_current:
                form[f"scope_{row.scope.code}"].data = ALLOW if row.is_permitted else "deny"
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: record_decisions(
                session,
                signed_in_person(),
                form.allow_by_code(),
                version_id=form.version_id.data,
                state=form.state.data,
                now=utcnow(),
                issuer=receipt_issuer(),
                review=True,
            ),
            errors=ConsentError,
            explain=lambda exc: _review_refused(board, form, exc),
            done=lambda outcome: _to_dashboard(
                "Thank you: your choices are saved."
                if outcome.changed
                else "Thank you: your choices stay as they were."
            ),
        )
    status = 400 if request.method == "POST" else 200
    return render_template("consent/review.html", board=board, form=form), status


def _review_refused(board: Dashboard, form: Form, exc: ConsentError):
    """The review page with why the answers were refused, or "saved" for a double click."""
    if isinstance(exc, StaleState) and _already_as_asked(
        form, lambda latest: _decided(latest, form.allow_by_code())
    ):
        # The same answers were saved a moment ago (a double click).
        return _to_dashboard("Thank you: your choices are saved.")
    form.form_errors.append(str(exc))
    return render_template("consent/review.html", board=board, form=form), refusal_status(exc)


@consent.route("/forms/<int:number>")
def form_version(number: int):
    """A published version of the consent form (what receipts and exports point at)."""
    version = page_queries.form_version(get_session(), number)
    if version is None:
        abort(404)
    return render_template(
        "consent/form_version.html",
        version=version,
        scopes=queries.scopes_of(get_session(), version.id),
    )


# History, receipts and exports --------------------------------------------------------------------
@consent.route("/history")
@roles_required(Role.PARTICIPANT)
def history():
    """The timeline of the participant's whole consent history."""
    session = get_session()
    return render_template(
        "consent/history.html",
        entries=page_queries.timeline(session, current_user.id),
        erasures=page_queries.erasure_requests_of(session, current_user.id),
    )


def _own_receipt(receipt_id: uuid.UUID) -> ConsentReceipt:
    receipt = get_session().get(ConsentReceipt, str(receipt_id))
    if receipt is None or receipt.user_id != current_user.id:
        abort(404)  # another person's receipt is not found, not forbidden
    return receipt


@consent.route("/receipts/<uuid:receipt_id>")
@roles_required(Role.PARTICIPANT)
def receipt(receipt_id: uuid.UUID):
    """One change's receipt."""
    found = _own_receipt(receipt_id)
    return render_template("consent/receipt.html", receipt=found, document=found.document)


def _json_download(document: dict, filename: str, mimetype: str = "application/json") -> Response:
    response = Response(
        json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n",
        mimetype=mimetype,
    )
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@consent.route("/receipts/<uuid:receipt_id>.json")
@roles_required(Role.PARTICIPANT)
def receipt_json(receipt_id: uuid.UUID):
    """The signed receipt as a JSON file (``engage consent verify-receipt`` checks it)."""
    found = _own_receipt(receipt_id)
    return _json_download(found.document, f"consent-receipt-{found.id}.json")


@consent.route("/export.json")
@roles_required(Role.PARTICIPANT)
def export_json():
    """The participant's consent history as JSON."""
    config = current_app.config
    document = history_document(
        page_queries.history(get_session(), current_user.id),
        now=utcnow(),
        jurisdiction=config["CONSENT_JURISDICTION"],
        controller=config["CONSENT_CONTROLLER"],
    )
    return _json_download(document, "consent-history.json")


@consent.route("/export.fhir.json")
@roles_required(Role.PARTICIPANT)
def export_fhir():
    """The participant's consent history as a FHIR R4 Bundle of Consent resources."""
    config = current_app.config
    bundle = consent_bundle(
        page_queries.history(get_session(), current_user.id),
        base_url=config["BASE_URL"],
        controller=config["CONSENT_CONTROLLER"],
        now=utcnow(),
    )
    return _json_download(bundle, "consent-history.fhir.json", "application/fhir+json")
