"""Topic pages: browse, propose, support, discuss, report; staff moderation."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
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
    ResolveReportsForm,
    SupportBudgetForm,
    TopicFilterForm,
    TopicForm,
)
from engage.topics.models import (
    ContentReport,
    ReportStatus,
    Topic,
    TopicCategory,
    TopicComment,
    TopicStatus,
)

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
    per_page = request.args.get("per_page", 20, type=int)
    per_page = per_page if per_page in PAGE_SIZES else 20
    result = queries.list_topics(
        get_session(),
        viewer=_viewer(),
        category=TopicCategory(category) if category else None,
        status=TopicStatus(status) if status else None,
        text=(form.q.data or "") if not form.q.errors else "",
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
    )


@topics.route("/<int:topic_id>")
def detail(topic_id: int):
    """A topic, its tally, discussion and the actions open to the viewer."""
    session = get_session()
    topic = _visible_topic(topic_id)
    viewer = _viewer()
    tally = queries.tallies(session, [topic.id])[topic.id]
    supported = topic.id in queries.supported_ids(session, viewer, [topic.id])
    comments = session.execute(
        sa.select(TopicComment, User.display_name)
        .join(User, User.id == TopicComment.author_id)
        .where(TopicComment.topic_id == topic.id)
        .order_by(TopicComment.created_at, TopicComment.id)
    ).all()
    if not (viewer and viewer.is_staff):
        comments = [
            (c, name)
            for c, name in comments
            if not c.is_hidden or (viewer and viewer.id == c.author_id)
        ]
    author_name = session.scalar(sa.select(User.display_name).where(User.id == topic.author_id))
    merged_into = session.get(Topic, topic.merged_into_id) if topic.merged_into_id else None
    is_staff = bool(viewer and viewer.is_staff)
    now = utcnow()
    window = current_app.config["TOPICS_COMMENT_EDIT_MINUTES"]
    return render_template(
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
        comment_form=CommentForm(),
        report_form=ReportForm(),
        moderate_form=ModerateForm(allowed=services.allowed_staff_transitions(topic))
        if is_staff
        else None,
        merge_form=MergeForm() if is_staff else None,
        history=queries.history(session, [topic.id])[topic.id]
        if is_staff or (viewer and viewer.id == topic.author_id)
        else [],
    )


@topics.route("/similar")
def similar():
    """Public topics with titles like ``title`` (used while typing a new title)."""
    title = (request.args.get("title") or "")[:150]
    found = services.similar_topics(get_session(), title)
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
    own = list(
        session.scalars(
            sa.select(Topic).where(Topic.author_id == user.id).order_by(Topic.created_at.desc())
        )
    )
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
    session = get_session()
    user = _me()
    form = TopicForm()
    duplicates: list[Topic] = []
    if form.validate_on_submit():
        duplicates = services.similar_topics(session, form.title.data)
        if duplicates and not form.not_duplicate.data:
            return render_template("topics/form.html", form=form, duplicates=duplicates, topic=None)
        try:
            topic = services.propose_topic(
                session, user, _details(form), utcnow(), current_app.config["TOPICS_MAX_PENDING"]
            )
        except services.DuplicateSubmission as exc:
            # A double click or a resent form: the first one is kept; show it, calmly.
            session.rollback()
            flash(str(exc), "info")
            return redirect(url_for("topics.detail", topic_id=exc.topic_id)), 303
        except services.TopicError as exc:
            form.form_errors.append(str(exc))
        else:
            session.commit()
            flash(
                "Thank you: your topic is submitted. Staff will check it before it is published.",
                "success",
            )
            return redirect(url_for("topics.detail", topic_id=topic.id))
    return (
        render_template("topics/form.html", form=form, duplicates=duplicates, topic=None),
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
    if form.validate_on_submit():
        try:
            services.resubmit_topic(
                session,
                user,
                topic,
                _details(form),
                utcnow(),
                current_app.config["TOPICS_MAX_PENDING"],
            )
        except services.TopicError as exc:
            form.form_errors.append(str(exc))
        else:
            session.commit()
            flash("Your topic is sent to staff again.", "success")
            return redirect(url_for("topics.detail", topic_id=topic.id))
    return (
        render_template("topics/form.html", form=form, duplicates=[], topic=topic),
        400 if form.errors else 200,
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
    try:
        services.withdraw_topic(session, user, topic, utcnow())
    except services.TopicError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("topics.detail", topic_id=topic_id)), 303
    session.commit()
    flash("Your topic is withdrawn.", "success")
    return redirect(url_for("topics.mine"))


# Supporting ---------------------------------------------------------------------------------
def _back_to(topic_id: int) -> str:
    """Where to return after a support action: the page it came from, if on this site."""
    target = request.form.get("next", "")
    # Control characters (a CR or LF is a 500 in a Location header) never come from a link.
    if (
        target.startswith("/topics")
        and "//" not in target
        and "\\" not in target
        and target.isprintable()
    ):
        return target
    return url_for("topics.detail", topic_id=topic_id)


@topics.route("/<int:topic_id>/support", methods=["POST"])
@roles_required(*CONTRIBUTORS)
def support(topic_id: int):
    """Support a topic (a double click or a repeat changes nothing)."""
    session = get_session()
    try:
        outcome = services.support_topic(session, _me(), topic_id, utcnow())
    except services.TopicError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(_back_to(topic_id)), 303
    session.commit()
    flash(
        "Thank you for your support." if outcome.created else "You already support this topic.",
        "success" if outcome.created else "info",
    )
    return redirect(_back_to(topic_id)), 303


@topics.route("/<int:topic_id>/support/withdraw", methods=["POST"])
@roles_required(*CONTRIBUTORS)
def withdraw_support(topic_id: int):
    """Withdraw one's support while the topic is open."""
    session = get_session()
    try:
        services.withdraw_support(session, _me(), topic_id, utcnow())
    except services.TopicError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(_back_to(topic_id)), 303
    session.commit()
    flash("Your support is withdrawn.", "success")
    return redirect(_back_to(topic_id)), 303


