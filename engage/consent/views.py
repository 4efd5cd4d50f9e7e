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
from flask.typing import ResponseReturnValue
from flask_login import current_user

from engage.accounts.models import Role
from engage.consent import page_queries, queries
from engage.consent.decisions import (
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
from engage.consent.models import ConsentReceipt, Decision, ScopeKind
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
def _board() -> Dashboard:
    """What the signed-in participant's consent pages show."""
    return page_queries.dashboard(get_session(), current_user.id)


def _render_dashboard(status: int = 200, failed: Form | None = None):
    """The dashboard, optionally with the button's form that was refused and why (in its
    errors; status 400, or 409 for an out-of-date page)."""
    return (
        render_template(
            "consent/dashboard.html", board=_board(), failed=failed, ScopeKind=ScopeKind
        ),
        status,
    )


def _to_dashboard(message: str, category: str = "success", anchor: str | None = None):
    """Flash ``message`` and go back to the dashboard, at the element ``anchor`` names (the
    choice that changed: the page puts the person's focus back on it)."""
    return saved(message, url_for("consent.dashboard", _anchor=anchor), category)


def _change_state(form: Form) -> dict:
    """The keyword arguments every participant change takes: the page's version and state,
    the time and the receipt issuer."""
    return {
        "version_id": form.version_id.data,
        "state": form.state.data,
        "now": utcnow(),
        "issuer": receipt_issuer(),
    }


@consent.route("")
@roles_required(Role.PARTICIPANT)
def dashboard():
    """Where the participant stands, each choice with one button to change it, and the ways to
    withdraw everything optional or to leave."""
    return _render_dashboard()


def _saved_already(form: Form, asked: Callable[[Dashboard], bool]) -> Dashboard | None:
    """After a refused stale page: the dashboard, when the person's consent is now exactly what
    this request asked for, on the version its page showed. Then an earlier identical request
    (the first of a double click) saved it, and this one has nothing left to do."""
    board = _board()
    if board.version is not None and board.version.id == form.version_id.data and asked(board):
        return board
    return None


def _refused(
    form: Form,
    exc: ConsentError,
    *,
    asked: Callable[[Dashboard], bool],
    done: Callable[[Dashboard], ResponseReturnValue],
    again: Callable[[int], ResponseReturnValue],
) -> ResponseReturnValue:
    """The answer to a change the service refused: ``done`` when the refusal only means the
    same change was saved a moment ago (a double click), else the page ``again`` with why.

    :param asked: whether a dashboard shows what the request asked for.
    :param again: the page the request came from, given the status (400, or 409 when the
        page was out of date); the form carries the reason as an error of the whole form.
    """
    if isinstance(exc, StaleState) and (board := _saved_already(form, asked)) is not None:
        return done(board)
    form.form_errors.append(str(exc))
    return again(refusal_status(exc))


def _decided(board: Dashboard, allow_by_code: dict[str, bool]) -> bool:
    """Each scope of ``allow_by_code`` is decided now, on its current wording, as asked."""
    rows = {row.scope.code: row for row in board.rows}
    return all(
        code in rows and rows[code].is_current and rows[code].is_permitted == allow
        for code, allow in allow_by_code.items()
    )


# What the person reads after changing one choice, by the decision now recorded.
CHOICE_SAVED = {
    Decision.PERMIT: "Saved. You now allow: {title}.",
    Decision.WITHDRAW: "Saved. You no longer allow: {title}.",
    Decision.DENY: "Saved. You do not allow: {title}.",
}
RECEIPT_NOTE = " Your receipt for this change is in your consent history."


def _choice_saved(code: str, title: str, decision: Decision | None):
    """Back to the dashboard, at the choice, saying what is now recorded for it."""
    message = CHOICE_SAVED[decision].format(title=title) if decision else "Saved."
    return _to_dashboard(message + RECEIPT_NOTE, anchor=f"scope-{code}")


def _decision_now(board: Dashboard, code: str) -> Decision | None:
    """The decision ``board`` shows for scope ``code``."""
    row = next((row for row in board.rows if row.scope.code == code), None)
    return row.choice.decision if row is not None and row.choice is not None else None


@consent.route("/choice", methods=["POST"])
@roles_required(Role.PARTICIPANT)
def change_choice():
    """Allow or stop allowing one scope (one button); back at that choice on the dashboard."""
    scopes = queries.current_scopes(get_session())
    form = ChoiceForm(scopes=scopes)
    if not form.validate_on_submit():
        return _render_dashboard(400, form)
    code = form.scope.data
    title = next(scope.title for scope in scopes if scope.code == code)
    asked = {code: form.decision.data == ALLOW}
    return commit_or_explain(
        lambda session: record_decisions(session, signed_in_person(), asked, **_change_state(form)),
        errors=ConsentError,
        explain=lambda exc: _refused(
            form,
            exc,
            asked=lambda board: _decided(board, asked),
            done=lambda board: _choice_saved(code, title, _decision_now(board, code)),
            again=lambda status: _render_dashboard(status, form),
        ),
        done=lambda outcome: (
            _choice_saved(code, title, outcome.change.scopes[0].after)
            if outcome.changed
            else _to_dashboard(
                f"Nothing changed: that was already your choice for {title}.",
                "info",
                anchor=f"scope-{code}",
            )
        ),
    )


# Withdrawing everything optional: a page that lists what will be withdrawn, then one button ----
WITHDRAWN_OPTIONAL = "Done: you no longer allow anything optional."


def _render_withdraw_optional(status: int = 200, failed: Form | None = None):
    """The page that lists every optional choice the person allows, with the button that
    withdraws them all (and, after a refusal, why)."""
    board = _board()
    if board.version is None:
        abort(404)
    return (
        render_template("consent/withdraw_optional.html", board=board, failed=failed),
        status,
    )


@consent.route("/withdraw-optional", methods=["GET", "POST"])
@roles_required(Role.PARTICIPANT)
def withdraw_optional():
    """Withdraw every optional scope in one step, from the page that lists them (GET)."""
    if request.method == "GET":
        return _render_withdraw_optional()
    form = WithdrawOptionalForm()
    if not form.validate_on_submit():
        return _render_withdraw_optional(400, form)
    return commit_or_explain(
        lambda session: withdraw_all_optional(session, signed_in_person(), **_change_state(form)),
        errors=ConsentError,
        explain=lambda exc: _refused(
            form,
            exc,
            asked=lambda board: not board.optional_permitted,
            done=lambda _board: _to_dashboard(WITHDRAWN_OPTIONAL),
            again=lambda status: _render_withdraw_optional(status, form),
        ),
        done=lambda outcome: (
            _to_dashboard(WITHDRAWN_OPTIONAL)
            if outcome.changed
            else _to_dashboard("You did not allow anything optional, so nothing changed.", "info")
        ),
    )


# Leaving: choose an option, read what it will do, then confirm ---------------------------------
LEFT_MESSAGES = {
    LeaveOption.STOP_CONTACT: "Done: we will not contact you any more.",
    LeaveOption.STOP_USE: "Done: you have left the programme. Your data will not be used in any "
    "new project.",
    LeaveOption.ERASE: "Done: you have left the programme and your erasure request is with the "
    "coordination centre. You can follow it on this page.",
}


def _render_leave(form: LeaveForm, status: int = 200):
    """Leaving, step 1: the options (and, when shown again, why the last try was refused)."""
    board = _board()
    if board.version is None:
        abort(404)
    return render_template("consent/leave.html", board=board, form=form), status


@consent.route("/leave", methods=["GET", "POST"])
@roles_required(Role.PARTICIPANT)
def leave():
    """Leaving, step 1: choose to stop contact, to leave, or to leave and ask for erasure.

    Nothing changes here: a valid choice shows what it will do, with the button that does it
    (:func:`confirm_leave`). The page's version and state travel on to that button, so a
    change made meanwhile (another tab) still refuses it.
    """
    form = LeaveForm()
    if request.method == "GET":
        return _render_leave(form)
    if not form.validate_on_submit():
        return _render_leave(form, 400)
    board = _board()
    if board.version is None:
        abort(404)
    option = LeaveOption(form.option.data)
    return render_template(
        "consent/leave_confirm.html",
        board=board,
        form=form,
        option=option,
        LeaveOption=LeaveOption,
        withdrawn=[
            row
            for row in board.rows
            if row.was_permitted_before
            and (option != LeaveOption.STOP_CONTACT or row.scope.kind == ScopeKind.CONTACT)
        ],
        erasure_open=any(erasure.status.is_open for erasure in board.erasure_requests),
    )


@consent.route("/leave/confirm", methods=["POST"])
@roles_required(Role.PARTICIPANT)
def confirm_leave():
    """Leaving, step 2: withdraw a required scope as confirmed: stop contact, stop future use,
    or stop it and ask for erasure."""
    form = LeaveForm()
    if not form.validate_on_submit():
        return _render_leave(form, 400)
    option = LeaveOption(form.option.data)
    return commit_or_explain(
        lambda session: leave_programme(session, signed_in_person(), option, **_change_state(form)),
        errors=ConsentError,
        explain=lambda exc: _refused(
            form,
            exc,
            asked=lambda board: _has_left(board, option),
            done=lambda _board: _to_dashboard(LEFT_MESSAGES[option]),
            again=lambda status: _render_leave(form, status),
        ),
        done=lambda outcome: (
            _to_dashboard(LEFT_MESSAGES[option])
            if _leaving_changed(outcome)
            else _to_dashboard("Nothing changed: there was nothing left to stop.", "info")
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
    if isinstance(exc, StaleState) and _saved_already(
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
