"""Consent pages: the participant's dashboard, review, timeline, receipts and exports; staff
pages for form versions, erasure requests and paper consent.

Participant pages only ever show and change the signed-in participant's own consent: no URL
or form field names a person (receipts are found by id *and* owner, 404 otherwise).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from engage.accounts.models import Role, User
from engage.consent import emails, queries, services
from engage.consent.exports import history_document
from engage.consent.fhir import consent_bundle
from engage.consent.forms import (
    ALLOW,
    ChoiceForm,
    ErasureStatusForm,
    LeaveForm,
    PaperConsentBase,
    PublishForm,
    RemoveScopeForm,
    ScopeForm,
    VersionForm,
    WithdrawOptionalForm,
    decisions_form,
)
from engage.consent.models import (
    ConsentFormVersion,
    ConsentReceipt,
    ConsentScope,
    ErasureRequest,
    ErasureStatus,
    ScopeKind,
    VersionStatus,
)
from engage.consent.readability import reading_level
from engage.consent.receipts import ReceiptIssuer
from engage.db import get_session
from engage.forms import Form
from engage.security import roles_required
from engage.timeutil import utcnow

consent = Blueprint("consent", __name__, url_prefix="/consent")
consent_staff = Blueprint("consent_staff", __name__, url_prefix="/staff/consent")

# Refusals because the page is out of date (another tab, a replay, a newer form version).
CONFLICT = 409


def _me() -> User:
    user = get_session().get(User, current_user.id)
    if user is None:
        abort(403)
    return user


def _issuer() -> ReceiptIssuer:
    return ReceiptIssuer.from_config(current_app.config)


def _status_for(exc: services.ConsentError) -> int:
    return CONFLICT if isinstance(exc, services.StaleState | services.VersionNotOpen) else 400


# The participant's dashboard ---------------------------------------------------------------------
def _render_dashboard(status: int = 200, failed: Form | None = None, error: str | None = None):
    """The dashboard, optionally with the form that failed and why (status 400 or 409)."""
    board = queries.dashboard(get_session(), current_user.id)
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


@consent.route("")
@roles_required(Role.PARTICIPANT)
def dashboard():
    """Each scope's current choice, since when and under which version; changes in one step."""
    return _render_dashboard()


def _already_as_asked(form: Form, asked: Callable[[queries.Dashboard], bool]) -> bool:
    """After a refused stale page: is the person's consent now exactly what this request
    asked for, on the version its page showed? Then an earlier identical request (the first
    of a double click) saved it, and this one has nothing left to do."""
    board = queries.dashboard(get_session(), current_user.id)
    return board.version is not None and board.version.id == form.version_id.data and asked(board)


def _refused(
    form: Form,
    exc: services.ConsentError,
    asked: Callable[[queries.Dashboard], bool],
    done: str,
):
    """The answer to a change the service refused: a calm "saved" when the refusal only means
    the same change was saved a moment ago (a double click), else the dashboard with why."""
    if isinstance(exc, services.StaleState) and _already_as_asked(form, asked):
        flash(done, "success")
        return redirect(url_for("consent.dashboard")), 303
    return _render_dashboard(_status_for(exc), form, str(exc))


def _decided(board: queries.Dashboard, allow_by_code: dict[str, bool]) -> bool:
    """Each scope of ``allow_by_code`` is decided now, on its current wording, as asked."""
    rows = {row.scope.code: row for row in board.rows}
    return all(
        code in rows and rows[code].is_current and rows[code].is_permitted == allow
        for code, allow in allow_by_code.items()
    )


def _flash_outcome(outcome: services.ChangeOutcome, done: str, nothing: str) -> None:
    if outcome.changed:
        flash(done, "success")
    else:
        flash(nothing, "info")


def _current_scopes() -> list[ConsentScope]:
    version = services.current_version(get_session())
    return services.scopes_of(get_session(), version.id) if version else []


@consent.route("/choice", methods=["POST"])
@roles_required(Role.PARTICIPANT)
def change_choice():
    """Allow or stop allowing one scope (one button)."""
    form = ChoiceForm(scopes=_current_scopes())
    if not form.validate_on_submit():
        return _render_dashboard(400, form)
    asked = {form.scope.data: form.decision.data == ALLOW}
    return _change_and_return(
        form,
        lambda session, **state: services.record_decisions(session, _me(), asked, **state),
        asked=lambda board: _decided(board, asked),
        done="Saved. Your receipt for this change is in your consent history.",
        nothing="Nothing changed: that was already your choice.",
    )


