"""Mailing lists and their subscribers: the default lists, staff list management, account
holders' preferences, public sign-up with double opt-in, and unsubscribing by signed link.

Every function takes the session and ``now`` and never commits: the view, command or job that
called it commits once. Refusals are :class:`~newsletters.errors.NewsletterError` subclasses
whose message a person can read.

Choices people rely on:

- An account holder's subscription is confirmed at once (their address is verified); a list
  that needs a consent scope can be chosen only while their consent permits it
  (``engage.consent.queries``), and the delivery side checks it again when it sends.
- A public sign-up is ``pending`` until the emailed link is followed; the answer page is the
  same whether or not the address was known, and an address whose asked-for lists are all
  confirmed already gets no email at all. An address that belongs to an account may still sign
  up publicly: it becomes a subscriber of its own, keyed by the address, and the confirmation
  email mentions the preferences page (the web page says nothing different).
- Unsubscribing keeps the row (``unsubscribed``, with its time): it is history, and a later
  sign-up reuses it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engage import mail, outbox
from engage.accounts import queries as account_queries
from engage.accounts.models import User
from engage.choices import LANGUAGE_CHOICES
from engage.consent.queries import current_scopes, permits
from engage.db import lock_rows, savepoint
from engage.names import name_problem, tidy_name
from engage.roles import Role
from engage.urls import external_url
from newsletters.errors import NewsletterError
from newsletters.models import (
    ListVisibility,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from newsletters.tokens import (
    CONFIRM_MAX_AGE_SECONDS,
    BadToken,
    make_confirm_token,
    read_confirm_token,
)

# Unsubscribing lives in newsletters.unsubscribing; its names stay importable from here.
from newsletters.unsubscribing import (  # noqa: F401
    Unsubscription,
    read_unsubscribe,
    unsubscribe,
    unsubscribe_all,
)

CONFIRM_KIND = "newsletter_confirm"
# A re-submitted sign-up (a double-click, a reload) gets no second email within this window.
CONFIRM_REPEAT_WINDOW = timedelta(minutes=15)
MAX_LIST_NAME_LENGTH = 120
MAX_LIST_DESCRIPTION_LENGTH = 1000
MAX_SUBSCRIBER_NAME_LENGTH = 80
MAX_EMAIL_LENGTH = 254
# Ids of lists are database integers; anything else is not a list.
MAX_LIST_ID = 2**31 - 1
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LANGUAGES = frozenset(code for code, _label in LANGUAGE_CHOICES)


class InvalidChoice(NewsletterError):
    """A subscription choice that cannot be made (an unknown, archived or closed list)."""


# The default lists ------------------------------------------------------------------------
@dataclass(frozen=True)
class ListDetails:
    """What staff say about a list."""

    name: str
    description: str
    visibility: ListVisibility
    # The consent scope code a subscriber must permit (None: none needed).
    required_scope: str | None = None


# The same four as the newsletters migration seeds.
DEFAULT_LISTS = (
    ListDetails(
        "Research updates",
        "News about research the network takes part in, a few times a year.",
        ListVisibility.PUBLIC,
    ),
    ListDetails(
        "Progress reports",
        "How the research topics people supported are progressing.",
        ListVisibility.ACCOUNTS,
    ),
    ListDetails(
        "Survey alerts",
        "An email when a new survey is open to you.",
        ListVisibility.ACCOUNTS,
        "SURVEY_RECONTACT",
    ),
    ListDetails(
        "Data-sharing initiative news",
        "News of the global MS data-sharing initiative.",
        ListVisibility.PUBLIC,
    ),
)


def ensure_default_lists(session: Session, now: datetime) -> list[MailingList]:
    """The default lists, created where missing (a list of that name is left as it is)."""
    names = [details.name for details in DEFAULT_LISTS]
    existing = {
        row.name: row
        for row in session.scalars(sa.select(MailingList).where(MailingList.name.in_(names)))
    }
    for details in DEFAULT_LISTS:
        if details.name not in existing:
            existing[details.name] = MailingList(
                name=details.name,
                description=details.description,
                visibility=details.visibility,
                required_scope=details.required_scope,
                is_archived=False,
                created_at=now,
                updated_at=now,
            )
            session.add(existing[details.name])
    session.flush()
    return [existing[name] for name in names]


def scope_titles(session: Session) -> dict[str, str]:
    """The published form's scope titles by code (for pages that name a list's scope)."""
    return {scope.code: scope.title for scope in current_scopes(session)}


# Shared helpers ----------------------------------------------------------------------------
def open_lists(session: Session, visibility: ListVisibility | None = None) -> list[MailingList]:
    """The lists not archived (of one visibility, if given), in the order they were made."""
    query = sa.select(MailingList).where(MailingList.is_archived.is_(False))
    if visibility is not None:
        query = query.where(MailingList.visibility == visibility)
    return list(session.scalars(query.order_by(MailingList.id)))


def public_lists(session: Session) -> list[MailingList]:
    """The lists anyone may sign up to (open and public), in the order they were made."""
    return open_lists(session, ListVisibility.PUBLIC)


def _chosen(lists: list[MailingList], list_ids: Iterable[int], what: str) -> list[MailingList]:
    """The lists of ``list_ids`` among ``lists``; :class:`InvalidChoice` for any other id."""
    by_id = {row.id: row for row in lists}
    ids = set(list_ids)
    if any(list_id not in by_id for list_id in ids):
        raise InvalidChoice(
            f"One of the lists you chose is not {what}. Reload the page and choose again; "
            "nothing was changed."
        )
    return [row for row in lists if row.id in ids]


def _subscriptions_of(session: Session, subscriber_id: int) -> dict[int, Subscription]:
    return {
        row.list_id: row
        for row in session.scalars(
            sa.select(Subscription).where(Subscription.subscriber_id == subscriber_id)
        )
    }


def _secret(secret_key: str | None) -> str:
    return secret_key or current_app.config["SECRET_KEY"]


# Account holders ---------------------------------------------------------------------------
def subscriber_for_user(
    session: Session, user_id: int, now: datetime, *, language: str = "en"
) -> Subscriber:
    """The account's subscriber row, created on first use (a concurrent creation is found,
    not duplicated)."""
    query = sa.select(Subscriber).where(Subscriber.user_id == user_id)
    subscriber = session.scalar(query)
    if subscriber is not None:
        return subscriber
    try:
        with savepoint(session):
            subscriber = Subscriber(user_id=user_id, language=language, created_at=now)
            session.add(subscriber)
    except IntegrityError:
        subscriber = session.scalar(query)
        if subscriber is None:
            raise
    return subscriber


@dataclass(frozen=True)
class ListChoice:
    """One list on a person's preferences page."""

    mailing_list: MailingList
    is_subscribed: bool
    # Whether the person may subscribe now (always true for a list they are on).
    can_subscribe: bool
    # Why not (or, for a list they are on that their consent no longer allows, why they
    # receive nothing from it); empty when nothing stands in the way.
    why_not: str = ""
    # True when changing their consent choice would open it.
    needs_consent: bool = False


