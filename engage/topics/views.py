"""Topic pages: browse, propose, support, discuss, report. Staff moderation pages add their
routes to the same ``topics`` blueprint from ``engage.topics.staff_views``."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import (
    session as cookie_session,
)
from flask_login import current_user

from engage.accounts.models import Role, User
from engage.db import get_session
from engage.extensions import limiter, rate_limit
from engage.security import roles_required, sign_in_required
from engage.timeutil import utcnow
from engage.topics import queries, services
from engage.topics.forms import (
    CommentForm,
    MergeForm,
    ModerateForm,
    ReportForm,
    TopicFilterForm,
    TopicForm,
)
from engage.topics.models import Topic, TopicCategory, TopicComment, TopicStatus
from engage.views import commit_or_explain, refused, saved

topics = Blueprint("topics", __name__, url_prefix="/topics")
CONTRIBUTORS = (Role.PARTICIPANT, Role.CLINICIAN, Role.ORGANISATION)
PAGE_SIZES = (10, 20, 50)
# The list's own parameters, kept in its page links. Others are dropped: passed on to url_for,
# names such as "endpoint" or "_method" are a 500 and "_anchor" or "_external" change the link.
LIST_FILTERS = ("q", "category", "status", "sort", "per_page")


def _viewer() -> User | None:
    """The signed-in person's row in this request's session, or None."""
    if not current_user.is_authenticated:
        return None
    return get_session().get(User, current_user.id)


def _me() -> User:
    user = _viewer()
    if user is None:
        abort(403)
    return user


def _visible_topic(topic_id: int) -> Topic:
    """The topic if the viewer may see it; 404 otherwise (no hint that it exists)."""
    topic = get_session().get(Topic, topic_id)
    if topic is None or not services.can_view(topic, _viewer()):
        abort(404)
    return topic


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    value = request.args.get(name, default, type=int)
    return min(max(value if value is not None else default, low), high)


def _shuffle_seed() -> int:
    """A per-visitor seed kept in the session cookie, so random order is stable across pages."""
    if "topic_seed" not in cookie_session:
        cookie_session["topic_seed"] = secrets.randbelow(1_000_000)
    return int(cookie_session["topic_seed"])


# Browsing -----------------------------------------------------------------------------------
@topics.route("")
def list_topics():
    """Published topics with filters, search, sorting, pagination and tallies."""
    form = TopicFilterForm(request.args)
    form.validate()
    category = form.category.data if form.category.data in set(TopicCategory) else None
    status = form.status.data if form.status.data in set(TopicStatus) else None
    sort = (
        queries.TopicSort(form.sort.data)
        if form.sort.data in set(queries.TopicSort)
        else queries.TopicSort.SUPPORTED
    )
    text = (form.q.data or "") if not form.q.errors else ""
    per_page = request.args.get("per_page", 20, type=int)
    per_page = per_page if per_page in PAGE_SIZES else 20
    result = queries.list_topics(
        get_session(),
        viewer=_viewer(),
        category=TopicCategory(category) if category else None,
        status=TopicStatus(status) if status else None,
        text=text,
        sort=sort,
        seed=_shuffle_seed() if sort == queries.TopicSort.RANDOM else 0,
        page=_int_arg("page", 1, 1, 100_000),
        per_page=per_page,
    )
    args = {k: v for k, v in request.args.items() if k in LIST_FILTERS}
    viewer = _viewer()
    return render_template(
        "topics/list.html",
        form=form,
        result=result,
        args=args,
        can_propose=viewer is not None and services.can_contribute(viewer),
        filters_on=sum(1 for value in (text, category, status) if value),
        sorted_by={c.value: c.label for c in form.sort.choices}[sort.value].lower()
        if sort != queries.TopicSort.SUPPORTED
        else None,
    )


@topics.route("/<int:topic_id>")
def detail(topic_id: int):
    """A topic, its tally, discussion and the actions open to the viewer."""
    return detail_page(_visible_topic(topic_id))


def detail_page(
    topic: Topic,
    *,
    comment_form: CommentForm | None = None,
    report_form: ReportForm | None = None,
    reported_comment_id: int | None = None,
    moderate_form: ModerateForm | None = None,
    merge_form: MergeForm | None = None,
):
    """The topic page; a form passed in was posted with errors, and the page shows it again
    with an error summary (a 400).

    :param reported_comment_id: the comment ``report_form`` reports (None: the topic itself).
    """
    session = get_session()
    viewer = _viewer()
    tally = queries.tallies(session, [topic.id])[topic.id]
    supported = topic.id in queries.supported_ids(session, viewer, [topic.id])
    comments = queries.comments_with_authors(session, topic.id)
    if not (viewer and viewer.is_staff):
        comments = [
            (c, name)
            for c, name in comments
            if not c.is_hidden or (viewer and viewer.id == c.author_id)
        ]
    author_name = queries.author_name(session, topic)
    merged_into = session.get(Topic, topic.merged_into_id) if topic.merged_into_id else None
    is_staff = bool(viewer and viewer.is_staff)
    now = utcnow()
    window = current_app.config["TOPICS_COMMENT_EDIT_MINUTES"]
    failed = next(
        (f for f in (comment_form, report_form, moderate_form, merge_form) if f is not None),
        None,
    )
    if is_staff and moderate_form is None:
        moderate_form = ModerateForm(allowed=services.allowed_staff_transitions(topic))
    if is_staff and merge_form is None:
        merge_form = MergeForm()
    page = render_template(
        "topics/detail.html",
        topic=topic,
        tally=tally,
        supported=supported,
        comments=comments,
        author_name=author_name,
        merged_into=merged_into,
        viewer=viewer,
        can_support=viewer is not None and services.can_contribute(viewer),
        editable={
            c.id
            for c, _ in comments
            if viewer and services.can_edit_comment(c, viewer, now, window)
        },
        failed_form=failed,
        comment_form=comment_form or CommentForm(),
        report_form=report_form,
        reported_comment_id=reported_comment_id,
        moderate_form=moderate_form if is_staff else None,
        merge_form=merge_form if is_staff else None,
        history=queries.history(session, [topic.id])[topic.id]
        if is_staff or (viewer and viewer.id == topic.author_id)
        else [],
    )
    return page, 400 if failed is not None else 200


@topics.route("/similar")
def similar():
    """Public topics with titles like ``title`` (used while typing a new title)."""
    title = (request.args.get("title") or "")[:150]
    found = queries.similar_topics(get_session(), title)
    return jsonify(
        topics=[
            {"id": t.id, "title": t.title, "url": url_for("topics.detail", topic_id=t.id)}
            for t in found
        ]
    )


@topics.route("/mine")
@roles_required(*CONTRIBUTORS)
def mine():
    """The author's own topics with their status history."""
    session = get_session()
    user = _me()
    own = queries.topics_by_author(session, user.id)
    ids = [t.id for t in own]
    return render_template(
        "topics/mine.html",
        topics=own,
        history=queries.history(session, ids),
        tallies=queries.tallies(session, ids),
    )


