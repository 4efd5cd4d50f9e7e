"""Helpers of the rounds' staff tests: topics ready for a shortlist, rounds at each stage,
ballots written as the ballot service leaves them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.rounds import closing, setup
from engage.rounds.models import Ballot, EvidenceStatus, PriorityRound
from engage.timeutil import utcnow
from engage.topics import services as topic_services
from engage.topics.models import Topic, TopicCategory, TopicStatus


def make_topic(
    session: Session,
    author: User,
    staff: User,
    title: str,
    status: TopicStatus = TopicStatus.SHORTLISTED,
) -> Topic:
    """A topic by ``author``, moved by ``staff`` to ``status`` (committed)."""
    now = utcnow()
    topic = topic_services.propose_topic(
        session,
        session.get(User, author.id),
        topic_services.TopicDetails(
            title=title,
            question=f"{title}?",
            rationale="People with MS asked.",
            category=TopicCategory.TREATMENTS,
        ),
        now,
        100,
    )
    staff_row = session.get(User, staff.id)
    for step in (TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED):
        if status == TopicStatus.SUBMITTED:
            break
        topic_services.change_status(session, staff_row, topic, step, now)
        if step == status:
            break
    session.commit()
    return topic


def details(
    now: datetime,
    *,
    title: str = "Priorities for MS treatment research",
    roles: Sequence[str] = ("participant", "clinician", "organisation"),
    max_ranks: int = 3,
    opens_in: timedelta = timedelta(days=1),
    lasts: timedelta = timedelta(days=14),
) -> setup.RoundDetails:
    """Round details opening ``opens_in`` from ``now``."""
    return setup.RoundDetails(
        title=title,
        question="Which unanswered questions about MS treatment matter most to you?",
        roles=list(roles),
        opens_at=now + opens_in,
        closes_at=now + opens_in + lasts,
        max_ranks=max_ranks,
    )


def make_round(
    session: Session,
    staff: User,
    topic_ids: Sequence[int] = (),
    **options: object,
) -> PriorityRound:
    """An upcoming round with ``topic_ids`` on its shortlist, all unanswered (committed)."""
    now = utcnow()
    staff_row = session.get(User, staff.id)
    round_ = setup.create_round(session, staff_row, details(now, **options), now)  # type: ignore[arg-type]
    for topic_id in topic_ids:
        setup.add_to_shortlist(
            session, staff_row, round_, topic_id, EvidenceStatus.UNANSWERED, "", "", now
        )
    session.commit()
    return round_


def move_times(
    session: Session, round_: PriorityRound, *, opened_ago: timedelta, closes_in: timedelta
) -> None:
    """Put the round's opening ``opened_ago`` in the past and its closing ``closes_in`` from
    now (negative: already past), as time passing would (committed)."""
    now = utcnow()
    round_.opens_at = now - opened_ago
    round_.closes_at = now + closes_in
    session.commit()


def open_now(session: Session, round_: PriorityRound) -> None:
    """The round opened an hour ago and closes in a week."""
    move_times(session, round_, opened_ago=timedelta(hours=1), closes_in=timedelta(days=7))


def add_ballot(
    session: Session,
    round_: PriorityRound,
    user_id: int | None,
    group_code: str,
    ranking: Sequence[int],
) -> Ballot:
    """A ballot as the ballot service stores it (committed)."""
    now = utcnow()
    ballot = Ballot(
        round_id=round_.id,
        user_id=user_id,
        ballot_uid=str(uuid.uuid4()),
        group_code=group_code,
        ranking=list(ranking),
        version=1,
        cast_at=now,
        updated_at=now,
    )
    session.add(ballot)
    session.commit()
    return ballot


def close_now(session: Session, round_: PriorityRound) -> None:
    """Let the round's closing time pass and run the closing (committed)."""
    move_times(session, round_, opened_ago=timedelta(days=7), closes_in=timedelta(seconds=-1))
    assert closing.close_round(session, round_.id, utcnow())
    session.commit()
