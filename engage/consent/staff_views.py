"""Consent pages for coordination-centre staff: drafting and publishing form versions, moving
erasure requests on, and recording a participant's signed paper form.
"""

from __future__ import annotations

from datetime import datetime

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy.orm import Session

from engage.accounts import queries as account_queries
from engage.accounts.models import Role, User
from engage.accounts.reauth import fresh_auth_required
from engage.consent import emails, page_queries, versions
from engage.consent.decisions import ChangeOutcome, record_paper_consent
from engage.consent.erasure import set_erasure_status
from engage.consent.errors import ConsentError
from engage.consent.forms import (
    ErasureStatusForm,
    PaperConsentBase,
    PublishForm,
    RemoveScopeForm,
    ScopeForm,
    VersionForm,
    decisions_form,
)
from engage.consent.models import (
    ConsentFormVersion,
    ConsentScope,
    ErasureRequest,
    ErasureStatus,
    ScopeKind,
)
from engage.consent.page_queries import Dashboard
from engage.consent.queries import current_version
from engage.consent.readability import reading_level
from engage.consent.views import receipt_issuer, refusal_status
from engage.db import get_session
from engage.forms import Form
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.views import commit_or_explain, saved, signed_in_person, with_error

consent_staff = Blueprint("consent_staff", __name__, url_prefix="/staff/consent")


# Form versions ------------------------------------------------------------------------------------
def _version(version_id: int) -> ConsentFormVersion:
    version = get_session().get(ConsentFormVersion, version_id)
    if version is None:
        abort(404)
    return version


def _version_url(version: ConsentFormVersion, anchor: str = "") -> str:
    return url_for("consent_staff.version", version_id=version.id) + anchor


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
            person_id = account_queries.user_id_by_email(session, email)
            person = session.get(User, person_id) if person_id is not None else None
        if person is not None and person.role == Role.PARTICIPANT:
            return redirect(url_for("consent_staff.participant", user_id=person.id))
        lookup_error = "No participant has this email address."
    all_versions = page_queries.all_versions(session)
    return render_template(
        "consent/staff_forms.html",
        versions=all_versions,
        has_draft=any(v.is_draft for v in all_versions),
        open_erasures=page_queries.open_erasure_count(session),
        email=email[:254],
        lookup_error=lookup_error,
    )


def _version_details(form: VersionForm) -> versions.VersionDetails:
    return versions.VersionDetails(
        title=form.title.data,
        body=form.body.data,
        summary=form.summary.data,
        ethics_reference=form.ethics_reference.data,
        language=form.language.data,
    )


def _render_version_form(form: VersionForm, version: ConsentFormVersion | None):
    return (
        render_template("consent/staff_version_form.html", form=form, version=version),
        400 if form.errors else 200,
    )


@consent_staff.route("/forms/new", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def new_version():
    """Start a new version (the current version's texts and scopes are the starting point)."""
    current = current_version(get_session())
    form = VersionForm(obj=current) if request.method == "GET" and current else VersionForm()
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: versions.create_draft(
                session, signed_in_person(), _version_details(form), utcnow()
            ),
            errors=ConsentError,
            explain=lambda exc: _render_version_form(with_error(form, exc), None),
            done=lambda version: saved(
                f"Version {version.number} is a draft: check its scopes, then publish.",
                _version_url(version),
            ),
        )
    return _render_version_form(form, None)


