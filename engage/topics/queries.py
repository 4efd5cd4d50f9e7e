"""Read-side questions about topics: the list page, tallies by role, a person's supports,
what staff moderate, the discussion, and topics like a new title."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts import queries as account_queries
from engage.accounts.models import Role, User
from engage.topics.models import (
    PUBLIC_STATUS_ORDER,
    PUBLIC_STATUSES,
    ContentReport,
    ReportStatus,
    Topic,
    TopicCategory,
    TopicComment,
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
        sa.select(Topic, account_queries.display_name_of(Topic.author_id))
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


# Possible duplicates --------------------------------------------------------------------------
STOPWORDS = frozenset(
    (
        "about after also does from have into more much should than that their them then "
        "there these they this what when where which while will with would your could "
        "being been"
    ).split()
)
WORD = re.compile(r"[^\W\d_]{4,}", re.UNICODE)


def _words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if w not in STOPWORDS}


def similar_topics(
    session: Session, title: str, exclude_id: int | None = None, limit: int = 5
) -> list[Topic]:
    """Public topics whose titles share meaningful words with ``title``, most similar first."""
    words = _words(title or "")
    if not words:
        return []
    probes = sorted(words, key=len, reverse=True)[:5]
    query = (
        sa.select(Topic)
        .where(
            Topic.status.in_(PUBLIC_STATUSES),
            Topic.is_hidden.is_(False),
            sa.or_(
                *(sa.func.lower(Topic.title).contains(word, autoescape=True) for word in probes)
            ),
        )
        .limit(200)
    )
    if exclude_id is not None:
        query = query.where(Topic.id != exclude_id)
    scored = []
    for topic in session.scalars(query):
        other = _words(topic.title)
        if other:
            score = len(words & other) / len(words | other)
            if score >= 0.2:
                scored.append((score, topic.support_count, topic))
    scored.sort(key=lambda item: (-item[0], -item[1], item[2].id))
    return [topic for _score, _count, topic in scored[:limit]]


# The topic's page and the author's own list -----------------------------------------------------
def author_name(session: Session, topic: Topic) -> str | None:
    """The display name of ``topic``'s author."""
    return account_queries.display_names(session, [topic.author_id]).get(topic.author_id)


def comments_with_authors(session: Session, topic_id: int) -> list[tuple[TopicComment, str]]:
    """Every comment of the topic (hidden ones too), oldest first, with its author's name."""
    return [
        (comment, name)
        for comment, name in session.execute(
            sa.select(TopicComment, account_queries.display_name_of(TopicComment.author_id))
            .where(TopicComment.topic_id == topic_id)
            .order_by(TopicComment.created_at, TopicComment.id)
        )
    ]


def topics_by_author(session: Session, author_id: int) -> list[Topic]:
    """Every topic the person proposed, whatever its status, newest first."""
    return list(
        session.scalars(
            sa.select(Topic).where(Topic.author_id == author_id).order_by(Topic.created_at.desc())
        )
    )


# Moderation -------------------------------------------------------------------------------------
def awaiting_moderation(session: Session) -> list[tuple[Topic, str]]:
    """Submitted topics, oldest first, with their author's name."""
    return [
        (topic, name)
        for topic, name in session.execute(
            sa.select(Topic, account_queries.display_name_of(Topic.author_id))
            .where(Topic.status == TopicStatus.SUBMITTED)
            .order_by(Topic.created_at)
        )
    ]


@dataclass
class ReportedItem:
    """A topic, or one of its comments, with the reasons of its open reports."""

    topic_id: int
    comment_id: int | None
    title: str
    comment: str | None
    reasons: list[str] = field(default_factory=list)


def reported_items(session: Session) -> list[ReportedItem]:
    """Items with open reports, by topic and comment, each with its reasons in report order."""
    rows = session.execute(
        sa.select(ContentReport, Topic.title, TopicComment.body)
        .join(Topic, Topic.id == ContentReport.topic_id)
        .outerjoin(TopicComment, TopicComment.id == ContentReport.comment_id)
        .where(ContentReport.status == ReportStatus.OPEN)
        .order_by(ContentReport.topic_id, ContentReport.comment_id, ContentReport.created_at)
    ).all()
    grouped: dict[tuple[int, int | None], ReportedItem] = {}
    for report, title, body in rows:
        item = grouped.setdefault(
            (report.topic_id, report.comment_id),
            ReportedItem(report.topic_id, report.comment_id, title, body),
        )
        item.reasons.append(report.reason)
    return list(grouped.values())


def supporter_ids(topic_ids: Iterable[int]) -> sa.Select[tuple[int]]:
    """A query of the ids of the people who currently support any of ``topic_ids``, for other
    packages to use as a subquery (a progress report reaches the people who asked for it)."""
    return sa.select(TopicSupport.user_id).where(TopicSupport.topic_id.in_(list(topic_ids)))
