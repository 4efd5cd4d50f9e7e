"""Casting ballots: one ballot per person per round, its group frozen at the first save, every
save an event in the round's hash chain, a double click recording nothing, and ``engage audit
verify`` catching a changed, forged or deleted event."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role, User
from engage.hashchain import GENESIS_HASH
from engage.rounds import ballots, chain
from engage.rounds.models import Ballot, BallotEvent, PriorityRound
from engage.rounds.rules import InvalidBallot, NotAllowed
from engage.timeutil import utcnow
from tests.rounds.ballot_support import cast, close, make_round, staff_and_author


@pytest.fixture
def world(session, make_user):
    """An open round (at most 3 ranks, 4 topics) and a person with MS."""
    staff, author = staff_and_author(make_user)
    made = make_round(session, staff.id, author.id)
    return made, make_user(Role.PARTICIPANT)


def _ballots(session, round_id):
    session.expire_all()
    return session.scalars(sa.select(Ballot).where(Ballot.round_id == round_id)).all()


def _events(session, round_id):
    session.expire_all()
    return session.scalars(
        sa.select(BallotEvent).where(BallotEvent.round_id == round_id).order_by(BallotEvent.seq)
    ).all()


def test_a_first_save_makes_one_ballot_in_the_persons_group_and_starts_the_chain(
    session, world
):
    made, person = world
    t = made.topic_ids
    cast(session, person.id, made.id, [t[2], t[0]])
    (ballot,) = _ballots(session, made.id)
    assert (ballot.user_id, ballot.group_code, ballot.ranking) == (
        person.id,
        "people_with_ms",
        [t[2], t[0]],
    )
    assert ballot.version == 1 and len(ballot.ballot_uid) == 36
    (event,) = _events(session, made.id)
    assert (event.seq, event.ballot_uid, event.ranking, event.prev_hash) == (
        1,
        ballot.ballot_uid,
        [t[2], t[0]],
        GENESIS_HASH,
    )


def test_a_changed_ranking_replaces_the_ballot_whole_and_appends_an_event(session, world):
    made, person = world
    t = made.topic_ids
    cast(session, person.id, made.id, [t[0], t[1], t[2]])
    cast(session, person.id, made.id, [t[3]])
    (ballot,) = _ballots(session, made.id)
    assert ballot.ranking == [t[3]] and ballot.version == 2
    first, second = _events(session, made.id)
    assert (first.ranking, second.ranking) == ([t[0], t[1], t[2]], [t[3]])
    assert second.prev_hash == first.hash and second.ballot_uid == first.ballot_uid


def test_saving_the_same_ranking_again_records_nothing(session, world):
    made, person = world
    t = made.topic_ids
    first = cast(session, person.id, made.id, [t[1], t[0]])
    again = cast(session, person.id, made.id, [t[1], t[0]])
    assert again == first
    (ballot,) = _ballots(session, made.id)
    assert ballot.version == 1
    assert len(_events(session, made.id)) == 1


def test_the_group_stays_the_one_of_the_first_save(session, world):
    made, person = world
    t = made.topic_ids
    cast(session, person.id, made.id, [t[0]])
    session.execute(sa.update(User).where(User.id == person.id).values(role=Role.ORGANISATION))
    session.commit()
    cast(session, person.id, made.id, [t[1]])
    (ballot,) = _ballots(session, made.id)
    assert ballot.group_code == "people_with_ms"
    assert [e.group_code for e in _events(session, made.id)] == ["people_with_ms"] * 2


def test_each_round_has_its_own_chain_from_seq_1(session, make_user, world):
    made, person = world
    staff, author = staff_and_author(make_user)
    other = make_round(session, staff.id, author.id, titles=["Is walking aid design helpful?"])
    clinician = make_user(Role.CLINICIAN, clinician_verified=True)
    cast(session, person.id, made.id, [made.topic_ids[0]])
    cast(session, clinician.id, made.id, [made.topic_ids[1]])
    cast(session, person.id, other.id, other.topic_ids)
    assert [e.seq for e in _events(session, made.id)] == [1, 2]
    assert [e.seq for e in _events(session, other.id)] == [1]
    assert [e.group_code for e in _events(session, made.id)] == ["people_with_ms", "professionals"]
    assert chain.verify(session).problems == []


@pytest.mark.parametrize(
    ("ranking", "message"),
    [
        ("none", "Rank at least one topic."),
        ("four", "Rank at most 3 topics."),
        ("repeat", "Each topic can have one rank only."),
        ("elsewhere", "Rank only topics on this round's shortlist."),
    ],
)
def test_rankings_that_cannot_be_saved_are_refused(session, make_user, world, ranking, message):
    made, person = world
    t = made.topic_ids
    staff, author = staff_and_author(make_user)
    stranger = make_round(session, staff.id, author.id, titles=["A topic of another round?"])
    ranking = {
        "none": [],
        "four": t,
        "repeat": [t[0], t[0]],
        "elsewhere": [t[0], stranger.topic_ids[0]],
    }[ranking]
    with pytest.raises(InvalidBallot, match=message):
        ballots.cast_ballot(session, session.get(User, person.id), made.id, ranking, utcnow())
    session.rollback()
    assert _ballots(session, made.id) == [] and _events(session, made.id) == []


@pytest.mark.parametrize(
    ("opens_in", "closes_in", "message"),
    [
        (timedelta(days=1), timedelta(days=2), "This round opens on"),
        (timedelta(days=-2), timedelta(seconds=-1), "This round closed on"),
    ],
)
def test_ballots_are_refused_before_opening_and_after_closing(
    session, make_user, opens_in, closes_in, message
):
    staff, author = staff_and_author(make_user)
    made = make_round(session, staff.id, author.id, opens_in=opens_in, closes_in=closes_in)
    person = session.get(User, make_user(Role.PARTICIPANT).id)
    with pytest.raises(InvalidBallot, match=message):
        ballots.cast_ballot(session, person, made.id, made.topic_ids[:1], utcnow())


def test_a_closed_round_refuses_ballots_even_before_its_closing_time(session, make_user, world):
    made, person = world
    session.get(PriorityRound, made.id).closed_at = utcnow()
    session.commit()
    with pytest.raises(InvalidBallot, match="closed"):
        ballots.cast_ballot(
            session, session.get(User, person.id), made.id, made.topic_ids[:1], utcnow()
        )


@pytest.mark.parametrize(
    ("role", "options", "message"),
    [
        (Role.STAFF, {}, "your account does not take part"),
        (Role.CUSTODIAN, {}, "your account does not take part"),
        (Role.CLINICIAN, {"clinician_verified": False}, "Staff have not yet checked your details"),
        (Role.PARTICIPANT, {"email_verified": False}, "Please confirm your email address"),
        (Role.PARTICIPANT, {"is_active": False}, "not active"),
        (Role.ORGANISATION, {}, "This round is for these groups only: People with MS."),
    ],
)
def test_people_who_do_not_take_part_are_refused_with_the_reason(
    session, make_user, role, options, message
):
    staff, author = staff_and_author(make_user)
    roles = ["participant"] if role == Role.ORGANISATION else ["participant", "clinician"]
    made = make_round(session, staff.id, author.id, roles=roles)
    person = session.get(User, make_user(role, **options).id)
    with pytest.raises(NotAllowed, match=message):
        ballots.cast_ballot(session, person, made.id, made.topic_ids[:1], utcnow())
    session.rollback()
    assert _ballots(session, made.id) == []


def test_a_missing_round_is_refused(session, world):
    _made, person = world
    with pytest.raises(InvalidBallot, match="does not exist"):
        ballots.cast_ballot(session, session.get(User, person.id), 999_999, [1], utcnow())


def test_the_closing_counts_each_persons_latest_ranking(session, make_user, world):
    made, person = world
    t = made.topic_ids
    clinician = make_user(Role.CLINICIAN, clinician_verified=True)
    cast(session, person.id, made.id, [t[0], t[1]])
    cast(session, person.id, made.id, [t[2]])
    cast(session, clinician.id, made.id, [t[3], t[2]])
    close(session, made.id)
    round_ = session.get(PriorityRound, made.id)
    counted = {b["group"]: b["ranking"] for b in round_.ballot_file["ballots"]}
    assert counted == {"people_with_ms": [t[2]], "professionals": [t[3], t[2]]}
    uids = {b.ballot_uid for b in _ballots(session, made.id)}
    assert {b["ballot"] for b in round_.ballot_file["ballots"]} == uids


# engage audit verify -----------------------------------------------------------------------------
@pytest.fixture
def cast_round(session, make_user, world):
    """Three saves by two people in the open round."""
    made, person = world
    t = made.topic_ids
    other = make_user(Role.ORGANISATION)
    cast(session, person.id, made.id, [t[0], t[1]])
    cast(session, other.id, made.id, [t[1]])
    cast(session, person.id, made.id, [t[2], t[0]])
    return made


def _tamper(session, statement, **params):
    """Change rows behind the application's back, as someone with database access could."""
    session.rollback()
    session.execute(sa.text(statement), params)
    session.commit()