def _render_version(
    version: ConsentFormVersion,
    status: int = 200,
    *,
    scope_form: ScopeForm | None = None,
    publish_form: PublishForm | None = None,
    failed: Form | None = None,
):
    page = page_queries.version_page(get_session(), version)
    return (
        render_template(
            "consent/staff_version.html",
            version=version,
            scopes=page.scopes,
            diff=page.diff,
            compare_to=page.compare_to,
            level=reading_level(version.summary, version.language),
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


def _published_cannot_change(version: ConsentFormVersion):
    flash("A published version cannot change: start a new version instead.", "error")
    return redirect(_version_url(version)), 303


@consent_staff.route("/forms/<int:version_id>/edit", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def edit_version(version_id: int):
    """Edit a draft's texts (published versions are immutable)."""
    found = _version(version_id)
    if not found.is_draft:
        return _published_cannot_change(found)
    form = VersionForm(obj=found)
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: versions.update_draft(
                session, signed_in_person(), found, _version_details(form), utcnow()
            ),
            errors=ConsentError,
            explain=lambda exc: _render_version_form(with_error(form, exc), found),
            done=lambda _: saved("Saved.", _version_url(found)),
        )
    return _render_version_form(form, found)


def _scope_details(form: ScopeForm) -> versions.ScopeDetails:
    return versions.ScopeDetails(
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
    found = _version(version_id)
    form = ScopeForm()
    if not form.validate_on_submit():
        return _render_version(found, 400, scope_form=form, failed=form)
    return commit_or_explain(
        lambda session: versions.add_scope(
            session, signed_in_person(), found, _scope_details(form), utcnow()
        ),
        errors=ConsentError,
        explain=lambda exc: _render_version(
            _version(version_id), 400, scope_form=with_error(form, exc), failed=form
        ),
        done=lambda _: saved(f"Scope {form.code.data} added.", _version_url(found, "#scopes")),
    )


def _scope(scope_id: int) -> ConsentScope:
    scope = get_session().get(ConsentScope, scope_id)
    if scope is None:
        abort(404)
    return scope


def _render_scope_form(form: ScopeForm, scope: ConsentScope, version: ConsentFormVersion):
    return (
        render_template(
            "consent/staff_scope_form.html",
            form=form,
            scope=scope,
            version=version,
            remove_form=RemoveScopeForm(formdata=None, expected_code=scope.code),
        ),
        400 if form.errors else 200,
    )


@consent_staff.route("/scopes/<int:scope_id>/edit", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def edit_scope(scope_id: int):
    """Edit a scope of a draft."""
    scope = _scope(scope_id)
    found = _version(scope.version_id)
    if not found.is_draft:
        return _published_cannot_change(found)
    form = ScopeForm(obj=scope)
    if request.method == "GET":
        form.kind.data = scope.kind.value
        form.duo_code.data = scope.duo_code or ""
    if form.validate_on_submit():
        return commit_or_explain(
            lambda session: versions.update_scope(
                session, signed_in_person(), scope, _scope_details(form), utcnow()
            ),
            errors=ConsentError,
            explain=lambda exc: _render_scope_form(with_error(form, exc), scope, found),
            done=lambda _: saved("Scope saved.", _version_url(found, "#scopes")),
        )
    return _render_scope_form(form, scope, found)


@consent_staff.route("/scopes/<int:scope_id>/remove", methods=["POST"])
@roles_required(Role.STAFF)
def remove_scope(scope_id: int):
    """Remove a scope from a draft."""
    scope = _scope(scope_id)
    found = _version(scope.version_id)
    form = RemoveScopeForm(expected_code=scope.code)
    if not form.validate_on_submit():
        return _render_version(found, 400, failed=form)
    return commit_or_explain(
        lambda session: versions.remove_scope(session, signed_in_person(), scope, utcnow()),
        errors=ConsentError,
        explain=lambda exc: _render_version(_version(found.id), 400, failed=with_error(form, exc)),
        done=lambda _: saved(
            f"Scope {form.code.data} removed from the draft.", _version_url(found, "#scopes")
        ),
    )


@consent_staff.route("/forms/<int:version_id>/publish", methods=["POST"])
@roles_required(Role.STAFF)
@fresh_auth_required
def publish(version_id: int):
    """Publish a draft: it becomes the current version and can never change."""
    found = _version(version_id)
    form = PublishForm()
    if not form.validate_on_submit():
        return _render_version(found, 400, publish_form=form, failed=form)
    return commit_or_explain(
        lambda session: versions.publish_version(
            session,
            signed_in_person(),
            found,
            justification=form.justification.data,
            now=utcnow(),
            max_grade=current_app.config["CONSENT_MAX_READING_GRADE"],
        ),
        errors=ConsentError,
        explain=lambda exc: _render_version(
            _version(version_id), 400, publish_form=with_error(form, exc), failed=form
        ),
        done=lambda outcome: saved(_published_message(outcome), _version_url(found)),
    )


def _published_message(outcome: versions.PublishOutcome) -> str:
    """What staff read after publishing: how the new version changed the form."""
    diff = outcome.diff
    return f"Version {outcome.version.number} is published. " + (
        f"{len(diff.added)} scope(s) added, {len(diff.changed)} changed, "
        f"{len(diff.removed)} removed: participants are asked to review."
        if outcome.replaced is not None
        else "Participants can now give their consent."
    )


# Erasure requests ---------------------------------------------------------------------------------
def _render_erasure_queue(
    status: int = 200, failed: ErasureStatusForm | None = None, failed_id: int | None = None
):
    return (
        render_template(
            "consent/staff_erasure.html",
            rows=page_queries.erasure_queue(get_session()),
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
    found = get_session().get(ErasureRequest, request_id)
    if found is None:
        abort(404)
    form = ErasureStatusForm()
    if not form.validate_on_submit():
        return _render_erasure_queue(400, form, request_id)
    now = utcnow()

    def move_on(session: Session) -> None:
        set_erasure_status(
            session, signed_in_person(), found, ErasureStatus(form.status.data), form.note.data, now
        )
        emails.queue_erasure_status(session, found.user_id, found, now)

    return commit_or_explain(
        move_on,
        errors=ConsentError,
        explain=lambda exc: _render_erasure_queue(400, with_error(form, exc), request_id),
        done=lambda _: saved(
            f"Request {found.id} is now “{found.status.label.split(':')[0].lower()}”.",
            url_for("consent_staff.erasure_queue"),
        ),
    )


# A participant's consent and paper forms ----------------------------------------------------------
def _render_participant(subject: User, board: Dashboard, form: Form, status: int):
    return (
        render_template("consent/staff_participant.html", subject=subject, board=board, form=form),
        status,
    )


def _record_paper_form(session: Session, subject: User, form: Form, now: datetime) -> ChangeOutcome:
    """Record the signed paper form and, when it changed something, email the receipt."""
    outcome = record_paper_consent(
        session,
        signed_in_person(),
        subject,
        form.allow_by_code(),
        version_id=form.version_id.data,
        state=form.state.data,
        reference=form.reference.data,
        now=now,
        issuer=receipt_issuer(),
    )
    if outcome.changed and outcome.receipt is not None:
        emails.queue_paper_consent_recorded(session, subject, outcome.receipt, now)
    return outcome


@consent_staff.route("/participants/<int:user_id>", methods=["GET", "POST"])
@roles_required(Role.STAFF)
def participant(user_id: int):
    """A participant's current choices, and recording their signed paper form."""
    session = get_session()
    subject = session.get(User, user_id)
    if subject is None or subject.role != Role.PARTICIPANT:
        abort(404)
    board = page_queries.dashboard(session, subject.id)
    form_class = decisions_form([row.scope for row in board.rows], base=PaperConsentBase)
    form = form_class()
    if request.method == "GET":
        form.version_id.data = board.version.id if board.version else None
        form.state.data = board.state
    if board.version is not None and form.validate_on_submit():
        now = utcnow()
        return commit_or_explain(
            lambda session: _record_paper_form(session, subject, form, now),
            errors=ConsentError,
            explain=lambda exc: _render_participant(
                subject, board, with_error(form, exc), refusal_status(exc)
            ),
            done=lambda outcome: saved(
                "The paper form is recorded; the participant has been sent a receipt."
                if outcome.changed
                else "The paper form matches the choices already recorded: nothing changed.",
                url_for("consent_staff.participant", user_id=subject.id),
            ),
        )
    status = 400 if request.method == "POST" else 200
    return _render_participant(subject, board, form, status)
