"""The newsletters' outbox email kinds (confirmation links, test sends, breaker notices); the
newsletters themselves go through the delivery table, not the outbox."""

from __future__ import annotations

from engage.outbox import MailKinds
from newsletters import breaker, campaigns, lists


def register_kinds(kinds: MailKinds) -> None:
    """Register every newsletter email kind with the outbox."""
    lists.register_kinds(kinds)
    campaigns.register_kinds(kinds)
    breaker.register_kinds(kinds)
