"""Ballots saved at the same moment, with real threads against a real PostgreSQL: one ballot
row per person, a ranking saved whole (one of the two, never a mix), one unbroken chain per
round, and a ballot saved as the round closes either counted or refused, never lost.

Each thread has its own session (its own connection and transaction) or its own signed-in
client; the calls start together behind a barrier, and ``meeting_at`` makes each call wait at
the service's start until the others have read what they read before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from engage.accounts.models import Role, User
from engage.db import Database
from engage.rounds import ballots, chain, closing
from engage.rounds.models import Ballot, BallotEvent, PriorityRound
from engage.rounds.rules import InvalidBallot
from engage.timeutil import utcnow
from tests.rounds.ballot_support import TITLES, MadeRound, make_round
from tests.test_races import meeting_at, no_exceptions, run_together, signed_in_client

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session"),
]


@pytest.fixture
def made(app: Flask, make_user) -> MadeRound:
    """An open round with six topics, up to five ranks."""
    staff, author = make_user(Role.STAFF), make_user(Role.PARTICIPANT)
    session = Database.new_session(app)
    try:
        return make_round(session, staff.id, author.id, titles=TITLES, max_ranks=5)
    finally:
        session.close()


def _save(app: Flask, user_id: int, round_id: int, ranking: Sequence[int], now=None):
    """A call that saves a ballot in a session of its own and commits."""

    def call() -> Any:
        session = Database.new_session(app)
        try:
            ballot = ballots.cast_ballot(
                session, session.get(User, user_id), round_id, list(ranking), now or utcnow()
            )
            session.commit()
            return ballot.id
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    return call


def _state(app: Flask, round_id: int) -> tuple[list[Ballot], list[BallotEvent]]:
    session = Database.new_session(app)
    try:
        rows = session.scalars(sa.select(Ballot).where(Ballot.round_id == round_id)).all()
        events = session.scalars(
            sa.select(BallotEvent)
            .where(BallotEvent.round_id == round_id)
            .order_by(BallotEvent.seq)
        ).all()
        session.expunge_all()
        return list(rows), list(events)
    finally:
        session.close()


def _assert_ledger_intact(app: Flask) -> None:
    session = Database.new_session(app)
    try:
        assert chain.verify(session).problems == []
    finally:
        session.close()


def test_two_saves_by_one_person_at_once_keep_one_ranking_whole(app, made, make_user, monkeypatch):
    person = make_user(Role.PARTICIPANT)
    t = made.topic_ids
    first, second = [t[0], t[1], t[2], t[3], t[4]], [t[5], t[4], t[3]]
    with meeting_at(monkeypatch, ballots, "cast_ballot", 2):
        no_exceptions(
            run_together(
                _save(app, person.id, made.id, first), _save(app, person.id, made.id, second)
            )
        )
    (ballot,), events = _state(app, made.id)
    assert ballot.ranking in (first, second)
    assert ballot.version == 2 and [e.seq for e in events] == [1, 2]
    # The row holds the later save: the chain's last event.
    assert events[-1].ranking == ballot.ranking
    assert {tuple(e.ranking) for e in events} == {tuple(first), tuple(second)}
    _assert_ledger_intact(app)


def test_two_first_saves_at_once_make_one_ballot(app, made, make_user, monkeypatch):
    person = make_user(Role.PARTICIPANT)
    t = made.topic_ids
    with meeting_at(monkeypatch, ballots, "cast_ballot", 2):
        results = no_exceptions(
            run_together(
                _save(app, person.id, made.id, [t[0], t[1]]),
                _save(app, person.id, made.id, [t[1], t[0]]),
            )
        )
    (ballot,), events = _state(app, made.id)
    assert results == [ballot.id, ballot.id]
    assert {e.ballot_uid for e in events} == {ballot.ballot_uid}
    assert len(events) == 2 and ballot.version == 2
    _assert_ledger_intact(app)


def test_a_double_clicked_ballot_is_saved_once(app, made, make_user):
    person = make_user(Role.PARTICIPANT)
    clients = [signed_in_client(app, person) for _ in range(2)]

    def post(client_and_token) -> Any:
        client, token = client_and_token
        return client.post(
            f"/rounds/{made.id}/ballot", data={"csrf_token": token, "rank-2": "1", "rank-1": "2"}
        )

    responses = no_exceptions(run_together(*(lambda c=c: post(c) for c in clients)))
    assert [r.status_code for r in responses] == [303, 303]
    (ballot,), events = _state(app, made.id)
    assert ballot.ranking == [made.topic_ids[1], made.topic_ids[0]]
    assert len(events) == 1 and ballot.version == 1
    _assert_ledger_intact(app)


def test_many_people_saving_at_once_make_one_unbroken_chain(app, made, make_user, monkeypatch):
    roles = [Role.PARTICIPANT] * 3 + [Role.ORGANISATION] * 3
    people = [make_user(role) for role in roles]
    t = made.topic_ids
    calls = [
        _save(app, person.id, made.id, (t[n:] + t[:n])[:5]) for n, person in enumerate(people)
    ]
    with meeting_at(monkeypatch, ballots, "cast_ballot", len(calls)):
        no_exceptions(run_together(*calls))
    rows, events = _state(app, made.id)
    assert len(rows) == len(people) and [e.seq for e in events] == list(range(1, 7))
    assert sorted(e.ballot_uid for e in events) == sorted(b.ballot_uid for b in rows)
    _assert_ledger_intact(app)


def test_a_ballot_saved_as_the_round_closes_is_counted_or_refused(app, made, make_user):
    people = [make_user(Role.PARTICIPANT) for _ in range(3)]
    t = made.topic_ids
    session = Database.new_session(app)
    try:
        round_ = session.get(PriorityRound, made.id)
        closes_at = utcnow() + timedelta(seconds=30)
        round_.closes_at = closes_at
        session.commit()
    finally:
        session.close()
    just_before = closes_at - timedelta(milliseconds=1)

    def close() -> Any:
        session = Database.new_session(app)
        try:
            closed = closing.close_round(session, made.id, closes_at)
            session.commit()
            return closed
        finally:
            session.close()

    calls = [_save(app, p.id, made.id, [t[n]], just_before) for n, p in enumerate(people)]
    results = run_together(close, *calls)
    assert results[0] is True
    refused = [r for r in results[1:] if isinstance(r, BaseException)]
    assert all(isinstance(r, InvalidBallot) and "closed" in str(r) for r in refused)
    rows, _events = _state(app, made.id)
    assert len(rows) == len(people) - len(refused)
    session = Database.new_session(app)
    try:
        counted = session.get(PriorityRound, made.id).ballot_file["ballots"]
    finally:
        session.close()
    assert sorted(b["ballot"] for b in counted) == sorted(b.ballot_uid for b in rows)
    _assert_ledger_intact(app)