# Proposing ----------------------------------------------------------------------------------
def _details(form: TopicForm) -> services.TopicDetails:
    return services.TopicDetails(
        title=form.title.data,
        question=form.question.data,
        rationale=form.rationale.data,
        category=TopicCategory(form.category.data),
        reference_links=form.links(),
    )


def _create_limit() -> str:
    return rate_limit("TOPICS_CREATE_RATE_LIMIT")


def _post_only(_limit: object = None) -> bool:
    return request.method != "POST"


@topics.route("/new", methods=["GET", "POST"])
@roles_required(*CONTRIBUTORS)
@limiter.limit(_create_limit, exempt_when=_post_only)
def new():
    """Propose a topic; possible duplicates are shown before it is submitted."""
    user = _me()
    form = TopicForm()
    if not form.validate_on_submit():
        return _form_page(form, [], None)
    duplicates = queries.similar_topics(get_session(), form.title.data)
    if duplicates and not form.not_duplicate.data:
        return render_template("topics/form.html", form=form, duplicates=duplicates, topic=None)

    def not_proposed(exc: services.TopicError):
        if isinstance(exc, services.DuplicateSubmission):
            # A double click or a resent form: the first one is kept; show it, calmly.
            return refused(str(exc), url_for("topics.detail", topic_id=exc.topic_id), "info")
        form.form_errors.append(str(exc))
        return _form_page(form, duplicates, None)

    return commit_or_explain(
        lambda session: services.propose_topic(
            session, user, _details(form), utcnow(), current_app.config["TOPICS_MAX_PENDING"]
        ),
        errors=services.TopicError,
        explain=not_proposed,
        done=lambda topic: saved(
            "Thank you: your topic is submitted. Staff will check it before it is published.",
            url_for("topics.detail", topic_id=topic.id),
            status=302,
        ),
    )


