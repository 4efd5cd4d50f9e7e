"""Setting up a round: its details, groups and timetable, and its shortlist with evidence
checks (staff only, audited, and only while the round is upcoming)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role, User
from engage.audit import AuditEvent
from engage.rounds import setup
from engage.rounds.models import EvidenceStatus, PriorityRound, ShortlistItem
from engage.rounds.rules import InvalidRound, NotAllowed
from engage.timeutil import utcnow
from engage.topics.models import TopicStatus
from tests.rounds.staff_support import add_ballot, details, make_round, make_topic, open_now


@pytest.fixture
def people(make_user):
    """A staff member and a participant (who writes the topics)."""
    return make_user(Role.STAFF), make_user(Role.PARTICIPANT)


def _actions(session, round_id: int) -> list[str]:
    return list(
        session.scalars(
            sa.select(AuditEvent.action)
            .where(AuditEvent.target == f"round:{round_id}")
            .order_by(AuditEvent.id)
        )
    )


def test_a_round_is_created_with_one_group_per_role_and_audited(session, people):
    staff, _ = people
    now = utcnow()
    round_ = setup.create_round(
        session,
        session.get(User, staff.id),
        details(now, roles=["organisation", "participant"], max_ranks=10),
        now,
    )
    session.commit()
    assert [g["code"] for g in round_.groups] == ["people_with_ms", "organisations"]
    assert [g["label"] for g in round_.groups] == ["People with MS", "MS organisations"]
    assert [g["roles"] for g in round_.groups] == [["participant"], ["organisation"]]
    assert round_.max_ranks == 10 and round_.closed_at is None and round_.created_by_id == staff.id
    assert _actions(session, round_.id) == ["round_created"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"opens_in": timedelta(minutes=-5)}, "The opening time has passed"),
        ({"lasts": timedelta(0)}, "The closing time must come after the opening time"),
        ({"roles": []}, "Choose at least one group"),
        ({"roles": ["participant", "custodian"]}, "Only people with MS"),
        ({"roles": ["staff"]}, "Only people with MS"),
        ({"max_ranks": 0}, "between 1 and 30"),
        ({"max_ranks": 31}, "between 1 and 30"),
        ({"title": "   "}, "Write the round's title"),
        ({"title": "x" * 201}, "at most 200 characters"),
    ],
)
def test_round_details_that_cannot_work_are_refused(session, people, changes, message):
    staff, _ = people
    now = utcnow()
    with pytest.raises(InvalidRound, match=message):
        setup.create_round(session, session.get(User, staff.id), details(now, **changes), now)
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(PriorityRound)) == 0


@pytest.mark.parametrize("role", [Role.PARTICIPANT, Role.CLINICIAN, Role.CUSTODIAN])
def test_only_staff_set_up_rounds(session, make_user, people, role):
    staff, author = people
    other = session.get(User, make_user(role, clinician_verified=True).id)
    now = utcnow()
    with pytest.raises(NotAllowed):
        setup.create_round(session, other, details(now), now)
    session.rollback()
    topic = make_topic(session, author, staff, "Does vitamin D slow MS?")
    round_ = make_round(session, staff)
    other = session.get(User, other.id)
    for attempt in (
        lambda: setup.update_round(session, other, round_, details(now), now),
        lambda: setup.add_to_shortlist(
            session, other, round_, topic.id, EvidenceStatus.UNANSWERED, "", "", now
        ),
        lambda: setup.remove_from_shortlist(session, other, round_, topic.id, now),
    ):
        with pytest.raises(NotAllowed):
            attempt()
        session.rollback()


def test_details_change_while_upcoming_but_not_once_people_can_rank(session, people):
    staff, author = people
    topic = make_topic(session, author, staff, "Does vitamin D slow MS?")
    round_ = make_round(session, staff, [topic.id])
    staff_row = session.get(User, staff.id)
    now = utcnow()
    setup.update_round(session, staff_row, round_, details(now, title="Renamed", max_ranks=5), now)
    session.commit()
    assert (round_.title, round_.max_ranks) == ("Renamed", 5)
    assert _actions(session, round_.id)[-1] == "round_updated"

    open_now(session, round_)
    assert not setup.can_change_details(session, round_, utcnow())
    with pytest.raises(InvalidRound, match="has opened"):
        setup.update_round(session, staff_row, round_, details(utcnow()), utcnow())


def test_a_round_that_opened_with_an_empty_shortlist_can_be_moved_later(session, people):
    staff, author = people
    round_ = make_round(session, staff)
    open_now(session, round_)
    now = utcnow()
    assert setup.can_change_details(session, round_, now)
    setup.update_round(session, session.get(User, staff.id), round_, details(now), now)
    session.commit()
    assert round_.opens_at > now
    # Its shortlist can be built again now that it is upcoming.
    topic = make_topic(session, author, staff, "Does vitamin D slow MS?")
    setup.add_to_shortlist(
        session,
        session.get(User, staff.id),
        round_,
        topic.id,
        EvidenceStatus.UNANSWERED,
        "",
        "",
        utcnow(),
    )


def test_an_open_round_without_shortlist_but_with_ballots_stays_as_it_is(session, people):
    staff, _ = people
    round_ = make_round(session, staff)
    open_now(session, round_)
    add_ballot(session, round_, None, "people_with_ms", [1])
    assert not setup.can_change_details(session, round_, utcnow())


def test_shortlisted_topics_enter_with_their_evidence_check(session, people):
    staff, author = people
    unanswered = make_topic(session, author, staff, "Does vitamin D slow MS?")
    partly = make_topic(session, author, staff, "Does fasting help fatigue?")
    round_ = make_round(session, staff)
    staff_row = session.get(User, staff.id)
    now = utcnow()
    setup.add_to_shortlist(
        session, staff_row, round_, unanswered.id, EvidenceStatus.UNANSWERED, "", "", now
    )
    setup.add_to_shortlist(
        session,
        staff_row,
        round_,
        partly.id,
        EvidenceStatus.PARTLY_ANSWERED,
        "  One small trial.  ",
        " https://example.org/review ",
        now,
    )
    session.commit()
    items = session.scalars(sa.select(ShortlistItem).order_by(ShortlistItem.id)).all()
    assert [(i.topic_id, i.evidence_status) for i in items] == [
        (unanswered.id, EvidenceStatus.UNANSWERED),
        (partly.id, EvidenceStatus.PARTLY_ANSWERED),
    ]
    assert (items[1].evidence_note, items[1].evidence_url) == (
        "One small trial.",
        "https://example.org/review",
    )
    assert items[1].checked_by_id == staff.id
    assert _actions(session, round_.id) == [
        "round_created",
        "round_shortlist_added",
        "round_shortlist_added",
    ]


@pytest.mark.parametrize(
    ("evidence", "note", "url", "message"),
    [
        (EvidenceStatus.ANSWERED, "A large trial answered it.", "", "already answers"),
        (EvidenceStatus.PARTLY_ANSWERED, "", "", "write a note or give a link"),
        (EvidenceStatus.UNANSWERED, "", "javascript:alert(1)", "web address"),
        (EvidenceStatus.UNANSWERED, "", "ftp://example.org/x", "web address"),
        (EvidenceStatus.UNANSWERED, "", "https://", "web address"),
        (EvidenceStatus.UNANSWERED, "", "https://example.org/a b", "one web address"),
        (EvidenceStatus.UNANSWERED, "x" * 2001, "", "at most 2,000"),
    ],
)
def test_evidence_checks_that_keep_a_topic_out(session, people, evidence, note, url, message):
    staff, author = people
    topic = make_topic(session, author, staff, "Does vitamin D slow MS?")
    round_ = make_round(session, staff)
    with pytest.raises(InvalidRound, match=message):
        setup.add_to_shortlist(
            session, session.get(User, staff.id), round_, topic.id, evidence, note, url, utcnow()
        )
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(ShortlistItem)) == 0


@pytest.mark.parametrize("status", [TopicStatus.PUBLISHED, TopicStatus.SUBMITTED])
def test_only_shortlisted_topics_enter(session, people, status):
    staff, author = people
    topic = make_topic(session, author, staff, "Does vitamin D slow MS?", status)
    round_ = make_round(session, staff)
    with pytest.raises(InvalidRound, match="only shortlisted topics"):
        setup.add_to_shortlist(
            session,
            session.get(User, staff.id),
            round_,
            topic.id,
            EvidenceStatus.UNANSWERED,
            "",
            "",
            utcnow(),
        )


def test_a_topic_enters_a_shortlist_once_and_leaves_it_while_upcoming(session, people):
    staff, author = people
    topic = make_topic(session, author, staff, "Does vitamin D slow MS?")
    round_ = make_round(session, staff, [topic.id])
    staff_row = session.get(User, staff.id)
    with pytest.raises(InvalidRound, match="already on this round's shortlist"):
        setup.add_to_shortlist(
            session, staff_row, round_, topic.id, EvidenceStatus.UNANSWERED, "", "", utcnow()
        )
    session.rollback()
    setup.remove_from_shortlist(session, staff_row, round_, topic.id, utcnow())
    session.commit()
    assert setup.shortlist_size(session, round_.id) == 0
    assert _actions(session, round_.id)[-1] == "round_shortlist_removed"
    with pytest.raises(InvalidRound, match="not on this round's shortlist"):
        setup.remove_from_shortlist(session, staff_row, round_, topic.id, utcnow())


def test_the_shortlist_is_frozen_once_the_round_opens(session, people):
    staff, author = people
    on_list = make_topic(session, author, staff, "Does vitamin D slow MS?")
    other = make_topic(session, author, staff, "Does fasting help fatigue?")
    round_ = make_round(session, staff, [on_list.id])
    open_now(session, round_)
    staff_row = session.get(User, staff.id)
    with pytest.raises(InvalidRound, match="has opened"):
        setup.add_to_shortlist(
            session, staff_row, round_, other.id, EvidenceStatus.UNANSWERED, "", "", utcnow()
        )
    session.rollback()
    with pytest.raises(InvalidRound, match="has opened"):
        setup.remove_from_shortlist(session, staff_row, round_, on_list.id, utcnow())
    session.rollback()
    assert setup.shortlist_size(session, round_.id) == 1
