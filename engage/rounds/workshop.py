"""The final workshop of a round: staff record the Top 10 the workshop agreed (it may differ
from the survey's, with a reason for every change), then mark topics of it adopted for
research, which tells their authors and supporters (through the topics' own status emails) and
the people who ranked in the round (one email each per adoption).

Functions take the session, the acting person and ``now`` explicitly and never commit; the
caller commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts.models import User
from engage.db import lock_rows
from engage.rounds import emails
from engage.rounds.audit_actions import RoundAction, target
from engage.rounds.models import Ballot, PriorityRound, RoundAgreedItem
from engage.rounds.rules import InvalidWorkshop, RoundState, state
from engage.rounds.setup import require_staff
from engage.rounds.tally import RoundResult
from engage.topics import lifecycle
from engage.topics.errors import TopicError
from engage.topics.models import Topic, TopicStatus

REASON_MAX_LENGTH = 1_000
NOTE_MAX_LENGTH = 5_000
# Topics that are adopted already (by an earlier adoption, or since completed).
ALREADY_ADOPTED = frozenset({TopicStatus.ADOPTED, TopicStatus.COMPLETED})


class ReasonRequired(InvalidWorkshop):
    """A place of the agreed list differs from the survey and no reason was given."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class AdoptionOutcome:
    """What one adoption did."""

    adopted: list[int]  # topics moved to "adopted for research" now
    already: list[int]  # topics that were adopted before
    voters_told: int  # emails queued to people who ranked in the round


def survey_positions(round_: PriorityRound) -> dict[int, int]:
    """Topic id → its place in the survey's combined Top N (closed rounds only)."""
    if round_.result is None:
        return {}
    return {item.topic_id: item.position for item in RoundResult.from_json(round_.result).top()}


def agreed_items(session: Session, round_id: int) -> list[RoundAgreedItem]:
    """The workshop's agreed Top 10 of a round, in order (empty until recorded)."""
    return list(
        session.scalars(
            sa.select(RoundAgreedItem)
            .where(RoundAgreedItem.round_id == round_id)
            .order_by(RoundAgreedItem.position)
        )
    )


def _lock_closed(session: Session, round_: PriorityRound, now: datetime) -> None:
    lock_rows(session, PriorityRound, [round_.id])
    session.refresh(round_)
    if state(round_, now) != RoundState.CLOSED:
        raise InvalidWorkshop(
            "The round has not closed yet: the workshop's Top 10 is recorded after the survey "
            "result is published."
        )


def _titles(session: Session, topic_ids: Sequence[int]) -> dict[int, str]:
    return dict(
        session.execute(sa.select(Topic.id, Topic.title).where(Topic.id.in_(list(topic_ids)))).all()
    )


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def record_workshop(
    session: Session,
    staff: User,
    round_: PriorityRound,
    agreed: Sequence[tuple[int, str]],
    note: str,
    now: datetime,
) -> list[RoundAgreedItem]:
    """Record (or record again) the workshop's agreed Top 10 of a closed round.

    :param agreed: (topic id, reason for the change) by place, best first: up to the round's
        ``max_ranks`` different topics of its shortlist. A reason is required for every topic
        whose place differs from its place in the survey's Top N, or that was not in it.
    :param note: what the workshop wants said about its decisions (may be empty).
    :raises InvalidWorkshop: the round has not closed, or the list or a reason is not right.
    """
    require_staff(staff)
    _lock_closed(session, round_, now)
    if not agreed:
        raise InvalidWorkshop("Choose at least one topic for the agreed Top 10.")
    if len(agreed) > round_.max_ranks:
        raise InvalidWorkshop(f"The agreed list holds at most {round_.max_ranks} topics.")
    topic_ids = [topic_id for topic_id, _reason in agreed]
    if len(set(topic_ids)) != len(topic_ids):
        raise InvalidWorkshop("Each topic can take only one place in the agreed list.")
    shortlist = set(RoundResult.from_json(round_.result).shortlist) if round_.result else set()
    if not set(topic_ids) <= shortlist:
        raise InvalidWorkshop("Choose topics from this round's shortlist.")
    note = note.strip()
    if len(note) > NOTE_MAX_LENGTH:
        raise InvalidWorkshop(f"Use at most {NOTE_MAX_LENGTH:,} characters for the note.")
    survey = survey_positions(round_)
    titles = _titles(session, topic_ids)
    items = []
    changed = 0
    for position, (topic_id, reason) in enumerate(agreed, start=1):
        reason = reason.strip()
        if len(reason) > REASON_MAX_LENGTH:
            raise InvalidWorkshop(
                f"Place {position}: use at most {REASON_MAX_LENGTH:,} characters for the reason."
            )
        was = survey.get(topic_id)
        if was != position:
            changed += 1
            if not reason:
                where = (
                    f"was {_ordinal(was)} in the survey" if was else "was not in the survey's top"
                )
                raise ReasonRequired(
                    f"Place {position}: “{titles.get(topic_id, topic_id)}” {where}. Say why the "
                    "workshop placed it here.",
                    position,
                )
        items.append(
            RoundAgreedItem(
                round_id=round_.id, position=position, topic_id=topic_id, change_reason=reason
            )
        )
    replaced = session.execute(
        sa.delete(RoundAgreedItem).where(RoundAgreedItem.round_id == round_.id)
    ).rowcount
    session.flush()
    session.add_all(items)
    round_.workshop_recorded_at = now
    round_.workshop_note = note
    session.flush()
    audit.record(
        session,
        RoundAction.WORKSHOP_RECORDED,
        now=now,
        actor_id=staff.id,
        target=target(round_.id),
        places=len(items),
        changed=changed,
        replaced=bool(replaced),
    )
    return items