def _eligibility(session: Session, user: User, lists: list[MailingList]) -> dict[int, tuple]:
    """(can subscribe, why not, needs a consent change) per list id for ``user``."""
    if not user.is_email_verified:
        why = "Confirm your email address first: we sent you a link when you joined."
        return {row.id: (False, why, False) for row in lists}
    titles = scope_titles(session) if any(row.required_scope for row in lists) else {}
    found = {}
    for row in lists:
        scope = row.required_scope
        if scope is None:
            found[row.id] = (True, "", False)
        elif scope not in titles:
            found[row.id] = (False, "This list is not open at the moment.", False)
        elif user.role != Role.PARTICIPANT:
            found[row.id] = (
                False,
                f"This list is for people with MS whose consent allows “{titles[scope]}”.",
                False,
            )
        elif not permits(session, user.id, [scope]):
            found[row.id] = (
                False,
                f"Your consent does not currently allow “{titles[scope]}”. You can change "
                "that choice on your consent page.",
                True,
            )
        else:
            found[row.id] = (True, "", False)
    return found


def preferences(session: Session, user: User) -> list[ListChoice]:
    """The open lists with whether ``user`` is on each and may join it."""
    lists = open_lists(session)
    subscriber_id = session.scalar(sa.select(Subscriber.id).where(Subscriber.user_id == user.id))
    current = _subscriptions_of(session, subscriber_id) if subscriber_id else {}
    eligible = _eligibility(session, user, lists)
    choices = []
    for row in lists:
        subscription = current.get(row.id)
        is_subscribed = (
            subscription is not None and subscription.status == SubscriptionStatus.CONFIRMED
        )
        can, why, needs_consent = eligible[row.id]
        choices.append(ListChoice(row, is_subscribed, can or is_subscribed, why, needs_consent))
    return choices


