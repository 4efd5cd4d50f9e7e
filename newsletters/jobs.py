"""The newsletters' scheduler jobs: start due campaigns, deliver queued batches, expire leases.

The web app only writes rows (a campaign's ``next_run_at``); these jobs act on them. Delivery
can also run in any number of extra worker processes (``engage newsletters deliver``).
"""

from __future__ import annotations

from engage.scheduler import JobRegistry
from newsletters import delivery, sending


def register(jobs: JobRegistry) -> None:
    """Register the newsletter jobs."""
    jobs.register(
        "newsletters.start_due",
        sending.start_due,
        "interval",
        description="Start due newsletter campaigns (freeze each occurrence's audience)",
        seconds=30,
    )
    jobs.register(
        "newsletters.deliver",
        delivery.deliver_due,
        "interval",
        description="Send queued newsletter batches through the mail provider",
        seconds=15,
    )
    jobs.register(
        "newsletters.expire_leases",
        delivery.expire_leases,
        "interval",
        description="Re-queue or mark unknown the newsletter batches of workers that stopped",
        seconds=60,
    )
