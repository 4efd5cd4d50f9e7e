"""Reports hide an item only with enough trusted weight (finding 4): people with an unconfirmed
address cannot report at all, brand-new accounts weigh half, accounts whose identity staff have
checked weigh double, and staff still see every report."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import CustodianStatus, Role, User
from engage.timeutil import utcnow
from engage.topics import discussion, services
from engage.topics.models import ContentReport, Topic, TopicCategory, TopicStatus
from tests.conftest import post_form, sign_in

ESTABLISHED = timedelta(days=8)
THRESHOLD = 3


@pytest.fixture
def topic(app, session, make_user) -> Topic:
    """A published topic, in the test's session."""
    author = session.get(User, make_user(Role.PARTICIPANT).id)
    staff = session.get(User, make_user(Role.STAFF, two_factor=False).id)
    with app.app_context():
        topic = services.propose_topic(
            session,
            author,
            services.TopicDetails(
                title="Does vitamin D slow MS progression?",
                question="Does daily vitamin D slow disability progression in relapsing MS?",
                rationale="Many of us take it.",
                category=TopicCategory.LIFESTYLE,
            ),
            utcnow(),
            3,
        )
        services.change_status(session, staff, topic, TopicStatus.PUBLISHED, utcnow())
        session.commit()
    return topic


@pytest.fixture
def person(session, make_user):
    """An account in the test's session, ``age`` old: ``person(Role.CLINICIAN, age=..., ...)``."""

    def make(role: Role = Role.PARTICIPANT, *, age: timedelta = timedelta(0), **options) -> User:
        user = session.get(User, make_user(role, **options).id)
        user.created_at = utcnow() - age
        session.commit()
        return user

    return make


def _report(session, reporter: User, topic: Topic) -> bool:
    return services.report_content(
        session, reporter, topic, None, "Advertising", utcnow(), THRESHOLD
    )


def _report_count(session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(ContentReport))


def test_people_with_an_unconfirmed_address_cannot_report(session, person, topic):
    for _ in range(3):
        reporter = person(age=ESTABLISHED, email_verified=False)
        with pytest.raises(services.NotAllowed, match="confirm your email address"):
            _report(session, reporter, topic)
        session.rollback()
    assert _report_count(session) == 0
    assert not session.get(Topic, topic.id).is_hidden


def test_three_brand_new_accounts_do_not_hide_an_item(session, person, topic):
    reporters = [person() for _ in range(3)]
    hidden = [_report(session, reporter, topic) for reporter in reporters]
    session.commit()
    assert hidden == [False, False, False]
    assert not topic.is_hidden
    assert _report_count(session) == 3  # kept for staff all the same


def test_three_established_accounts_hide_an_item(session, person, topic):
    reporters = [
        person(Role.PARTICIPANT, age=ESTABLISHED),
        person(Role.ORGANISATION, age=ESTABLISHED),
        person(Role.CLINICIAN, age=ESTABLISHED),  # professional claim not verified: weight 1
    ]
    assert [_report(session, r, topic) for r in reporters] == [False, False, True]
    assert topic.is_hidden


def test_a_verified_clinician_weighs_as_two(session, person, topic):
    clinician = person(Role.CLINICIAN, clinician_verified=True)
    participant = person(Role.PARTICIPANT, age=ESTABLISHED)
    assert _report(session, clinician, topic) is False
    assert _report(session, participant, topic) is True


def test_one_report_per_person_whatever_the_weight(session, person, topic):
    clinician = person(Role.CLINICIAN, clinician_verified=True)
    _report(session, clinician, topic)
    with pytest.raises(services.AlreadyReported):
        _report(session, clinician, topic)
    assert not topic.is_hidden


@pytest.mark.parametrize(
    ("role", "options", "age", "weight"),
    [
        (Role.PARTICIPANT, {}, timedelta(0), 0.5),
        (Role.PARTICIPANT, {}, timedelta(days=6, hours=23), 0.5),
        (Role.PARTICIPANT, {}, timedelta(days=7), 1.0),
        (Role.ORGANISATION, {}, ESTABLISHED, 1.0),
        (Role.CLINICIAN, {}, ESTABLISHED, 1.0),
        (Role.CLINICIAN, {"clinician_verified": True}, timedelta(0), 2.0),
        (Role.CUSTODIAN, {"custodian_status": CustodianStatus.APPROVED}, timedelta(0), 2.0),
        (Role.CUSTODIAN, {"custodian_status": CustodianStatus.PENDING}, ESTABLISHED, 1.0),
        (Role.CUSTODIAN, {"custodian_status": CustodianStatus.PENDING}, timedelta(0), 0.5),
        (Role.STAFF, {}, timedelta(0), 2.0),
        (Role.PARTICIPANT, {"email_verified": False}, ESTABLISHED, 0.0),
        (Role.CLINICIAN, {"clinician_verified": True, "is_active": False}, ESTABLISHED, 0.0),
    ],
    ids=[
        "new participant",
        "participant of almost a week",
        "participant of a week",
        "established organisation member",
        "established clinician, claim not verified",
        "new verified clinician",
        "new approved custodian",
        "established pending custodian",
        "new pending custodian",
        "staff",
        "address not confirmed",
        "deactivated",
    ],
)
def test_weights_per_role(person, role, options, age, weight):
    # Two-step sign-in plays no part in a report's weight.
    reporter = person(role, age=age, two_factor=False, **options)
    assert discussion.report_weight(reporter, utcnow()) == weight


def test_reports_through_the_page_for_unconfirmed_and_confirmed_people(
    app, client, session, person, topic
):
    unconfirmed = person(age=ESTABLISHED, email_verified=False)
    sign_in(client, unconfirmed)
    page = client.get(f"/topics/{topic.id}").get_data(as_text=True)
    assert "Report this topic" not in page
    response = post_form(client, f"/topics/{topic.id}/report", {"reason": "Advertising"})
    assert response.status_code == 303
    flashed = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Please confirm your email address before reporting" in flashed
    assert _report_count(session) == 0

    confirmed = app.test_client()
    sign_in(confirmed, person(age=ESTABLISHED))
    assert "Report this topic" in confirmed.get(f"/topics/{topic.id}").get_data(as_text=True)
    response = post_form(confirmed, f"/topics/{topic.id}/report", {"reason": "Advertising"})
    assert response.status_code == 303
    assert _report_count(session) == 1


def test_staff_see_every_report_even_when_it_hid_nothing(app, session, person, topic, make_user):
    staff = make_user(Role.STAFF)
    for n, reporter in enumerate([person() for _ in range(3)]):
        _report_with_reason(session, reporter, topic, f"new account report {n}")
    session.commit()
    assert not session.get(Topic, topic.id).is_hidden
    client = app.test_client()
    sign_in(client, staff)
    queue = client.get("/topics/moderation").get_data(as_text=True)
    assert all(f"new account report {n}" in queue for n in range(3))


def _report_with_reason(session, reporter: User, topic: Topic, reason: str) -> bool:
    return services.report_content(session, reporter, topic, None, reason, utcnow(), THRESHOLD)
