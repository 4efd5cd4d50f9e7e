"""Governance's domain errors: each carries a message a person understands; views turn them
into a form error or a 4xx page, and nothing is recorded."""

from __future__ import annotations


class GovernanceError(Exception):
    """A governance action was refused."""


class NotAllowed(GovernanceError):
    """The person may not do this (wrong role, or not a custodian of this registry)."""


class InvalidTransition(GovernanceError):
    """The proposal or the thread is not in a state that allows this (e.g. deciding twice)."""


class ReasonRequired(GovernanceError):
    """A reason (or the conditions, a question, an answer) must be written."""


class InvalidProposal(GovernanceError):
    """The proposal's details are incomplete or refer to something that does not exist
    (a consent scope not in the published form, a retired variable, a topic not adopted)."""


class DeadlinePassed(GovernanceError):
    """The registry's deadline has passed: the thread is closed to decisions."""


class TextTooLong(GovernanceError):
    """A reason, condition, question or answer is longer than the limit."""


class InvalidVariable(GovernanceError):
    """A catalogue variable's details are incomplete, malformed or clash with another's code."""
