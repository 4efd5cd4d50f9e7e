"""What the public pages of priority-setting rounds show: the rounds a person can see, a
round's ballot page, and a closed round's results. Each read is a few bounded statements,
however many topics, ballots or groups a round has (no query per row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.rounds import ballots, rules
from engage.rounds.models import (
    SMALL_GROUP_BALLOTS,
    Ballot,
    EvidenceStatus,
    PriorityRound,
    RoundAgreedItem,
    ShortlistItem,
)
from engage.rounds.rules import RoundState
from engage.rounds.tally import RoundResult
from engage.topics.models import Topic, TopicStatus

# The most rounds each part of the list shows (newest first).
LIST_LIMIT = 50
# A closed round's published JSON can be large (its ballot file holds every ballot): pages load
# only what they show.
WITHOUT_BALLOT_FILE = orm.defer(PriorityRound.ballot_file)
WITHOUT_PUBLISHED = (WITHOUT_BALLOT_FILE, orm.defer(PriorityRound.result))


# The list of rounds ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundSummary:
    """One round in the list."""

    id: int
    title: str
    question: str
    state: RoundState
    opens_at: datetime
    closes_at: datetime
    topics: int  # topics on its shortlist that can be ranked
    has_ballot: bool  # the viewer saved a ranking in it
    has_result: bool  # closed: the result is published (in the same step as closing)


@dataclass(frozen=True)
class RoundLists:
    """The rounds, by where they stand."""

    open: list[RoundSummary]
    upcoming: list[RoundSummary]
    closed: list[RoundSummary]  # closed, and past closing while the ballots are counted


def _rankable_counts(session: Session, round_ids: list[int]) -> dict[int, int]:
    if not round_ids:
        return {}
    return dict(
        session.execute(
            sa.select(ShortlistItem.round_id, sa.func.count())
            .where(
                ShortlistItem.round_id.in_(round_ids),
                ShortlistItem.evidence_status.in_(ballots.RANKABLE_EVIDENCE),
            )
            .group_by(ShortlistItem.round_id)
        ).all()
    )


def round_lists(session: Session, viewer: User | None, now: datetime) -> RoundLists:
    """Open rounds (closing soonest first), upcoming ones (opening soonest first) and closed
    ones (newest first), with whether ``viewer`` has a ballot in each."""
    open_or_upcoming = session.scalars(
        sa.select(PriorityRound)
        .options(*WITHOUT_PUBLISHED)
        .where(PriorityRound.closed_at.is_(None), PriorityRound.closes_at > now)
        .order_by(PriorityRound.closes_at, PriorityRound.id)
        .limit(2 * LIST_LIMIT)
    ).all()
    closed = session.scalars(
        sa.select(PriorityRound)
        .options(*WITHOUT_PUBLISHED)
        .where(sa.or_(PriorityRound.closed_at.is_not(None), PriorityRound.closes_at <= now))
        .order_by(PriorityRound.closes_at.desc(), PriorityRound.id.desc())
        .limit(LIST_LIMIT)
    ).all()
    rounds = [*open_or_upcoming, *closed]
    ids = [r.id for r in rounds]
    counts = _rankable_counts(session, ids)
    mine: set[int] = set()
    if viewer is not None and ids:
        mine = set(
            session.scalars(
                sa.select(Ballot.round_id).where(
                    Ballot.user_id == viewer.id, Ballot.round_id.in_(ids)
                )
            )
        )

    def summary(round_: PriorityRound) -> RoundSummary:
        return RoundSummary(
            id=round_.id,
            title=round_.title,
            question=round_.question,
            state=rules.state(round_, now),
            opens_at=round_.opens_at,
            closes_at=round_.closes_at,
            topics=counts.get(round_.id, 0),
            has_ballot=round_.id in mine,
            has_result=round_.closed_at is not None,
        )

    summaries = [summary(r) for r in open_or_upcoming]
    upcoming = sorted(
        (s for s in summaries if s.state == RoundState.UPCOMING), key=lambda s: s.opens_at
    )
    return RoundLists(
        open=[s for s in summaries if s.state == RoundState.OPEN][:LIST_LIMIT],
        upcoming=upcoming[:LIST_LIMIT],
        closed=[summary(r) for r in closed],
    )


def open_round_count(session: Session, now: datetime) -> int:
    """How many rounds take ballots now (for a pointer from the topics list)."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(PriorityRound)
            .where(
                PriorityRound.closed_at.is_(None),
                PriorityRound.opens_at <= now,
                PriorityRound.closes_at > now,
            )
        )
        or 0
    )


