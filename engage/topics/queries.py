"""Read-side questions about topics: the list page, tallies by role, a person's supports."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.models import Role, User
from engage.topics.models import (
    PUBLIC_STATUS_ORDER,
    PUBLIC_STATUSES,
    Topic,
    TopicCategory,
    TopicStatus,
    TopicStatusChange,
    TopicSupport,
)

PUBLIC_LIST_CONDITION = (
    "topics.is_hidden = false AND topics.status IN "
    f"({', '.join(repr(status.value) for status in PUBLIC_STATUS_ORDER)})"
)
# Multiplier and modulus of the stable per-visitor shuffle (a prime modulus keeps it a
# permutation of ids below it; ids beyond only repeat the pattern).
SHUFFLE_MULTIPLIER = 2654435761
SHUFFLE_MODULUS = 4294967291


class TopicSort(StrEnum):
    """How the list is ordered."""

    SUPPORTED = "supported"
    NEWEST = "newest"
    RANDOM = "random"


@dataclass
class Tally:
    """Supports of one topic, combined and by the supporter's role when supporting."""

    participants: int = 0
    verified_clinicians: int = 0
    other_clinicians: int = 0
    organisations: int = 0

    @property
    def total(self) -> int:
        """Every support, whatever the role."""
        return (
            self.participants
            + self.verified_clinicians
            + self.other_clinicians
            + self.organisations
        )

    def bars(self) -> list[tuple[str, int]]:
        """(label, count) rows for the chart and its text alternative."""
        rows = [
            ("People with MS", self.participants),
            ("Verified healthcare professionals", self.verified_clinicians),
            ("MS organisations", self.organisations),
        ]
        if self.other_clinicians:
            rows.append(("Healthcare professionals not yet verified", self.other_clinicians))
        return rows


def tallies(session: Session, topic_ids: list[int]) -> dict[int, Tally]:
    """Tallies of ``topic_ids``, derived from the support rows in one grouped query."""
    found = {topic_id: Tally() for topic_id in topic_ids}
    if not topic_ids:
        return found
    rows = session.execute(
        sa.select(
            TopicSupport.topic_id,
            TopicSupport.role,
            TopicSupport.is_verified_clinician,
            sa.func.count(),
        )
        .where(TopicSupport.topic_id.in_(topic_ids))
        .group_by(TopicSupport.topic_id, TopicSupport.role, TopicSupport.is_verified_clinician)
    )
    for topic_id, role, verified, count in rows:
        tally = found[topic_id]
        if role == Role.PARTICIPANT:
            tally.participants += count
        elif role == Role.CLINICIAN and verified:
            tally.verified_clinicians += count
        elif role == Role.CLINICIAN:
            tally.other_clinicians += count
        elif role == Role.ORGANISATION:
            tally.organisations += count
    return found


def supported_ids(session: Session, user: User | None, topic_ids: list[int]) -> set[int]:
    """Which of ``topic_ids`` the viewer supports (empty for anonymous visitors)."""
    if user is None or not topic_ids:
        return set()
    return set(
        session.scalars(
            sa.select(TopicSupport.topic_id).where(
                TopicSupport.user_id == user.id, TopicSupport.topic_id.in_(topic_ids)
            )
        )
    )


@dataclass
class TopicRow:
    """One line of the list: the topic and its author's display name."""

    topic: Topic
    author_name: str


@dataclass
class TopicPage:
    """One page of the topic list."""

    rows: list[TopicRow]
    total: int
    page: int
    per_page: int
    tallies: dict[int, Tally] = field(default_factory=dict)
    supported: set[int] = field(default_factory=set)

    @property
    def pages(self) -> int:
        """How many pages the list has (at least one)."""
        return max(1, -(-self.total // self.per_page))


def list_topics(
    session: Session,
    *,
    viewer: User | None = None,
    category: TopicCategory | None = None,
    status: TopicStatus | None = None,
    text: str = "",
    sort: TopicSort = TopicSort.SUPPORTED,
    seed: int = 0,
    page: int = 1,
    per_page: int = 20,
) -> TopicPage:
    """Public topics, filtered, searched, sorted and paginated, with tallies.

    Issues four statements whatever the page size: count, page, tallies, viewer's supports.
    """
    # Written out, not bound, so the planner matches the partial indexes of the public list.
    conditions = [sa.text(PUBLIC_LIST_CONDITION)]
    if status in PUBLIC_STATUSES:
        conditions.append(Topic.status == status)
    if category is not None:
        conditions.append(Topic.category == category)
    text = (text or "").strip()
    if text:
        conditions.append(
            sa.or_(
                sa.func.lower(Topic.title).contains(text.lower(), autoescape=True),
                sa.func.lower(Topic.question).contains(text.lower(), autoescape=True),
            )
        )
    total = session.scalar(sa.select(sa.func.count()).select_from(Topic).where(*conditions)) or 0
    if sort == TopicSort.NEWEST:
        order = [Topic.published_at.desc(), Topic.id.desc()]
    elif sort == TopicSort.RANDOM:
        # In 64-bit arithmetic: PostgreSQL would otherwise bind the constants as 32-bit integers
        # (the multiplier does not fit) and the product would overflow.
        big_id = sa.cast(Topic.id, sa.BigInteger)
        multiplier = sa.literal(SHUFFLE_MULTIPLIER, sa.BigInteger)
        modulus = sa.literal(SHUFFLE_MODULUS, sa.BigInteger)
        order = [(big_id * multiplier + seed) % modulus, Topic.id]
    else:
        order = [Topic.support_count.desc(), Topic.id.desc()]
    page = max(1, page)
    result = session.execute(
        sa.select(Topic, User.display_name)
        .join(User, User.id == Topic.author_id)
        .where(*conditions)
        .order_by(*order)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    rows = [TopicRow(topic=topic, author_name=name) for topic, name in result]
    ids = [row.topic.id for row in rows]
    return TopicPage(
        rows=rows,
        total=total,
        page=page,
        per_page=per_page,
        tallies=tallies(session, ids),
        supported=supported_ids(session, viewer, ids),
    )


def history(session: Session, topic_ids: list[int]) -> dict[int, list[TopicStatusChange]]:
    """Status changes of ``topic_ids``, oldest first, in one query."""
    found: dict[int, list[TopicStatusChange]] = {topic_id: [] for topic_id in topic_ids}
    if topic_ids:
        for change in session.scalars(
            sa.select(TopicStatusChange)
            .where(TopicStatusChange.topic_id.in_(topic_ids))
            .order_by(TopicStatusChange.created_at, TopicStatusChange.id)
        ):
            found[change.topic_id].append(change)
    return found
