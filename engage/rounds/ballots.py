"""Casting a ballot in a priority-setting round: a ranking of shortlist topics, saved whole.

A person has one ballot per round (a database constraint). Every save replaces its ranking in
one UPDATE and appends an event to the round's hash chain (``engage.rounds.chain``), so the
history of a ballot is append-only while the current ranking is one row. Saves queue on the
round's row lock: two saves at once end with one of them whole, never a mix, and the chain
stays a single line.

Functions take the session, the person and ``now`` explicitly and never commit; the caller
commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import Role, User
from engage.rounds import chain, rules
from engage.rounds.models import Ballot, EvidenceStatus, PriorityRound, ShortlistItem
from engage.rounds.rules import InvalidBallot, NotAllowed, RoundState

# Only these evidence checks let a topic onto a ballot (answered questions need no research).
RANKABLE_EVIDENCE = (EvidenceStatus.UNANSWERED, EvidenceStatus.PARTLY_ANSWERED)


def _when(value: datetime) -> str:
    return value.strftime("%d %B %Y at %H:%M UTC")


def why_not_open(round_: PriorityRound, now: datetime) -> str | None:
    """Why ballots cannot be saved in ``round_`` now, in plain words; None while it is open."""
    current = rules.state(round_, now)
    if current == RoundState.OPEN:
        return None
    if current == RoundState.UPCOMING:
        return f"This round opens on {_when(round_.opens_at)}. You can rank topics from then."
    return (
        f"This round closed on {_when(round_.closes_at)}: rankings can no longer be saved or "
        "changed."
    )


def why_not_taking_part(round_: PriorityRound, user: User | None) -> str | None:
    """Why ``user`` cannot rank topics in ``round_``, in plain words; None when they can."""
    if rules.group_for(round_, user) is not None:
        return None
    if user is None:
        return "Sign in to rank the topics."
    if user.role not in rules.TAKING_PART_ROLES:
        return (
            "Rounds are for people with MS, healthcare professionals and MS organisations: "
            "your account does not take part."
        )
    if not user.is_active:
        return "Your account is not active, so it cannot take part."
    if not user.is_email_verified:
        return "Please confirm your email address first: then you can rank the topics."
    if user.role == Role.CLINICIAN and user.clinician_verified_at is None:
        return (
            "Staff have not yet checked your details as a healthcare professional. You can "
            "rank the topics once they have."
        )
    labels = ", ".join(group["label"] for group in round_.groups)
    return f"This round is for these groups only: {labels}. Your account is not in one of them."


def rankable_topic_ids(session: Session, round_id: int) -> set[int]:
    """The topic ids a ballot in the round may rank: its shortlist's unanswered and partly
    answered questions."""
    return set(
        session.scalars(
            sa.select(ShortlistItem.topic_id).where(
                ShortlistItem.round_id == round_id,
                ShortlistItem.evidence_status.in_(RANKABLE_EVIDENCE),
            )
        )
    )


def check_ranking(ranking: Sequence[int], allowed: set[int], max_ranks: int) -> list[int]:
    """``ranking`` as a list of topic ids if it can be saved; raises :class:`InvalidBallot`.

    :param allowed: the round's rankable topic ids.
    """
    ids = list(ranking)
    if not ids:
        raise InvalidBallot("Rank at least one topic.")
    if len(ids) > max_ranks:
        raise InvalidBallot(f"Rank at most {max_ranks} topics.")
    if len(set(ids)) != len(ids):
        raise InvalidBallot("Each topic can have one rank only.")
    if any(not isinstance(topic_id, int) or topic_id not in allowed for topic_id in ids):
        raise InvalidBallot("Rank only topics on this round's shortlist.")
    return ids


def current_ballot(session: Session, round_id: int, user_id: int) -> Ballot | None:
    """The person's ballot in the round as the database has it now, or None."""
    return session.scalar(
        sa.select(Ballot)
        .where(Ballot.round_id == round_id, Ballot.user_id == user_id)
        .execution_options(populate_existing=True)
    )


def cast_ballot(
    session: Session, user: User, round_id: int, ranking: Sequence[int], now: datetime
) -> Ballot:
    """Save ``user``'s ranking (topic ids, best first) in the round, replacing any earlier one.

    Refused unless the round is open, the person takes part, and the ranking has 1 to
    ``max_ranks`` distinct topics of the shortlist. The group is the one the person was in at
    their first save, kept for every later save. Saving the ranking already saved records
    nothing (a double click).
    """
    # Locked before anything is read: saves in the round queue here, and the state, the
    # person's ballot and the chain's head are read as the save before left them.
    chain.lock_round(session, round_id)
    round_ = session.get(PriorityRound, round_id, populate_existing=True)
    if round_ is None:
        raise InvalidBallot("This round does not exist.")
    closed = why_not_open(round_, now)
    if closed is not None:
        raise InvalidBallot(closed)
    refused = why_not_taking_part(round_, user)
    if refused is not None:
        raise NotAllowed(refused)
    ids = check_ranking(ranking, rankable_topic_ids(session, round_id), round_.max_ranks)
    ballot = current_ballot(session, round_id, user.id)
    if ballot is not None and list(ballot.ranking) == ids:
        return ballot
    if ballot is None:
        group = rules.group_for(round_, user)
        assert group is not None  # checked above
        ballot = Ballot(
            round_id=round_id,
            user_id=user.id,
            ballot_uid=str(uuid.uuid4()),
            group_code=group["code"],
            ranking=ids,
            version=1,
            cast_at=now,
            updated_at=now,
        )
        session.add(ballot)
    else:
        ballot.ranking = ids
        ballot.version += 1
        ballot.updated_at = now
    chain.append_event(
        session,
        round_id=round_id,
        ballot_uid=ballot.ballot_uid,
        group_code=ballot.group_code,
        ranking=ids,
        now=now,
    )
    return ballot
