"""Staff moderation of topics: the queue, status changes, merges, report decisions and the
support budget. The routes belong to the ``topics`` blueprint (``engage.topics.views``), so
their endpoints keep the ``topics.`` names."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import current_user

from engage.accounts.models import Role, User
from engage.db import get_session
from engage.security import roles_required
from engage.timeutil import utcnow
from engage.topics import queries, services
from engage.topics.forms import MergeForm, ModerateForm, ResolveReportsForm, SupportBudgetForm
from engage.topics.models import Topic, TopicComment, TopicStatus
from engage.topics.views import detail_page, topics
from engage.views import commit_or_explain, refused, saved


def _actor() -> User:
    actor = get_session().get(User, current_user.id)
    if actor is None:
        abort(403)
    return actor


def _topic_or_404(topic_id: int) -> Topic:
    topic = get_session().get(Topic, topic_id)
    if topic is None:
        abort(404)
    return topic


@topics.route("/moderation")
@roles_required(Role.STAFF)
def moderation():
    """The queue: submitted topics, reported items and the support budget."""
    session = get_session()
    return render_template(
        "topics/moderation.html",
        submitted=queries.awaiting_moderation(session),
        reported=queries.reported_items(session),
        budget_form=SupportBudgetForm(budget=services.support_budget(session)),
        resolve_form=ResolveReportsForm(),
    )


@topics.route("/<int:topic_id>/moderate", methods=["POST"])
@roles_required(Role.STAFF)
def moderate(topic_id: int):
    """Move a topic to its next status."""
    topic = _topic_or_404(topic_id)
    page = url_for("topics.detail", topic_id=topic_id)
    # The current status is accepted too: a second click, after the first was saved, then
    # hears from the service that the topic is already there instead of "not a valid choice".
    form = ModerateForm(allowed=[*services.allowed_staff_transitions(topic), topic.status])

    def shown_again():
        # With the menu the page offers (without the current status).
        form.status.choices = ModerateForm(
            allowed=services.allowed_staff_transitions(topic)
        ).status.choices
        return detail_page(topic, moderate_form=form)

    def not_saved(exc: services.TopicError):
        if isinstance(exc, services.ReasonRequired):  # an error at the reason box
            form.reason.errors = [*form.reason.errors, str(exc)]
            return shown_again()
        return refused(f"Not saved: {exc}", page + "#moderation")

    if not form.validate_on_submit():
        return shown_again()
    return commit_or_explain(
        lambda session: services.change_status(
            session,
            _actor(),
            topic,
            TopicStatus(form.status.data),
            utcnow(),
            reason=form.reason.data,
            proposal_reference=form.proposal_reference.data,
        ),
        errors=services.TopicError,
        explain=not_saved,
        # The status history shows the change (staff always see it).
        done=lambda _outcome: saved(
            f"The topic is now “{topic.status.label.lower()}”.", page + "#history"
        ),
    )


@topics.route("/<int:topic_id>/merge", methods=["POST"])
@roles_required(Role.STAFF)
def merge(topic_id: int):
    """Merge a topic into another one."""
    source = _topic_or_404(topic_id)
    page = url_for("topics.detail", topic_id=topic_id)
    form = MergeForm()
    if not form.validate_on_submit():
        return detail_page(source, merge_form=form)
    target = get_session().get(Topic, form.target_id.data)

    def merge_into_target(session) -> int:
        if target is None:
            raise services.InvalidMerge("There is no topic with that number.")
        return services.merge_topics(session, _actor(), source, target, form.reason.data, utcnow())

    return commit_or_explain(
        merge_into_target,
        errors=services.TopicError,
        explain=lambda exc: refused(f"Not merged: {exc}", page + "#merge"),
        # The supports moved to the target topic: its support section shows them.
        done=lambda moved: saved(
            f"Merged into topic {target.id}; {moved} support(s) moved.",
            url_for("topics.detail", topic_id=target.id, _anchor="support"),
        ),
    )


@topics.route("/<int:topic_id>/reports", methods=["POST"])
@roles_required(Role.STAFF)
def resolve(topic_id: int):
    """Decide on the open reports of a topic or one of its comments."""
    session = get_session()
    topic = _topic_or_404(topic_id)
    form = ResolveReportsForm()
    if not form.validate_on_submit():
        flash("Not saved: choose a decision.", "error")
        return redirect(url_for("topics.moderation", _anchor="reports")), 303
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
        session, _actor(), topic, comment_row, form.decision.data == "uphold", utcnow()
    )
    session.commit()
    if resolved:
        flash("Saved: the reports are resolved.", "success")
    else:
        flash("Nothing to do: these reports were already decided.", "info")
    return redirect(url_for("topics.moderation", _anchor="reports")), 303


@topics.route("/settings", methods=["POST"])
@roles_required(Role.STAFF)
def settings():
    """Set the support budget."""
    session = get_session()
    form = SupportBudgetForm()
    if not form.validate_on_submit():
        for error in form.budget.errors:
            flash(f"Not saved: {error}", "error")
        return redirect(url_for("topics.moderation", _anchor="budget")), 303
    services.set_support_budget(session, _actor(), form.budget.data, utcnow())
    session.commit()
    flash(
        f"Saved: each person may support at most {form.budget.data} open topics at once."
        if form.budget.data
        else "Saved: there is no limit on supports.",
        "success",
    )
    return redirect(url_for("topics.moderation", _anchor="budget")), 303
