"""Consent's domain errors, and the checks of who may act that raise :class:`NotAllowed`.

Every error's message is written for the person who sees it: views show it as it is.
"""

from __future__ import annotations

from engage.accounts.models import Role, User


class ConsentError(Exception):
    """Base of the consent domain errors; the message is safe to show."""


class NotAllowed(ConsentError):
    """The person may not do this."""


class VersionImmutable(ConsentError):
    """A published (or replaced) form version cannot be edited; make a new version."""


class DraftExists(ConsentError):
    """Only one draft version at a time."""


class InvalidScope(ConsentError):
    """A scope's code or settings are not acceptable."""


class PublishRefused(ConsentError):
    """The draft cannot be published as it is."""


class JustificationRequired(PublishRefused):
    """The summary reads above the allowed grade and no justification was written."""


class NoPublishedForm(ConsentError):
    """There is no published consent form yet."""


class VersionNotOpen(ConsentError):
    """Decisions are only taken on the current published version."""


class UnknownScope(ConsentError):
    """A scope code that is not on the form."""


class StaleState(ConsentError):
    """The page was made before the person's latest change (a replay or a stale tab)."""


class ErasureRefused(ConsentError):
    """The erasure request cannot move to that status."""


def require_staff(actor: User) -> None:
    """Refuse anyone but coordination-centre staff.

    :raises NotAllowed: ``actor`` is not staff.
    """
    if not actor.is_staff:
        raise NotAllowed("Only coordination-centre staff can do this.")


def require_participant(subject: User) -> None:
    """Refuse consent choices for anyone but an active, verified participant.

    :raises NotAllowed: ``subject`` is not a participant, is deactivated or is unverified.
    """
    if subject.role != Role.PARTICIPANT:
        raise NotAllowed("Consent choices are made by people with MS taking part in the programme.")
    if not subject.is_active:
        raise NotAllowed("This account is deactivated.")
    if not subject.is_email_verified:
        raise NotAllowed("Please confirm your email address first: we sent you a link.")
