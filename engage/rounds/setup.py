"""Staff set up a priority-setting round: its question, groups and timetable, and its
shortlist of topics, each with the evidence check staff recorded.

A round and its shortlist can change only while it is upcoming (nobody has ranked anything
yet). A round must open in the future, so staff have time to build its shortlist; if its
opening time comes with the shortlist still empty, nobody can rank, and staff may still move
its times (see :func:`can_change_details`) and then add topics.

Functions take the session, the acting person and ``now`` explicitly and never commit; the
caller commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import audit
from engage.accounts.models import User
from engage.db import lock_rows
from engage.rounds.audit_actions import RoundAction, target
from engage.rounds.models import (
    DEFAULT_MAX_RANKS,
    Ballot,
    EvidenceStatus,
    PriorityRound,
    ShortlistItem,
)
from engage.rounds.rules import (
    DEFAULT_GROUPS,
    TAKING_PART_ROLES,
    InvalidRound,
    NotAllowed,
    RoundState,
    state,
)
from engage.topics.models import Topic, TopicStatus

TITLE_MAX_LENGTH = 200
QUESTION_MAX_LENGTH = 2_000
EVIDENCE_NOTE_MAX_LENGTH = 2_000
EVIDENCE_URL_MAX_LENGTH = 500
MAX_RANKS_LIMIT = 30  # the table's check constraint
# More topics than this is no longer a shortlist a person can read through and rank.
MAX_SHORTLIST = 100
# The roles that can take part, in the order of the default groups.
ROLE_ORDER = [role for group in DEFAULT_GROUPS for role in group["roles"]]


@dataclass
class RoundDetails:
    """What staff write about a round.

    :param roles: role values taking part; each forms its own group (labels from
        ``rules.DEFAULT_GROUPS``), and every group weighs the same in the result.
    """

    title: str
    question: str
    roles: list[str]
    opens_at: datetime
    closes_at: datetime
    max_ranks: int = DEFAULT_MAX_RANKS


def require_staff(user: User) -> None:
    """Raise ``NotAllowed`` unless ``user`` is coordination-centre staff."""
    if not user.is_staff:
        raise NotAllowed("Only coordination-centre staff can do this.")


def groups_for(roles: list[str]) -> list[dict]:
    """The groups of a round where ``roles`` take part: one per role, in the default order."""
    chosen = set(roles)
    return [
        dict(group, roles=list(group["roles"]))
        for group in DEFAULT_GROUPS
        if set(group["roles"]) & chosen
    ]


def _check(details: RoundDetails, now: datetime) -> None:
    title, question = details.title.strip(), details.question.strip()
    if not title:
        raise InvalidRound("Write the round's title.")
    if len(title) > TITLE_MAX_LENGTH:
        raise InvalidRound(f"Use at most {TITLE_MAX_LENGTH} characters for the title.")
    if not question:
        raise InvalidRound("Write the question people answer by ranking.")
    if len(question) > QUESTION_MAX_LENGTH:
        raise InvalidRound(f"Use at most {QUESTION_MAX_LENGTH:,} characters for the question.")
    if not 1 <= details.max_ranks <= MAX_RANKS_LIMIT:
        raise InvalidRound(
            f"People can rank between 1 and {MAX_RANKS_LIMIT} topics; choose a number in "
            "that range."
        )
    taking_part = {role.value for role in TAKING_PART_ROLES}
    if not details.roles:
        raise InvalidRound("Choose at least one group of people who take part.")
    if not set(details.roles) <= taking_part:
        raise InvalidRound(
            "Only people with MS, healthcare professionals and MS organisations take part."
        )
    if details.opens_at.tzinfo is None or details.closes_at.tzinfo is None:
        raise ValueError("opening and closing times must be timezone-aware")
    if details.opens_at < now:
        raise InvalidRound(
            "The opening time has passed. Choose a time in the future, so there is time to "
            "build the shortlist."
        )
    if details.closes_at <= details.opens_at:
        raise InvalidRound("The closing time must come after the opening time.")


def _apply(round_: PriorityRound, details: RoundDetails) -> None:
    round_.title = details.title.strip()
    round_.question = details.question.strip()
    round_.max_ranks = details.max_ranks
    round_.groups = groups_for(details.roles)
    round_.opens_at = details.opens_at
    round_.closes_at = details.closes_at


def _audit(
    session: Session,
    action: RoundAction,
    staff: User,
    round_: PriorityRound,
    now: datetime,
    **details: object,
) -> None:
    audit.record(session, action, now=now, actor_id=staff.id, target=target(round_.id), **details)


def create_round(
    session: Session, staff: User, details: RoundDetails, now: datetime
) -> PriorityRound:
    """Create an upcoming round (its shortlist is added next).

    :raises InvalidRound: a detail is missing or out of range, or it would open in the past.
    """
    require_staff(staff)
    _check(details, now)
    round_ = PriorityRound(created_by_id=staff.id, created_at=now, workshop_note="")
    _apply(round_, details)
    session.add(round_)
    session.flush()
    _audit(session, RoundAction.CREATED, staff, round_, now, groups=len(round_.groups))
    return round_


def _lock_round(session: Session, round_: PriorityRound) -> None:
    """Lock the round's row and re-read it: changes of one round (and ballots, which lock it
    too) queue here, and the checks that follow see it as it is now."""
    lock_rows(session, PriorityRound, [round_.id])
    session.refresh(round_)


def shortlist_size(session: Session, round_id: int) -> int:
    """How many topics are on the round's shortlist."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(ShortlistItem)
            .where(ShortlistItem.round_id == round_id)
        )
        or 0
    )