def _change_and_return(
    form: Form,
    change,
    *,
    asked: Callable[[queries.Dashboard], bool],
    done: str,
    nothing: str,
):
    """Run one participant change from the dashboard: commit and go back with a message, or
    roll back and show the dashboard with why (400, or 409 for an out-of-date page).

    :param asked: whether a dashboard shows what the request asked for (see ``_refused``).
    """
    session = get_session()
    try:
        outcome = change(
            session,
            version_id=form.version_id.data,
            state=form.state.data,
            now=utcnow(),
            issuer=_issuer(),
        )
    except services.ConsentError as exc:
        session.rollback()
        return _refused(form, exc, asked, done)
    session.commit()
    _flash_outcome(outcome, done, nothing)
    return redirect(url_for("consent.dashboard")), 303


@consent.route("/withdraw-optional", methods=["POST"])
@roles_required(Role.PARTICIPANT)
def withdraw_optional():
    """Withdraw every optional scope in one step."""
    form = WithdrawOptionalForm()
    if not form.validate_on_submit():
        return _render_dashboard(400, form)
    return _change_and_return(
        form,
        lambda session, **state: services.withdraw_all_optional(session, _me(), **state),
        asked=lambda board: not board.optional_permitted,
        done="Done: you no longer allow anything optional.",
        nothing="You did not allow anything optional, so nothing changed.",
    )


@consent.route("/leave", methods=["POST"])
@roles_required(Role.PARTICIPANT)
def leave():
    """Withdraw a required scope: stop contact, stop future use, or ask for erasure."""
    session = get_session()
    form = LeaveForm()
    if not form.validate_on_submit():
        return _render_dashboard(400, form)
    option = services.LeaveOption(form.option.data)
    messages = {
        services.LeaveOption.STOP_CONTACT: "Done: we will not contact you any more.",
        services.LeaveOption.STOP_USE: "Done: you have left the programme. Your data will not "
        "be used in any new project.",
        services.LeaveOption.ERASE: "Done: you have left the programme and your erasure request "
        "is with the coordination centre. You can follow it on this page.",
    }
    try:
        outcome = services.leave_programme(
            session,
            _me(),
            option,
            version_id=form.version_id.data,
            state=form.state.data,
            now=utcnow(),
            issuer=_issuer(),
        )
    except services.ConsentError as exc:
        session.rollback()
        return _refused(form, exc, lambda board: _has_left(board, option), messages[option])
    session.commit()
    changed = outcome.change.changed or outcome.erasure is not None
    flash(messages[option] if changed else "Nothing needed to change.", "success")
    return redirect(url_for("consent.dashboard")), 303


def _has_left(board: queries.Dashboard, option: services.LeaveOption) -> bool:
    """The dashboard shows what leaving with ``option`` leads to."""
    if option == services.LeaveOption.STOP_CONTACT:
        return not any(
            row.scope.kind == ScopeKind.CONTACT and row.was_permitted_before for row in board.rows
        )
    nothing_allowed = not any(row.was_permitted_before for row in board.rows)
    if option == services.LeaveOption.ERASE:
        return nothing_allowed and any(erasure.status.is_open for erasure in board.erasure_requests)
    return nothing_allowed


# Reviewing the form ------------------------------------------------------------------------------
@consent.route("/review", methods=["GET", "POST"])
@roles_required(Role.PARTICIPANT)
def review():
    """Read the current form, see what changed, and decide on every scope at once."""
    session = get_session()
    board = queries.dashboard(session, current_user.id)
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
    status = 200
    if form.validate_on_submit():
        try:
            outcome = services.record_decisions(
                session,
                _me(),
                form.allow_by_code(),
                version_id=form.version_id.data,
                state=form.state.data,
                now=utcnow(),
                issuer=_issuer(),
                review=True,
            )
        except services.ConsentError as exc:
            session.rollback()
            if isinstance(exc, services.StaleState) and _already_as_asked(
                form, lambda board: _decided(board, form.allow_by_code())
            ):
                # The same answers were saved a moment ago (a double click).
                flash("Thank you: your choices are saved.", "success")
                return redirect(url_for("consent.dashboard")), 303
            form.form_errors.append(str(exc))
            status = _status_for(exc)
        else:
            session.commit()
            flash(
                "Thank you: your choices are saved."
                if outcome.changed
                else "Thank you: your choices stay as they were.",
                "success",
            )
            return redirect(url_for("consent.dashboard")), 303
    elif request.method == "POST":
        status = 400
    return render_template("consent/review.html", board=board, form=form), status