def voter_ids(session: Session, round_id: int) -> list[int]:
    """The people who have a ballot in the round (accounts deleted since are not among them)."""
    return list(
        session.scalars(
            sa.select(Ballot.user_id)
            .where(Ballot.round_id == round_id, Ballot.user_id.is_not(None))
            .distinct()
            .order_by(Ballot.user_id)
        )
    )


def adopt_topics(
    session: Session, staff: User, round_: PriorityRound, topic_ids: Sequence[int], now: datetime
) -> AdoptionOutcome:
    """Mark topics of the agreed Top 10 "adopted for research".

    Each topic moves through ``engage.topics.lifecycle.change_status``, which tells its author
    and supporters. The people who ranked in the round get one email listing the topics this
    adoption moved; adopting the same topics again moves and sends nothing.

    :raises InvalidWorkshop: the round has not closed, no agreed Top 10 is recorded, a topic
        is not in it, or a topic cannot be adopted (it is no longer shortlisted).
    """
    require_staff(staff)
    _lock_closed(session, round_, now)
    agreed = {item.topic_id: item.position for item in agreed_items(session, round_.id)}
    if not agreed:
        raise InvalidWorkshop("Record the workshop's agreed Top 10 first.")
    chosen = sorted(set(topic_ids), key=lambda topic_id: agreed.get(topic_id, 0))
    if not chosen:
        raise InvalidWorkshop("Choose at least one topic to mark adopted.")
    if any(topic_id not in agreed for topic_id in chosen):
        raise InvalidWorkshop("Only topics in the agreed Top 10 can be marked adopted.")
    adopted, already = [], []
    for topic_id in chosen:
        topic = session.get(Topic, topic_id)
        if topic is None:  # topics are never deleted while a round refers to them
            raise InvalidWorkshop("A chosen topic no longer exists.")
        if topic.status in ALREADY_ADOPTED:
            already.append(topic_id)
            continue
        try:
            lifecycle.change_status(session, staff, topic, TopicStatus.ADOPTED, now)
        except TopicError as exc:
            raise InvalidWorkshop(f"“{topic.title}” cannot be adopted: {exc}") from exc
        adopted.append(topic_id)
    told = 0
    if adopted:
        told = sum(
            emails.queue_adopted(session, round_.id, adopted, user_id, now)
            for user_id in voter_ids(session, round_.id)
        )
    audit.record(
        session,
        RoundAction.TOPICS_ADOPTED,
        now=now,
        actor_id=staff.id,
        target=target(round_.id),
        adopted=adopted,
        already=already,
        voters_told=told,
    )
    return AdoptionOutcome(adopted=adopted, already=already, voters_told=told)
