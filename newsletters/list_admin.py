"""Staff management of mailing lists: create, edit, archive and restore, and the overview
with each list's subscription counts.

Like every newsletter service these take the session, the acting staff member and ``now``,
and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engage.accounts.models import User
from engage.consent.queries import current_scopes
from engage.db import savepoint
from engage.roles import Role
from newsletters.errors import NewsletterError, NotFound
from newsletters.lists import (
    MAX_LIST_DESCRIPTION_LENGTH,
    MAX_LIST_ID,
    MAX_LIST_NAME_LENGTH,
    ListDetails,
)
from newsletters.models import (
    ListVisibility,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)


class NotAllowed(NewsletterError):
    """The person may not do this (staff-only changes)."""


class InvalidList(NewsletterError):
    """A list's details cannot be saved as given."""


def _require_staff(actor: User) -> None:
    if actor.role != Role.STAFF:
        raise NotAllowed("Only coordination-centre staff can manage mailing lists.")


def get_list(session: Session, list_id: int) -> MailingList:
    """The list ``list_id``; :class:`NotFound` when there is none."""
    mailing_list = session.get(MailingList, list_id) if 0 < list_id <= MAX_LIST_ID else None
    if mailing_list is None:
        raise NotFound("That mailing list does not exist.")
    return mailing_list


def _cleaned(session: Session, details: ListDetails, current: MailingList | None) -> ListDetails:
    name = " ".join((details.name or "").split())
    description = (details.description or "").strip()
    if not name:
        raise InvalidList("Give the list a name.")
    if len(name) > MAX_LIST_NAME_LENGTH:
        raise InvalidList(f"Use at most {MAX_LIST_NAME_LENGTH} characters for the name.")
    if len(description) > MAX_LIST_DESCRIPTION_LENGTH:
        raise InvalidList(
            f"Use at most {MAX_LIST_DESCRIPTION_LENGTH:,} characters for the description."
        )
    visibility = ListVisibility(details.visibility)
    scope = details.required_scope or None
    unchanged = current is not None and scope == current.required_scope
    if (
        scope is not None
        and not unchanged
        and scope not in {s.code for s in current_scopes(session)}
    ):
        raise InvalidList("Choose a consent scope of the published consent form, or none.")
    if scope is not None and visibility != ListVisibility.ACCOUNTS:
        raise InvalidList(
            "A list that needs a consent scope must be for account holders only: consent "
            "is only known for people with an account."
        )
    same_name = sa.select(MailingList.id).where(sa.func.lower(MailingList.name) == name.lower())
    if current is not None:
        same_name = same_name.where(MailingList.id != current.id)
    if session.scalar(same_name.limit(1)) is not None:
        raise InvalidList(f"Another list is already called “{name}”; choose another name.")
    return ListDetails(name, description, visibility, scope)


def _flush_unique(session: Session, name: str) -> None:
    """Flush, turning a concurrent save of the same name into the error people read."""
    try:
        with savepoint(session):
            session.flush()
    except IntegrityError as error:
        raise InvalidList(
            f"Another list is already called “{name}”; choose another name."
        ) from error


def create_list(session: Session, actor: User, details: ListDetails, now: datetime) -> MailingList:
    """Staff create a list.

    :raises NotAllowed: ``actor`` is not staff.
    :raises InvalidList: a name that is empty, too long or taken; an unknown scope; a scope on
        a public list.
    """
    _require_staff(actor)
    cleaned = _cleaned(session, details, None)
    mailing_list = MailingList(
        name=cleaned.name,
        description=cleaned.description,
        visibility=cleaned.visibility,
        required_scope=cleaned.required_scope,
        is_archived=False,
        created_at=now,
        updated_at=now,
    )
    session.add(mailing_list)
    _flush_unique(session, cleaned.name)
    return mailing_list


def update_list(
    session: Session, actor: User, list_id: int, details: ListDetails, now: datetime
) -> MailingList:
    """Staff change a list's name, description, visibility or consent scope.

    A list keeps a scope that the published form no longer has until staff change it; a
    public list with subscribers who have no account cannot become account-only.

    :raises NotAllowed, NotFound, InvalidList: see :func:`create_list`.
    """
    _require_staff(actor)
    mailing_list = get_list(session, list_id)
    cleaned = _cleaned(session, details, mailing_list)
    if (
        cleaned.visibility == ListVisibility.ACCOUNTS
        and mailing_list.visibility != ListVisibility.ACCOUNTS
    ):
        without_account = session.scalar(
            sa.select(sa.func.count())
            .select_from(Subscription)
            .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(
                Subscription.list_id == mailing_list.id,
                Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
                Subscriber.user_id.is_(None),
            )
        )
        if without_account:
            raise InvalidList(
                f"{without_account:,} people without an account subscribe to this list, so it "
                "must stay public. Create a new account-only list instead."
            )
    mailing_list.name = cleaned.name
    mailing_list.description = cleaned.description
    mailing_list.visibility = cleaned.visibility
    mailing_list.required_scope = cleaned.required_scope
    mailing_list.updated_at = now
    _flush_unique(session, cleaned.name)
    return mailing_list


def set_archived(
    session: Session, actor: User, list_id: int, is_archived: bool, now: datetime
) -> MailingList:
    """Staff archive a list (it takes no new subscribers and is not offered for new
    campaigns; its subscriptions are kept) or restore it. Doing it twice changes nothing."""
    _require_staff(actor)
    mailing_list = get_list(session, list_id)
    if mailing_list.is_archived != is_archived:
        mailing_list.is_archived = is_archived
        mailing_list.updated_at = now
    return mailing_list


def archive_list(session: Session, actor: User, list_id: int, now: datetime) -> MailingList:
    """Staff archive a list (see :func:`set_archived`)."""
    return set_archived(session, actor, list_id, True, now)


def restore_list(session: Session, actor: User, list_id: int, now: datetime) -> MailingList:
    """Staff restore an archived list (see :func:`set_archived`)."""
    return set_archived(session, actor, list_id, False, now)


@dataclass(frozen=True)
class ListSummary:
    """A list with how many subscriptions it has in each state."""

    mailing_list: MailingList
    confirmed: int
    pending: int
    unsubscribed: int


def list_overview(session: Session) -> list[ListSummary]:
    """Every list (open ones first, by name) with its counts: two queries, whatever the
    number of lists."""
    counts: dict[tuple[int, SubscriptionStatus], int] = {
        (list_id, status): count
        for list_id, status, count in session.execute(
            sa.select(Subscription.list_id, Subscription.status, sa.func.count()).group_by(
                Subscription.list_id, Subscription.status
            )
        )
    }
    lists = session.scalars(
        sa.select(MailingList).order_by(MailingList.is_archived, MailingList.name)
    )
    return [
        ListSummary(
            mailing_list=row,
            confirmed=counts.get((row.id, SubscriptionStatus.CONFIRMED), 0),
            pending=counts.get((row.id, SubscriptionStatus.PENDING), 0),
            unsubscribed=counts.get((row.id, SubscriptionStatus.UNSUBSCRIBED), 0),
        )
        for row in lists
    ]