@consent.route("/forms/<int:number>")
def form_version(number: int):
    """A published version of the consent form (what receipts and exports point at)."""
    version = get_session().scalar(
        sa.select(ConsentFormVersion).where(
            ConsentFormVersion.number == number,
            ConsentFormVersion.status != VersionStatus.DRAFT,
        )
    )
    if version is None:
        abort(404)
    return render_template(
        "consent/form_version.html",
        version=version,
        scopes=services.scopes_of(get_session(), version.id),
    )


# History, receipts and exports -------------------------------------------------------------------
@consent.route("/history")
@roles_required(Role.PARTICIPANT)
def history():
    """The timeline of the participant's whole consent history."""
    session = get_session()
    return render_template(
        "consent/history.html",
        entries=queries.timeline(session, current_user.id),
        erasures=queries.dashboard(session, current_user.id).erasure_requests,
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
        queries.history(get_session(), current_user.id),
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
        queries.history(get_session(), current_user.id),
        base_url=config["BASE_URL"],
        controller=config["CONSENT_CONTROLLER"],
        now=utcnow(),
    )
    return _json_download(bundle, "consent-history.fhir.json", "application/fhir+json")


# Staff: form versions ----------------------------------------------------------------------------
def _version(version_id: int) -> ConsentFormVersion:
    version = get_session().get(ConsentFormVersion, version_id)
    if version is None:
        abort(404)
    return version


@consent_staff.route("/forms")
@roles_required(Role.STAFF)
def forms():
    """Every version of the consent form, newest first; ``?email=`` finds a participant."""
    session = get_session()
    email = (request.args.get("email") or "").strip().lower()
    lookup_error = None
    if email:
        person = None
        if len(email) <= 254 and "\x00" not in email:
            person = session.scalar(sa.select(User).where(User.email == email))
        if person is not None and person.role == Role.PARTICIPANT:
            return redirect(url_for("consent_staff.participant", user_id=person.id))
        lookup_error = "No participant has this email address."
    versions = list(
        session.scalars(sa.select(ConsentFormVersion).order_by(ConsentFormVersion.number.desc()))
    )
    open_erasures = session.scalar(
        sa.select(sa.func.count())
        .select_from(ErasureRequest)
        .where(ErasureRequest.status.in_([ErasureStatus.RECEIVED, ErasureStatus.IN_PROGRESS]))
    )
    return render_template(
        "consent/staff_forms.html",
        versions=versions,
        has_draft=any(v.is_draft for v in versions),
        open_erasures=open_erasures,
        email=email[:254],
        lookup_error=lookup_error,
    )


def _version_details(form: VersionForm) -> services.VersionDetails:
    return services.VersionDetails(
        title=form.title.data,
        body=form.body.data,
        summary=form.summary.data,
        ethics_reference=form.ethics_reference.data,
        language=form.language.data,
    )


@consent_staff.route("/forms/new", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def new_version():
    """Start a new version (the current version's texts and scopes are the starting point)."""
    session = get_session()
    current = services.current_version(session)
    form = VersionForm(obj=current) if request.method == "GET" and current else VersionForm()
    if form.validate_on_submit():
        try:
            version = services.create_draft(session, _me(), _version_details(form), utcnow())
        except services.ConsentError as exc:
            session.rollback()
            form.form_errors.append(str(exc))
        else:
            session.commit()
            flash(
                f"Version {version.number} is a draft: check its scopes, then publish.", "success"
            )
            return redirect(url_for("consent_staff.version", version_id=version.id)), 303
    return (
        render_template("consent/staff_version_form.html", form=form, version=None),
        400 if form.errors else 200,
    )


def _render_version(
    version: ConsentFormVersion,
    status: int = 200,
    *,
    scope_form: ScopeForm | None = None,
    publish_form: PublishForm | None = None,
    failed: Form | None = None,
):
    session = get_session()
    scopes = services.scopes_of(session, version.id)
    current = services.current_version(session)
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
        services.diff_scopes(services.scopes_of(session, compare_to.id), scopes)
        if compare_to is not None
        else None
    )
    level = reading_level(version.summary)
    return (
        render_template(
            "consent/staff_version.html",
            version=version,
            scopes=scopes,
            diff=diff,
            compare_to=compare_to,
            level=level,
            max_grade=current_app.config["CONSENT_MAX_READING_GRADE"],
            scope_form=scope_form or ScopeForm(formdata=None),
            publish_form=publish_form or PublishForm(formdata=None),
            failed=failed,
        ),
        status,
    )


@consent_staff.route("/forms/<int:version_id>")
@roles_required(Role.STAFF)
def version(version_id: int):
    """One version: texts, reading level, scopes, changes from the current version, publish."""
    return _render_version(_version(version_id))


