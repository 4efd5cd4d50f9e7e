"""Topic services: lifecycle, supports, budget, merge, comments and reports (no HTTP)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role, User
from engage.db import Database
from engage.outbox import OutboxMessage
from engage.timeutil import utcnow
from engage.topics import queries, services
from engage.topics.models import (
    ContentReport,
    SupportAction,
    Topic,
    TopicCategory,
    TopicStatus,
    TopicStatusChange,
    TopicSupport,
    TopicSupportEvent,
)


def details(title: str = "Does vitamin D slow MS progression?") -> services.TopicDetails:
    return services.TopicDetails(
        title=title,
        question="Does taking vitamin D every day slow disability progression in relapsing MS?",
        rationale="Many of us take it *without* knowing whether it helps.",
        category=TopicCategory.LIFESTYLE,
        reference_links=["https://example.org/study"],
    )


@pytest.fixture
def people(app, session, make_user):
    """A staff member and contributors in each role, loaded in the test's session."""
    made = {
        "staff": make_user(Role.STAFF),
        "author": make_user(Role.PARTICIPANT),
        "participant": make_user(Role.PARTICIPANT),
        "clinician": make_user(Role.CLINICIAN, clinician_verified=True),
        "unverified_clinician": make_user(Role.CLINICIAN),
        "organisation": make_user(Role.ORGANISATION),
        "custodian": make_user(Role.CUSTODIAN),
    }
    return {name: session.get(User, user.id) for name, user in made.items()}


@pytest.fixture
def published(app, session, people):
    """A published topic by ``people['author']``."""
    with app.app_context():
        topic = services.propose_topic(session, people["author"], details(), utcnow(), 3)
        services.change_status(session, people["staff"], topic, TopicStatus.PUBLISHED, utcnow())
        session.commit()
    return topic


def test_propose_needs_a_contributor_with_a_confirmed_email(app, session, people, make_user):
    for name in ("custodian", "staff"):
        with pytest.raises(services.NotAllowed):
            services.propose_topic(session, people[name], details(), utcnow(), 3)
    unverified = session.get(User, make_user(Role.PARTICIPANT, email_verified=False).id)
    with pytest.raises(services.NotAllowed, match="confirm your email"):
        services.propose_topic(session, unverified, details(), utcnow(), 3)


def test_pending_topics_per_author_are_limited(session, people):
    for n in range(2):
        services.propose_topic(
            session, people["author"], details(f"Question number {n}"), utcnow(), 2
        )
    with pytest.raises(services.TooManyPendingTopics):
        services.propose_topic(session, people["author"], details("A third question"), utcnow(), 2)


def test_lifecycle_is_logged_and_invalid_transitions_are_named_errors(session, people):
    staff, author = people["staff"], people["author"]
    topic = services.propose_topic(session, author, details(), utcnow(), 3)
    with pytest.raises(services.InvalidTransition):
        services.change_status(session, staff, topic, TopicStatus.ADOPTED, utcnow())
    with pytest.raises(services.ReasonRequired):
        services.change_status(session, staff, topic, TopicStatus.RETURNED, utcnow())
    services.change_status(
        session, staff, topic, TopicStatus.RETURNED, utcnow(), reason="Shorter title"
    )
    services.resubmit_topic(session, author, topic, details("Does vitamin D help?"), utcnow(), 3)
    for status in (
        TopicStatus.PUBLISHED,
        TopicStatus.SHORTLISTED,
        TopicStatus.ADOPTED,
        TopicStatus.COMPLETED,
    ):
        services.change_status(session, staff, topic, status, utcnow())
    with pytest.raises(services.InvalidTransition):
        services.change_status(session, staff, topic, TopicStatus.PUBLISHED, utcnow())
    with pytest.raises(services.NotAllowed):
        services.change_status(session, author, topic, TopicStatus.PUBLISHED, utcnow())
    session.flush()
    changes = session.scalars(
        sa.select(TopicStatusChange)
        .where(TopicStatusChange.topic_id == topic.id)
        .order_by(TopicStatusChange.id)
    ).all()
    assert [(c.from_status, c.to_status) for c in changes] == [
        (None, TopicStatus.SUBMITTED),
        (TopicStatus.SUBMITTED, TopicStatus.RETURNED),
        (TopicStatus.RETURNED, TopicStatus.SUBMITTED),
        (TopicStatus.SUBMITTED, TopicStatus.PUBLISHED),
        (TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED),
        (TopicStatus.SHORTLISTED, TopicStatus.ADOPTED),
        (TopicStatus.ADOPTED, TopicStatus.COMPLETED),
    ]
    assert changes[1].reason == "Shorter title" and changes[1].actor_id == staff.id


