"""Rounds' part of the data rights (see ``engage.accounts.data_rights``): the person's ballots,
and what deleting their account does to them.

A deleted account's ballots stay counted, anonymously: the ballot loses its link to the person
(``user_id`` cleared) and keeps its random id, group and ranking, which is all the tally, the
published ballot file and the hash chain of ballot events ever held. The account row itself is
kept (pseudonymised), so the foreign key's SET NULL never fires: the eraser clears the link.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts.data_rights import DataRights, iso
from engage.accounts.models import User
from engage.rounds.models import Ballot, PriorityRound
from engage.topics.models import Topic


def export_ballots(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Each round the person ranked in: its title, their group, their ranking (topic titles,
    best first) and when they last saved it. Two statements whatever the number of ballots."""
    rows = session.execute(
        sa.select(Ballot, PriorityRound.title, PriorityRound.groups)
        .join(PriorityRound, PriorityRound.id == Ballot.round_id)
        .where(Ballot.user_id == user.id)
        .order_by(Ballot.cast_at, Ballot.id)
    ).all()
    topic_ids = {topic_id for ballot, _title, _groups in rows for topic_id in ballot.ranking}
    titles = dict(
        session.execute(sa.select(Topic.id, Topic.title).where(Topic.id.in_(topic_ids))).all()
        if topic_ids
        else []
    )
    exported = []
    for ballot, title, groups in rows:
        labels = {group["code"]: group["label"] for group in groups}
        exported.append(
            {
                "round_id": ballot.round_id,
                "round": title,
                "group": labels.get(ballot.group_code, ballot.group_code),
                "ranking": [
                    titles.get(topic_id, f"Topic {topic_id}") for topic_id in ballot.ranking
                ],
                "first_saved_at": iso(ballot.cast_at),
                "last_saved_at": iso(ballot.updated_at),
                "times_saved": ballot.version,
            }
        )
    return exported


def erase_ballots(
    session: Session, user: User, now: datetime, config: Mapping[str, Any]
) -> str | None:
    """Unlink the person's ballots from their account; they stay counted, anonymously."""
    unlinked = session.execute(
        sa.update(Ballot)
        .where(Ballot.user_id == user.id)
        .values(user_id=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not unlinked:
        return None
    return f"Priority rounds: {unlinked} ballot(s) unlinked from the account, still counted."


def register(rights: DataRights) -> None:
    """Add rounds' section and eraser (called by the composition root)."""
    rights.add_exporter("priority_rounds", export_ballots)
    rights.add_eraser("priority_rounds", erase_ballots)
