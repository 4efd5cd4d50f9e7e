"""Topic pages through HTTP: browse, propose with duplicates, support, moderate, discuss."""

from __future__ import annotations

import re
import threading

import pytest
import sqlalchemy as sa

from engage import delivery
from engage.accounts.models import Role, User
from engage.app import create_app
from engage.db import Database
from engage.timeutil import utcnow
from engage.topics import services
from engage.topics.models import (
    Topic,
    TopicCategory,
    TopicComment,
    TopicStatus,
    TopicSupport,
)
from tests.conftest import post_form, sign_in
from tests.topics.conftest import tally_rows

TOPIC_FORM = {
    "title": "Does vitamin D slow MS progression?",
    "question": "Does daily vitamin D slow disability progression in relapsing MS?",
    "rationale": "Many of us take it *without* knowing.\n\n- cheap\n- safe",
    "category": "lifestyle",
    "reference_links": "https://example.org/a\nhttps://example.org/b",
}


def _count(session, model, *where) -> int:
    session.rollback()
    return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_anonymous_visitors_read_published_topics_and_tallies_but_not_who(
    client, make_topic, make_user, session
):
    topic = make_topic(title="Is exercise good for fatigue in MS?")
    private = make_topic(status=TopicStatus.SUBMITTED, title="A private submitted topic")
    supporter = make_user(Role.CLINICIAN, clinician_verified=True, display_name="Dr Secret Voter")
    services.support_topic(session, session.get(User, supporter.id), topic.id, utcnow())
    session.commit()
    page = client.get("/topics").get_data(as_text=True)
    assert "Is exercise good for fatigue in MS?" in page
    assert "A private submitted topic" not in page
    detail = client.get(f"/topics/{topic.id}").get_data(as_text=True)
    assert tally_rows(detail)["Verified healthcare professionals"] == 1  # the chart's table
    assert "1 support in all" in detail
    assert "Dr Secret Voter" not in detail and "Dr Secret Voter" not in page
    assert client.get(f"/topics/{private.id}").status_code == 404


def test_propose_shows_possible_duplicates_before_submitting(client, make_topic, as_role, session):
    existing = make_topic(title="Does vitamin D slow MS progression in adults?")
    author = as_role(Role.PARTICIPANT)
    first = post_form(client, "/topics/new", TOPIC_FORM)
    page = first.get_data(as_text=True)
    assert first.status_code == 200 and "Possible duplicates" in page
    assert f'/topics/{existing.id}"' in page
    assert 'value="Does vitamin D slow MS progression?"' in page  # what was typed is kept
    assert _count(session, Topic, Topic.author_id == author.id) == 0
    second = post_form(client, "/topics/new", {**TOPIC_FORM, "not_duplicate": "y"})
    assert second.status_code == 302
    topic = session.scalar(sa.select(Topic).where(Topic.author_id == author.id))
    assert topic.status == TopicStatus.SUBMITTED
    assert topic.reference_links == ["https://example.org/a", "https://example.org/b"]
    detail = client.get(f"/topics/{topic.id}").get_data(as_text=True)
    assert "<em>without</em>" in detail and "<li>cheap</li>" in detail


def test_similar_endpoint_returns_public_topics_as_json(client, make_topic):
    topic = make_topic(title="Vitamin D supplements and relapses")
    make_topic(status=TopicStatus.SUBMITTED, title="Vitamin D supplements private")
    data = client.get("/topics/similar?title=vitamin supplements").get_json()
    assert [t["id"] for t in data["topics"]] == [topic.id]


def test_rationale_html_is_sanitised(client, as_role, session):
    as_role(Role.ORGANISATION)
    hostile = {
        **TOPIC_FORM,
        "title": "<script>alert(1)</script> unique title here",
        "rationale": "<img src=x onerror=alert(1)><script>alert(2)</script>"
        '[link](javascript:alert(3)) [ok](https://ok.example) <b onclick="x">b</b>',
    }
    response = post_form(client, "/topics/new", hostile)
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "<script>alert" not in page and "onerror" not in page and "onclick" not in page
    assert "javascript:" not in page and "<img" not in page
    assert '<a href="https://ok.example" rel="nofollow noopener">ok</a>' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; unique title here" in page


