"""Who a campaign reaches: confirmed subscribers of its lists, not suppressed, matching its
filter and, where a list needs a consent scope, currently permitting it.

Everything here is set-based SQL: an audience of a million is counted or frozen into delivery
rows by a few ``INSERT … SELECT`` statements, never loaded into Python. Accounts, consent,
registries and topics are read through their packages' query functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from engage.accounts import queries as account_queries
from engage.consent import queries as consent_queries
from engage.consent.errors import UnknownScope
from engage.registries import queries as registry_queries
from engage.roles import Role
from engage.topics import queries as topic_queries
from newsletters.models import (
    Delivery,
    DeliveryStatus,
    MailingList,
    Send,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)

# The filter keys a campaign's ``audience`` may hold; all but languages apply to accounts only.
ACCOUNT_FILTERS = ("roles", "countries", "registry_ids", "topic_ids")
CANDIDATE_COLUMNS = ("subscriber_id", "list_id", "user_id", "email", "name", "language")


def _not_suppressed(email: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    return ~sa.exists().where(Suppression.email == sa.func.lower(email))


def _public_candidates(
    mailing_list: MailingList, audience: dict[str, Any]
) -> sa.Select[Any] | None:
    """Confirmed subscribers without an account (None when the filter rules them out)."""
    if mailing_list.required_scope or any(audience.get(key) for key in ACCOUNT_FILTERS):
        return None
    query = (
        sa.select(
            Subscriber.id,
            sa.literal(mailing_list.id).label("list_id"),
            sa.null().label("user_id"),
            Subscriber.email,
            sa.func.coalesce(Subscriber.name, "").label("name"),
            Subscriber.language,
        )
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(
            Subscription.list_id == mailing_list.id,
            Subscription.status == SubscriptionStatus.CONFIRMED,
            Subscriber.user_id.is_(None),
            _not_suppressed(Subscriber.email),
        )
    )
    if audience.get("languages"):
        query = query.where(Subscriber.language.in_(list(audience["languages"])))
    return query


def _account_candidates(
    session: Session, mailing_list: MailingList, audience: dict[str, Any]
) -> sa.Select[Any] | None:
    """Confirmed subscribers with a reachable account matching the filter (None: nobody)."""
    roles = [Role(value) for value in audience.get("roles") or []] or None
    people = account_queries.recipient_rows(
        roles=roles,
        countries=audience.get("countries") or None,
        languages=audience.get("languages") or None,
    ).subquery()
    query = (
        sa.select(
            Subscriber.id,
            sa.literal(mailing_list.id).label("list_id"),
            Subscriber.user_id,
            sa.func.lower(people.c.email),
            people.c.display_name,
            people.c.language,
        )
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .join(people, people.c.id == Subscriber.user_id)
        .where(
            Subscription.list_id == mailing_list.id,
            Subscription.status == SubscriptionStatus.CONFIRMED,
            _not_suppressed(people.c.email),
        )
    )
    if audience.get("registry_ids"):
        enrolments = registry_queries.enrolments_select().subquery()
        query = query.where(
            Subscriber.user_id.in_(
                sa.select(enrolments.c.user_id).where(
                    enrolments.c.registry_id.in_(list(audience["registry_ids"]))
                )
            )
        )
    if audience.get("topic_ids"):
        query = query.where(
            Subscriber.user_id.in_(topic_queries.supporter_ids(audience["topic_ids"]))
        )
    if mailing_list.required_scope:
        try:
            permitting = consent_queries.permitting_ids(session, [mailing_list.required_scope])
        except UnknownScope:
            permitting = None
        if permitting is None:
            return None
        query = query.where(Subscriber.user_id.in_(permitting))
    return query


def candidate_queries(
    session: Session,
    list_ids: Iterable[int],
    audience: dict[str, Any],
    *,
    confirmed_by: datetime | None = None,
) -> list[sa.Select[Any]]:
    """The queries of (subscriber_id, list_id, user_id, email, name, language) rows that make
    up the audience, one or two per list, in a fixed order; a subscriber may appear once per
    list.

    :param confirmed_by: only subscriptions confirmed by then (a send's start).
    """
    lists = session.scalars(
        sa.select(MailingList)
        .where(MailingList.id.in_(sorted(set(list_ids))))
        .order_by(MailingList.id)  # a resumed freeze relies on the same order
    ).all()
    queries = []
    for mailing_list in lists:
        for query in (
            _public_candidates(mailing_list, audience),
            _account_candidates(session, mailing_list, audience),
        ):
            if query is not None and confirmed_by is not None:
                query = query.where(Subscription.confirmed_at <= confirmed_by)
            if query is not None:
                queries.append(query)
    return queries


def count_audience(session: Session, list_ids: Iterable[int], audience: dict[str, Any]) -> int:
    """How many people a campaign on ``list_ids`` with ``audience`` would reach now (each
    counted once however many of its lists they are on, and each address once)."""
    queries = candidate_queries(session, list_ids, audience or {})
    if not queries:
        return 0
    union = sa.union_all(*queries).subquery()
    # Each subscriber has one address, so freezing writes one row per distinct address.
    return session.scalar(sa.select(sa.func.count(sa.distinct(union.c[3])))) or 0


# Up to this many candidate rows an estimate is counted exactly (addresses made distinct);
# beyond it, the sum of the candidate queries' counts is shown as an upper bound.
EXACT_COUNT_LIMIT = 200_000


@dataclass(frozen=True)
class AudienceEstimate:
    """How many people a campaign would reach now, for staff pages."""

    count: int
    # False: ``count`` is an upper bound (a person on several lists may be counted more than
    # once); the exact number is fixed when sending starts.
    is_exact: bool


def is_empty(session: Session, list_ids: Iterable[int], audience: dict[str, Any]) -> bool:
    """Whether nobody would receive a campaign on ``list_ids`` with ``audience`` now (one
    cheap look per candidate query, stopping at the first person found)."""
    for query in candidate_queries(session, list_ids, audience or {}):
        if session.scalar(sa.select(sa.literal(1)).select_from(query.limit(1).subquery())):
            return False
    return True


def estimate(
    session: Session,
    list_ids: Iterable[int],
    audience: dict[str, Any],
    *,
    exact_limit: int = EXACT_COUNT_LIMIT,
) -> AudienceEstimate:
    """The audience's size for a staff page without making addresses distinct over millions
    of rows: exact when there is one candidate query or few rows, else an upper bound."""
    queries = candidate_queries(session, list_ids, audience or {})
    counts = [
        session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
        for query in queries
    ]
    total = sum(counts)
    if len([count for count in counts if count]) <= 1:
        return AudienceEstimate(total, True)
    if total <= exact_limit:
        return AudienceEstimate(count_audience(session, list_ids, audience), True)
    return AudienceEstimate(total, False)


# Subscriber ids per chunk of a freeze (each chunk is one committed transaction).
FREEZE_CHUNK_IDS = 100_000


def freeze_chunk(
    session: Session,
    send: Send,
    list_ids: Iterable[int],
    audience: dict[str, Any],
    *,
    chunk_ids: int = FREEZE_CHUNK_IDS,
) -> bool:
    """Write the next chunk of the send's audience as ``pending`` delivery rows (the caller
    commits each chunk, so delivery starts while the rest is written) and move the send's
    freeze position on. Returns True when the audience is complete.

    The audience is who was confirmed when the send started: later subscriptions are left out
    whichever chunk they fall in. Each candidate query is written in subscriber-id ranges, one
    query after the other. The first is free of duplicates on its own (one row per subscriber
    of one list) and is inserted as it is; every later one skips the addresses already
    written, so a person on two lists, or on a list with and without an account, gets one
    copy; the unique constraint on (send, address) backs this up. Plain inserts, not ``ON
    CONFLICT``: a million speculative inserts cost far more.
    """
    queries = candidate_queries(session, list_ids, audience or {}, confirmed_by=send.started_at)
    if send.freeze_query >= len(queries):
        return True
    first, last = session.execute(
        sa.select(sa.func.min(Subscriber.id), sa.func.max(Subscriber.id)).where(
            Subscriber.id > send.freeze_after_id
        )
    ).one()
    if first is None:  # no subscriber left to look at for this query
        send.freeze_query += 1
        send.freeze_after_id = 0
        return send.freeze_query >= len(queries)
    last_id = last
    low, high = first - 1, first - 1 + chunk_ids
    query = queries[send.freeze_query].where(Subscriber.id > low, Subscriber.id <= high)
    if send.freeze_query:
        email = query.selected_columns[3]
        query = query.where(
            ~sa.exists().where(Delivery.send_id == send.id, Delivery.email == email)
        )
    rows = query.add_columns(
        sa.literal(send.id).label("send_id"),
        sa.literal(DeliveryStatus.PENDING.value).label("status"),
        sa.literal(0).label("attempts"),
        sa.literal(send.started_at, type_=Delivery.__table__.c.next_attempt_at.type).label("due"),
    )
    session.execute(
        sa.insert(Delivery).from_select(
            [*CANDIDATE_COLUMNS, "send_id", "status", "attempts", "next_attempt_at"], rows
        )
    )
    if high >= last_id:
        send.freeze_query += 1
        send.freeze_after_id = 0
    else:
        send.freeze_after_id = high
    return send.freeze_query >= len(queries)


def frozen_size(session: Session, send_id: int) -> int:
    """How many delivery rows the send's audience has."""
    return (
        session.scalar(
            sa.select(sa.func.count()).select_from(Delivery).where(Delivery.send_id == send_id)
        )
        or 0
    )
