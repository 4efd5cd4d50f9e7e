"""Round emails: the people who ranked in a round hear which of its topics were adopted for
research.

The workshop service queues them in the mail outbox (one row per voter, keyed by the round and
the adoption); the renderer turns a row into the email at delivery time.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage import mail, outbox
from engage.accounts import queries as account_queries
from engage.rounds.models import PriorityRound
from engage.topics.models import Topic
from engage.urls import external_url

ADOPTED_KIND = "round_adopted"


def adopted_key(round_id: int, first_topic_id: int, user_id: int) -> str:
    """The deduplication key of one voter's email about one adoption in a round.

    A topic is adopted once, so the first topic an adoption moved names that adoption: marking
    the same topics adopted again queues nothing, and a later adoption of others is told anew.
    """
    return f"round-adopted:{round_id}:{first_topic_id}:{user_id}"


def queue_adopted(
    session: Session, round_id: int, topic_ids: list[int], user_id: int, now: datetime
) -> bool:
    """Queue one voter's email about ``topic_ids`` (just adopted); False when already queued."""
    row_id = outbox.enqueue(
        session,
        kind=ADOPTED_KIND,
        dedup_key=adopted_key(round_id, min(topic_ids), user_id),
        now=now,
        user_id=user_id,
        payload={"round_id": round_id, "topic_ids": sorted(topic_ids)},
    )
    return row_id is not None


def render_adopted(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """A person who ranked in a round hears which of its topics were adopted for research."""
    user = account_queries.recipient(session, row.user_id) if row.user_id is not None else None
    round_ = session.get(PriorityRound, row.payload.get("round_id"))
    if user is None or round_ is None:
        raise outbox.NotOwed("the account or the round is gone, or the account is deactivated")
    ids = [int(topic_id) for topic_id in row.payload.get("topic_ids", [])]
    titles = dict(session.execute(sa.select(Topic.id, Topic.title).where(Topic.id.in_(ids))).all())
    topics = [titles[topic_id] for topic_id in ids if topic_id in titles]
    if not topics:
        raise outbox.NotOwed("the adopted topics are gone")
    return mail.render_message(
        ADOPTED_KIND,
        to=user.email,
        subject="Research questions you ranked were adopted",
        user=user,
        round_title=round_.title,
        topics=topics,
        link=external_url("rounds.results", round_id=round_.id),
    )


def register_kinds(kinds: outbox.MailKinds) -> None:
    """Register the round emails' renderers."""
    kinds.register(ADOPTED_KIND, render_adopted, "Round topics adopted")
