"""What topics do: propose, moderate, support, merge, discuss and report.

Functions take the session, the acting person and ``now`` explicitly and never commit; the
caller commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engage import outbox
from engage.accounts.models import Role, User
from engage.db import lock_rows
from engage.topics.models import (
    OPEN_STATUSES,
    PUBLIC_STATUSES,
    ContentReport,
    ReportStatus,
    SupportAction,
    Topic,
    TopicCategory,
    TopicComment,
    TopicSettings,
    TopicStatus,
    TopicStatusChange,
    TopicSupport,
    TopicSupportEvent,
)

# Roles that propose, support and discuss topics.
CONTRIBUTOR_ROLES = frozenset({Role.PARTICIPANT, Role.CLINICIAN, Role.ORGANISATION})
MAX_REFERENCE_LINKS = 5
# An identical topic from the same author within this time is the same submission sent twice.
DUPLICATE_SUBMISSION_WINDOW = timedelta(minutes=10)


class TopicError(Exception):
    """Base of the topic domain errors; the message is safe to show."""


class NotAllowed(TopicError):
    """The person may not do this."""


class InvalidTransition(TopicError):
    """The topic cannot move from its status to the one asked for."""


class ReasonRequired(TopicError):
    """Returning, rejecting and merging need a reason the author can read."""


class TooManyPendingTopics(TopicError):
    """The author already has the most topics awaiting moderation that are allowed."""


class DuplicateSubmission(TopicError):
    """The author sent this very topic a moment ago (a double click or a resent form)."""

    def __init__(self, message: str, topic_id: int) -> None:
        super().__init__(message)
        self.topic_id = topic_id


class SupportClosed(TopicError):
    """The topic is not open for support (or for withdrawing support)."""


class SupportBudgetReached(TopicError):
    """The person already supports as many open topics as allowed."""


class NotSupported(TopicError):
    """There is no support to withdraw."""


class TopicHasSupports(TopicError):
    """An author can only withdraw a topic nobody supports yet."""


class InvalidMerge(TopicError):
    """The merge target is not a topic this one can be merged into."""


class EditWindowClosed(TopicError):
    """The comment can no longer be edited."""


class AlreadyReported(TopicError):
    """The person has already reported this item."""


class CommentsClosed(TopicError):
    """The topic does not take comments."""


# Permissions -------------------------------------------------------------------------------
def can_contribute(user: User) -> bool:
    """Verified people with MS, healthcare professionals and MS organisation members."""
    return user.role in CONTRIBUTOR_ROLES and user.is_email_verified and user.is_active


def _require_contributor(user: User) -> None:
    if user.role not in CONTRIBUTOR_ROLES:
        raise NotAllowed(
            "Topics are proposed and supported by people with MS, healthcare professionals "
            "and MS organisations."
        )
    if not user.is_email_verified:
        raise NotAllowed("Please confirm your email address first: we sent you a link.")


def _require_staff(user: User) -> None:
    if not user.is_staff:
        raise NotAllowed("Only coordination-centre staff can do this.")


def can_view(topic: Topic, viewer: User | None) -> bool:
    """Anyone reads public topics; authors and staff also see the others (and hidden ones)."""
    if viewer is not None and (viewer.is_staff or viewer.id == topic.author_id):
        return True
    return topic.status in PUBLIC_STATUSES and not topic.is_hidden


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
    _require_contributor(author)
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
    _require_staff(actor)
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
            "coordination centre if it should be changed."
        )
    _record_change(session, topic, TopicStatus.WITHDRAWN, author, now)


def merge_topics(
    session: Session, actor: User, source: Topic, target: Topic, reason: str, now: datetime
) -> int:
    """Merge ``source`` into ``target``: supports move without duplicates; return how many moved.

    A person who supported both keeps one support (on the target). Supporters and the
    author of the source are told.
    """
    _require_staff(actor)
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


# Supporting --------------------------------------------------------------------------------
@dataclass
class SupportOutcome:
    """Whether a support was added now or already existed."""

    created: bool


def _count_supports(session: Session, topic_id: int) -> int:
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(TopicSupport)
            .where(TopicSupport.topic_id == topic_id)
        )
        or 0
    )


def support_budget(session: Session) -> int | None:
    """The staff-set cap on open topics one person may support at once (None: no cap)."""
    return session.scalar(sa.select(TopicSettings.support_budget).where(TopicSettings.id == 1))


def open_support_count(session: Session, user: User) -> int:
    """How many topics open for support ``user`` supports now."""
    return (
        session.scalar(
            sa.select(sa.func.count())
            .select_from(TopicSupport)
            .join(Topic, Topic.id == TopicSupport.topic_id)
            .where(TopicSupport.user_id == user.id, Topic.status.in_(OPEN_STATUSES))
        )
        or 0
    )


def _open_topic(session: Session, topic_id: int) -> Topic:
    """The topic, locked and read as it is now, if it is open for support.

    A merge or status change in progress finishes first; the checks below see its outcome.
    """
    lock_rows(session, Topic, [topic_id])
    topic = session.get(Topic, topic_id, populate_existing=True)
    if topic is None or topic.is_hidden or topic.status not in PUBLIC_STATUSES:
        raise SupportClosed("This topic is not open for support.")
    if not topic.status.is_open_for_support:
        raise SupportClosed(f"This topic is “{topic.status.label.lower()}”: support is closed.")
    return topic


def support_topic(session: Session, user: User, topic_id: int, now: datetime) -> SupportOutcome:
    """Record ``user``'s support; a repeated or concurrent duplicate changes nothing.

    The person's row is locked first (PostgreSQL), so one person's concurrent requests queue
    and the support budget holds; then the topic's, so a support lands before a concurrent
    merge (which moves it) or after it (refused: the topic is merged). The unique constraint
    is the last word on duplicates.
    """
    _require_contributor(user)
    lock_rows(session, User, [user.id])
    topic = _open_topic(session, topic_id)
    exists = session.scalar(
        sa.select(TopicSupport.id).where(
            TopicSupport.topic_id == topic.id, TopicSupport.user_id == user.id
        )
    )
    if exists is not None:
        return SupportOutcome(created=False)
    budget = support_budget(session)
    if budget is not None and open_support_count(session, user) >= budget:
        raise SupportBudgetReached(
            f"You already support {budget} open topics, the most allowed at once. Withdraw one "
            "of your supports to support this topic."
        )
    is_verified_clinician = user.is_verified_clinician
    try:
        with session.begin_nested():
            session.add(
                TopicSupport(
                    topic_id=topic.id,
                    user_id=user.id,
                    role=user.role,
                    is_verified_clinician=is_verified_clinician,
                    created_at=now,
                )
            )
    except IntegrityError:
        return SupportOutcome(created=False)
    session.add(
        TopicSupportEvent(
            topic_id=topic.id,
            user_id=user.id,
            action=SupportAction.CAST,
            role=user.role,
            is_verified_clinician=is_verified_clinician,
            created_at=now,
        )
    )
    session.execute(
        sa.update(Topic).where(Topic.id == topic.id).values(support_count=Topic.support_count + 1)
    )
    return SupportOutcome(created=True)


def withdraw_support(session: Session, user: User, topic_id: int, now: datetime) -> None:
    """Remove ``user``'s support while the topic is open."""
    # The topic's row is locked (in ``_open_topic``): a merge cannot move the support
    # between reading it here and deleting it below.
    topic = _open_topic(session, topic_id)
    support = session.scalar(
        sa.select(TopicSupport).where(
            TopicSupport.topic_id == topic.id, TopicSupport.user_id == user.id
        )
    )
    if support is None:
        raise NotSupported("You do not support this topic.")
    deleted = session.execute(sa.delete(TopicSupport).where(TopicSupport.id == support.id)).rowcount
    if deleted != 1:  # a concurrent request withdrew it first
        raise NotSupported("You do not support this topic.")
    session.add(
        TopicSupportEvent(
            topic_id=topic.id,
            user_id=user.id,
            action=SupportAction.WITHDRAWN,
            role=support.role,
            is_verified_clinician=support.is_verified_clinician,
            created_at=now,
        )
    )
    session.execute(
        sa.update(Topic).where(Topic.id == topic.id).values(support_count=Topic.support_count - 1)
    )