def _form_page(form: TopicForm, duplicates: list[Topic], topic: Topic | None):
    return (
        render_template("topics/form.html", form=form, duplicates=duplicates, topic=topic),
        400 if form.errors else 200,
    )


@topics.route("/<int:topic_id>/edit", methods=["GET", "POST"])
@roles_required(*CONTRIBUTORS)
def edit(topic_id: int):
    """The author edits a returned topic and sends it again."""
    session = get_session()
    user = _me()
    topic = session.get(Topic, topic_id)
    if topic is None or topic.author_id != user.id:
        abort(404)
    if topic.status != TopicStatus.RETURNED:
        flash("Only a topic returned to you can be edited.", "error")
        return redirect(url_for("topics.detail", topic_id=topic.id))
    form = TopicForm(obj=topic)
    if request.method == "GET":
        form.reference_links.data = "\n".join(topic.reference_links or [])
        form.category.data = topic.category.value
    if not form.validate_on_submit():
        return _form_page(form, [], topic)

    def not_sent(exc: services.TopicError):
        form.form_errors.append(str(exc))
        return _form_page(form, [], topic)

    return commit_or_explain(
        lambda session: services.resubmit_topic(
            session,
            user,
            topic,
            _details(form),
            utcnow(),
            current_app.config["TOPICS_MAX_PENDING"],
        ),
        errors=services.TopicError,
        explain=not_sent,
        done=lambda _outcome: saved(
            "Your topic is sent to staff again.",
            url_for("topics.detail", topic_id=topic_id),
            status=302,
        ),
    )


@topics.route("/<int:topic_id>/withdraw", methods=["POST"])
@roles_required(*CONTRIBUTORS)
def withdraw(topic_id: int):
    """The author withdraws a topic nobody supports yet."""
    session = get_session()
    user = _me()
    topic = session.get(Topic, topic_id)
    if topic is None or topic.author_id != user.id:
        abort(404)
    return commit_or_explain(
        lambda session: services.withdraw_topic(session, user, topic, utcnow()),
        errors=services.TopicError,
        explain=lambda exc: refused(str(exc), url_for("topics.detail", topic_id=topic_id)),
        done=lambda _outcome: saved(
            "Your topic is withdrawn.",
            url_for("topics.mine", _anchor=f"topic-{topic_id}"),
            status=302,
        ),
    )


# Supporting ---------------------------------------------------------------------------------
def _back_to(topic_id: int) -> str:
    """Where to return after a support action: the page it came from, if on this site, at
    the part of it that changed."""
    target = request.form.get("next", "")
    # Control characters (a CR or LF is a 500 in a Location header) never come from a link.
    if (
        target.startswith("/topics")
        and "//" not in target
        and "\\" not in target
        and target.isprintable()
    ):
        target = target.partition("#")[0]
    else:
        target = url_for("topics.detail", topic_id=topic_id)
    # Focus goes back to what changed: the topic page's support section, or the topic's entry
    # in the list the button was on.
    on_topic_page = urlsplit(target).path == url_for("topics.detail", topic_id=topic_id)
    return target + ("#support" if on_topic_page else f"#topic-{topic_id}")


@topics.route("/<int:topic_id>/support", methods=["POST"])
@roles_required(*CONTRIBUTORS)
def support(topic_id: int):
    """Support a topic (a double click or a repeat changes nothing)."""

    def supported(outcome: services.SupportOutcome):
        if outcome.created:
            return saved("Thank you for your support.", _back_to(topic_id))
        return saved("You already support this topic.", _back_to(topic_id), "info")

    return commit_or_explain(
        lambda session: services.support_topic(session, _me(), topic_id, utcnow()),
        errors=services.TopicError,
        explain=lambda exc: refused(str(exc), _back_to(topic_id)),
        done=supported,
    )


@topics.route("/<int:topic_id>/support/withdraw", methods=["POST"])
@roles_required(*CONTRIBUTORS)
def withdraw_support(topic_id: int):
    """Withdraw one's support while the topic is open."""
    return commit_or_explain(
        lambda session: services.withdraw_support(session, _me(), topic_id, utcnow()),
        errors=services.TopicError,
        explain=lambda exc: refused(str(exc), _back_to(topic_id)),
        done=lambda _outcome: saved("Your support is withdrawn.", _back_to(topic_id)),
    )


