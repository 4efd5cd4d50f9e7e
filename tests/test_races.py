"""Races found under load, replayed with real threads against a real PostgreSQL.

Each test starts its requests (or service calls) together behind a ``threading.Barrier``;
every thread has its own test client or its own session, so each is a separate transaction
on its own connection. So that the unlucky interleaving happens on every run instead of now
and then, a test may also slow one step down in one thread (``slowed``: a wait of at most a
second) or make the concurrent calls of a service start together (``meeting_at``), after each
request has read what it reads before the call. Neither changes what the code does. Every
test ends with the checks of ``engage audit verify`` and ``engage topics reconcile``.

SQLite has one writer at a time and cannot show these races: the module runs on PostgreSQL
only (set ``TEST_DATABASE_URL``).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from engage.accounts import services as account_services
from engage.accounts.models import Role, User
from engage.app import create_app
from engage.consent import decisions as consent_decisions
from engage.consent import queries as consent_queries
from engage.consent import versions as consent_versions
from engage.consent.ledger import verify_chains, verify_current_state
from engage.consent.models import ConsentEvent, ConsentFormVersion, Decision
from engage.db import Database, get_session
from engage.registries.models import RegistryEnrolment
from engage.timeutil import utcnow
from engage.topics import services as topic_services
from engage.topics import supports as topic_supports
from engage.topics.models import Topic, TopicCategory, TopicStatus, TopicStatusChange, TopicSupport
from tests.conftest import CSRF_META, sign_in
from tests.consent_support import (
    STATE_FIELD,
    VERSION_FIELD,
    join,
    publish,
    reworded,
)

# Only the PostgreSQL instance of the shared, migrated test database.
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session"),
]

TIMEOUT = 30  # seconds a thread may take before the test gives up on it
PAUSE = 1.0  # seconds a deliberately slowed step waits for the other side at most
MEET_TIMEOUT = 5.0  # seconds calls wait for each other at their start at most


# Helpers ---------------------------------------------------------------------------------------
def run_together(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released together by a barrier; return what each returned.

    An exception raised in a thread is returned in its place (so a test can assert on it) and
    never escapes the thread.
    """
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(TIMEOUT)
            results[index] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            results[index] = exc

    threads = [
        threading.Thread(target=run, args=(index, call), name=f"call-{index}")
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "a thread is stuck (a deadlock?)"
    return results


def no_exceptions(results: list[Any]) -> list[Any]:
    """``results``, after failing the test on any exception a thread raised."""
    errors = [result for result in results if isinstance(result, BaseException)]
    assert not errors, f"threads raised: {errors!r}"
    return results


@contextmanager
def slowed(
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    name: str,
    *,
    thread_names: set[str],
    reached: threading.Event,
    until: threading.Event,
) -> Iterator[None]:
    """Make ``module.name`` pause after it returns, in the threads named ``thread_names``:
    it sets ``reached`` and waits for ``until`` (at most ``PAUSE`` seconds).

    Other threads are not slowed. The function still does exactly what it did.
    """
    original = getattr(module, name)

    def paused(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if threading.current_thread().name in thread_names:
            reached.set()
            until.wait(PAUSE)
        return result

    monkeypatch.setattr(module, name, paused)
    yield


@contextmanager
def meeting_at(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, parties: int
) -> Iterator[None]:
    """Make the first ``parties`` calls of ``module.name`` wait for each other at its start,
    so each request has done all it does before the call (reading the topic, the form) when
    any of them goes on. A call that waits more than ``MEET_TIMEOUT`` seconds goes on anyway."""
    original = getattr(module, name)
    barrier = threading.Barrier(parties)

    def together(*args: Any, **kwargs: Any) -> Any:
        with suppress(threading.BrokenBarrierError):
            barrier.wait(MEET_TIMEOUT)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, together)
    yield


def named_thread_call(name: str, call: Callable[[], Any]) -> Callable[[], Any]:
    """``call``, run under the thread name ``name`` (what ``slowed`` looks at)."""

    def run() -> Any:
        threading.current_thread().name = name
        return call()

    return run


def signed_in_client(app: Flask, user: User) -> tuple[FlaskClient, str]:
    """A new client signed in as ``user``, and its CSRF token."""
    client = app.test_client()
    sign_in(client, user)
    token = CSRF_META.search(client.get("/").get_data(as_text=True)).group(1)
    return client, token


def flashed(client: FlaskClient, response: Any) -> str:
    """The page a redirect leads to (where the flashed message shows)."""
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    return client.get(response.headers["Location"]).get_data(as_text=True)


def assert_ledgers_clean(app: Flask) -> None:
    """What ``engage audit verify`` and ``engage topics reconcile`` check finds no problem."""
    session = Database.new_session(app)
    try:
        _checked, problems = verify_chains(session)
        problems += verify_current_state(session)
        assert [str(problem) for problem in problems] == []
        assert topic_services.reconcile_support_counts(session) == []
    finally:
        session.close()


def count(app: Flask, model: Any, *where: Any) -> int:
    """How many rows of ``model`` match ``where`` now."""
    session = Database.new_session(app)
    try:
        return session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0
    finally:
        session.close()


@pytest.fixture
def staff(make_user) -> User:
    """A staff account."""
    return make_user(Role.STAFF)


@pytest.fixture
def make_topic(app: Flask, staff: User, make_user):
    """A topic by a new participant (or ``author``), moved to ``status`` by staff."""

    def make(
        status: TopicStatus = TopicStatus.PUBLISHED,
        title: str = "Does vitamin D slow MS progression?",
        author: User | None = None,
    ) -> Topic:
        author = author or make_user(Role.PARTICIPANT)
        session = Database.new_session(app)
        try:
            topic = topic_services.propose_topic(
                session,
                session.get(User, author.id),
                topic_services.TopicDetails(
                    title=title,
                    question=f"{title} A question for research.",
                    rationale="Many of us want to know.",
                    category=TopicCategory.LIFESTYLE,
                ),
                utcnow(),
                100,
            )
            path = {
                TopicStatus.SUBMITTED: [],
                TopicStatus.PUBLISHED: [TopicStatus.PUBLISHED],
                TopicStatus.RETURNED: [TopicStatus.RETURNED],
            }[status]
            for step in path:
                topic_services.change_status(
                    session, session.get(User, staff.id), topic, step, utcnow(), reason="Why."
                )
            session.commit()
            return topic
        finally:
            session.close()

    return make


# (a) Consent decisions racing a new form version -------------------------------------------------
@pytest.fixture
def consent_setup(app: Flask, staff: User, make_user):
    """Version 1 published; a participant who allows genomic data on it, signed in on a
    client whose dashboard still shows version 1; and a draft version 2 that rewords the
    genomic scope, ready to publish."""
    session = Database.new_session(app)
    try:
        first = publish(session, staff)
        participant = make_user(Role.PARTICIPANT)
        join(app, session, participant, GENOMIC_DATA=True)
        client, _token = signed_in_client(app, participant)
        page = client.get("/consent").get_data(as_text=True)
        page_state = {
            "version_id": VERSION_FIELD.search(page).group(1),
            "state": STATE_FIELD.search(page).group(1),
            "csrf_token": CSRF_META.search(page).group(1),
        }
        now = utcnow()
        staff_row = session.get(User, staff.id)
        draft = consent_versions.create_draft(session, staff_row, _details(first), now)
        genomic = next(
            scope
            for scope in consent_queries.scopes_of(session, draft.id)
            if scope.code == "GENOMIC_DATA"
        )
        changed = next(s for s in reworded("GENOMIC_DATA") if s.code == "GENOMIC_DATA")
        consent_versions.update_scope(session, staff_row, genomic, changed, now)
        session.commit()
        return {
            "participant": participant,
            "client": client,
            "page_state": page_state,
            "draft_id": draft.id,
        }
    finally:
        session.close()


def _details(version: ConsentFormVersion) -> consent_versions.VersionDetails:
    """Version 2's texts: version 1's, with a line added to the full text."""
    return consent_versions.VersionDetails(
        title=version.title,
        body=version.body + "\n\nVersion 2.",
        summary=version.summary,
        ethics_reference=version.ethics_reference,
        language=version.language,
    )


def _publish_draft(
    app: Flask, staff: User, draft_id: int, *, before_commit: Callable[[], Any] | None = None
) -> None:
    """Staff publish the draft in a session of their own (``before_commit`` runs just before
    the commit)."""
    session = Database.new_session(app)
    try:
        consent_versions.publish_version(
            session,
            session.get(User, staff.id),
            session.get(ConsentFormVersion, draft_id),
            justification="Tested wording.",
            now=utcnow(),
            max_grade=8,
        )
        if before_commit is not None:
            before_commit()
        session.commit()
    finally:
        session.close()


def _allow_imaging(setup: dict[str, Any]):
    """The participant presses "allow" for imaging data on the version 1 dashboard."""
    return setup["client"].post(
        "/consent/choice",
        data={**setup["page_state"], "scope": "IMAGING_DATA", "decision": "permit"},
    )


def _consent_now(app: Flask, participant: User) -> dict[str, Any]:
    """What the consent query API answers about ``participant`` now."""
    session = Database.new_session(app)
    try:
        return {
            "genomic_permitted": consent_queries.permits(session, participant.id, ["GENOMIC_DATA"]),
            "imaging_permitted": consent_queries.permits(session, participant.id, ["IMAGING_DATA"]),
            "genomic_count": consent_queries.count_permitting(session, ["GENOMIC_DATA"]),
            "version": consent_queries.current_version(session).number,
        }
    finally:
        session.close()


def test_a_consent_change_racing_a_new_version_does_not_restore_a_reworded_permission(
    app, staff, consent_setup, monkeypatch
):
    """The change read version 1 just before staff published version 2: it must not write a
    mask computed from version 1 over the one publication cleared."""
    version_read, published = threading.Event(), threading.Event()

    def publish_after_the_change_read_the_version() -> None:
        version_read.wait(TIMEOUT)
        _publish_draft(app, staff, consent_setup["draft_id"])
        published.set()

    # The change pauses once it has read and checked the current version and read the person's
    # ledger head (before it reads their choices and writes anything), until the publication
    # is in.
    with slowed(
        monkeypatch,
        consent_decisions,
        "ledger_head",
        thread_names={"decision"},
        reached=version_read,
        until=published,
    ):
        change, _ = no_exceptions(
            run_together(
                named_thread_call("decision", lambda: _allow_imaging(consent_setup)),
                publish_after_the_change_read_the_version,
            )
        )

    # The change came first, so it was taken (on version 1); then version 2 cleared the
    # reworded scope: nobody allows genomic data on its new wording until they decide.
    assert change.status_code == 303
    state = _consent_now(app, consent_setup["participant"])
    assert state["version"] == 2
    assert state["imaging_permitted"] is True
    assert state["genomic_permitted"] is False
    assert state["genomic_count"] == 0
    assert_ledgers_clean(app)


def test_a_consent_change_sent_while_a_new_version_is_being_published_is_refused(
    app, staff, consent_setup
):
    """The change arrives while the publication is still in progress: it waits, then is
    refused with the usual "replaced by version 2" message, and changes nothing."""
    publishing = threading.Event()

    def publish_slowly() -> None:
        # Everything is written but not committed while the change arrives.
        _publish_draft(
            app,
            staff,
            consent_setup["draft_id"],
            before_commit=lambda: (publishing.set(), time.sleep(PAUSE)),
        )

    def change_during_publication():
        publishing.wait(TIMEOUT)
        return _allow_imaging(consent_setup)

    _, change = no_exceptions(run_together(publish_slowly, change_during_publication))

    page = change.get_data(as_text=True)
    assert change.status_code == 409, page
    assert "has been replaced by version 2" in page
    state = _consent_now(app, consent_setup["participant"])
    assert state == {
        "genomic_permitted": False,
        "imaging_permitted": False,
        "genomic_count": 0,
        "version": 2,
    }
    assert (
        count(
            app,
            ConsentEvent,
            ConsentEvent.scope_code == "IMAGING_DATA",
            ConsentEvent.decision == Decision.PERMIT,
        )
        == 0
    )
    assert_ledgers_clean(app)


def test_a_double_click_on_a_consent_button_says_saved_not_conflict(app, make_user, staff):
    """Two identical clicks from one page: one records the change, the other is told it is
    saved (not a red "your consent changed" error), and the change is recorded once."""
    session = Database.new_session(app)
    try:
        publish(session, staff)
        participant = make_user(Role.PARTICIPANT)
        join(app, session, participant)
    finally:
        session.close()
    clients = [signed_in_client(app, participant) for _ in range(2)]
    page = clients[0][0].get("/consent").get_data(as_text=True)
    data = {
        "version_id": VERSION_FIELD.search(page).group(1),
        "state": STATE_FIELD.search(page).group(1),
        "scope": "GENOMIC_DATA",
        "decision": "permit",
    }
    responses = no_exceptions(
        run_together(
            *(
                lambda c=c, token=token: c.post(
                    "/consent/choice", data={**data, "csrf_token": token}
                )
                for c, token in clients
            )
        )
    )
    assert [r.status_code for r in responses] == [303, 303], [
        r.get_data(as_text=True)[:2000] for r in responses
    ]
    for (c, _token), response in zip(clients, responses, strict=True):
        page = flashed(c, response)
        assert "Saved." in page
        assert "Your consent changed since this page was opened" not in page
    assert (
        count(
            app,
            ConsentEvent,
            ConsentEvent.user_id == participant.id,
            ConsentEvent.scope_code == "GENOMIC_DATA",
            ConsentEvent.decision == Decision.PERMIT,
        )
        == 1
    )
    assert_ledgers_clean(app)


# (b) A support arriving while staff merge its topic -----------------------------------------------
def test_a_support_racing_a_merge_is_moved_with_it_or_refused(
    app, staff, make_topic, make_user, monkeypatch
):
    """Supports that were checked "open" just before the merge: each either lands before the
    merge (and moves to the target, where it can be withdrawn) or is refused; none is left
    on the merged topic."""
    source = make_topic(title="Fatigue and sleep in MS")
    target = make_topic(title="Sleep quality and fatigue in MS")
    supporters = [make_user(Role.PARTICIPANT) for _ in range(3)]
    clients = [signed_in_client(app, user) for user in supporters]
    staff_client, staff_token = signed_in_client(app, staff)
    support_checked, merged = threading.Event(), threading.Event()

    def support(c: FlaskClient, token: str):
        response = c.post(f"/topics/{source.id}/support", data={"csrf_token": token})
        return response, flashed(c, response)

    def merge_once_a_support_was_checked():
        support_checked.wait(TIMEOUT)
        response = staff_client.post(
            f"/topics/{source.id}/merge",
            data={"csrf_token": staff_token, "target_id": target.id, "reason": "Same question."},
        )
        merged.set()
        return response

    # Each support pauses after finding the topic open, until the merge is in.
    with slowed(
        monkeypatch,
        topic_supports,
        "_open_topic",
        thread_names={"supporter"},
        reached=support_checked,
        until=merged,
    ):
        *supports, merge = no_exceptions(
            run_together(
                *(
                    named_thread_call("supporter", lambda c=c, t=t: support(c, t))
                    for c, t in clients
                ),
                merge_once_a_support_was_checked,
            )
        )

    assert merge.status_code == 303
    assert count(app, TopicStatusChange, TopicStatusChange.to_status == TopicStatus.MERGED) == 1
    assert count(app, TopicSupport, TopicSupport.topic_id == source.id) == 0
    for user, (c, token), (response, page) in zip(supporters, clients, supports, strict=True):
        assert response.status_code == 303
        on_target = count(
            app, TopicSupport, TopicSupport.topic_id == target.id, TopicSupport.user_id == user.id
        )
        if "Thank you for your support." in page:
            # Acknowledged: it moved with the merge, and its owner can withdraw it there.
            assert on_target == 1
            withdrawn = c.post(f"/topics/{target.id}/support/withdraw", data={"csrf_token": token})
            assert "Your support is withdrawn." in flashed(c, withdrawn)
        else:
            assert "support is closed" in page, page
            assert on_target == 0
    assert_ledgers_clean(app)


# (c) One author's concurrent proposals ------------------------------------------------------------
TOPIC_FORM = {
    "question": "Does daily vitamin D slow disability progression in relapsing MS?",
    "rationale": "Many of us take it without knowing whether it helps.",
    "category": "lifestyle",
    "reference_links": "",
}


def test_ten_concurrent_proposals_respect_the_pending_limit(app, make_user, monkeypatch):
    author = make_user(Role.PARTICIPANT)
    limit = app.config["TOPICS_MAX_PENDING"]
    clients = [signed_in_client(app, author) for _ in range(10)]
    titles = [
        f"Question {word} about living with MS"
        for word in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    ]
    with meeting_at(monkeypatch, topic_services, "propose_topic", len(clients)):
        responses = no_exceptions(
            run_together(
                *(
                    lambda c=c, token=token, title=title: c.post(
                        "/topics/new", data={**TOPIC_FORM, "title": title, "csrf_token": token}
                    )
                    for (c, token), title in zip(clients, titles, strict=True)
                )
            )
        )
    accepted = [r for r in responses if r.status_code in (302, 303)]
    refused = [r for r in responses if r.status_code == 400]
    assert len(accepted) == limit
    assert len(refused) == len(responses) - limit
    for response in refused:
        assert f"You already have {limit} topics awaiting moderation" in response.get_data(
            as_text=True
        )
    assert (
        count(app, Topic, Topic.author_id == author.id, Topic.status == TopicStatus.SUBMITTED)
        == limit
    )
    assert_ledgers_clean(app)


def test_concurrent_resubmissions_and_proposals_respect_the_pending_limit(
    app, make_user, make_topic
):
    """Two returned topics sent again while two new ones are proposed, with one pending
    already: only as many as the limit allows are pending afterwards."""
    author = make_user(Role.PARTICIPANT)
    limit = app.config["TOPICS_MAX_PENDING"]
    make_topic(TopicStatus.SUBMITTED, title="Already pending question on MS", author=author)
    returned = [
        make_topic(TopicStatus.RETURNED, title=f"Returned question {n} on MS", author=author)
        for n in ("one", "two")
    ]
    clients = [signed_in_client(app, author) for _ in range(4)]
    requests = [
        (f"/topics/{topic.id}/edit", {"title": topic.title + " (clearer)"}) for topic in returned
    ] + [("/topics/new", {"title": f"New question {n} on MS"}) for n in ("one", "two")]
    responses = no_exceptions(
        run_together(
            *(
                lambda c=c, token=token, url=url, fields=fields: c.post(
                    url, data={**TOPIC_FORM, **fields, "csrf_token": token}
                )
                for (c, token), (url, fields) in zip(clients, requests, strict=True)
            )
        )
    )
    # Two are taken (a redirect to the topic), two refused (the form again, with why).
    assert sorted(r.status_code // 100 for r in responses) == [3, 3, 4, 4]
    for response in responses:
        if response.status_code == 400:
            assert f"You already have {limit} topics awaiting moderation" in response.get_data(
                as_text=True
            )
    assert (
        count(app, Topic, Topic.author_id == author.id, Topic.status == TopicStatus.SUBMITTED)
        == limit
    )
    assert_ledgers_clean(app)


def test_a_double_clicked_proposal_makes_one_topic_and_says_it_was_received(app, make_user):
    author = make_user(Role.PARTICIPANT)
    clients = [signed_in_client(app, author) for _ in range(2)]
    data = {**TOPIC_FORM, "title": "Does vitamin D slow MS progression?"}
    responses = no_exceptions(
        run_together(
            *(
                lambda c=c, token=token: c.post("/topics/new", data={**data, "csrf_token": token})
                for c, token in clients
            )
        )
    )
    assert all(r.status_code in (302, 303) for r in responses)
    assert count(app, Topic, Topic.author_id == author.id) == 1
    # Both answers lead to the one topic: one thanks, the other says it was already received.
    assert len({r.headers["Location"] for r in responses}) == 1
    pages = [flashed(c, r) for (c, _), r in zip(clients, responses, strict=True)]
    assert sum("Thank you: your topic is submitted." in page for page in pages) == 1
    assert sum("We already received this topic from you" in page for page in pages) == 1
    # Sent again later (within the window), it is still recognised as the same topic.
    again = clients[0][0].post("/topics/new", data={**data, "csrf_token": clients[0][1]})
    assert "We already received this topic from you" in flashed(clients[0][0], again)
    assert count(app, Topic, Topic.author_id == author.id) == 1
    assert_ledgers_clean(app)


# (d) Concurrent clicks on one status change -------------------------------------------------------
def _moderate(to_status: TopicStatus) -> Callable[[FlaskClient, str, Topic, Topic], Any]:
    def press(c: FlaskClient, token: str, topic: Topic, _other: Topic):
        return c.post(
            f"/topics/{topic.id}/moderate",
            data={"csrf_token": token, "status": to_status.value, "reason": ""},
        )

    return press


def _merge(c: FlaskClient, token: str, topic: Topic, other: Topic):
    return c.post(
        f"/topics/{topic.id}/merge",
        data={"csrf_token": token, "target_id": other.id, "reason": "Same question."},
    )


def _withdraw(c: FlaskClient, token: str, topic: Topic, _other: Topic):
    return c.post(f"/topics/{topic.id}/withdraw", data={"csrf_token": token})


@pytest.mark.parametrize(
    ("action", "start", "to_status", "by_author"),
    [
        ("publish", TopicStatus.SUBMITTED, TopicStatus.PUBLISHED, False),
        ("shortlist", TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED, False),
        ("merge", TopicStatus.PUBLISHED, TopicStatus.MERGED, False),
        ("withdraw", TopicStatus.SUBMITTED, TopicStatus.WITHDRAWN, True),
    ],
)
def test_five_concurrent_clicks_record_one_status_change(
    app, staff, make_user, make_topic, monkeypatch, action, start, to_status, by_author
):
    author = make_user(Role.PARTICIPANT)
    topic = make_topic(start, title="Exercise and relapse rates", author=author)
    other = make_topic(title="Exercise and the number of relapses")
    press = {
        "publish": _moderate(TopicStatus.PUBLISHED),
        "shortlist": _moderate(TopicStatus.SHORTLISTED),
        "merge": _merge,
        "withdraw": _withdraw,
    }[action]
    # Staff clicks come from five staff members: one account's authenticator codes are each
    # accepted once, so it cannot sign in five browsers within seconds.
    clients = [
        signed_in_client(app, author if by_author else make_user(Role.STAFF)) for _ in range(5)
    ]
    service = {"merge": "merge_topics", "withdraw": "withdraw_topic"}.get(action, "change_status")
    with meeting_at(monkeypatch, topic_services, service, len(clients)):
        responses = no_exceptions(
            run_together(
                *(lambda c=c, token=token: press(c, token, topic, other) for c, token in clients)
            )
        )
    # Every click is answered with a page (withdrawing leads to "My topics" with a 302).
    assert all(r.status_code in (302, 303) for r in responses), [r.status_code for r in responses]
    assert (
        count(
            app,
            TopicStatusChange,
            TopicStatusChange.topic_id == topic.id,
            TopicStatusChange.to_status == to_status,
        )
        == 1
    )
    pages = [flashed(c, r) for (c, _), r in zip(clients, responses, strict=True)]
    assert sum("nothing was changed" in page for page in pages) == 4, pages
    assert_ledgers_clean(app)


# (e) Identical concurrent saves of one's registries -----------------------------------------------
def test_identical_concurrent_registry_saves_all_answer_normally(
    app, make_user, make_registry, monkeypatch
):
    registries = [make_registry() for _ in range(3)]
    participant = make_user(Role.PARTICIPANT)
    clients = [signed_in_client(app, participant) for _ in range(3)]
    # Alternate between two choices, so every round inserts enrolments again.
    choices = [[registries[0].id, registries[1].id], [registries[2].id]]
    statuses: list[int] = []
    for round_number in range(6):
        chosen = choices[round_number % 2]
        with meeting_at(monkeypatch, account_services, "set_enrolments", len(clients)):
            responses = no_exceptions(
                run_together(
                    *(
                        lambda c=c, token=token, chosen=chosen: c.post(
                            "/account/registries",
                            data={"csrf_token": token, "registries": [str(i) for i in chosen]},
                        )
                        for c, token in clients
                    )
                )
            )
        statuses += [r.status_code for r in responses]
        session = Database.new_session(app)
        try:
            assert set(
                session.scalars(
                    sa.select(RegistryEnrolment.registry_id).where(
                        RegistryEnrolment.user_id == participant.id
                    )
                )
            ) == set(chosen)
        finally:
            session.close()
    assert statuses == [302] * len(statuses)
    assert_ledgers_clean(app)


def test_the_500_page_renders_after_a_failed_flush_while_signed_in(app, make_user, make_registry):
    """A request whose session failed (here: a duplicate row at flush) gets the 500 page,
    not Werkzeug's bare error: the page needs nothing from the failed session."""
    registry = make_registry()
    participant = make_user(Role.PARTICIPANT)

    def enrol_twice():
        from flask_login import current_user

        session = get_session()
        user = session.get(User, current_user.id)
        for _ in range(2):
            session.add(
                RegistryEnrolment(user_id=user.id, registry_id=registry.id, created_at=utcnow())
            )
        session.flush()
        return "not reached"

    app.add_url_rule("/test-enrol-twice", view_func=enrol_twice)
    client, _token = signed_in_client(app, participant)
    response = client.get("/test-enrol-twice")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Sorry, something went wrong on our side" in page
    # The session was rolled back: the next request of the same person works.
    assert client.get("/account/registries").status_code == 200
    assert_ledgers_clean(app)


# (g) The database is down -------------------------------------------------------------------------
def _closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_pages_answer_a_friendly_503_while_the_database_is_down(app, make_user, tmp_path):
    participant = make_user(Role.PARTICIPANT)
    signed_in, _token = signed_in_client(app, participant)
    down = create_app(
        {
            "ENGAGE_CONFIG": "testing",
            "DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/test",
            "MAIL_BACKEND": "file",
            "MAIL_OUTBOX_DIR": str(tmp_path / "mail"),
        }
    )
    anonymous = down.test_client()
    visitor = down.test_client()
    # The same signed session cookie, sent to the app whose database is unreachable.
    visitor.set_cookie("session", signed_in.get_cookie("session").value)
    cases = [
        (anonymous, "/topics"),
        (anonymous, "/topics/1"),
        (visitor, "/"),
        (visitor, "/account"),
        (visitor, "/consent"),
        (visitor, "/no-such-page"),
    ]
    try:
        for c, url in cases:
            response = c.get(url)
            page = response.get_data(as_text=True)
            assert response.status_code == 503, (url, page[:500])
            assert response.headers["Retry-After"].isdigit()
            assert "Engage is briefly unavailable" in page
            assert "Traceback" not in page
    finally:
        Database.engine(down).dispose()
    assert_ledgers_clean(app)