def set_support_budget(session: Session, actor: User, budget: int | None, now: datetime) -> None:
    """Staff cap (or uncap, with None) how many open topics one person may support."""
    _require_staff(actor)
    settings = session.get(TopicSettings, 1)
    if settings is None:
        session.add(TopicSettings(id=1, support_budget=budget, updated_at=now))
    else:
        settings.support_budget = budget
        settings.updated_at = now


def reconcile_support_counts(session: Session, fix: bool = False) -> list[tuple[int, int, int]]:
    """Compare every topic's counter with its support rows; return (id, counter, rows) mismatches.

    With ``fix``, set the counters to the row counts.
    """
    rows = (
        sa.select(TopicSupport.topic_id, sa.func.count().label("n"))
        .group_by(TopicSupport.topic_id)
        .subquery()
    )
    actual = sa.func.coalesce(rows.c.n, 0)
    mismatches = [
        (topic_id, counter, n)
        for topic_id, counter, n in session.execute(
            sa.select(Topic.id, Topic.support_count, actual)
            .outerjoin(rows, rows.c.topic_id == Topic.id)
            .where(Topic.support_count != actual)
            .order_by(Topic.id)
        )
    ]
    if fix:
        for topic_id, _counter, n in mismatches:
            session.execute(sa.update(Topic).where(Topic.id == topic_id).values(support_count=n))
    return mismatches


