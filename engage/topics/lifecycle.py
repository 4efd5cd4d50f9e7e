"""A topic's life: its author proposes it (and sends it again when returned), staff move it
along its statuses or merge it into another, its author may withdraw it. Every change is
recorded, and the people it concerns are told by email through the outbox.

Functions take the session, the acting person and ``now`` explicitly and never commit; the
caller commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import outbox
from engage.accounts.models import User
from engage.db import lock_rows
from engage.topics.errors import (
    DuplicateSubmission,
    InvalidMerge,
    InvalidTransition,
    NotAllowed,
    ReasonRequired,
    TooManyPendingTopics,
    TopicHasSupports,
    require_contributor,
    require_staff,
)
from engage.topics.models import (
    OPEN_STATUSES,
    SupportAction,
    Topic,
    TopicCategory,
    TopicStatus,
    TopicStatusChange,
    TopicSupport,
    TopicSupportEvent,
)
from engage.topics.supports import _count_supports

MAX_REFERENCE_LINKS = 5
# An identical topic from the same author within this time is the same submission sent twice.
DUPLICATE_SUBMISSION_WINDOW = timedelta(minutes=10)


# Proposing ---------------------------------------------------------------------------------
@dataclass
class TopicDetails:
    """What an author writes."""

    title: str
    question: str
    rationale: str
    category: TopicCategory
    reference_links: list[str] = field(default_factory=list)


def _apply(topic: Topic, details: TopicDetails) -> None:
    topic.title = details.title.strip()
    topic.question = details.question.strip()
    topic.rationale = details.rationale.strip()
    topic.category = details.category
    topic.reference_links = list(details.reference_links[:MAX_REFERENCE_LINKS])


def _record_change(
    session: Session,
    topic: Topic,
    to_status: TopicStatus,
    actor: User | None,
    now: datetime,
    reason: str | None = None,
) -> TopicStatusChange:
    change = TopicStatusChange(
        topic_id=topic.id,
        from_status=topic.status if topic.id is not None and topic.status else None,
        to_status=to_status,
        actor_id=actor.id if actor else None,
        reason=reason,
        created_at=now,
    )
    session.add(change)
    topic.status = to_status
    topic.updated_at = now
    return change


def _lock_topic(session: Session, topic: Topic) -> None:
    """Lock ``topic``'s row and re-read it, so the checks that follow see the status it has
    now: concurrent changes of one topic queue here and each sees the one before."""
    lock_rows(session, Topic, [topic.id])
    session.refresh(topic)


def recent_identical_topic(
    session: Session, author: User, details: TopicDetails, now: datetime
) -> Topic | None:
    """``author``'s topic with exactly this title, question and rationale sent within
    ``DUPLICATE_SUBMISSION_WINDOW`` (withdrawn ones aside), if any."""
    return session.scalar(
        sa.select(Topic)
        .where(
            Topic.author_id == author.id,
            Topic.title == details.title.strip(),
            Topic.question == details.question.strip(),
            Topic.rationale == details.rationale.strip(),
            Topic.created_at >= now - DUPLICATE_SUBMISSION_WINDOW,
            Topic.status != TopicStatus.WITHDRAWN,
        )
        .order_by(Topic.created_at.desc(), Topic.id.desc())
        .limit(1)
    )


def pending_count(session: Session, author: User) -> int:
    """How many of ``author``'s topics await moderation."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(Topic)
            .where(Topic.author_id == author.id, Topic.status == TopicStatus.SUBMITTED)
        )
        or 0
    )


def propose_topic(
    session: Session, author: User, details: TopicDetails, now: datetime, max_pending: int
) -> Topic:
    """Submit a new topic for moderation.

    :raises DuplicateSubmission: the author sent this same topic moments ago.
    :raises TooManyPendingTopics: the author has ``max_pending`` topics awaiting moderation.
    """
    require_contributor(author)
    # The author's concurrent submissions queue here, so each counts the ones before it.
    lock_rows(session, User, [author.id])
    identical = recent_identical_topic(session, author, details, now)
    if identical is not None:
        raise DuplicateSubmission(
            "We already received this topic from you, so it was not submitted again.",
            identical.id,
        )
    if pending_count(session, author) >= max_pending:
        raise TooManyPendingTopics(
            f"You already have {max_pending} topics awaiting moderation. Please wait until staff "
            "have looked at them."
        )
    topic = Topic(
        author_id=author.id,
        status=TopicStatus.SUBMITTED,
        support_count=0,
        is_hidden=False,
        created_at=now,
        updated_at=now,
    )
    _apply(topic, details)
    session.add(topic)
    session.flush()
    session.add(
        TopicStatusChange(
            topic_id=topic.id,
            from_status=None,
            to_status=TopicStatus.SUBMITTED,
            actor_id=author.id,
            created_at=now,
        )
    )
    return topic


