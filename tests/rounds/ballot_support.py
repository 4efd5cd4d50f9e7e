"""Rounds for the ballot tests: shortlisted topics, a round built through the staff services
(with times set around ``now``), and ballots cast through the ballot service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import Role, User
from engage.rounds import ballots, closing, setup
from engage.rounds.models import EvidenceStatus, PriorityRound
from engage.timeutil import utcnow
from engage.topics import services as topic_services
from engage.topics.models import TopicCategory, TopicStatus

TITLES = (
    "Does exercise ease MS fatigue?",
    "Which diet helps people with MS?",
    "Can cooling vests reduce heat sensitivity?",
    "Does vitamin D slow relapses?",
    "How can bladder problems be treated better?",
    "Which treatment helps cognitive problems?",
)


@dataclass
class MadeRound:
    """A round and its shortlist's topic ids, in shortlist order."""

    id: int
    topic_ids: list[int]
    titles: dict[int, str]


def shortlisted_topics(
    session: Session, staff: User, author: User, titles: Sequence[str]
) -> list[int]:
    """Topics proposed by ``author``, published and shortlisted by ``staff``."""
    ids = []
    for title in titles:
        topic = topic_services.propose_topic(
            session,
            author,
            topic_services.TopicDetails(
                title=title,
                question=f"{title} A research question.",
                rationale="It matters to people with MS.",
                category=TopicCategory.CARE,
            ),
            utcnow(),
            max_pending=100,
        )
        for status in (TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED):
            topic_services.change_status(session, staff, topic, status, utcnow(), reason="Chosen.")
        ids.append(topic.id)
    return ids


def make_round(
    session: Session,
    staff_id: int,
    author_id: int,
    *,
    titles: Sequence[str] = TITLES[:4],
    opens_in: timedelta = timedelta(hours=-1),
    closes_in: timedelta = timedelta(days=7),
    max_ranks: int = 3,
    roles: Sequence[str] = ("participant", "clinician", "organisation"),
    now: datetime | None = None,
) -> MadeRound:
    """A round opening ``opens_in`` from ``now`` (by default an hour ago: open now) and closing
    ``closes_in`` from it, with ``titles`` on its shortlist; committed."""
    now = now or utcnow()
    staff, author = session.get(User, staff_id), session.get(User, author_id)
    topic_ids = shortlisted_topics(session, staff, author, titles)
    # Built as staff would have, before it opened.
    before = now + opens_in - timedelta(minutes=5)
    round_ = setup.create_round(
        session,
        staff,
        setup.RoundDetails(
            title="Which questions about MS treatment matter most?",
            question="Which unanswered questions about MS treatment matter most to you?",
            roles=list(roles),
            opens_at=now + opens_in,
            closes_at=now + closes_in,
            max_ranks=max_ranks,
        ),
        before,
    )
    for index, topic_id in enumerate(topic_ids):
        partly = index % 2 == 1
        setup.add_to_shortlist(
            session,
            staff,
            round_,
            topic_id,
            EvidenceStatus.PARTLY_ANSWERED if partly else EvidenceStatus.UNANSWERED,
            "A small trial in 2019 looked at this." if partly else "",
            "https://example.org/evidence" if partly else "",
            before,
        )
    session.commit()
    return MadeRound(round_.id, topic_ids, dict(zip(topic_ids, titles, strict=True)))


def cast(
    session: Session,
    user_id: int,
    round_id: int,
    ranking: Sequence[int],
    now: datetime | None = None,
) -> int:
    """Cast a ballot through the service and commit; return the ballot's id."""
    ballot = ballots.cast_ballot(
        session, session.get(User, user_id), round_id, list(ranking), now or utcnow()
    )
    session.commit()
    return ballot.id


def close(session: Session, round_id: int) -> None:
    """Move the round's closing time into the past and close it through the closing job."""
    round_ = session.get(PriorityRound, round_id)
    round_.closes_at = utcnow() - timedelta(seconds=1)
    if round_.opens_at >= round_.closes_at:
        round_.opens_at = round_.closes_at - timedelta(hours=1)
    session.commit()
    assert round_id in closing.close_due(session, utcnow())
    session.commit()


def staff_and_author(make_user) -> tuple[User, User]:
    """A staff member and a participant who proposes the topics."""
    return make_user(Role.STAFF), make_user(Role.PARTICIPANT)


def rows(session: Session, *columns) -> list[tuple]:
    """Every row of ``columns``, ordered by the first two."""
    session.expire_all()
    return [tuple(r) for r in session.execute(sa.select(*columns).order_by(*columns[:2]))]