def can_change_details(session: Session, round_: PriorityRound, now: datetime) -> bool:
    """Whether staff may still change the round's details: while it is upcoming, or when it
    opened with an empty shortlist (nobody could rank, so moving its times harms nobody)."""
    current = state(round_, now)
    if current == RoundState.UPCOMING:
        return True
    if current != RoundState.OPEN or shortlist_size(session, round_.id):
        return False
    has_ballots = session.scalar(sa.select(sa.exists().where(Ballot.round_id == round_.id)))
    return not has_ballots


def update_round(
    session: Session, staff: User, round_: PriorityRound, details: RoundDetails, now: datetime
) -> None:
    """Change an upcoming round's details (or the times of one that opened empty).

    :raises InvalidRound: the round is open or closed, or a detail is not acceptable.
    """
    require_staff(staff)
    _lock_round(session, round_)
    if not can_change_details(session, round_, now):
        raise InvalidRound(
            "This round has opened, so its details can no longer change (people rank on "
            "what they were shown)."
        )
    _check(details, now)
    _apply(round_, details)
    _audit(session, RoundAction.UPDATED, staff, round_, now)


def _require_upcoming(round_: PriorityRound, now: datetime) -> None:
    if state(round_, now) != RoundState.UPCOMING:
        raise InvalidRound(
            "This round has opened, so its shortlist can no longer change (people rank what "
            "they were shown)."
        )


def check_evidence_url(url: str) -> str:
    """``url`` trimmed, or "" for none.

    :raises InvalidRound: it is not a web address (http or https, with a host).
    """
    url = url.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidRound("Give the evidence link as a web address starting https:// or http://.")
    if len(url) > EVIDENCE_URL_MAX_LENGTH or not url.isprintable() or " " in url:
        raise InvalidRound(
            f"Give the evidence link as one web address of at most {EVIDENCE_URL_MAX_LENGTH} "
            "characters."
        )
    return url


def add_to_shortlist(
    session: Session,
    staff: User,
    round_: PriorityRound,
    topic_id: int,
    evidence_status: EvidenceStatus,
    evidence_note: str,
    evidence_url: str,
    now: datetime,
) -> ShortlistItem:
    """Put a shortlisted topic on an upcoming round's shortlist with its evidence check.

    Only questions the evidence leaves unanswered or partly answered enter; a partly answered
    one needs a note or a link saying what is already known.

    :raises InvalidRound: the round has opened, the topic is not shortlisted or already on
        the list, the question is already answered, or the evidence check is incomplete.
    """
    require_staff(staff)
    _lock_round(session, round_)
    _require_upcoming(round_, now)
    topic = session.get(Topic, topic_id)
    if topic is None:
        raise InvalidRound("Choose a topic from the list.")
    if topic.status != TopicStatus.SHORTLISTED:
        raise InvalidRound(
            f"“{topic.title}” is “{topic.status.label.lower()}”: only shortlisted topics can "
            "enter a round. Shortlist it on the moderation page first."
        )
    if evidence_status == EvidenceStatus.ANSWERED:
        raise InvalidRound(
            "A question existing research already answers does not enter a round: people's "
            "rankings are for questions that still need research."
        )
    note = evidence_note.strip()
    url = check_evidence_url(evidence_url)
    if len(note) > EVIDENCE_NOTE_MAX_LENGTH:
        raise InvalidRound(
            f"Use at most {EVIDENCE_NOTE_MAX_LENGTH:,} characters for the evidence note."
        )
    if evidence_status == EvidenceStatus.PARTLY_ANSWERED and not (note or url):
        raise InvalidRound(
            "For a partly answered question, say what is already known: write a note or give "
            "a link to the evidence."
        )
    already = session.scalar(
        sa.select(ShortlistItem.id).where(
            ShortlistItem.round_id == round_.id, ShortlistItem.topic_id == topic_id
        )
    )
    if already is not None:
        raise InvalidRound(f"“{topic.title}” is already on this round's shortlist.")
    if shortlist_size(session, round_.id) >= MAX_SHORTLIST:
        raise InvalidRound(f"A shortlist holds at most {MAX_SHORTLIST} topics.")
    item = ShortlistItem(
        round_id=round_.id,
        topic_id=topic_id,
        evidence_status=evidence_status,
        evidence_note=note,
        evidence_url=url,
        checked_by_id=staff.id,
        added_at=now,
    )
    session.add(item)
    session.flush()
    _audit(
        session,
        RoundAction.SHORTLIST_ADDED,
        staff,
        round_,
        now,
        topic_id=topic_id,
        evidence=evidence_status.value,
    )
    return item


def remove_from_shortlist(
    session: Session, staff: User, round_: PriorityRound, topic_id: int, now: datetime
) -> None:
    """Take a topic off an upcoming round's shortlist.

    :raises InvalidRound: the round has opened, or the topic is not on its shortlist.
    """
    require_staff(staff)
    _lock_round(session, round_)
    _require_upcoming(round_, now)
    removed = session.execute(
        sa.delete(ShortlistItem).where(
            ShortlistItem.round_id == round_.id, ShortlistItem.topic_id == topic_id
        )
    ).rowcount
    if not removed:
        raise InvalidRound("That topic is not on this round's shortlist, so nothing was changed.")
    _audit(session, RoundAction.SHORTLIST_REMOVED, staff, round_, now, topic_id=topic_id)