def resubmit_topic(
    session: Session,
    author: User,
    topic: Topic,
    details: TopicDetails,
    now: datetime,
    max_pending: int,
) -> None:
    """The author edits a returned topic and sends it back for moderation."""
    # The author's row first, as in ``propose_topic``: their pending topics are counted once
    # the ones sent concurrently are in; then the topic's, for the status it has now.
    lock_rows(session, User, [author.id])
    _lock_topic(session, topic)
    if topic.author_id != author.id:
        raise NotAllowed("Only the author can change this topic.")
    if topic.status != TopicStatus.RETURNED:
        raise InvalidTransition("Only a topic returned to you can be edited and sent again.")
    if pending_count(session, author) >= max_pending:
        raise TooManyPendingTopics(
            f"You already have {max_pending} topics awaiting moderation. Please wait until staff "
            "have looked at them."
        )
    _apply(topic, details)
    _record_change(session, topic, TopicStatus.SUBMITTED, author, now)


# Lifecycle ---------------------------------------------------------------------------------
STAFF_TRANSITIONS: dict[TopicStatus, frozenset[TopicStatus]] = {
    TopicStatus.SUBMITTED: frozenset(
        {TopicStatus.PUBLISHED, TopicStatus.RETURNED, TopicStatus.REJECTED}
    ),
    TopicStatus.PUBLISHED: frozenset({TopicStatus.SHORTLISTED}),
    TopicStatus.SHORTLISTED: frozenset({TopicStatus.ADOPTED}),
    TopicStatus.ADOPTED: frozenset({TopicStatus.COMPLETED}),
}
NEEDS_REASON = frozenset({TopicStatus.RETURNED, TopicStatus.REJECTED, TopicStatus.MERGED})
# Changes that supporters hear about (the author hears about every staff decision).
SUPPORTERS_NOTIFIED = frozenset(
    {TopicStatus.SHORTLISTED, TopicStatus.ADOPTED, TopicStatus.COMPLETED, TopicStatus.MERGED}
)


def allowed_staff_transitions(topic: Topic) -> list[TopicStatus]:
    """The statuses staff may move ``topic`` to next (merging is separate)."""
    return sorted(STAFF_TRANSITIONS.get(topic.status, frozenset()), key=list(TopicStatus).index)


def _recipients(session: Session, topic: Topic, include_supporters: bool) -> list[int]:
    """The author, and the supporters when they hear about this change."""
    recipients = {topic.author_id}
    if include_supporters:
        recipients |= set(
            session.scalars(
                sa.select(TopicSupport.user_id).where(TopicSupport.topic_id == topic.id)
            )
        )
    return sorted(recipients)


def _queue_notifications(
    session: Session,
    topic: Topic,
    change: TopicStatusChange,
    now: datetime,
    kind: str,
    details: dict,
    recipients: list[int],
) -> None:
    """Queue one email per recipient, keyed by the status change: recording the change once
    queues each email once."""
    session.flush()  # the change's id is part of the deduplication key
    for user_id in recipients:
        outbox.enqueue(
            session,
            kind=kind,
            dedup_key=f"{kind.replace('_', '-')}:{topic.id}:{change.id}:{user_id}",
            now=now,
            user_id=user_id,
            payload={"topic_id": topic.id, **details},
        )


def change_status(
    session: Session,
    actor: User,
    topic: Topic,
    to_status: TopicStatus,
    now: datetime,
    reason: str | None = None,
    proposal_reference: str | None = None,
) -> None:
    """Staff move a topic along its lifecycle; the author (and supporters) are told by email."""
    require_staff(actor)
    _lock_topic(session, topic)
    if topic.status == to_status:
        raise InvalidTransition(
            f"The topic is already “{topic.status.label.lower()}”, so nothing was changed."
        )
    if to_status not in STAFF_TRANSITIONS.get(topic.status, frozenset()):
        raise InvalidTransition(
            f"A topic that is “{topic.status.label.lower()}” cannot become "
            f"“{to_status.label.lower()}”."
        )
    reason = (reason or "").strip() or None
    if to_status in NEEDS_REASON and not reason:
        raise ReasonRequired("Give a reason the author can read.")
    if to_status == TopicStatus.PUBLISHED:
        topic.published_at = now
    if to_status == TopicStatus.ADOPTED and proposal_reference:
        topic.proposal_reference = proposal_reference.strip()[:80]
    recipients = _recipients(session, topic, to_status in SUPPORTERS_NOTIFIED)
    change = _record_change(session, topic, to_status, actor, now, reason)
    _queue_notifications(
        session,
        topic,
        change,
        now,
        "topic_status",
        {"status": to_status.value, "reason": reason},
        recipients,
    )


