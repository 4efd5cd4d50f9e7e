"""Discussing topics: comments (edited by their author for a short while), and reports of a
topic or comment to staff, which hide it once enough trusted weight reports it until staff
decide.

Only people with a confirmed email address may report. Each person reports an item once, and
a report weighs (:func:`report_weight`): 2 for people whose identity staff have checked
(verified healthcare professionals, approved data custodians, staff); 1 for other accounts
older than ``ESTABLISHED_AFTER``; 0.5 for newer ones; 0 for deactivated, deleted or unconfirmed
ones. An item is hidden when the weights of its open reports add up to the hide threshold
(``TOPICS_REPORT_HIDE_THRESHOLD``): with the default of 3, three established accounts hide it,
three brand-new ones do not. Staff see every report, whatever its weight.

Functions take the session, the acting person and ``now`` explicitly and never commit; the
caller commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engage.accounts.models import Role, User
from engage.db import savepoint
from engage.topics.errors import (
    AlreadyReported,
    CommentsClosed,
    EditWindowClosed,
    NotAllowed,
    require_staff,
)
from engage.topics.lifecycle import _lock_topic
from engage.topics.models import (
    ContentReport,
    ReportStatus,
    Topic,
    TopicComment,
    TopicStatus,
)

COMMENTABLE = frozenset(
    {TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED, TopicStatus.ADOPTED, TopicStatus.COMPLETED}
)

# Accounts younger than this weigh less when reporting: new accounts are the cheapest to make.
ESTABLISHED_AFTER = timedelta(days=7)
TRUSTED_WEIGHT = 2.0
ESTABLISHED_WEIGHT = 1.0
NEW_ACCOUNT_WEIGHT = 0.5


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


def report_weight(reporter: User, now: datetime) -> float:
    """How much ``reporter``'s report counts towards hiding an item (see the module's notes)."""
    if not reporter.is_active or not reporter.is_email_verified or reporter.deleted_at:
        return 0.0
    if (
        reporter.role == Role.STAFF
        or reporter.is_verified_clinician
        or reporter.is_approved_custodian
    ):
        return TRUSTED_WEIGHT
    if now - reporter.created_at < ESTABLISHED_AFTER:
        return NEW_ACCOUNT_WEIGHT
    return ESTABLISHED_WEIGHT


def can_report(user: User | None) -> bool:
    """Whether ``user`` may report topics and comments (a confirmed email address)."""
    return user is not None and user.is_email_verified


def report_content(
    session: Session,
    reporter: User,
    topic: Topic,
    comment: TopicComment | None,
    reason: str,
    now: datetime,
    hide_threshold: float,
) -> bool:
    """Report a topic or comment; return True when it is now hidden pending review.

    :param hide_threshold: the weight of open reports that hides the item.
    :raises NotAllowed: the reporter has not confirmed their email address.
    """
    if not can_report(reporter):
        raise NotAllowed("Please confirm your email address before reporting: we sent you a link.")
    try:
        with savepoint(session):
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
    reporters = session.scalars(
        sa.select(User)
        .join(ContentReport, ContentReport.reporter_id == User.id)
        .where(
            ContentReport.topic_id == topic.id,
            ContentReport.comment_id.is_(None)
            if comment is None
            else ContentReport.comment_id == comment.id,
            ContentReport.status == ReportStatus.OPEN,
        )
    )
    weight = sum(report_weight(person, now) for person in reporters)
    item = comment if comment is not None else topic
    if weight >= hide_threshold and not item.is_hidden:
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
    require_staff(actor)
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
