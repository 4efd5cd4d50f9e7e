"""Topics' domain errors, and the checks of who may contribute, moderate and see a topic.

Every error's message is written for the person who sees it: views show it as it is.
"""

from __future__ import annotations

from engage.accounts.models import Role, User
from engage.topics.models import PUBLIC_STATUSES, Topic

# Roles that propose, support and discuss topics.
CONTRIBUTOR_ROLES = frozenset({Role.PARTICIPANT, Role.CLINICIAN, Role.ORGANISATION})


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


def require_contributor(user: User) -> None:
    """Raise ``NotAllowed`` unless ``user`` may propose, support and discuss topics."""
    if user.role not in CONTRIBUTOR_ROLES:
        raise NotAllowed(
            "Topics are proposed and supported by people with MS, healthcare professionals "
            "and MS organisations."
        )
    if not user.is_email_verified:
        raise NotAllowed("Please confirm your email address first: we sent you a link.")


def require_staff(user: User) -> None:
    """Raise ``NotAllowed`` unless ``user`` is coordination-centre staff."""
    if not user.is_staff:
        raise NotAllowed("Only coordination-centre staff can do this.")


def can_view(topic: Topic, viewer: User | None) -> bool:
    """Anyone reads public topics; authors and staff also see the others (and hidden ones)."""
    if viewer is not None and (viewer.is_staff or viewer.id == topic.author_id):
        return True
    return topic.status in PUBLIC_STATUSES and not topic.is_hidden