@dataclass(frozen=True)
class PreferenceChange:
    """What saving the preferences changed (list names)."""

    subscribed: list[str]
    unsubscribed: list[str]


def set_subscriptions(
    session: Session, user: User, list_ids: Iterable[int], now: datetime
) -> PreferenceChange:
    """Make ``user`` subscribed to exactly ``list_ids`` among the open lists (subscriptions
    on archived lists are left alone). New ones are confirmed at once; ones left out become
    ``unsubscribed``; a list they are on stays even if their consent no longer allows it
    (they receive nothing from it meanwhile).

    :raises InvalidChoice: an unknown or archived list, or one they may not join now (the
        message says why); nothing is changed then.
    """
    lists = open_lists(session)
    chosen = _chosen(lists, list_ids, "open any more")
    user_id = user.id
    if (
        not chosen
        and session.scalar(sa.select(Subscriber.id).where(Subscriber.user_id == user_id)) is None
    ):
        return PreferenceChange([], [])  # nothing to leave: no row for nothing
    subscriber = subscriber_for_user(session, user_id, now, language=user.language or "en")
    # One person's two saves at once queue here, so neither undoes half of the other.
    lock_rows(session, Subscriber, [subscriber.id])
    current = _subscriptions_of(session, subscriber.id)
    eligible = _eligibility(session, user, chosen)
    for row in chosen:
        subscription = current.get(row.id)
        already = subscription is not None and subscription.status == SubscriptionStatus.CONFIRMED
        can, why, _needs_consent = eligible[row.id]
        if not already and not can:
            raise InvalidChoice(f"You cannot subscribe to “{row.name}”: {why}")
    change = PreferenceChange([], [])
    chosen_ids = {row.id for row in chosen}
    for row in lists:
        subscription = current.get(row.id)
        if row.id in chosen_ids:
            if subscription is None:
                session.add(
                    Subscription(
                        subscriber_id=subscriber.id,
                        list_id=row.id,
                        status=SubscriptionStatus.CONFIRMED,
                        source="preferences",
                        created_at=now,
                        confirmed_at=now,
                    )
                )
                change.subscribed.append(row.name)
            elif subscription.status != SubscriptionStatus.CONFIRMED:
                _confirm(subscription, now)
                change.subscribed.append(row.name)
        elif subscription is not None and subscription.status != SubscriptionStatus.UNSUBSCRIBED:
            subscription.status = SubscriptionStatus.UNSUBSCRIBED
            subscription.unsubscribed_at = now
            change.unsubscribed.append(row.name)
    session.flush()
    return change


def _confirm(subscription: Subscription, now: datetime) -> None:
    subscription.status = SubscriptionStatus.CONFIRMED
    subscription.confirmed_at = now
    subscription.unsubscribed_at = None


# Public sign-up (double opt-in) -------------------------------------------------------------
@dataclass(frozen=True)
class SignUpOutcome:
    """What a public sign-up did (never shown to the visitor: the page is the same)."""

    subscriber_id: int
    # Lists now waiting for the emailed link.
    pending: int
    email_queued: bool