@consent_staff.route("/forms/<int:version_id>/edit", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def edit_version(version_id: int):
    """Edit a draft's texts (published versions are immutable)."""
    session = get_session()
    found = _version(version_id)
    if not found.is_draft:
        flash("A published version cannot change: start a new version instead.", "error")
        return redirect(url_for("consent_staff.version", version_id=found.id)), 303
    form = VersionForm(obj=found)
    if form.validate_on_submit():
        try:
            services.update_draft(session, _me(), found, _version_details(form), utcnow())
        except services.ConsentError as exc:
            session.rollback()
            form.form_errors.append(str(exc))
        else:
            session.commit()
            flash("Saved.", "success")
            return redirect(url_for("consent_staff.version", version_id=found.id)), 303
    return (
        render_template("consent/staff_version_form.html", form=form, version=found),
        400 if form.errors else 200,
    )


def _scope_details(form: ScopeForm) -> services.ScopeDetails:
    return services.ScopeDetails(
        code=form.code.data,
        title=form.title.data,
        explanation=form.explanation.data,
        kind=ScopeKind(form.kind.data),
        duo_code=form.duo_code.data or None,
        is_required=bool(form.is_required.data),
    )


@consent_staff.route("/forms/<int:version_id>/scopes", methods=["POST"])
@roles_required(Role.STAFF)
def add_scope(version_id: int):
    """Add a scope to a draft."""
    session = get_session()
    found = _version(version_id)
    form = ScopeForm()
    if not form.validate_on_submit():
        return _render_version(found, 400, scope_form=form, failed=form)
    try:
        services.add_scope(session, _me(), found, _scope_details(form), utcnow())
    except services.ConsentError as exc:
        session.rollback()
        form.form_errors.append(str(exc))
        return _render_version(_version(version_id), 400, scope_form=form, failed=form)
    session.commit()
    flash(f"Scope {form.code.data} added.", "success")
    return redirect(url_for("consent_staff.version", version_id=found.id) + "#scopes"), 303


def _scope(scope_id: int) -> ConsentScope:
    scope = get_session().get(ConsentScope, scope_id)
    if scope is None:
        abort(404)
    return scope


@consent_staff.route("/scopes/<int:scope_id>/edit", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def edit_scope(scope_id: int):
    """Edit a scope of a draft."""
    session = get_session()
    scope = _scope(scope_id)
    found = _version(scope.version_id)
    if not found.is_draft:
        flash("A published version cannot change: start a new version instead.", "error")
        return redirect(url_for("consent_staff.version", version_id=found.id)), 303
    form = ScopeForm(obj=scope)
    if request.method == "GET":
        form.kind.data = scope.kind.value
        form.duo_code.data = scope.duo_code or ""
    if form.validate_on_submit():
        try:
            services.update_scope(session, _me(), scope, _scope_details(form), utcnow())
        except services.ConsentError as exc:
            session.rollback()
            form.form_errors.append(str(exc))
        else:
            session.commit()
            flash("Scope saved.", "success")
            return redirect(url_for("consent_staff.version", version_id=found.id) + "#scopes"), 303
    return (
        render_template(
            "consent/staff_scope_form.html",
            form=form,
            scope=scope,
            version=found,
            remove_form=RemoveScopeForm(formdata=None, expected_code=scope.code),
        ),
        400 if form.errors else 200,
    )


@consent_staff.route("/scopes/<int:scope_id>/remove", methods=["POST"])
@roles_required(Role.STAFF)
def remove_scope(scope_id: int):
    """Remove a scope from a draft."""
    session = get_session()
    scope = _scope(scope_id)
    found = _version(scope.version_id)
    form = RemoveScopeForm(expected_code=scope.code)
    if not form.validate_on_submit():
        return _render_version(found, 400, failed=form)
    try:
        services.remove_scope(session, _me(), scope, utcnow())
    except services.ConsentError as exc:
        session.rollback()
        form.form_errors.append(str(exc))
        return _render_version(_version(found.id), 400, failed=form)
    session.commit()
    flash(f"Scope {form.code.data} removed from the draft.", "success")
    return redirect(url_for("consent_staff.version", version_id=found.id) + "#scopes"), 303


@consent_staff.route("/forms/<int:version_id>/publish", methods=["POST"])
@roles_required(Role.STAFF)
def publish(version_id: int):
    """Publish a draft: it becomes the current version and can never change."""
    session = get_session()
    found = _version(version_id)
    form = PublishForm()
    if not form.validate_on_submit():
        return _render_version(found, 400, publish_form=form, failed=form)
    try:
        outcome = services.publish_version(
            session,
            _me(),
            found,
            justification=form.justification.data,
            now=utcnow(),
            max_grade=current_app.config["CONSENT_MAX_READING_GRADE"],
        )
    except services.ConsentError as exc:
        session.rollback()
        form.form_errors.append(str(exc))
        return _render_version(_version(version_id), 400, publish_form=form, failed=form)
    session.commit()
    diff = outcome.diff
    flash(
        f"Version {outcome.version.number} is published. "
        + (
            f"{len(diff.added)} scope(s) added, {len(diff.changed)} changed, "
            f"{len(diff.removed)} removed: participants are asked to review."
            if outcome.replaced is not None
            else "Participants can now give their consent."
        ),
        "success",
    )
    return redirect(url_for("consent_staff.version", version_id=found.id)), 303


# Staff: erasure requests -------------------------------------------------------------------------
def _render_erasure_queue(
    status: int = 200, failed: ErasureStatusForm | None = None, failed_id: int | None = None
):
    session = get_session()
    rows = session.execute(
        sa.select(ErasureRequest, User)
        .join(User, User.id == ErasureRequest.user_id)
        .order_by(
            sa.case(
                (ErasureRequest.status == ErasureStatus.RECEIVED, 0),
                (ErasureRequest.status == ErasureStatus.IN_PROGRESS, 1),
                else_=2,
            ),
            ErasureRequest.requested_at,
        )
    )
    return (
        render_template(
            "consent/staff_erasure.html",
            rows=list(rows),
            failed=failed,
            failed_id=failed_id,
            form=ErasureStatusForm(formdata=None),
        ),
        status,
    )


@consent_staff.route("/erasure")
@roles_required(Role.STAFF)
def erasure_queue():
    """Requests to erase participants' data, open ones first."""
    return _render_erasure_queue()


@consent_staff.route("/erasure/<int:request_id>", methods=["POST"])
@roles_required(Role.STAFF)
def update_erasure(request_id: int):
    """Move an erasure request on; the participant sees the status and is told by email."""
    session = get_session()
    found = session.get(ErasureRequest, request_id)
    if found is None:
        abort(404)
    form = ErasureStatusForm()
    if not form.validate_on_submit():
        return _render_erasure_queue(400, form, request_id)
    now = utcnow()
    try:
        services.set_erasure_status(
            session, _me(), found, ErasureStatus(form.status.data), form.note.data, now
        )
    except services.ConsentError as exc:
        session.rollback()
        form.form_errors.append(str(exc))
        return _render_erasure_queue(400, form, request_id)
    emails.queue_erasure_status(session, found.user_id, found, now)
    session.commit()
    flash(f"Request {found.id} is now “{found.status.label.split(':')[0].lower()}”.", "success")
    return redirect(url_for("consent_staff.erasure_queue")), 303


# Staff: a participant's consent and paper forms --------------------------------------------------
@consent_staff.route("/participants/<int:user_id>", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def participant(user_id: int):
    """A participant's current choices, and recording their signed paper form."""
    session = get_session()
    subject = session.get(User, user_id)
    if subject is None or subject.role != Role.PARTICIPANT:
        abort(404)
    board = queries.dashboard(session, subject.id)
    form_class = decisions_form([row.scope for row in board.rows], base=PaperConsentBase)
    form = form_class()
    if request.method == "GET":
        form.version_id.data = board.version.id if board.version else None
        form.state.data = board.state
    status = 200
    if board.version is not None and form.validate_on_submit():
        now = utcnow()
        try:
            outcome = services.record_paper_consent(
                session,
                _me(),
                subject,
                form.allow_by_code(),
                version_id=form.version_id.data,
                state=form.state.data,
                reference=form.reference.data,
                now=now,
                issuer=_issuer(),
            )
        except services.ConsentError as exc:
            session.rollback()
            form.form_errors.append(str(exc))
            status = _status_for(exc)
        else:
            if outcome.changed and outcome.receipt is not None:
                emails.queue_paper_consent_recorded(session, subject, outcome.receipt, now)
            session.commit()
            flash(
                "The paper form is recorded; the participant has been sent a receipt."
                if outcome.changed
                else "The paper form matches the choices already recorded: nothing changed.",
                "success",
            )
            return redirect(url_for("consent_staff.participant", user_id=subject.id)), 303
    elif request.method == "POST":
        status = 400
    return (
        render_template("consent/staff_participant.html", subject=subject, board=board, form=form),
        status,
    )
