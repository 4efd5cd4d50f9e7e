"""Scheduled work of priority-setting rounds: closing each round at its closing time."""

from __future__ import annotations

from engage.rounds.closing import close_due_job
from engage.scheduler import JobRegistry


def register(jobs: JobRegistry) -> None:
    """Register the rounds' jobs."""
    jobs.register(
        "rounds.close_due",
        close_due_job,
        "interval",
        description="Close priority-setting rounds at their closing time and publish the tally",
        minutes=1,
    )
