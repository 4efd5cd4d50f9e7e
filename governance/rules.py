"""The lifecycle rules every governance module shares: which statuses count as open, decided
and approving, and which proposal status may follow which."""

from __future__ import annotations

from governance.models import ProposalStatus, ThreadStatus

# Threads waiting for the registry (its deadline still runs, except while paused).
OPEN_THREAD_STATUSES = frozenset(
    {ThreadStatus.SENT, ThreadStatus.IN_REVIEW, ThreadStatus.INFO_REQUESTED}
)
# The registry has decided (or the deadline decided for it).
DECIDED_THREAD_STATUSES = frozenset(ThreadStatus) - OPEN_THREAD_STATUSES
# Decisions under which the registry takes part in the project.
APPROVING_THREAD_STATUSES = frozenset({ThreadStatus.APPROVED, ThreadStatus.CONDITIONS_ACCEPTED})
# Waiting for the proposer to accept or refuse a registry's conditions.
AWAITING_PROPOSER_STATUSES = frozenset({ThreadStatus.INFO_REQUESTED, ThreadStatus.CONDITIONS_SET})

# Staff and the scheduler move a proposal along these steps (withdrawal is separate).
PROPOSAL_TRANSITIONS: dict[ProposalStatus, frozenset[ProposalStatus]] = {
    ProposalStatus.DRAFT: frozenset({ProposalStatus.SUBMITTED}),
    ProposalStatus.SUBMITTED: frozenset({ProposalStatus.RETURNED, ProposalStatus.SCREENING}),
    ProposalStatus.RETURNED: frozenset({ProposalStatus.SUBMITTED}),
    ProposalStatus.SCREENING: frozenset(
        {ProposalStatus.SENT, ProposalStatus.REJECTED, ProposalStatus.RETURNED}
    ),
    ProposalStatus.SENT: frozenset({ProposalStatus.DECISIONS_CLOSED}),
    ProposalStatus.DECISIONS_CLOSED: frozenset(
        {ProposalStatus.ACTIVE, ProposalStatus.NOT_FEASIBLE}
    ),
    ProposalStatus.ACTIVE: frozenset({ProposalStatus.COMPLETED, ProposalStatus.CLOSED}),
}
# The proposer may withdraw until the project is active.
WITHDRAWABLE_STATUSES = frozenset(
    {
        ProposalStatus.DRAFT,
        ProposalStatus.SUBMITTED,
        ProposalStatus.RETURNED,
        ProposalStatus.SCREENING,
        ProposalStatus.SENT,
        ProposalStatus.DECISIONS_CLOSED,
    }
)
# Projects the public register lists, and whose consent scopes are watched for withdrawals.
PUBLIC_PROJECT_STATUSES = frozenset({ProposalStatus.ACTIVE, ProposalStatus.COMPLETED})