def normalised_email(email: str) -> str:
    """``email`` trimmed and lower-cased; :class:`InvalidChoice` when it is not an address."""
    address = (email or "").strip().lower()
    if len(address) > MAX_EMAIL_LENGTH or not _EMAIL.match(address):
        raise InvalidChoice("Enter an email address like name@example.org.")
    return address


def sign_up(
    session: Session,
    *,
    name: str,
    email: str,
    language: str,
    list_ids: Iterable[int],
    now: datetime,
) -> SignUpOutcome:
    """Sign up an address to public lists: each becomes ``pending`` (a confirmed one stays
    so) and one confirmation email is queued for what is pending, at most once per
    re-submission window for the same lists.

    A concurrent first sign-up of the same address makes this raise ``IntegrityError``; the
    caller rolls back and calls again (the address is then found).

    :raises InvalidChoice: a bad address, name or language, no list, or a list that is not
        open to public sign-up; nothing is changed then.
    """
    address = normalised_email(email)
    problem = name_problem(name or "")
    if problem:
        raise InvalidChoice(problem)
    display = tidy_name(name or "")
    if len(display) > MAX_SUBSCRIBER_NAME_LENGTH:
        raise InvalidChoice(f"Use at most {MAX_SUBSCRIBER_NAME_LENGTH} characters for your name.")
    if language not in _LANGUAGES:
        raise InvalidChoice("Choose a language from the list.")
    ids = list(list_ids)
    if not ids:
        raise InvalidChoice("Choose at least one list.")
    chosen = _chosen(public_lists(session), ids, "open to sign-up")
    subscriber = session.scalar(sa.select(Subscriber).where(Subscriber.email == address))
    if subscriber is None:
        subscriber = Subscriber(email=address, name=display, language=language, created_at=now)
        session.add(subscriber)
        session.flush()
    current = _subscriptions_of(session, subscriber.id)
    if not any(row.status == SubscriptionStatus.CONFIRMED for row in current.values()):
        # Until the owner confirms something, the latest sign-up's name and language stand;
        # after that, a stranger typing the address cannot rename them.
        subscriber.name, subscriber.language = display, language
    for row in chosen:
        subscription = current.get(row.id)
        if subscription is None:
            current[row.id] = Subscription(
                subscriber_id=subscriber.id,
                list_id=row.id,
                status=SubscriptionStatus.PENDING,
                source="signup",
                created_at=now,
            )
            session.add(current[row.id])
        elif subscription.status == SubscriptionStatus.UNSUBSCRIBED:
            subscription.status = SubscriptionStatus.PENDING
            subscription.confirmed_at = None
    session.flush()
    pending = [subscription.list_id for subscription, _list in _pending_of(session, subscriber.id)]
    queued = False
    if pending:
        queued = (
            outbox.enqueue(
                session,
                kind=CONFIRM_KIND,
                dedup_key=confirm_dedup_key(subscriber.id, pending, now),
                now=now,
                to_address=address,
                payload={"subscriber_id": subscriber.id},
                deliver_now=True,
            )
            is not None
        )
    return SignUpOutcome(subscriber.id, len(pending), queued)


