"""Scheduled account housekeeping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from engage.accounts import staff_services
from engage.scheduler import JobRegistry


def remove_unverified_accounts(session: Session, now: datetime, config: dict[str, Any]) -> str:
    """Delete sign-ups whose address was never confirmed within the retention period."""
    removed = staff_services.remove_unverified_accounts(
        session, now, config["UNVERIFIED_ACCOUNT_RETENTION_DAYS"]
    )
    return f"removed {removed} unverified account(s)"


def register(jobs: JobRegistry) -> None:
    """Register the account jobs."""
    jobs.register(
        "accounts.remove_unverified",
        remove_unverified_accounts,
        "interval",
        description="Remove never-verified sign-ups after the retention period",
        hours=6,
    )
