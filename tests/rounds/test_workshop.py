"""The final workshop: staff record the agreed Top 10 (a reason for every place that differs
from the survey), then mark topics of it adopted; authors and supporters hear it from the
topics' own emails, the people who ranked get one round email each, once."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from engage import delivery
from engage.accounts import data_rights
from engage.accounts.models import Role, User
from engage.audit import AuditEvent
from engage.outbox import OutboxMessage
from engage.rounds import workshop
from engage.rounds.models import RoundAgreedItem
from engage.rounds.rules import InvalidWorkshop
from engage.timeutil import utcnow
from engage.topics import services as topic_services
from engage.topics.models import Topic, TopicStatus
from tests.rounds.staff_support import add_ballot, close_now, make_round, make_topic, open_now

TITLES = ("Does vitamin D slow MS?", "Does fasting help fatigue?", "Is cooling useful?")


@pytest.fixture
def world(app, session, make_user):
    """A closed round (three topics, Top 2) whose survey placed t2 then t1 (t3 third), with
    ballots by two voters (one also supports t1); the topics' author and a supporter."""
    staff, author = make_user(Role.STAFF), make_user(Role.PARTICIPANT)
    t1, t2, t3 = (make_topic(session, author, staff, title).id for title in TITLES)
    supporter, voter, clinician = (
        make_user(Role.PARTICIPANT),
        make_user(Role.PARTICIPANT),
        make_user(Role.CLINICIAN, clinician_verified=True),
    )
    topic_services.support_topic(session, session.get(User, supporter.id), t1, utcnow())
    topic_services.support_topic(session, session.get(User, voter.id), t1, utcnow())
    session.commit()
    round_ = make_round(session, staff, [t1, t2, t3], max_ranks=2)
    open_now(session, round_)
    add_ballot(session, round_, voter.id, "people_with_ms", [t2, t1])
    add_ballot(session, round_, clinician.id, "professionals", [t2, t3])
    close_now(session, round_)
    return {
        "round": round_,
        "staff": session.get(User, staff.id),
        "topics": (t1, t2, t3),
        "author": author,
        "supporter": supporter,
        "voters": (voter, clinician),
    }


def _outbox(session, kind: str) -> list[tuple[int, str]]:
    session.expire_all()
    return [
        (row.user_id, row.dedup_key)
        for row in session.scalars(
            sa.select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
        )
    ]


def test_the_survey_order_needs_no_reasons(session, world):
    round_, (t1, t2, _t3) = world["round"], world["topics"]
    assert workshop.survey_positions(round_) == {t2: 1, t1: 2}
    items = workshop.record_workshop(
        session, world["staff"], round_, [(t2, ""), (t1, "")], "  Agreed at once. ", utcnow()
    )
    session.commit()
    assert [(i.position, i.topic_id, i.change_reason) for i in items] == [(1, t2, ""), (2, t1, "")]
    assert round_.workshop_note == "Agreed at once." and round_.workshop_recorded_at is not None


@pytest.mark.parametrize(
    ("agreed", "message"),
    [
        ("swapped", "Place 1: “Does vitamin D slow MS?” was 2nd in the survey"),
        ("newcomer", "Place 2: “Is cooling useful?” was not in the survey's top"),
    ],
)
def test_every_place_that_differs_from_the_survey_needs_a_reason(session, world, agreed, message):
    round_, (t1, t2, t3) = world["round"], world["topics"]
    places = {"swapped": [(t1, ""), (t2, "")], "newcomer": [(t2, ""), (t3, "")]}[agreed]
    with pytest.raises(workshop.ReasonRequired, match=re.escape(message)) as refused:
        workshop.record_workshop(session, world["staff"], round_, places, "", utcnow())
    assert refused.value.position == int(message[6])
    session.rollback()
    reasons = [(topic_id, "Worse fatigue matters more.") for topic_id, _ in places]
    workshop.record_workshop(session, world["staff"], round_, reasons, "", utcnow())
    session.commit()
    assert [i.topic_id for i in workshop.agreed_items(session, round_.id)] == [
        topic_id for topic_id, _ in places
    ]


@pytest.mark.parametrize(
    ("places", "message"),
    [
        ([], "at least one topic"),
        ([(1, "r"), (2, "r"), (3, "r")], "at most 2 topics"),
        ([("t1", "r"), ("t1", "r")], "only one place"),
        ([(999_999, "r")], "this round's shortlist"),
    ],
)
def test_agreed_lists_that_cannot_be_recorded(session, world, places, message):
    t1 = world["topics"][0]
    places = [(t1 if topic == "t1" else topic, reason) for topic, reason in places]
    with pytest.raises(InvalidWorkshop, match=message):
        workshop.record_workshop(session, world["staff"], world["round"], places, "", utcnow())


def test_the_workshop_waits_for_the_round_to_close(session, make_user):
    staff = make_user(Role.STAFF)
    author = make_user(Role.PARTICIPANT)
    topic = make_topic(session, author, staff, TITLES[0])
    round_ = make_round(session, staff, [topic.id])
    open_now(session, round_)
    staff_row = session.get(User, staff.id)
    with pytest.raises(InvalidWorkshop, match="not closed yet"):
        workshop.record_workshop(session, staff_row, round_, [(topic.id, "x")], "", utcnow())
    with pytest.raises(InvalidWorkshop, match="not closed yet"):
        workshop.adopt_topics(session, staff_row, round_, [topic.id], utcnow())


