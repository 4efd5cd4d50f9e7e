"""Staff pages for mailing lists (blueprint ``newsletters_staff``, /staff/newsletters/lists):
the lists with their subscription counts, the list editor, archive and restore.

Staff only: visitors are sent to sign in, everyone else gets 403 (as on every staff page).
Every change goes form → service → flash → redirect; a refused one shows the form again with
what was typed and why.
"""

from __future__ import annotations

from flask import abort, render_template, request, url_for

from engage.db import get_session
from engage.forms import choices
from engage.roles import Role
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.views import commit_or_explain, saved, signed_in_person
from newsletters import list_admin
from newsletters.blueprints import newsletters_staff
from newsletters.errors import NewsletterError, NotFound
from newsletters.list_forms import NO_SCOPE, ListForm, ListStateForm
from newsletters.lists import ListDetails, scope_titles
from newsletters.models import ListVisibility, MailingList

# The empty first choice of a select that must be chosen on purpose.
NOT_CHOSEN = ""


def _status_of(exc: NewsletterError) -> int:
    if isinstance(exc, list_admin.NotAllowed):
        return 403
    if isinstance(exc, NotFound):
        return 404
    return 400


def _list_or_404(list_id: int) -> MailingList:
    try:
        return list_admin.get_list(get_session(), list_id)
    except NotFound:
        abort(404)


def _scope_choices(current: str | None) -> list[tuple[str, str]]:
    """The published form's scopes, plus the list's own if the form no longer has it (so it
    can stay until staff change it)."""
    titles = scope_titles(get_session())
    pairs = [(code, f"{title} ({code})") for code, title in titles.items()]
    if current and current not in titles:
        pairs.append((current, f"{current} (no longer on the published consent form)"))
    return pairs


def _details(form: ListForm) -> ListDetails:
    return ListDetails(
        name=form.name.data or "",
        description=form.description.data or "",
        visibility=ListVisibility(form.visibility.data),
        required_scope=None if form.required_scope.data == NO_SCOPE else form.required_scope.data,
    )


@newsletters_staff.route("/lists", endpoint="lists")
@roles_required(Role.STAFF)
def list_index():
    """Every list with its confirmed, pending and unsubscribed counts."""
    return _lists_page()


def _lists_page(failed: ListStateForm | None = None, status: int = 200):
    session = get_session()
    page = render_template(
        "newsletters/staff/lists.html",
        summaries=list_admin.list_overview(session),
        titles=scope_titles(session),
        failed=failed,
    )
    return page, status


@newsletters_staff.route("/lists/new", methods=["GET", "POST"], endpoint="new_list")
@roles_required(Role.STAFF)
def new_list():
    """Create a list."""
    form = ListForm(data={"visibility": NOT_CHOSEN}, scope_choices=_scope_choices(None))
    # Who may subscribe is asked, not assumed: a list made public by a slip would be offered
    # to anyone on the sign-up page.
    form.visibility.choices = choices(
        [(NOT_CHOSEN, "Choose who may subscribe"), *ListVisibility.choices()]
    )
    if not form.validate_on_submit():
        return _editor(form, None)

    def explain(exc: NewsletterError):
        form.form_errors.append(exc.message)
        return _editor(form, None)[0], _status_of(exc)

    return commit_or_explain(
        lambda s: list_admin.create_list(s, signed_in_person(), _details(form), utcnow()),
        errors=NewsletterError,
        explain=explain,
        done=lambda row: saved(
            f"The list “{row.name}” was created.", url_for("newsletters_staff.lists")
        ),
    )


@newsletters_staff.route("/lists/<int:list_id>/edit", methods=["GET", "POST"], endpoint="edit_list")
@roles_required(Role.STAFF)
def edit_list(list_id: int):
    """Change a list's name, description, who may subscribe and the consent it needs."""
    mailing_list = _list_or_404(list_id)
    data = None
    if request.method != "POST":
        data = {
            "name": mailing_list.name,
            "description": mailing_list.description,
            "visibility": mailing_list.visibility.value,
            "required_scope": mailing_list.required_scope or NO_SCOPE,
        }
    form = ListForm(data=data, scope_choices=_scope_choices(mailing_list.required_scope))
    if not form.validate_on_submit():
        return _editor(form, mailing_list)

    def explain(exc: NewsletterError):
        form.form_errors.append(exc.message)
        return _editor(form, mailing_list)[0], _status_of(exc)

    return commit_or_explain(
        lambda s: list_admin.update_list(s, signed_in_person(), list_id, _details(form), utcnow()),
        errors=NewsletterError,
        explain=explain,
        done=lambda row: saved(
            f"The list “{row.name}” was saved.", url_for("newsletters_staff.lists")
        ),
    )


def _editor(form: ListForm, mailing_list: MailingList | None) -> tuple[str, int]:
    page = render_template("newsletters/staff/list_form.html", form=form, mailing_list=mailing_list)
    return page, 400 if form.errors else 200


@newsletters_staff.route("/lists/<int:list_id>/archive", methods=["POST"], endpoint="archive_list")
@roles_required(Role.STAFF)
def archive_list(list_id: int):
    """Archive a list: it takes no new subscribers and is not offered for new campaigns."""
    return _set_archived(list_id, True)


@newsletters_staff.route("/lists/<int:list_id>/restore", methods=["POST"], endpoint="restore_list")
@roles_required(Role.STAFF)
def restore_list(list_id: int):
    """Restore an archived list."""
    return _set_archived(list_id, False)


def _set_archived(list_id: int, is_archived: bool):
    mailing_list = _list_or_404(list_id)
    form = ListStateForm(expected_name=mailing_list.name)
    if not form.validate_on_submit():
        return _lists_page(form, 400)

    def explain(exc: NewsletterError):
        form.form_errors.append(exc.message)
        return _lists_page(form, _status_of(exc))

    return commit_or_explain(
        lambda s: list_admin.set_archived(s, signed_in_person(), list_id, is_archived, utcnow()),
        errors=NewsletterError,
        explain=explain,
        done=lambda row: saved(
            f"The list “{row.name}” is {'archived' if is_archived else 'open again'}.",
            url_for("newsletters_staff.lists") + f"#list-{row.id}",
        ),
    )