# Discussing and reporting ---------------------------------------------------------------------
@topics.route("/<int:topic_id>/comments", methods=["POST"])
@sign_in_required
def comment(topic_id: int):
    """Add a comment to a published topic."""
    session = get_session()
    topic = _visible_topic(topic_id)
    form = CommentForm()
    if not form.validate():
        for error in form.body.errors:
            flash(f"Your comment was not posted: {error}", "error")
        return redirect(url_for("topics.detail", topic_id=topic.id) + "#comment-form"), 303
    try:
        services.add_comment(session, _me(), topic, form.body.data, utcnow())
    except services.TopicError as exc:
        session.rollback()
        flash(str(exc), "error")
        return redirect(url_for("topics.detail", topic_id=topic.id)), 303
    session.commit()
    flash("Your comment is posted.", "success")
    return redirect(url_for("topics.detail", topic_id=topic.id) + "#comments"), 303


def _own_comment(comment_id: int) -> TopicComment:
    comment_row = get_session().get(TopicComment, comment_id)
    if comment_row is None or comment_row.author_id != current_user.id:
        abort(404)
    return comment_row


@topics.route("/comments/<int:comment_id>/edit", methods=["GET", "POST"])
@sign_in_required
def edit_comment(comment_id: int):
    """Edit one's comment within the edit window."""
    session = get_session()
    comment_row = _own_comment(comment_id)
    form = CommentForm(obj=comment_row)
    window = current_app.config["TOPICS_COMMENT_EDIT_MINUTES"]
    if form.validate_on_submit():
        try:
            services.edit_comment(session, _me(), comment_row, form.body.data, utcnow(), window)
        except services.TopicError as exc:
            form.body.errors.append(str(exc))
        else:
            session.commit()
            flash("Your comment is saved.", "success")
            return redirect(url_for("topics.detail", topic_id=comment_row.topic_id) + "#comments")
    return (
        render_template("topics/comment_edit.html", form=form, comment=comment_row),
        400 if form.errors else 200,
    )


def _report(topic: Topic, comment_row: TopicComment | None):
    session = get_session()
    form = ReportForm()
    anchor = f"#comment-{comment_row.id}" if comment_row else ""
    if not form.validate():
        for error in form.reason.errors:
            flash(f"Your report was not sent: {error}", "error")
        return redirect(url_for("topics.detail", topic_id=topic.id) + anchor), 303
    try:
        hidden = services.report_content(
            session,
            _me(),
            topic,
            comment_row,
            form.reason.data,
            utcnow(),
            current_app.config["TOPICS_REPORT_HIDE_THRESHOLD"],
        )
    except services.TopicError as exc:
        session.rollback()
        flash(str(exc), "info")
        return redirect(url_for("topics.detail", topic_id=topic.id) + anchor), 303
    session.commit()
    flash(
        "Thank you: staff will look at your report."
        + (" It is hidden until they have." if hidden else ""),
        "success",
    )
    if hidden and comment_row is None:
        return redirect(url_for("topics.list_topics")), 303
    return redirect(url_for("topics.detail", topic_id=topic.id) + anchor), 303


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


# Staff moderation -----------------------------------------------------------------------------
@topics.route("/moderation")
@roles_required(Role.STAFF)
def moderation():
    """The queue: submitted topics, reported items and the support budget."""
    session = get_session()
    submitted = session.execute(
        sa.select(Topic, User.display_name)
        .join(User, User.id == Topic.author_id)
        .where(Topic.status == TopicStatus.SUBMITTED)
        .order_by(Topic.created_at)
    ).all()
    reports = session.execute(
        sa.select(ContentReport, Topic.title, TopicComment.body)
        .join(Topic, Topic.id == ContentReport.topic_id)
        .outerjoin(TopicComment, TopicComment.id == ContentReport.comment_id)
        .where(ContentReport.status == ReportStatus.OPEN)
        .order_by(ContentReport.topic_id, ContentReport.comment_id, ContentReport.created_at)
    ).all()
    grouped: dict[tuple[int, int | None], dict] = {}
    for report, title, body in reports:
        key = (report.topic_id, report.comment_id)
        item = grouped.setdefault(
            key,
            {
                "topic_id": report.topic_id,
                "comment_id": report.comment_id,
                "title": title,
                "comment": body,
                "reasons": [],
            },
        )
        item["reasons"].append(report.reason)
    budget_form = SupportBudgetForm(budget=services.support_budget(session))
    return render_template(
        "topics/moderation.html",
        submitted=submitted,
        reported=list(grouped.values()),
        budget_form=budget_form,
        resolve_form=ResolveReportsForm(),
    )