def confirm_dedup_key(subscriber_id: int, pending_list_ids: list[int], now: datetime) -> str:
    """The confirmation email's deduplication key: per subscriber, per set of pending lists,
    per window (a re-submission of the same lists sends nothing; adding a list does)."""
    window = int(now.timestamp() // CONFIRM_REPEAT_WINDOW.total_seconds())
    lists = hashlib.sha256(",".join(map(str, pending_list_ids)).encode()).hexdigest()[:12]
    return f"newsletter-confirm:{subscriber_id}:{lists}:{window}"


def _pending_of(session: Session, subscriber_id: int) -> list[tuple[Subscription, MailingList]]:
    rows = session.execute(
        sa.select(Subscription, MailingList)
        .join(MailingList, MailingList.id == Subscription.list_id)
        .where(
            Subscription.subscriber_id == subscriber_id,
            Subscription.status == SubscriptionStatus.PENDING,
            MailingList.is_archived.is_(False),
        )
        .order_by(MailingList.id)
    )
    return [(subscription, mailing_list) for subscription, mailing_list in rows]


def _list_names(session: Session, subscriber_id: int, status: SubscriptionStatus) -> list[str]:
    return list(
        session.scalars(
            sa.select(MailingList.name)
            .join(Subscription, Subscription.list_id == MailingList.id)
            .where(Subscription.subscriber_id == subscriber_id, Subscription.status == status)
            .order_by(MailingList.id)
        )
    )


@dataclass(frozen=True)
class Confirmation:
    """Where a confirmation link stands: the lists it would confirm and those already on."""

    subscriber_id: int
    pending: list[str]
    confirmed: list[str]


def _confirmation_subscriber(
    session: Session, token: str, secret_key: str | None, max_age: int | None
) -> int:
    subscription_id = read_confirm_token(
        _secret(secret_key), token, max_age or CONFIRM_MAX_AGE_SECONDS
    )
    subscriber_id = session.scalar(
        sa.select(Subscription.subscriber_id).where(Subscription.id == subscription_id)
    )
    if subscriber_id is None:
        raise BadToken("This confirmation link is not valid.")
    return subscriber_id


def read_confirmation(
    session: Session, token: str, *, secret_key: str | None = None, max_age: int | None = None
) -> Confirmation:
    """What following a confirmation link would do (changes nothing: mail scanners fetch
    links). :raises BadToken: altered, forged or expired."""
    subscriber_id = _confirmation_subscriber(session, token, secret_key, max_age)
    return Confirmation(
        subscriber_id,
        [mailing_list.name for _row, mailing_list in _pending_of(session, subscriber_id)],
        _list_names(session, subscriber_id, SubscriptionStatus.CONFIRMED),
    )


def confirm(
    session: Session,
    token: str,
    now: datetime,
    *,
    secret_key: str | None = None,
    max_age: int | None = None,
) -> Confirmation:
    """Confirm every pending subscription of the subscriber the link names; confirming again
    changes nothing. Returns the lists it confirmed (``pending``) and all confirmed now.

    :raises BadToken: altered, forged or expired (nothing changes).
    """
    subscriber_id = _confirmation_subscriber(session, token, secret_key, max_age)
    lock_rows(session, Subscriber, [subscriber_id])
    newly = []
    for subscription, mailing_list in _pending_of(session, subscriber_id):
        _confirm(subscription, now)
        newly.append(mailing_list.name)
    session.flush()
    return Confirmation(
        subscriber_id, newly, _list_names(session, subscriber_id, SubscriptionStatus.CONFIRMED)
    )


def render_confirmation(session: Session, row: outbox.OutboxMessage) -> mail.Message:
    """The sign-up confirmation email, rendered when it is sent: it names the lists still
    pending then (nothing is sent once none are, or when the address is suppressed)."""
    subscriber = session.get(Subscriber, row.payload.get("subscriber_id"))
    if subscriber is None or subscriber.email is None:
        raise outbox.NotOwed("the subscriber no longer exists")
    if session.get(Suppression, subscriber.email) is not None:
        raise outbox.NotOwed("the address is suppressed")
    pending = _pending_of(session, subscriber.id)
    if not pending:
        raise outbox.NotOwed("nothing is waiting for confirmation")
    token = make_confirm_token(current_app.config["SECRET_KEY"], pending[0][0].id)
    max_age = int(current_app.config.get("NEWSLETTER_CONFIRM_MAX_AGE", CONFIRM_MAX_AGE_SECONDS))
    return mail.render_message(
        "newsletter_confirm",
        to=subscriber.email,
        subject="Confirm your newsletter subscription",
        lists=[mailing_list for _row, mailing_list in pending],
        link=external_url("newsletters.confirm", token=token),
        days=max(1, max_age // 86400),
        has_account=account_queries.user_id_by_email(session, subscriber.email) is not None,
        preferences_link=external_url("newsletters.preferences"),
    )


def register_kinds(kinds: outbox.MailKinds) -> None:
    """Register the lists' email kinds with the outbox (called through newsletters.emails)."""
    kinds.register(CONFIRM_KIND, render_confirmation, "Newsletter sign-up confirmation")
