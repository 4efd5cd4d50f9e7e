"""Priority-setting rounds, the James Lind Alliance way: a shortlist of topics with an evidence
check, ranked ballots (one per person per round), a tally that weighs every group equally, and
the final workshop's agreed Top 10.

A person's ballot is one row (``round_ballots``, unique per round and person) holding the whole
ranking, replaced in one UPDATE, so two saves at once leave one of them whole, never a mix. Every
save also appends a ``round_ballot_events`` row to the round's hash chain (``engage.hashchain``,
checked by ``engage audit verify``); a later event of the same ballot supersedes the earlier.
Ballot files and results name ballots by a random ``ballot_uid``, never by person.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from engage.db import Base, UTCDateTime
from engage.enums import LabelledEnum, enum_column

DEFAULT_MAX_RANKS = 10
# A group with fewer ballots than this shows no ranking of its own (small-cell suppression).
SMALL_GROUP_BALLOTS = 5


class EvidenceStatus(LabelledEnum):
    """What staff found when they checked a question against the existing research."""

    UNANSWERED = "unanswered", "Unanswered"
    PARTLY_ANSWERED = "partly_answered", "Partly answered"
    ANSWERED = "answered", "Already answered"


class PriorityRound(Base):
    """One priority-setting round: its question, groups, timetable, shortlist and outcome.

    ``groups`` is the list of groups as formed when the round was created, each
    ``{"code": ..., "label": ..., "roles": [role values]}``; a ballot records the group its
    caster was in when they cast it. ``closed_at`` is set exactly once, by the closing job, in
    the same transaction as ``result`` (the tally) and ``ballot_file`` (the anonymised ballots
    the tally was computed from).
    """

    __tablename__ = "priority_rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    question: Mapped[str] = mapped_column(sa.Text)
    max_ranks: Mapped[int] = mapped_column(default=DEFAULT_MAX_RANKS)
    groups: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    # Megabytes for a large round: loaded only when asked for (sa.orm.undefer).
    ballot_file: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, deferred=True)
    # When staff recorded the final workshop's agreed Top 10 (its rows: RoundAgreedItem).
    workshop_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    workshop_note: Mapped[str] = mapped_column(sa.Text, default="")

    __table_args__ = (
        sa.CheckConstraint("max_ranks BETWEEN 1 AND 30", name="max_ranks_range"),
        sa.CheckConstraint("closes_at > opens_at", name="closes_after_opening"),
    )


class ShortlistItem(Base):
    """A topic on a round's shortlist, with the evidence check staff recorded for it.

    Only unanswered and partly answered questions enter a shortlist (the services refuse the
    rest); the row keeps what staff found and where.
    """

    __tablename__ = "round_shortlist_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(
        sa.ForeignKey("priority_rounds.id", ondelete="CASCADE"), index=True
    )
    topic_id: Mapped[int] = mapped_column(sa.ForeignKey("topics.id", ondelete="RESTRICT"))
    evidence_status: Mapped[EvidenceStatus] = mapped_column(enum_column(EvidenceStatus))
    evidence_note: Mapped[str] = mapped_column(sa.Text, default="")
    evidence_url: Mapped[str] = mapped_column(sa.String(500), default="")
    checked_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (sa.UniqueConstraint("round_id", "topic_id"),)


class Ballot(Base):
    """A person's current ballot in a round: the whole ranking, best first (topic ids).

    ``group_code`` is the group the person was in when they first cast it, frozen there;
    ``user_id`` is cleared when the account is deleted (the ballot still counts, anonymously).
    """

    __tablename__ = "round_ballots"

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(
        sa.ForeignKey("priority_rounds.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    ballot_uid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    group_code: Mapped[str] = mapped_column(sa.String(40))
    ranking: Mapped[list[int]] = mapped_column(sa.JSON)
    # How many times it was saved (the events' seq of this ballot's latest event).
    version: Mapped[int] = mapped_column(default=1)
    cast_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (sa.UniqueConstraint("round_id", "user_id"),)


class BallotEvent(Base):
    """One save of one ballot, in the round's hash chain (append-only; never updated)."""

    __tablename__ = "round_ballot_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(
        sa.ForeignKey("priority_rounds.id", ondelete="CASCADE"), index=True
    )
    # Position in the round's chain, from 1.
    seq: Mapped[int] = mapped_column()
    ballot_uid: Mapped[str] = mapped_column(sa.String(36), index=True)
    group_code: Mapped[str] = mapped_column(sa.String(40))
    ranking: Mapped[list[int]] = mapped_column(sa.JSON)
    cast_at: Mapped[datetime] = mapped_column(UTCDateTime())
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))

    __table_args__ = (sa.UniqueConstraint("round_id", "seq"),)


class RoundAgreedItem(Base):
    """One place of the Top 10 the final workshop agreed, with the reason where it differs from
    the survey's result."""

    __tablename__ = "round_agreed_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(
        sa.ForeignKey("priority_rounds.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column()
    topic_id: Mapped[int] = mapped_column(sa.ForeignKey("topics.id", ondelete="RESTRICT"))
    change_reason: Mapped[str] = mapped_column(sa.Text, default="")

    __table_args__ = (
        sa.UniqueConstraint("round_id", "position"),
        sa.UniqueConstraint("round_id", "topic_id"),
    )
