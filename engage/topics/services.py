"""What topics do: the package's services in one place, for its views and commands, other
packages and tests.

The work lives in one module per sub-domain, and this module only gathers it:

- :mod:`engage.topics.errors`: the domain errors, and who may contribute, moderate and see;
- :mod:`engage.topics.lifecycle`: propose, send again, moderate, withdraw and merge a topic
  (each change recorded, the people concerned told by email);
- :mod:`engage.topics.supports`: support a topic, withdraw a support, the support budget and
  the counters' reconciliation;
- :mod:`engage.topics.discussion`: comments, and reports of a topic or comment.

Functions take the session, the acting person and ``now`` explicitly and never commit; the
caller commits once (or rolls back when a domain error is raised).
"""

from __future__ import annotations

from engage.topics.discussion import (
    COMMENTABLE,
    add_comment,
    can_edit_comment,
    edit_comment,
    report_content,
    resolve_reports,
)
from engage.topics.errors import (
    CONTRIBUTOR_ROLES,
    AlreadyReported,
    CommentsClosed,
    DuplicateSubmission,
    EditWindowClosed,
    InvalidMerge,
    InvalidTransition,
    NotAllowed,
    NotSupported,
    ReasonRequired,
    SupportBudgetReached,
    SupportClosed,
    TooManyPendingTopics,
    TopicError,
    TopicHasSupports,
    can_contribute,
    can_view,
)
from engage.topics.lifecycle import (
    DUPLICATE_SUBMISSION_WINDOW,
    MAX_REFERENCE_LINKS,
    NEEDS_REASON,
    STAFF_TRANSITIONS,
    SUPPORTERS_NOTIFIED,
    TopicDetails,
    allowed_staff_transitions,
    change_status,
    merge_topics,
    pending_count,
    propose_topic,
    recent_identical_topic,
    resubmit_topic,
    withdraw_topic,
)
from engage.topics.supports import (
    SupportOutcome,
    open_support_count,
    reconcile_support_counts,
    set_support_budget,
    support_budget,
    support_topic,
    withdraw_support,
)

__all__ = [
    "COMMENTABLE",
    "CONTRIBUTOR_ROLES",
    "DUPLICATE_SUBMISSION_WINDOW",
    "MAX_REFERENCE_LINKS",
    "NEEDS_REASON",
    "STAFF_TRANSITIONS",
    "SUPPORTERS_NOTIFIED",
    "AlreadyReported",
    "CommentsClosed",
    "DuplicateSubmission",
    "EditWindowClosed",
    "InvalidMerge",
    "InvalidTransition",
    "NotAllowed",
    "NotSupported",
    "ReasonRequired",
    "SupportBudgetReached",
    "SupportClosed",
    "SupportOutcome",
    "TooManyPendingTopics",
    "TopicDetails",
    "TopicError",
    "TopicHasSupports",
    "add_comment",
    "allowed_staff_transitions",
    "can_contribute",
    "can_edit_comment",
    "can_view",
    "change_status",
    "edit_comment",
    "merge_topics",
    "open_support_count",
    "pending_count",
    "propose_topic",
    "recent_identical_topic",
    "reconcile_support_counts",
    "report_content",
    "resolve_reports",
    "resubmit_topic",
    "set_support_budget",
    "support_budget",
    "support_topic",
    "withdraw_support",
    "withdraw_topic",
]
