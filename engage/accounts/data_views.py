"""Data-rights pages: "Download my data" and "Delete my account" on the ``account`` blueprint,
and the staff list of requests on the shared ``staff`` blueprint. Both act only on the signed-in
person's own account: no account id is ever taken from the URL or the form."""

from __future__ import annotations

import json

from flask import Response, abort, current_app, render_template, request, url_for
from flask_login import current_user
from wtforms import BooleanField, SelectField
from wtforms.validators import DataRequired, Optional

from engage.accounts import data_rights
from engage.accounts.models import DataRequestKind, DataRequestStatus, Role, User
from engage.accounts.reauth import fresh_auth_required
from engage.accounts.signin import sign_out_here
from engage.accounts.views import account
from engage.db import get_session
from engage.forms import Form, choices
from engage.security import roles_required, sign_in_required
from engage.staff import staff
from engage.timeutil import utcnow
from engage.views import commit_or_explain, page_arg, refused

PER_PAGE = 25


class DownloadDataForm(Form):
    """Ask for the download (a POST with CSRF, so another site cannot trigger it)."""


class DeleteAccountForm(Form):
    """Confirm the deletion."""

    understood = BooleanField(
        "I understand that my account will be deleted for good and that this cannot be undone",
        validators=[DataRequired(message="Tick the box to confirm that you understand.")],
    )


class DataRequestFilterForm(Form):
    """Filter the staff list of requests (GET; no CSRF needed for a read)."""

    class Meta:
        csrf = False

    kind = SelectField(
        "Kind",
        choices=choices([("", "Any kind"), *DataRequestKind.choices()]),
        validators=[Optional()],
    )
    status = SelectField(
        "Status",
        choices=choices([("", "Any status"), *DataRequestStatus.choices()]),
        validators=[Optional()],
    )


def _me() -> User:
    """The signed-in person's row in this request's session."""
    user = get_session().get(User, current_user.id)
    if user is None:
        abort(404)
    return user


@account.route("/data", methods=["GET", "POST"])
@sign_in_required
@fresh_auth_required
def data():
    """Explain what the download holds; a POST returns it as a JSON file."""
    form = DownloadDataForm()
    if not form.validate_on_submit():
        return render_template("account/data.html", form=form), 400 if form.errors else 200
    user = _me()
    now = utcnow()

    def download(document: dict) -> Response:
        body = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        response = Response(body, mimetype="application/json")
        filename = f"engage-my-data-{now.date().isoformat()}.json"
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        response.headers["Cache-Control"] = "no-store"
        return response

    return commit_or_explain(
        lambda db_session: data_rights.export_my_data(
            db_session,
            user,
            now,
            rights=data_rights.registered(),
            config=current_app.config,
        ),
        errors=data_rights.DataRightsError,
        explain=lambda exc: refused(str(exc), url_for("account.profile")),
        done=download,
    )


@account.route("/delete", methods=["GET", "POST"])
@sign_in_required
@fresh_auth_required
def delete():
    """Explain what deleting erases and keeps; a confirmed POST deletes the account."""
    form = DeleteAccountForm()
    user = _me()
    if not form.validate_on_submit():
        return _delete_page(form, user)

    def explain(exc: Exception):
        form.form_errors.append(str(exc))
        return _delete_page(form, user)

    def deleted(_request):
        # Every session ended on the server with the account; this browser forgets it too.
        sign_out_here()
        return render_template("account/deleted.html")

    return commit_or_explain(
        lambda db_session: data_rights.delete_account(
            db_session,
            user,
            utcnow(),
            rights=data_rights.registered(),
            config=current_app.config,
        ),
        errors=data_rights.DataRightsError,
        explain=explain,
        done=deleted,
    )


def _delete_page(form: DeleteAccountForm, user: User):
    return (
        render_template("account/delete.html", form=form, user=user),
        400 if form.errors else 200,
    )


@staff.route("/data-requests")
@roles_required(Role.STAFF)
def data_requests():
    """Downloads and deletions people asked for, newest first, filtered by kind and status."""
    form = DataRequestFilterForm(request.args)
    form.validate()
    kind = DataRequestKind(form.kind.data) if form.kind.data in set(DataRequestKind) else None
    status = (
        DataRequestStatus(form.status.data) if form.status.data in set(DataRequestStatus) else None
    )
    result = data_rights.data_request_page(
        get_session(), kind=kind, status=status, page=page_arg(), per_page=PER_PAGE
    )
    # Only the filter's own parameters go into page links (see staff.users).
    args = {k: v for k, v in request.args.items() if k in ("kind", "status") and v}
    return render_template("staff/data_requests.html", form=form, result=result, args=args)