def test_supports_record_role_and_verification_and_tally_by_role(session, people, published):
    for name in ("participant", "clinician", "unverified_clinician", "organisation", "author"):
        assert services.support_topic(session, people[name], published.id, utcnow()).created
    session.commit()
    tally = queries.tallies(session, [published.id])[published.id]
    assert (
        tally.participants,
        tally.verified_clinicians,
        tally.other_clinicians,
        tally.organisations,
        tally.total,
    ) == (2, 1, 1, 1, 5)
    session.refresh(published)
    assert published.support_count == 5
    with pytest.raises(services.NotAllowed):
        services.support_topic(session, people["custodian"], published.id, utcnow())


def test_supporting_twice_keeps_one_support(session, people, published):
    assert services.support_topic(session, people["participant"], published.id, utcnow()).created
    assert not services.support_topic(
        session, people["participant"], published.id, utcnow()
    ).created
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(TopicSupport)) == 1
    assert services.reconcile_support_counts(session) == []


def test_withdrawing_support_and_withdrawing_what_does_not_exist(session, people, published):
    user = people["participant"]
    services.support_topic(session, user, published.id, utcnow())
    services.withdraw_support(session, user, published.id, utcnow())
    with pytest.raises(services.NotSupported):
        services.withdraw_support(session, user, published.id, utcnow())
    session.commit()
    actions = session.scalars(
        sa.select(TopicSupportEvent.action).order_by(TopicSupportEvent.id)
    ).all()
    assert actions == [SupportAction.CAST, SupportAction.WITHDRAWN]
    session.refresh(published)
    assert published.support_count == 0


def test_closed_topics_take_no_support(session, people):
    topic = services.propose_topic(session, people["author"], details(), utcnow(), 3)
    with pytest.raises(services.SupportClosed):
        services.support_topic(session, people["participant"], topic.id, utcnow())
    services.change_status(
        session, people["staff"], topic, TopicStatus.REJECTED, utcnow(), reason="Out of scope"
    )
    with pytest.raises(services.SupportClosed):
        services.support_topic(session, people["participant"], topic.id, utcnow())
    with pytest.raises(services.SupportClosed):
        services.support_topic(session, people["participant"], 999_999, utcnow())


def test_support_budget_caps_open_supports(app, session, people):
    staff, user = people["staff"], people["participant"]
    topics = []
    with app.app_context():
        for n in range(3):
            topic = services.propose_topic(
                session, people["author"], details(f"Question {n} x"), utcnow(), 5
            )
            services.change_status(session, staff, topic, TopicStatus.PUBLISHED, utcnow())
            topics.append(topic)
    services.set_support_budget(session, staff, 2, utcnow())
    services.support_topic(session, user, topics[0].id, utcnow())
    services.support_topic(session, user, topics[1].id, utcnow())
    session.commit()
    with pytest.raises(services.SupportBudgetReached):
        services.support_topic(session, user, topics[2].id, utcnow())
    session.rollback()
    services.withdraw_support(session, user, topics[0].id, utcnow())
    assert services.support_topic(session, user, topics[2].id, utcnow()).created


def test_author_withdraws_only_without_supports(session, people, published):
    services.support_topic(session, people["participant"], published.id, utcnow())
    with pytest.raises(services.TopicHasSupports):
        services.withdraw_topic(session, people["author"], published, utcnow())
    with pytest.raises(services.NotAllowed):
        services.withdraw_topic(session, people["participant"], published, utcnow())
    services.withdraw_support(session, people["participant"], published.id, utcnow())
    services.withdraw_topic(session, people["author"], published, utcnow())
    assert published.status == TopicStatus.WITHDRAWN


def test_merge_moves_supports_without_duplicates_and_notifies(app, session, people, published):
    staff = people["staff"]
    with app.app_context():
        target = services.propose_topic(
            session, people["participant"], details("Vitamin D and MS progression"), utcnow(), 3
        )
        services.change_status(session, staff, target, TopicStatus.PUBLISHED, utcnow())
    both, only_source = people["clinician"], people["organisation"]
    services.support_topic(session, both, published.id, utcnow())
    services.support_topic(session, both, target.id, utcnow())
    services.support_topic(session, only_source, published.id, utcnow())
    session.commit()
    with pytest.raises(services.ReasonRequired):
        services.merge_topics(session, staff, published, target, "", utcnow())
    with pytest.raises(services.InvalidMerge):
        services.merge_topics(session, staff, published, published, "same", utcnow())
    moved = services.merge_topics(session, staff, published, target, "Same question", utcnow())
    session.commit()
    assert moved == 1
    supporters = set(
        session.scalars(sa.select(TopicSupport.user_id).where(TopicSupport.topic_id == target.id))
    )
    assert supporters == {both.id, only_source.id}
    assert (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(TopicSupport)
            .where(TopicSupport.topic_id == published.id)
        )
        == 0
    )
    session.refresh(published)
    session.refresh(target)
    assert (published.status, published.merged_into_id) == (TopicStatus.MERGED, target.id)
    assert (published.support_count, target.support_count) == (0, 2)
    assert services.reconcile_support_counts(session) == []
    notified = set(
        session.scalars(
            sa.select(OutboxMessage.user_id).where(OutboxMessage.kind == "topic_merged")
        )
    )
    assert notified == {people["author"].id, both.id, only_source.id}