def test_audit_verify_passes_on_an_untouched_ballot_ledger(runner, cast_round):
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "Ballot ledger intact: 3 event(s) checked, every chain verified." in result.output


def test_audit_verify_reports_a_ranking_changed_in_sql(runner, session, cast_round):
    second = _events(session, cast_round.id)[1]
    _tamper(
        session,
        "UPDATE round_ballot_events SET ranking = :r WHERE id = :id",
        r=f"[{cast_round.topic_ids[3]}]",
        id=second.id,
    )
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code != 0
    assert (
        f"ballot event {second.id} (round {cast_round.id}, seq 2): its content does not match "
        "its hash" in result.output
    )
    # The changed event is the organisation's newest, so its ballot no longer matches it.
    assert "its ranking or group is not its newest event's" in result.output
    assert "problem(s) in the ballot ledger" in result.output


def test_audit_verify_reports_a_forged_hash_and_the_broken_link_after_it(
    runner, session, cast_round
):
    first, second, _third = _events(session, cast_round.id)
    _tamper(
        session,
        "UPDATE round_ballot_events SET group_code = 'professionals', hash = :h WHERE id = :id",
        h="a" * 64,
        id=first.id,
    )
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code != 0
    assert f"ballot event {first.id} " in result.output
    assert (
        f"ballot event {second.id} (round {cast_round.id}, seq 2): does not follow the event "
        "before it" in result.output
    )


def test_audit_verify_reports_a_deleted_event(runner, session, cast_round):
    second = _events(session, cast_round.id)[1]
    _tamper(session, "DELETE FROM round_ballot_events WHERE id = :id", id=second.id)
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code != 0
    assert "expected seq 2: an event is missing before it" in result.output
    # The organisation's only save is gone: its ballot has no event left.
    assert "no event in the round's chain records it" in result.output


def test_audit_verify_reports_a_ballot_row_changed_in_sql(runner, session, cast_round):
    (mine,) = [b for b in _ballots(session, cast_round.id) if b.version == 2]
    _tamper(
        session,
        "UPDATE round_ballots SET ranking = :r, version = 3 WHERE id = :id",
        r=f"[{cast_round.topic_ids[3]}]",
        id=mine.id,
    )
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code != 0
    assert f"ballot {mine.id} (round {cast_round.id}): its ranking or group" in result.output
    assert "says it was saved 3 time(s), the chain records 2" in result.output