# A round's ballot page ------------------------------------------------------------------------
@dataclass(frozen=True)
class ShortlistEntry:
    """A topic on the shortlist, as the ballot shows it."""

    position: int  # 1-based place on the shortlist (its order of entry)
    topic_id: int
    title: str
    question: str
    evidence: EvidenceStatus
    evidence_note: str
    evidence_url: str


@dataclass(frozen=True)
class BallotPage:
    """Everything the ballot page shows."""

    round: PriorityRound
    state: RoundState
    shortlist: list[ShortlistEntry]
    # The viewer's saved ranking, best first (entries of the shortlist), and when saved.
    saved: list[ShortlistEntry]
    saved_at: datetime | None
    # The group the viewer's ballot counts in (frozen at the first save), or would count in.
    group_label: str | None
    # Why the viewer cannot rank now (None: they can), in plain words.
    closed_reason: str | None
    refused_reason: str | None

    @property
    def can_rank(self) -> bool:
        """The round is open and the viewer takes part."""
        return self.closed_reason is None and self.refused_reason is None

    @property
    def rank_choices(self) -> int:
        """How many ranks a ballot may give: the round's limit, at most the shortlist's size."""
        return min(self.round.max_ranks, len(self.shortlist))


def shortlist(session: Session, round_id: int) -> list[ShortlistEntry]:
    """The round's rankable topics, in the order they were put on the shortlist."""
    rows = session.execute(
        sa.select(ShortlistItem, Topic.title, Topic.question)
        .join(Topic, Topic.id == ShortlistItem.topic_id)
        .where(
            ShortlistItem.round_id == round_id,
            ShortlistItem.evidence_status.in_(ballots.RANKABLE_EVIDENCE),
        )
        .order_by(ShortlistItem.id)
    ).all()
    return [
        ShortlistEntry(
            position=index,
            topic_id=item.topic_id,
            title=title,
            question=question,
            evidence=item.evidence_status,
            evidence_note=item.evidence_note,
            evidence_url=item.evidence_url,
        )
        for index, (item, title, question) in enumerate(rows, start=1)
    ]


def ballot_page(
    session: Session, round_id: int, viewer: User | None, now: datetime
) -> BallotPage | None:
    """The round's ballot page for ``viewer`` (None: no such round)."""
    round_ = session.get(PriorityRound, round_id, options=WITHOUT_PUBLISHED)
    if round_ is None:
        return None
    entries = shortlist(session, round_id)
    ballot = (
        ballots.current_ballot(session, round_id, viewer.id) if viewer is not None else None
    )
    by_topic = {entry.topic_id: entry for entry in entries}
    saved = [by_topic[t] for t in (ballot.ranking if ballot else []) if t in by_topic]
    groups = {group["code"]: group["label"] for group in round_.groups}
    if ballot is not None:
        group_label = groups.get(ballot.group_code, ballot.group_code)
    else:
        group = rules.group_for(round_, viewer)
        group_label = group["label"] if group else None
    return BallotPage(
        round=round_,
        state=rules.state(round_, now),
        shortlist=entries,
        saved=saved,
        saved_at=ballot.updated_at if ballot else None,
        group_label=group_label,
        closed_reason=ballots.why_not_open(round_, now),
        refused_reason=ballots.why_not_taking_part(round_, viewer),
    )


# A closed round's results ---------------------------------------------------------------------
@dataclass(frozen=True)
class RankedTopic:
    """A topic at a place of a ranking."""

    position: int
    topic_id: int
    title: str
    score: int  # combined score, or points within a group
    is_adopted: bool
    groups_ranked: int = 0
    survey_position: int | None = None  # for the workshop's list: its place in the survey
    change_reason: str = ""