# Discussing and reporting ---------------------------------------------------------------------
@topics.route("/<int:topic_id>/comments", methods=["POST"])
@sign_in_required
def comment(topic_id: int):
    """Add a comment to a published topic."""
    topic = _visible_topic(topic_id)
    page = url_for("topics.detail", topic_id=topic.id)
    form = CommentForm()
    if not form.validate():
        return detail_page(topic, comment_form=form)
    return commit_or_explain(
        lambda session: services.add_comment(session, _me(), topic, form.body.data, utcnow()),
        errors=services.TopicError,
        explain=lambda exc: refused(str(exc), page + "#comments"),
        done=lambda new_comment: saved(
            "Your comment is posted.", page + f"#comment-{new_comment.id}"
        ),
    )


def _own_comment(comment_id: int) -> TopicComment:
    comment_row = get_session().get(TopicComment, comment_id)
    if comment_row is None or comment_row.author_id != current_user.id:
        abort(404)
    return comment_row


@topics.route("/comments/<int:comment_id>/edit", methods=["GET", "POST"])
@sign_in_required
def edit_comment(comment_id: int):
    """Edit one's comment within the edit window."""
    comment_row = _own_comment(comment_id)
    form = CommentForm(obj=comment_row)
    window = current_app.config["TOPICS_COMMENT_EDIT_MINUTES"]
    if not form.validate_on_submit():
        return _comment_page(form, comment_row)
    page = url_for("topics.detail", topic_id=comment_row.topic_id)

    def not_saved(exc: services.TopicError):
        form.body.errors.append(str(exc))
        return _comment_page(form, comment_row)

    return commit_or_explain(
        lambda session: services.edit_comment(
            session, _me(), comment_row, form.body.data, utcnow(), window
        ),
        errors=services.TopicError,
        explain=not_saved,
        done=lambda _outcome: saved(
            "Your comment is saved.", page + f"#comment-{comment_row.id}", status=302
        ),
    )


def _comment_page(form: CommentForm, comment_row: TopicComment):
    return (
        render_template("topics/comment_edit.html", form=form, comment=comment_row),
        400 if form.errors else 200,
    )


def _report(topic: Topic, comment_row: TopicComment | None):
    form = ReportForm()
    # The page has a report box per comment: the error summary links to the one that was sent.
    form.reason.id = form.reason.label.field_id = (
        f"report-comment-{comment_row.id}" if comment_row else "report-topic-reason"
    )
    page = url_for("topics.detail", topic_id=topic.id)
    anchor = f"#comment-{comment_row.id}" if comment_row else "#report-topic"
    if not form.validate():
        return detail_page(
            topic,
            report_form=form,
            reported_comment_id=comment_row.id if comment_row else None,
        )

    def reported(hidden: bool):
        message = "Thank you: staff will look at your report." + (
            " It is hidden until they have." if hidden else ""
        )
        if hidden and not comment_row:  # a hidden topic is no longer there to go back to
            return saved(message, url_for("topics.list_topics"))
        # A hidden comment is no longer shown to the reporter: back to the discussion.
        return saved(message, page + ("#comments" if hidden else anchor))

    return commit_or_explain(
        lambda session: services.report_content(
            session,
            _me(),
            topic,
            comment_row,
            form.reason.data,
            utcnow(),
            current_app.config["TOPICS_REPORT_HIDE_THRESHOLD"],
        ),
        errors=services.TopicError,
        explain=lambda exc: refused(str(exc), page + anchor, "info"),
        done=reported,
    )


@topics.route("/<int:topic_id>/report", methods=["POST"])
@sign_in_required
def report_topic(topic_id: int):
    """Report a topic to staff."""
    return _report(_visible_topic(topic_id), None)


@topics.route("/comments/<int:comment_id>/report", methods=["POST"])
@sign_in_required
def report_comment(comment_id: int):
    """Report a comment to staff."""
    comment_row = get_session().get(TopicComment, comment_id)
    if comment_row is None:
        abort(404)
    topic = _visible_topic(comment_row.topic_id)
    if comment_row.is_hidden and not current_user.is_staff:
        abort(404)
    return _report(topic, comment_row)
