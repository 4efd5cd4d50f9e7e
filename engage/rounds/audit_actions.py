"""Audit-log actions of priority-setting rounds (what staff did to a round, and its closing)."""

from __future__ import annotations

from engage.enums import LabelledEnum


class RoundAction(LabelledEnum):
    """What the audit log records about rounds (values at most 40 characters)."""

    CREATED = "round_created", "Priority round created"
    UPDATED = "round_updated", "Priority round changed"
    SHORTLIST_ADDED = "round_shortlist_added", "Topic added to a round's shortlist"
    SHORTLIST_REMOVED = "round_shortlist_removed", "Topic removed from a round's shortlist"
    CLOSED = "round_closed", "Priority round closed and counted"
    WORKSHOP_RECORDED = "round_workshop_recorded", "Final workshop's Top 10 recorded"
    TOPICS_ADOPTED = "round_topics_adopted", "Topics adopted from a round"


def target(round_id: int) -> str:
    """The audit event's ``target`` naming a round."""
    return f"round:{round_id}"