def test_topic_form_errors_are_shown_next_to_fields(client, as_role):
    as_role(Role.PARTICIPANT)
    response = post_form(
        client,
        "/topics/new",
        {
            "title": "short",
            "question": "",
            "rationale": "x",
            "category": "astrology",
            "reference_links": "javascript:alert(1)",
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    for message in (
        "Use between 10 and 150 characters.",
        "Write the question you would like research to answer.",
        "Choose the category that fits best.",
        "is not a web address starting with https://",
    ):
        assert message in page


def test_pending_limit_is_shown(client, as_role, app, session):
    app.config["TOPICS_MAX_PENDING"] = 1
    as_role(Role.PARTICIPANT)
    first = post_form(client, "/topics/new", {**TOPIC_FORM, "title": "First unique question xyz"})
    assert first.status_code == 302
    second = post_form(client, "/topics/new", {**TOPIC_FORM, "title": "Second unique question abc"})
    assert second.status_code == 400
    assert "You already have 1 topics awaiting moderation" in second.get_data(as_text=True)


def test_support_and_withdraw_through_the_page(client, make_topic, as_role, session):
    topic = make_topic()
    user = as_role(Role.PARTICIPANT)
    response = post_form(client, f"/topics/{topic.id}/support")
    assert response.status_code == 303
    page = client.get(f"/topics/{topic.id}").get_data(as_text=True)
    assert "Thank you for your support." in page and "You support this topic." in page
    assert "Withdraw my support" in page
    again = post_form(client, f"/topics/{topic.id}/support")
    assert again.status_code == 303
    assert "You already support this topic." in client.get(f"/topics/{topic.id}").get_data(
        as_text=True
    )
    assert _count(session, TopicSupport, TopicSupport.user_id == user.id) == 1
    listing = client.get("/topics").get_data(as_text=True)
    assert "You support this" in listing and "topic-supported" in listing
    assert post_form(client, f"/topics/{topic.id}/support/withdraw").status_code == 303
    assert _count(session, TopicSupport, TopicSupport.user_id == user.id) == 0
    missing = post_form(client, f"/topics/{topic.id}/support/withdraw")
    assert missing.status_code == 303
    assert "You do not support this topic." in client.get(f"/topics/{topic.id}").get_data(
        as_text=True
    )


@pytest.mark.parametrize(
    "status", [TopicStatus.REJECTED, TopicStatus.ADOPTED, TopicStatus.SUBMITTED]
)
def test_supporting_a_closed_topic_is_refused(client, make_topic, as_role, session, status):
    topic = make_topic(status=status)
    as_role(Role.PARTICIPANT)
    response = post_form(client, f"/topics/{topic.id}/support")
    assert response.status_code == 303
    assert _count(session, TopicSupport) == 0


def test_custodians_and_staff_cannot_support(client, make_topic, as_role):
    topic = make_topic()
    as_role(Role.CUSTODIAN)
    assert post_form(client, f"/topics/{topic.id}/support").status_code == 403


def test_concurrent_duplicate_supports_leave_exactly_one(app, make_topic, make_user, session):
    topic = make_topic()
    user = make_user(Role.PARTICIPANT)
    clients = [app.test_client() for _ in range(6)]
    for c in clients:
        sign_in(c, user)
    tokens = [
        re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").get_data(as_text=True))[1]
        for c in clients
    ]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def press(c, token):
        barrier.wait()
        statuses.append(
            c.post(f"/topics/{topic.id}/support", data={"csrf_token": token}).status_code
        )

    threads = [
        threading.Thread(target=press, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [303] * len(clients)
    assert _count(session, TopicSupport, TopicSupport.topic_id == topic.id) == 1
    assert services.reconcile_support_counts(session) == []


def test_support_budget_holds_under_concurrent_requests(app, make_topic, make_user, session):
    topics = [make_topic(title=f"Budget topic number {n}") for n in range(5)]
    staff = session.get(User, make_user(Role.STAFF).id)
    services.set_support_budget(session, staff, 2, utcnow())
    session.commit()
    user = make_user(Role.PARTICIPANT)
    clients = [app.test_client() for _ in topics]
    for c in clients:
        sign_in(c, user)
    tokens = [
        re.search(r'name="csrf-token" content="([^"]+)"', c.get("/").get_data(as_text=True))[1]
        for c in clients
    ]
    barrier = threading.Barrier(len(clients))

    def press(c, token, topic):
        barrier.wait()
        c.post(f"/topics/{topic.id}/support", data={"csrf_token": token})

    threads = [
        threading.Thread(target=press, args=args)
        for args in zip(clients, tokens, topics, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert _count(session, TopicSupport, TopicSupport.user_id == user.id) == 2


def test_list_filters_search_sort_and_paginate(client, make_topic, session):
    a = make_topic(title="Fatigue and sleep quality", category=TopicCategory.SYMPTOMS)
    b = make_topic(title="Diet and relapse rates", category=TopicCategory.LIFESTYLE)
    c = make_topic(
        title="Stem cell transplants",
        category=TopicCategory.TREATMENTS,
        status=TopicStatus.SHORTLISTED,
    )
    symptoms = client.get("/topics?category=symptoms").get_data(as_text=True)
    assert a.title in symptoms and b.title not in symptoms
    shortlisted = client.get("/topics?status=shortlisted").get_data(as_text=True)
    assert c.title in shortlisted and a.title not in shortlisted
    search = client.get("/topics?q=RELAPSE").get_data(as_text=True)
    assert b.title in search and a.title not in search
    newest = client.get("/topics?sort=newest").get_data(as_text=True)
    assert newest.index(c.title) < newest.index(b.title) < newest.index(a.title)
    first = client.get("/topics?sort=random").get_data(as_text=True)
    again = client.get("/topics?sort=random").get_data(as_text=True)
    order = lambda page: [t for t in (a.title, b.title, c.title) if t in page]  # noqa: E731
    assert len(order(first)) == len(order(again)) == 3  # random order lists every topic
    assert sorted(order(first), key=first.index) == sorted(order(again), key=again.index)
    paged = client.get("/topics?per_page=10&page=1").get_data(as_text=True)
    assert "3 topics found." in paged
    for bad in ("/topics?page=abc", "/topics?category=nope&status=zzz&sort=x", "/topics?page=-3"):
        assert client.get(bad).status_code == 200


def test_list_page_issues_a_bounded_number_of_statements(app, client, make_topic, as_role, session):
    for n in range(55):
        make_topic(title=f"Bounded statement topic {n}")
    user = as_role(Role.PARTICIPANT)
    for topic_id in session.scalars(sa.select(Topic.id).limit(30)):
        services.support_topic(session, session.get(User, user.id), topic_id, utcnow())
    session.commit()
    engine = Database.engine(app)
    counts = {}
    for per_page in (10, 20, 50):
        statements: list[str] = []

        def listener(*args, _seen=statements):
            _seen.append(args[2])

        sa.event.listen(engine, "before_cursor_execute", listener)
        try:
            assert client.get(f"/topics?per_page={per_page}").status_code == 200
        finally:
            sa.event.remove(engine, "before_cursor_execute", listener)
        counts[per_page] = len(statements)
    # user load + count + page + tallies + the viewer's supports, whatever the page size
    assert counts[10] == counts[20] == counts[50] == 5, counts


def test_staff_moderate_publish_return_reject_and_notify(
    client, as_role, make_user, app, session, mailbox
):
    author = make_user(Role.PARTICIPANT)
    db = Database.new_session(app)
    topic = services.propose_topic(
        db,
        db.get(User, author.id),
        services.TopicDetails(
            title="Cannabis for spasticity?",
            question="Does it help?",
            rationale="Many ask.",
            category=TopicCategory.SYMPTOMS,
        ),
        utcnow(),
        3,
    )
    db.commit()
    db.close()
    as_role(Role.STAFF)
    queue = client.get("/topics/moderation").get_data(as_text=True)
    assert "Cannabis for spasticity?" in queue
    no_reason = post_form(client, f"/topics/{topic.id}/moderate", {"status": "returned"})
    assert no_reason.status_code == 400  # the page again, the error at the reason box
    assert (
        '<a href="#moderate-reason">Reason (required when returning or rejecting; the author '
        "reads it): Give a reason the author can read.</a>" in no_reason.get_data(as_text=True)
    )
    assert _count(session, Topic, Topic.status == TopicStatus.RETURNED) == 0
    assert (
        post_form(client, f"/topics/{topic.id}/moderate", {"status": "published"}).status_code
        == 303
    )
    not_offered = post_form(client, f"/topics/{topic.id}/moderate", {"status": "completed"})
    assert not_offered.status_code == 400  # not allowed from published: the page again
    assert "Please correct the following" in not_offered.get_data(as_text=True)
    session.rollback()
    assert session.get(Topic, topic.id).status == TopicStatus.PUBLISHED
    report = delivery.deliver(app)
    assert (report.sent, report.failed) == (1, 0)
    message = mailbox.last_to(author.email)
    assert message.subject == "Your topic: open for support"
    assert f"http://engage.test/topics/{topic.id}" in message.text
    again = delivery.deliver(app)
    assert (again.sent, again.failed) == (0, 0)
    assert len(mailbox.to(author.email)) == 1


def test_merge_through_the_page(client, as_role, make_topic, make_user, session):
    source, target = make_topic(title="Source topic one"), make_topic(title="Target topic two")
    supporter = session.get(User, make_user(Role.PARTICIPANT).id)
    services.support_topic(session, supporter, source.id, utcnow())
    session.commit()
    as_role(Role.STAFF)
    response = post_form(
        client, f"/topics/{source.id}/merge", {"target_id": target.id, "reason": "Same question"}
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/topics/{target.id}#support")
    session.rollback()
    assert session.get(Topic, source.id).status == TopicStatus.MERGED
    assert _count(session, TopicSupport, TopicSupport.topic_id == target.id) == 1
    bad = post_form(client, f"/topics/{target.id}/merge", {"target_id": 99999, "reason": "x"})
    assert bad.status_code == 303
    assert session.get(Topic, target.id).status == TopicStatus.PUBLISHED


def test_comments_edit_and_reports_hide_until_staff_decide(
    app, client, make_topic, make_user, session
):
    # Two brand-new accounts weigh half each (see test_report_weights.py).
    app.config["TOPICS_REPORT_HIDE_THRESHOLD"] = 1
    topic = make_topic()
    writer = make_user(Role.CLINICIAN, display_name="Commenter")
    sign_in(client, writer)
    assert (
        post_form(
            client, f"/topics/{topic.id}/comments", {"body": "I see this *often*."}
        ).status_code
        == 303
    )
    comment = session.scalar(sa.select(TopicComment))
    edit = post_form(client, f"/topics/comments/{comment.id}/edit", {"body": "Edited text"})
    assert edit.status_code == 302
    page = client.get(f"/topics/{topic.id}").get_data(as_text=True)
    assert "Edited text" in page and "edited" in page
    for n in range(2):
        reporter_client = app.test_client()
        sign_in(reporter_client, make_user(Role.PARTICIPANT))
        assert (
            post_form(
                reporter_client, f"/topics/comments/{comment.id}/report", {"reason": f"spam {n}"}
            ).status_code
            == 303
        )
    anonymous = app.test_client().get(f"/topics/{topic.id}").get_data(as_text=True)
    assert "Edited text" not in anonymous
    staff_client = app.test_client()
    sign_in(staff_client, make_user(Role.STAFF))
    queue = staff_client.get("/topics/moderation").get_data(as_text=True)
    assert "spam 0" in queue and "spam 1" in queue
    assert (
        post_form(
            staff_client,
            f"/topics/{topic.id}/reports",
            {"comment_id": comment.id, "decision": "dismiss"},
        ).status_code
        == 303
    )
    assert "Edited text" in app.test_client().get(f"/topics/{topic.id}").get_data(as_text=True)


def test_my_topics_shows_status_history(client, as_role, session, make_user):
    author = as_role(Role.ORGANISATION)
    post_form(client, "/topics/new", {**TOPIC_FORM, "title": "Peer support groups and wellbeing"})
    page = client.get("/topics/mine").get_data(as_text=True)
    assert "Peer support groups and wellbeing" in page and "Awaiting moderation" in page
    topic = session.scalar(sa.select(Topic).where(Topic.author_id == author.id))
    assert post_form(client, f"/topics/{topic.id}/withdraw").status_code == 302
    assert "Withdrawn by the author" in client.get("/topics/mine").get_data(as_text=True)


def test_support_budget_setting_page(client, as_role, session):
    as_role(Role.STAFF)
    assert post_form(client, "/topics/settings", {"budget": "3"}).status_code == 303
    assert services.support_budget(session) == 3
    assert post_form(client, "/topics/settings", {"budget": "-1"}).status_code == 303
    session.rollback()
    assert services.support_budget(session) == 3
    assert post_form(client, "/topics/settings", {"budget": ""}).status_code == 303
    session.rollback()
    assert services.support_budget(session) is None


def test_reconcile_command(runner, make_topic, make_user, session):
    topic = make_topic()
    services.support_topic(
        session, session.get(User, make_user(Role.PARTICIPANT).id), topic.id, utcnow()
    )
    session.commit()
    ok = runner.invoke(args=["topics", "reconcile"])
    assert ok.exit_code == 0 and "All support counters equal their support rows." in ok.output
    session.execute(sa.update(Topic).values(support_count=9))
    session.commit()
    bad = runner.invoke(args=["topics", "reconcile"])
    assert bad.exit_code == 1 and f"topic {topic.id}: counter 9, support rows 1" in bad.output
    assert runner.invoke(args=["topics", "reconcile", "--fix"]).exit_code == 0
    assert runner.invoke(args=["topics", "reconcile"]).exit_code == 0


def test_proposing_is_rate_limited(database_url, make_user):
    """Topic submissions are limited (5 per hour by default); viewing the form is not."""
    limited = create_app(
        {
            "ENGAGE_CONFIG": "testing",
            "DATABASE_URL": database_url,
            "RATELIMIT_ENABLED": True,
            "TOPICS_MAX_PENDING": 100,
        }
    )
    client = limited.test_client()
    try:
        sign_in(client, make_user(Role.ORGANISATION))
        statuses = [
            post_form(
                client, "/topics/new", {**TOPIC_FORM, "title": f"Rate limited question {n}"}
            ).status_code
            for n in range(7)
        ]
        form_status = client.get("/topics/new").status_code
    finally:
        Database.engine(limited).dispose()
    assert statuses == [302] * 5 + [429, 429]
    assert form_status == 200