def withdraw_topic(session: Session, author: User, topic: Topic, now: datetime) -> None:
    """The author withdraws a topic that has no supports yet."""
    # The topic's row is locked first: a support or another withdrawal arriving now waits,
    # and the checks below see the status and supports as they are.
    _lock_topic(session, topic)
    if topic.author_id != author.id:
        raise NotAllowed("Only the author can withdraw this topic.")
    if topic.status == TopicStatus.WITHDRAWN:
        raise InvalidTransition("This topic is already withdrawn, so nothing was changed.")
    if topic.status not in {TopicStatus.SUBMITTED, TopicStatus.RETURNED, TopicStatus.PUBLISHED}:
        raise InvalidTransition("This topic can no longer be withdrawn.")
    has_supports = session.scalar(sa.select(sa.exists().where(TopicSupport.topic_id == topic.id)))
    if has_supports:
        raise TopicHasSupports(
            "People already support this topic, so it can no longer be withdrawn. Ask the "
            "coordination centre (the team that runs Engage) if it should be changed."
        )
    _record_change(session, topic, TopicStatus.WITHDRAWN, author, now)


def merge_topics(
    session: Session, actor: User, source: Topic, target: Topic, reason: str, now: datetime
) -> int:
    """Merge ``source`` into ``target``: supports move without duplicates; return how many moved.

    A person who supported both keeps one support (on the target). Supporters and the
    author of the source are told.
    """
    require_staff(actor)
    # Both rows are locked (in id order) and re-read first: a second merge of the same topic
    # then sees it merged, and a support arriving now lands before the merge or is refused.
    lock_rows(session, Topic, [source.id, target.id])
    session.refresh(source)
    session.refresh(target)
    if source.status == TopicStatus.MERGED:
        raise InvalidTransition("This topic is already merged, so nothing was changed.")
    if source.status not in OPEN_STATUSES:
        raise InvalidTransition("Only a topic open for support can be merged into another.")
    if target.id == source.id or target.status not in OPEN_STATUSES or target.is_hidden:
        raise InvalidMerge("Merge into a different topic that is open for support.")
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired("Give a reason the author can read.")
    # Lock both topics in id order so concurrent supports and merges queue behind us.
    lock_rows(session, Topic, [source.id, target.id])
    # Read before the supports move: the source's supporters are told.
    recipients = _recipients(session, source, include_supporters=True)
    on_target = sa.select(TopicSupport.user_id).where(TopicSupport.topic_id == target.id)
    session.execute(
        sa.delete(TopicSupport).where(
            TopicSupport.topic_id == source.id, TopicSupport.user_id.in_(on_target)
        )
    )
    moved_rows = session.execute(
        sa.select(
            TopicSupport.user_id, TopicSupport.role, TopicSupport.is_verified_clinician
        ).where(TopicSupport.topic_id == source.id)
    ).all()
    session.execute(
        sa.update(TopicSupport).where(TopicSupport.topic_id == source.id).values(topic_id=target.id)
    )
    session.add_all(
        TopicSupportEvent(
            topic_id=target.id,
            user_id=row.user_id,
            action=SupportAction.MOVED,
            role=row.role,
            is_verified_clinician=row.is_verified_clinician,
            created_at=now,
        )
        for row in moved_rows
    )
    session.flush()
    for topic in (source, target):
        session.execute(
            sa.update(Topic)
            .where(Topic.id == topic.id)
            .values(support_count=_count_supports(session, topic.id))
        )
    source.merged_into_id = target.id
    change = _record_change(session, source, TopicStatus.MERGED, actor, now, reason)
    _queue_notifications(
        session,
        source,
        change,
        now,
        "topic_merged",
        {"target_id": target.id, "target_title": target.title, "reason": reason},
        recipients,
    )
    return len(moved_rows)