def test_reconcile_finds_and_fixes_a_drifted_counter(session, people, published):
    services.support_topic(session, people["participant"], published.id, utcnow())
    session.execute(sa.update(Topic).where(Topic.id == published.id).values(support_count=7))
    assert services.reconcile_support_counts(session) == [(published.id, 7, 1)]
    services.reconcile_support_counts(session, fix=True)
    assert services.reconcile_support_counts(session) == []


def test_comment_edit_window(session, people, published):
    author = people["participant"]
    posted_at = utcnow()
    comment = services.add_comment(session, author, published, "First thought", posted_at)
    services.edit_comment(
        session, author, comment, "Better thought", posted_at + timedelta(minutes=5), 15
    )
    assert comment.body == "Better thought" and comment.edited_at is not None
    with pytest.raises(services.EditWindowClosed):
        services.edit_comment(
            session, author, comment, "Late", posted_at + timedelta(minutes=16), 15
        )
    with pytest.raises(services.NotAllowed):
        services.edit_comment(session, people["clinician"], comment, "Not mine", posted_at, 15)


def test_reports_hide_after_threshold_once_per_person_and_staff_resolve(session, people, published):
    comment = services.add_comment(
        session, people["participant"], published, "Rude words", utcnow()
    )
    # Accounts a week old weigh 1 each (see test_report_weights.py for the weights).
    reporters = [people["unverified_clinician"], people["organisation"], people["author"]]
    week_later = utcnow() + timedelta(days=8)
    hidden = [
        services.report_content(session, r, published, comment, "Offensive", week_later, 2)
        for r in reporters[:2]
    ]
    assert hidden == [False, True] and comment.is_hidden
    with pytest.raises(services.AlreadyReported):
        services.report_content(session, reporters[0], published, comment, "Again", week_later, 2)
    assert (
        services.resolve_reports(session, people["staff"], published, comment, False, utcnow()) == 2
    )
    assert not comment.is_hidden
    assert (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(ContentReport)
            .where(ContentReport.status == "open")
        )
        == 0
    )


def test_similar_titles_find_public_topics_only(session, people, published):
    services.propose_topic(
        session, people["participant"], details("Vitamin D supplements for children"), utcnow(), 3
    )
    found = queries.similar_topics(session, "Could vitamin D slow progression?")
    assert [t.id for t in found] == [published.id]
    assert queries.similar_topics(session, "the of and") == []


def test_public_list_conditions_name_exactly_the_public_statuses():
    from engage.topics.models import PUBLIC_LIST_PREDICATE, PUBLIC_STATUSES
    from engage.topics.queries import PUBLIC_LIST_CONDITION

    for text in (PUBLIC_LIST_PREDICATE, PUBLIC_LIST_CONDITION):
        named = set(re.findall(r"'(\w+)'", text))
        assert named == {s.value for s in PUBLIC_STATUSES}
        assert "is_hidden = false" in text


@pytest.mark.parametrize("action", ["report", "support"])
def test_a_savepointed_write_is_undone_when_the_caller_rolls_back(app, people, published, action):
    """The report and support services insert inside a savepoint (a duplicate is refused
    without undoing the rest); the caller's rollback must still undo the whole change, also on
    SQLite, where a savepoint opened before any write used to commit on release."""
    fresh = Database.new_session(app)
    try:
        person = fresh.get(User, people["participant"].id)
        if action == "report":
            topic = fresh.get(Topic, published.id)
            services.report_content(fresh, person, topic, None, "Off topic", utcnow(), 3)
        else:
            services.support_topic(fresh, person, published.id, utcnow())
        fresh.rollback()
    finally:
        fresh.close()
    check = Database.new_session(app)
    try:
        reports = check.scalar(sa.select(sa.func.count()).select_from(ContentReport))
        supports = check.scalar(sa.select(sa.func.count()).select_from(TopicSupport))
    finally:
        check.close()
    assert (reports, supports) == (0, 0)
