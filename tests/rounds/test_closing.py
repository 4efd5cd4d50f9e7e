"""Closing a round: at its closing time the job tallies the current ballots once, stores the
result and the anonymised ballot file, and audits it; two closers at once close it once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts import data_rights
from engage.accounts.models import Role, User
from engage.audit import AuditEvent
from engage.db import Database
from engage.rounds import closing, tally
from engage.rounds.models import PriorityRound
from engage.timeutil import utcnow
from tests.rounds.staff_support import add_ballot, make_round, make_topic, move_times, open_now


@pytest.fixture
def closed_soon(session, make_user):
    """An open round of three topics with four ballots in two groups (one by an account
    that is gone), whose closing time has just passed; (round, topic ids)."""
    staff, author = make_user(Role.STAFF), make_user(Role.PARTICIPANT)
    topics = [
        make_topic(session, author, staff, title).id
        for title in ("Does vitamin D slow MS?", "Does fasting help fatigue?", "Is cooling useful?")
    ]
    round_ = make_round(session, staff, topics, max_ranks=2)
    open_now(session, round_)
    a, b, c = (make_user(Role.PARTICIPANT) for _ in range(3))
    add_ballot(session, round_, a.id, "people_with_ms", [topics[0], topics[1]])
    add_ballot(session, round_, b.id, "people_with_ms", [topics[1]])
    add_ballot(session, round_, None, "people_with_ms", [topics[1], topics[2]])
    add_ballot(session, round_, c.id, "professionals", [topics[2], topics[0]])
    move_times(session, round_, opened_ago=timedelta(days=7), closes_in=timedelta(seconds=-1))
    return round_, topics


def _closed_events(session) -> list[AuditEvent]:
    return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "round_closed")))


def test_a_round_past_its_closing_time_is_tallied_and_published(session, closed_soon):
    round_, (t1, t2, t3) = closed_soon
    now = utcnow()
    assert closing.close_due(session, now) == [round_.id]
    session.commit()
    session.refresh(round_)
    assert round_.closed_at == now
    result = tally.RoundResult.from_json(round_.result)
    # People with MS: t2 2+1+2 = 5, t1 2, t3 1 -> t2, t1, t3. Professionals: t3, t1.
    # Re-scored with 3 topics: t2 3; t1 2 + 2 = 4; t3 1 + 3 = 4 -> t1 and t3 tie on score
    # and on groups (2 each), so the lower id comes first.
    assert [(c.topic_id, c.score, c.groups_ranked) for c in result.combined] == [
        (t1, 4, 2),
        (t3, 4, 2),
        (t2, 3, 1),
    ]
    assert [(g.code, g.ballots) for g in result.groups] == [
        ("people_with_ms", 3),
        ("professionals", 1),
        ("organisations", 0),
    ]
    published = tally.read_ballot_file(round_.ballot_file)
    assert published.recount() == result == published.result
    assert len(published.ballots) == 4
    assert "user" not in str(round_.ballot_file)  # ballot ids only, no person
    (event,) = _closed_events(session)
    assert event.target == f"round:{round_.id}"
    assert event.details["ballots"] == 4
    assert event.details["by_group"] == {
        "people_with_ms": 3,
        "professionals": 1,
        "organisations": 0,
    }


def test_closing_happens_once_and_not_before_the_closing_time(session, closed_soon):
    round_, _ = closed_soon
    early = round_.closes_at - timedelta(minutes=1)
    assert closing.close_due(session, early) == []
    assert not closing.close_round(session, round_.id, early)
    session.commit()
    now = utcnow()
    assert closing.close_due(session, now) == [round_.id]
    session.commit()
    stored = dict(round_.result)
    assert closing.close_due(session, now + timedelta(minutes=1)) == []
    assert not closing.close_round(session, round_.id, now + timedelta(minutes=1))
    session.commit()
    session.refresh(round_)
    assert round_.result == stored and round_.closed_at == now
    assert len(_closed_events(session)) == 1


def test_an_empty_round_closes_with_an_empty_result(session, make_user):
    round_ = make_round(session, make_user(Role.STAFF))
    move_times(session, round_, opened_ago=timedelta(days=1), closes_in=timedelta(seconds=-1))
    assert closing.close_due(session, utcnow()) == [round_.id]
    session.commit()
    result = tally.RoundResult.from_json(round_.result)
    assert result.combined == () and all(g.ballots == 0 for g in result.groups)


def test_the_job_is_registered_every_minute_and_reports_what_it_closed(app, session, closed_soon):
    round_, _ = closed_soon
    job = app.extensions["engage.jobs"]["rounds.close_due"]
    assert (job.trigger, job.trigger_args) == ("interval", {"minutes": 1})
    assert job.func(session, utcnow(), app.config) == f"closed 1 round(s): {round_.id}"
    session.commit()
    assert job.func(session, utcnow(), app.config) == "no round to close"


def test_a_round_whose_tally_fails_does_not_stop_the_others(session, make_user, closed_soon):
    good, _ = closed_soon
    bad = make_round(session, make_user(Role.STAFF), title="Broken")
    open_now(session, bad)
    add_ballot(session, bad, None, "people_with_ms", [999_999])  # not on its shortlist
    move_times(session, bad, opened_ago=timedelta(days=1), closes_in=timedelta(seconds=-2))
    assert closing.close_due(session, utcnow()) == [good.id]
    session.commit()
    session.refresh(bad)
    assert bad.closed_at is None and bad.result is None


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session")
def test_two_closers_at_once_close_the_round_exactly_once(app, session, closed_soon):
    round_, _ = closed_soon
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def close(index: int) -> None:
        own = Database.new_session(app)
        try:
            barrier.wait(10)
            outcomes[index] = closing.close_due(own, utcnow())
            own.commit()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcomes[index] = exc
        finally:
            own.close()

    threads = [threading.Thread(target=close, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a closer is stuck (a deadlock?)"
    assert sorted(outcomes, key=len) == [[], [round_.id]], outcomes
    session.expire_all()
    stored = session.get(PriorityRound, round_.id)
    assert stored.closed_at is not None and stored.result is not None
    assert tally.read_ballot_file(stored.ballot_file).recount().to_json() == stored.result
    assert len(_closed_events(session)) == 1


def test_my_data_lists_my_ballots_and_deleting_me_keeps_them_counted(app, session, make_user):
    staff, author = make_user(Role.STAFF), make_user(Role.PARTICIPANT)
    t1, t2 = (make_topic(session, author, staff, title).id for title in ("Vitamin D?", "Cooling?"))
    round_ = make_round(session, staff, [t1, t2], title="Treatment priorities 2027")
    open_now(session, round_)
    voter = make_user(Role.PARTICIPANT)
    ballot = add_ballot(session, round_, voter.id, "people_with_ms", [t2, t1])
    rights = data_rights.registered(app)
    with app.app_context():
        mine = data_rights.export_my_data(
            session, session.get(User, voter.id), utcnow(), rights=rights, config=app.config
        )
        assert mine["priority_rounds"] == [
            {
                "round_id": round_.id,
                "round": "Treatment priorities 2027",
                "group": "People with MS",
                "ranking": ["Cooling?", "Vitamin D?"],
                "first_saved_at": mine["priority_rounds"][0]["first_saved_at"],
                "last_saved_at": mine["priority_rounds"][0]["last_saved_at"],
                "times_saved": 1,
            }
        ]
        request = data_rights.delete_account(
            session, session.get(User, voter.id), utcnow(), rights=rights, config=app.config
        )
        session.commit()
    assert "Priority rounds: 1 ballot(s) unlinked from the account, still counted." in (
        request.outcome
    )
    session.refresh(ballot)
    assert ballot.user_id is None and ballot.ranking == [t2, t1]
    move_times(session, round_, opened_ago=timedelta(days=7), closes_in=timedelta(seconds=-1))
    assert closing.close_due(session, utcnow()) == [round_.id]
    session.commit()
    result = tally.RoundResult.from_json(round_.result)
    assert [c.topic_id for c in result.combined] == [t2, t1]