@topics.route("/<int:topic_id>/moderate", methods=["POST"])
@roles_required(Role.STAFF)
def moderate(topic_id: int):
    """Move a topic to its next status."""
    session = get_session()
    topic = session.get(Topic, topic_id)
    if topic is None:
        abort(404)
    # The current status is accepted too: a second click, after the first was saved, then
    # hears from the service that the topic is already there instead of "not a valid choice".
    form = ModerateForm(allowed=[*services.allowed_staff_transitions(topic), topic.status])
    if not form.validate_on_submit():
        errors = [e for errs in form.errors.values() for e in errs]
        flash("Not saved: " + " ".join(errors or ["choose a status."]), "error")
        return redirect(url_for("topics.detail", topic_id=topic.id)), 303
    try:
        services.change_status(
            session,
            _me(),
            topic,
            TopicStatus(form.status.data),
            utcnow(),
            reason=form.reason.data,
            proposal_reference=form.proposal_reference.data,
        )
    except services.TopicError as exc:
        session.rollback()
        flash(f"Not saved: {exc}", "error")
        return redirect(url_for("topics.detail", topic_id=topic_id)), 303
    session.commit()
    flash(f"The topic is now “{topic.status.label.lower()}”.", "success")
    return redirect(url_for("topics.detail", topic_id=topic.id)), 303


@topics.route("/<int:topic_id>/merge", methods=["POST"])
@roles_required(Role.STAFF)
def merge(topic_id: int):
    """Merge a topic into another one."""
    session = get_session()
    source = session.get(Topic, topic_id)
    if source is None:
        abort(404)
    form = MergeForm()
    if not form.validate_on_submit():
        errors = [e for errs in form.errors.values() for e in errs]
        flash("Not merged: " + " ".join(errors), "error")
        return redirect(url_for("topics.detail", topic_id=source.id)), 303
    target = session.get(Topic, form.target_id.data)
    try:
        if target is None:
            raise services.InvalidMerge("There is no topic with that number.")
        moved = services.merge_topics(session, _me(), source, target, form.reason.data, utcnow())
    except services.TopicError as exc:
        session.rollback()
        flash(f"Not merged: {exc}", "error")
        return redirect(url_for("topics.detail", topic_id=topic_id)), 303
    session.commit()
    flash(f"Merged into topic {target.id}; {moved} support(s) moved.", "success")
    return redirect(url_for("topics.detail", topic_id=target.id)), 303


@topics.route("/<int:topic_id>/reports", methods=["POST"])
@roles_required(Role.STAFF)
def resolve(topic_id: int):
    """Decide on the open reports of a topic or one of its comments."""
    session = get_session()
    topic = session.get(Topic, topic_id)
    if topic is None:
        abort(404)
    form = ResolveReportsForm()
    if not form.validate_on_submit():
        flash("Not saved: choose a decision.", "error")
        return redirect(url_for("topics.moderation")), 303
    comment_row = None
    if form.comment_id.data:
        comment_row = (
            session.get(TopicComment, int(form.comment_id.data))
            # isdigit() alone takes "²", which int() refuses.
            if form.comment_id.data.isascii()
            and form.comment_id.data.isdigit()
            and len(form.comment_id.data) < 10
            else None
        )
        if comment_row is None or comment_row.topic_id != topic.id:
            abort(404)
    resolved = services.resolve_reports(
        session, _me(), topic, comment_row, form.decision.data == "uphold", utcnow()
    )
    session.commit()
    if resolved:
        flash("Saved: the reports are resolved.", "success")
    else:
        flash("Nothing to do: these reports were already decided.", "info")
    return redirect(url_for("topics.moderation")), 303


@topics.route("/settings", methods=["POST"])
@roles_required(Role.STAFF)
def settings():
    """Set the support budget."""
    session = get_session()
    form = SupportBudgetForm()
    if not form.validate_on_submit():
        for error in form.budget.errors:
            flash(f"Not saved: {error}", "error")
        return redirect(url_for("topics.moderation")), 303
    services.set_support_budget(session, _me(), form.budget.data, utcnow())
    session.commit()
    flash(
        f"Saved: each person may support at most {form.budget.data} open topics at once."
        if form.budget.data
        else "Saved: there is no limit on supports.",
        "success",
    )
    return redirect(url_for("topics.moderation")), 303