# Discussing and reporting --------------------------------------------------------------------
COMMENTABLE = frozenset(
    {TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED, TopicStatus.ADOPTED, TopicStatus.COMPLETED}
)


def add_comment(
    session: Session, author: User, topic: Topic, body: str, now: datetime
) -> TopicComment:
    """Comment on a published topic."""
    if not author.is_email_verified:
        raise NotAllowed("Please confirm your email address first: we sent you a link.")
    if topic.status not in COMMENTABLE or topic.is_hidden:
        raise CommentsClosed("This topic does not take comments.")
    comment = TopicComment(
        topic_id=topic.id, author_id=author.id, body=body.strip(), is_hidden=False, created_at=now
    )
    session.add(comment)
    session.flush()
    return comment


def can_edit_comment(comment: TopicComment, user: User, now: datetime, window_minutes: int) -> bool:
    """Authors edit their comment for a short window after posting."""
    return comment.author_id == user.id and now - comment.created_at <= timedelta(
        minutes=window_minutes
    )


def edit_comment(
    session: Session,
    author: User,
    comment: TopicComment,
    body: str,
    now: datetime,
    window_minutes: int,
) -> None:
    """Change a comment within the edit window."""
    if comment.author_id != author.id:
        raise NotAllowed("Only the author can edit this comment.")
    if not can_edit_comment(comment, author, now, window_minutes):
        raise EditWindowClosed(
            f"Comments can be edited for {window_minutes} minutes after posting."
        )
    comment.body = body.strip()
    comment.edited_at = now


def report_content(
    session: Session,
    reporter: User,
    topic: Topic,
    comment: TopicComment | None,
    reason: str,
    now: datetime,
    hide_threshold: int,
) -> bool:
    """Report a topic or comment; return True when it is now hidden pending review."""
    try:
        with session.begin_nested():
            session.add(
                ContentReport(
                    topic_id=topic.id,
                    comment_id=comment.id if comment else None,
                    reporter_id=reporter.id,
                    reason=reason.strip(),
                    status=ReportStatus.OPEN,
                    created_at=now,
                )
            )
    except IntegrityError:
        raise AlreadyReported("You have already reported this. Staff will look at it.") from None
    open_reports = session.scalar(
        sa.select(sa.func.count())
        .select_from(ContentReport)
        .where(
            ContentReport.topic_id == topic.id,
            ContentReport.comment_id.is_(None)
            if comment is None
            else ContentReport.comment_id == comment.id,
            ContentReport.status == ReportStatus.OPEN,
        )
    )
    item = comment if comment is not None else topic
    if (open_reports or 0) >= hide_threshold and not item.is_hidden:
        item.is_hidden = True
        return True
    return False


def resolve_reports(
    session: Session,
    actor: User,
    topic: Topic,
    comment: TopicComment | None,
    uphold: bool,
    now: datetime,
) -> int:
    """Staff decide on an item's open reports: uphold (keep hidden) or dismiss (show again).

    Returns how many reports were decided: 0 when another decision came first, in which
    case the item stays as that decision left it.
    """
    _require_staff(actor)
    # Two staff deciding at once queue here; the second finds no open report left.
    _lock_topic(session, topic)
    if comment is not None:
        session.refresh(comment)
    item = comment if comment is not None else topic
    result = session.execute(
        sa.update(ContentReport)
        .where(
            ContentReport.topic_id == topic.id,
            ContentReport.comment_id.is_(None)
            if comment is None
            else ContentReport.comment_id == comment.id,
            ContentReport.status == ReportStatus.OPEN,
        )
        .values(
            status=ReportStatus.UPHELD if uphold else ReportStatus.DISMISSED,
            resolved_at=now,
            resolved_by_id=actor.id,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        item.is_hidden = uphold
    return result.rowcount


# Duplicates ---------------------------------------------------------------------------------
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