def test_recording_again_replaces_the_earlier_list(session, world):
    round_, (t1, t2, t3) = world["round"], world["topics"]
    workshop.record_workshop(session, world["staff"], round_, [(t2, ""), (t1, "")], "", utcnow())
    session.commit()
    workshop.record_workshop(session, world["staff"], round_, [(t3, "Urgent.")], "Later.", utcnow())
    session.commit()
    rows = session.scalars(sa.select(RoundAgreedItem).where(RoundAgreedItem.round_id == round_.id))
    assert [(r.position, r.topic_id, r.change_reason) for r in rows] == [(1, t3, "Urgent.")]
    events = session.scalars(
        sa.select(AuditEvent.details).where(AuditEvent.action == "round_workshop_recorded")
    ).all()
    assert [e["replaced"] for e in events] == [False, True]


def test_adopting_tells_supporters_through_the_topic_and_voters_once(app, session, world, mailbox):
    round_, (t1, t2, t3) = world["round"], world["topics"]
    staff = world["staff"]
    with pytest.raises(InvalidWorkshop, match="Record the workshop's agreed Top 10 first"):
        workshop.adopt_topics(session, staff, round_, [t1], utcnow())
    session.rollback()
    workshop.record_workshop(session, staff, round_, [(t2, ""), (t1, "")], "", utcnow())
    session.commit()
    with pytest.raises(InvalidWorkshop, match="Only topics in the agreed Top 10"):
        workshop.adopt_topics(session, staff, round_, [t3], utcnow())
    session.rollback()
    status_before = len(_outbox(session, "topic_status"))

    outcome = workshop.adopt_topics(session, staff, round_, [t1, t2], utcnow())
    session.commit()
    assert (outcome.adopted, outcome.already, outcome.voters_told) == ([t2, t1], [], 2)
    assert {session.get(Topic, t).status for t in (t1, t2)} == {TopicStatus.ADOPTED}
    assert session.get(Topic, t3).status == TopicStatus.SHORTLISTED
    # The topics package tells each topic's author and supporters (its own emails).
    status_mail = _outbox(session, "topic_status")[status_before:]
    author, supporter, (voter, clinician) = world["author"], world["supporter"], world["voters"]
    assert sorted(user for user, _ in status_mail) == sorted(
        [author.id, supporter.id, voter.id, author.id]
    )
    # Each voter gets one round email listing both topics.
    round_mail = _outbox(session, "round_adopted")
    assert sorted(user for user, _ in round_mail) == sorted([voter.id, clinician.id])

    again = workshop.adopt_topics(session, staff, round_, [t1, t2], utcnow())
    session.commit()
    assert (again.adopted, again.already, again.voters_told) == ([], [t2, t1], 0)
    assert _outbox(session, "round_adopted") == round_mail
    assert len(_outbox(session, "topic_status")) == status_before + len(status_mail)

    delivery.deliver(app, now=utcnow())
    (message,) = mailbox.to(clinician.email)
    assert message.subject == "Research questions you ranked were adopted"
    assert (
        "Does vitamin D slow MS?" in message.text and "Does fasting help fatigue?" in message.text
    )
    assert message.link(f"/rounds/{round_.id}/results")
    assert "Is cooling useful?" not in message.text
    assert "<li>Does vitamin D slow MS?</li>" in message.html
    assert f'href="http://engage.test/rounds/{round_.id}/results"' in message.html


def test_a_later_adoption_is_told_anew_and_deleted_accounts_are_not_told(app, session, world):
    round_, (_t1, t2, t3) = world["round"], world["topics"]
    staff = world["staff"]
    voter, clinician = world["voters"]
    workshop.record_workshop(session, staff, round_, [(t2, ""), (t3, "Urgent.")], "", utcnow())
    workshop.adopt_topics(session, staff, round_, [t2], utcnow())
    session.commit()
    with app.app_context():
        data_rights.delete_account(
            session,
            session.get(User, voter.id),
            utcnow(),
            rights=data_rights.registered(app),
            config=app.config,
        )
        session.commit()
    outcome = workshop.adopt_topics(session, staff, round_, [t3], utcnow())
    session.commit()
    assert (outcome.adopted, outcome.voters_told) == ([t3], 1)
    told = [user for user, _ in _outbox(session, "round_adopted")]
    assert sorted(told) == sorted([voter.id, clinician.id, clinician.id])


def test_only_staff_record_and_adopt(session, world, make_user):
    from engage.rounds.rules import NotAllowed

    round_, (_t1, t2, _t3) = world["round"], world["topics"]
    participant = session.get(User, make_user(Role.PARTICIPANT).id)
    with pytest.raises(NotAllowed):
        workshop.record_workshop(session, participant, round_, [(t2, "")], "", utcnow())
    with pytest.raises(NotAllowed):
        workshop.adopt_topics(session, participant, round_, [t2], utcnow())