@dataclass(frozen=True)
class GroupRanking:
    """One group's own ranking (empty when suppressed)."""

    code: str
    label: str
    ballots: int
    is_suppressed: bool  # fewer than SMALL_GROUP_BALLOTS ballots: not shown
    ranking: list[RankedTopic] = field(default_factory=list)


@dataclass(frozen=True)
class ResultsPage:
    """Everything the results page shows."""

    round: PriorityRound
    top: list[RankedTopic]
    groups: list[GroupRanking]
    ballots: int
    most_score: int  # the longest bar's score (for drawing the chart)
    agreed: list[RankedTopic]  # the final workshop's Top 10 (empty until recorded)
    small_group_ballots: int = SMALL_GROUP_BALLOTS

    @property
    def has_ballot_file(self) -> bool:
        """The anonymised ballots are published (with the result, by the closing job), unless a
        group too small to show could be told apart in them (see :func:`ballots_are_public`)."""
        return self.round.closed_at is not None and all(
            group.ballots == 0 or group.ballots >= self.small_group_ballots
            for group in self.groups
        )


def ballots_are_public(result: dict | None) -> bool:
    """Whether a closed round's ballot file may be published: every group that ranked has at
    least ``SMALL_GROUP_BALLOTS`` ballots. A smaller group's rankings would be as good as
    named (one MS organisation's ballot is that organisation's), so then only staff get the
    file, on request, as they get every other small count."""
    if result is None:
        return False
    return all(
        group["ballots"] == 0 or group["ballots"] >= SMALL_GROUP_BALLOTS
        for group in result.get("groups", [])
    )


def _topic_facts(session: Session, topic_ids: set[int]) -> dict[int, tuple[str, bool]]:
    """Title and whether adopted, by topic id (one statement)."""
    if not topic_ids:
        return {}
    return {
        row.id: (row.title, row.status == TopicStatus.ADOPTED)
        for row in session.execute(
            sa.select(Topic.id, Topic.title, Topic.status).where(Topic.id.in_(topic_ids))
        )
    }


def results_page(session: Session, round_id: int) -> ResultsPage | None:
    """A closed round's results (None: no such round, or not closed and tallied yet)."""
    round_ = session.get(PriorityRound, round_id, options=[WITHOUT_BALLOT_FILE])
    if round_ is None or round_.closed_at is None or round_.result is None:
        return None
    result = RoundResult.from_json(round_.result)
    agreed_rows = session.scalars(
        sa.select(RoundAgreedItem)
        .where(RoundAgreedItem.round_id == round_id)
        .order_by(RoundAgreedItem.position)
    ).all()
    top = result.top()
    shown_groups = [g for g in result.groups if g.ballots >= SMALL_GROUP_BALLOTS]
    topic_ids = {t.topic_id for t in top} | {row.topic_id for row in agreed_rows}
    for group in shown_groups:
        topic_ids.update(group.ranking[: result.max_ranks])
    facts = _topic_facts(session, topic_ids)

    def ranked(position: int, topic_id: int, score: int, **extra: Any) -> RankedTopic:
        title, adopted = facts.get(topic_id, (f"Topic {topic_id}", False))
        return RankedTopic(position, topic_id, title, score, adopted, **extra)

    survey_positions = {t.topic_id: t.position for t in result.combined}
    groups = [
        GroupRanking(
            code=group.code,
            label=group.label,
            ballots=group.ballots,
            is_suppressed=group.ballots < SMALL_GROUP_BALLOTS,
            ranking=[
                ranked(index, topic_id, group.points.get(topic_id, 0))
                for index, topic_id in enumerate(group.ranking[: result.max_ranks], start=1)
            ]
            if group.ballots >= SMALL_GROUP_BALLOTS
            else [],
        )
        for group in result.groups
    ]
    return ResultsPage(
        round=round_,
        top=[
            ranked(t.position, t.topic_id, t.score, groups_ranked=t.groups_ranked) for t in top
        ],
        groups=groups,
        ballots=sum(group.ballots for group in result.groups),
        most_score=max([t.score for t in top] or [1]),
        agreed=[
            ranked(
                row.position,
                row.topic_id,
                0,
                survey_position=survey_positions.get(row.topic_id),
                change_reason=row.change_reason,
            )
            for row in agreed_rows
        ]
        if round_.workshop_recorded_at is not None
        else [],
    )
