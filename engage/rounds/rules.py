"""What every part of priority-setting rounds agrees on: the errors (messages written for the
person who sees them), where a round stands, and who takes part in which group."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from engage.accounts.models import Role, User
from engage.rounds.models import PriorityRound

# The groups a round forms unless staff choose otherwise: one per role, with equal weight.
DEFAULT_GROUPS: list[dict[str, Any]] = [
    {"code": "people_with_ms", "label": "People with MS", "roles": [Role.PARTICIPANT.value]},
    {
        "code": "professionals",
        "label": "Healthcare professionals",
        "roles": [Role.CLINICIAN.value],
    },
    {"code": "organisations", "label": "MS organisations", "roles": [Role.ORGANISATION.value]},
]
# Roles that can take part in a round at all (staff run rounds; custodians decide on projects).
TAKING_PART_ROLES = frozenset({Role.PARTICIPANT, Role.CLINICIAN, Role.ORGANISATION})


class RoundError(Exception):
    """Base of the rounds' domain errors; the message is safe to show."""


class NotAllowed(RoundError):
    """The person may not do this."""


class InvalidRound(RoundError):
    """A round's details, shortlist or timetable are not acceptable."""


class InvalidBallot(RoundError):
    """A ranking that cannot be saved (not open, not on the shortlist, repeated, too long)."""


class InvalidWorkshop(RoundError):
    """The final workshop's Top 10 cannot be recorded as given."""


class RoundState(enum.StrEnum):
    """Where a round stands at a moment."""

    UPCOMING = "upcoming"  # before it opens: staff may still change it and its shortlist
    OPEN = "open"  # ballots may be cast and changed
    CLOSING = "closing"  # past its closing time, until the closing job has tallied it
    CLOSED = "closed"  # tallied: result and ballot file published


def state(round_: PriorityRound, now: datetime) -> RoundState:
    """Where ``round_`` stands at ``now``."""
    if round_.closed_at is not None:
        return RoundState.CLOSED
    if now < round_.opens_at:
        return RoundState.UPCOMING
    if now < round_.closes_at:
        return RoundState.OPEN
    return RoundState.CLOSING


def group_for(round_: PriorityRound, user: User | None) -> dict[str, Any] | None:
    """The group ``user`` takes part in, or None when they don't take part in ``round_``.

    Taking part needs a confirmed email address, an active account, and a role one of the
    round's groups names; healthcare professionals count once staff have checked their details
    (as their supports do).
    """
    if user is None or not user.is_active or not user.is_email_verified:
        return None
    if user.role == Role.CLINICIAN and user.clinician_verified_at is None:
        return None
    for group in round_.groups:
        if user.role.value in group["roles"]:
            return group
    return None
