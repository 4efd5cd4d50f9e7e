"""Mailing-list services without HTTP: default lists, staff list management, account holders'
subscriptions with consent gating, public sign-up with double opt-in, confirmation and
unsubscribing."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from engage import delivery
from engage.accounts.models import Role, User
from engage.outbox import OutboxMessage
from engage.timeutil import utcnow
from newsletters import demo, list_admin, lists
from newsletters.lists import InvalidChoice, ListDetails
from newsletters.models import (
    ListVisibility,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from newsletters.tokens import CONFIRM_SALT, BadToken, make_unsubscribe_token
from tests import consent_support
from tests.newsletters.support import make_list, subscribe_email, subscribe_user

SECRET = "testing-secret-key-not-for-production"


def _user(session, someone) -> User:
    return session.get(User, someone.id)


def _statuses(session, subscriber_id: int) -> dict[str, SubscriptionStatus]:
    session.expire_all()
    rows = session.execute(
        sa.select(MailingList.name, Subscription.status)
        .join(Subscription, Subscription.list_id == MailingList.id)
        .where(Subscription.subscriber_id == subscriber_id)
    )
    return {name: status for name, status in rows}


def _confirmation_emails(session) -> list[OutboxMessage]:
    session.expire_all()
    return list(
        session.scalars(sa.select(OutboxMessage).where(OutboxMessage.kind == "newsletter_confirm"))
    )


def _old_confirm_token(subscription_id: int, age: timedelta) -> str:
    """A confirmation token signed ``age`` ago (itsdangerous' own clock, moved back)."""

    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time() - age.total_seconds())

    return URLSafeTimedSerializer(SECRET, salt=CONFIRM_SALT, signer=Earlier).dumps(subscription_id)


# Default lists ------------------------------------------------------------------------------
def test_default_lists_are_created_once_as_the_migration_seeds_them(session):
    first = lists.ensure_default_lists(session, utcnow())
    again = lists.ensure_default_lists(session, utcnow())
    session.commit()

    assert [row.name for row in first] == [
        "Research updates",
        "Progress reports",
        "Survey alerts",
        "Data-sharing initiative news",
    ]
    assert [row.id for row in again] == [row.id for row in first]
    assert session.scalar(sa.select(sa.func.count()).select_from(MailingList)) == 4
    survey = first[2]
    assert (survey.visibility, survey.required_scope) == (
        ListVisibility.ACCOUNTS,
        "SURVEY_RECONTACT",
    )
    assert [row.visibility for row in first if row.required_scope is None] == [
        ListVisibility.PUBLIC,
        ListVisibility.ACCOUNTS,
        ListVisibility.PUBLIC,
    ]


# Staff --------------------------------------------------------------------------------------
def test_staff_create_edit_archive_and_restore_a_list(session, make_user):
    staff = _user(session, make_user(Role.STAFF))
    now = utcnow()
    created = list_admin.create_list(
        session, staff, ListDetails("  Trial   news ", "About trials.", ListVisibility.PUBLIC), now
    )
    assert created.name == "Trial news"

    list_admin.update_list(
        session,
        staff,
        created.id,
        ListDetails("Trial news", "Which trials recruit.", ListVisibility.ACCOUNTS),
        now,
    )
    list_admin.archive_list(session, staff, created.id, now)
    session.commit()
    session.expire_all()
    saved = session.get(MailingList, created.id)
    assert (saved.description, saved.visibility, saved.is_archived) == (
        "Which trials recruit.",
        ListVisibility.ACCOUNTS,
        True,
    )
    list_admin.restore_list(session, staff, created.id, now)
    assert session.get(MailingList, created.id).is_archived is False


@pytest.mark.parametrize(
    ("details", "message"),
    [
        (ListDetails("research UPDATES", "", ListVisibility.PUBLIC), "already called"),
        (ListDetails("   ", "", ListVisibility.PUBLIC), "Give the list a name"),
        (ListDetails("x" * 121, "", ListVisibility.PUBLIC), "at most 120"),
        (ListDetails("Long", "x" * 1001, ListVisibility.PUBLIC), "at most 1,000"),
        (
            ListDetails("Surveys", "", ListVisibility.ACCOUNTS, "NO_SUCH_SCOPE"),
            "published consent form",
        ),
        (
            ListDetails("Surveys", "", ListVisibility.PUBLIC, "SURVEY_RECONTACT"),
            "account holders only",
        ),
    ],
)
def test_a_list_that_cannot_be_saved_says_why_and_changes_nothing(
    session, make_user, details, message
):
    staff = make_user(Role.STAFF)
    consent_support.publish(session, staff)
    make_list(session, "Research updates")
    session.commit()

    with pytest.raises(list_admin.InvalidList, match=message):
        list_admin.create_list(session, _user(session, staff), details, utcnow())
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(MailingList)) == 1


def test_a_list_may_need_a_scope_of_the_published_form(session, make_user):
    staff = make_user(Role.STAFF)
    details = ListDetails("Survey alerts", "", ListVisibility.ACCOUNTS, "SURVEY_RECONTACT")
    with pytest.raises(list_admin.InvalidList, match="published consent form"):
        list_admin.create_list(session, _user(session, staff), details, utcnow())
    session.rollback()

    consent_support.publish(session, staff)
    created = list_admin.create_list(session, _user(session, staff), details, utcnow())
    assert created.required_scope == "SURVEY_RECONTACT"


def test_only_staff_manage_lists(session, make_user):
    participant = _user(session, make_user(Role.PARTICIPANT))
    with pytest.raises(list_admin.NotAllowed):
        list_admin.create_list(
            session, participant, ListDetails("Mine", "", ListVisibility.PUBLIC), utcnow()
        )


def test_a_public_list_with_subscribers_without_account_stays_public(session, make_user):
    staff = make_user(Role.STAFF)
    research = make_list(session)
    subscribe_email(session, "reader@example.org", [research])
    session.commit()

    with pytest.raises(list_admin.InvalidList, match="must stay public"):
        list_admin.update_list(
            session,
            _user(session, staff),
            research.id,
            ListDetails(research.name, "", ListVisibility.ACCOUNTS),
            utcnow(),
        )


def test_the_overview_counts_each_lists_subscriptions_by_status(session, make_user):
    person = make_user(Role.PARTICIPANT)
    research = make_list(session, "Research updates")
    progress = make_list(session, "Progress reports", visibility=ListVisibility.ACCOUNTS)
    subscribe_email(session, "a@example.org", [research])
    subscribe_email(session, "b@example.org", [research], status=SubscriptionStatus.PENDING)
    subscribe_email(session, "c@example.org", [research], status=SubscriptionStatus.UNSUBSCRIBED)
    subscribe_user(session, person.id, [research, progress])
    session.commit()

    counts = {
        s.mailing_list.name: (s.confirmed, s.pending, s.unsubscribed)
        for s in list_admin.list_overview(session)
    }
    assert counts == {"Research updates": (2, 1, 1), "Progress reports": (1, 0, 0)}


# Account holders ---------------------------------------------------------------------------
def test_an_account_holder_subscribes_at_once_and_unsubscribing_keeps_the_row(session, make_user):
    research = make_list(session, "Research updates")
    progress = make_list(session, "Progress reports", visibility=ListVisibility.ACCOUNTS)
    session.commit()
    person = _user(session, make_user(Role.CLINICIAN))

    change = lists.set_subscriptions(session, person, [research.id, progress.id], utcnow())
    session.commit()
    assert change.subscribed == ["Research updates", "Progress reports"]
    subscriber = lists.subscriber_for_user(session, person.id, utcnow())
    assert _statuses(session, subscriber.id) == {
        "Research updates": SubscriptionStatus.CONFIRMED,
        "Progress reports": SubscriptionStatus.CONFIRMED,
    }

    later = utcnow()
    change = lists.set_subscriptions(session, _user(session, person), [progress.id], later)
    session.commit()
    assert change.unsubscribed == ["Research updates"]
    row = session.scalar(
        sa.select(Subscription).where(
            Subscription.subscriber_id == subscriber.id, Subscription.list_id == research.id
        )
    )
    assert row.status == SubscriptionStatus.UNSUBSCRIBED
    assert row.unsubscribed_at == later


@pytest.mark.parametrize("which", ["unknown", "archived"])
def test_unknown_or_archived_lists_cannot_be_chosen(session, make_user, which):
    research = make_list(session)
    closed = make_list(session, "Old news")
    closed.is_archived = True
    session.commit()
    person = _user(session, make_user(Role.PARTICIPANT))
    chosen = 987654 if which == "unknown" else closed.id

    with pytest.raises(InvalidChoice, match="not open any more"):
        lists.set_subscriptions(session, person, [research.id, chosen], utcnow())
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscription)) == 0


def test_a_list_needing_consent_opens_only_to_participants_who_permit_it(app, session, make_user):
    staff = make_user(Role.STAFF)
    consent_support.publish(session, staff)
    survey = lists.ensure_default_lists(session, utcnow())[2]
    session.commit()
    participant = make_user(Role.PARTICIPANT)
    consent_support.join(app, session, participant, SURVEY_RECONTACT=False)

    row = next(
        c
        for c in lists.preferences(session, _user(session, participant))
        if c.mailing_list.id == survey.id
    )
    assert (row.can_subscribe, row.needs_consent) == (False, True)
    assert "consent page" in row.why_not
    with pytest.raises(InvalidChoice, match="Your consent does not currently allow"):
        lists.set_subscriptions(session, _user(session, participant), [survey.id], utcnow())
    session.rollback()

    consent_support.join(app, session, participant, SURVEY_RECONTACT=True)
    lists.set_subscriptions(session, _user(session, participant), [survey.id], utcnow())
    session.commit()
    subscriber = lists.subscriber_for_user(session, participant.id, utcnow())
    assert _statuses(session, subscriber.id) == {"Survey alerts": SubscriptionStatus.CONFIRMED}

    clinician = _user(session, make_user(Role.CLINICIAN))
    with pytest.raises(InvalidChoice, match="for people with MS"):
        lists.set_subscriptions(session, clinician, [survey.id], utcnow())


def test_withdrawing_consent_keeps_the_subscription_but_says_nothing_arrives(
    app, session, make_user
):
    consent_support.publish(session, make_user(Role.STAFF))
    survey = lists.ensure_default_lists(session, utcnow())[2]
    session.commit()
    participant = make_user(Role.PARTICIPANT)
    consent_support.join(app, session, participant, SURVEY_RECONTACT=True)
    lists.set_subscriptions(session, _user(session, participant), [survey.id], utcnow())
    session.commit()
    consent_support.join(app, session, participant, SURVEY_RECONTACT=False)

    row = next(
        c
        for c in lists.preferences(session, _user(session, participant))
        if c.mailing_list.id == survey.id
    )
    assert (row.is_subscribed, row.can_subscribe, row.needs_consent) == (True, True, True)
    # Saving the page unchanged keeps it; it cannot be chosen anew once left.
    lists.set_subscriptions(session, _user(session, participant), [survey.id], utcnow())
    lists.set_subscriptions(session, _user(session, participant), [], utcnow())
    with pytest.raises(InvalidChoice):
        lists.set_subscriptions(session, _user(session, participant), [survey.id], utcnow())


def test_an_unverified_account_cannot_subscribe_yet(session, make_user):
    research = make_list(session)
    session.commit()
    person = _user(session, make_user(Role.PARTICIPANT, email_verified=False))
    with pytest.raises(InvalidChoice, match="Confirm your email address first"):
        lists.set_subscriptions(session, person, [research.id], utcnow())


# Public sign-up -----------------------------------------------------------------------------
def test_sign_up_is_pending_until_confirmed_and_confirming_twice_is_fine(app, session):
    research = make_list(session, "Research updates")
    sharing = make_list(session, "Data-sharing initiative news")
    session.commit()

    outcome = lists.sign_up(
        session,
        name="Ana",
        email="  Ana@Example.ORG ",
        language="es",
        list_ids=[research.id, sharing.id],
        now=utcnow(),
    )
    session.commit()
    subscriber = session.get(Subscriber, outcome.subscriber_id)
    assert (subscriber.email, subscriber.name, subscriber.language) == (
        "ana@example.org",
        "Ana",
        "es",
    )
    assert set(_statuses(session, subscriber.id).values()) == {SubscriptionStatus.PENDING}
    assert len(_confirmation_emails(session)) == 1

    first_pending = min(
        session.scalars(
            sa.select(Subscription.id).where(Subscription.subscriber_id == subscriber.id)
        )
    )
    token = _old_confirm_token(first_pending, timedelta(seconds=0))
    done = lists.confirm(session, token, utcnow(), secret_key=SECRET)
    session.commit()
    assert done.pending == ["Research updates", "Data-sharing initiative news"]
    assert set(_statuses(session, subscriber.id).values()) == {SubscriptionStatus.CONFIRMED}

    again = lists.confirm(session, token, utcnow(), secret_key=SECRET)
    assert again.pending == []
    assert again.confirmed == ["Research updates", "Data-sharing initiative news"]


def test_a_repeated_sign_up_queues_one_email_and_a_confirmed_one_none(session):
    research = make_list(session)
    session.commit()
    now = utcnow()
    for _ in range(3):
        lists.sign_up(
            session,
            name="Ana",
            email="ana@example.org",
            language="en",
            list_ids=[research.id],
            now=now,
        )
        session.commit()
    assert len(_confirmation_emails(session)) == 1

    subscribe_email(session, "known@example.org", [research])
    session.commit()
    outcome = lists.sign_up(
        session,
        name="Stranger",
        email="known@example.org",
        language="fr",
        list_ids=[research.id],
        now=now,
    )
    session.commit()
    assert outcome.email_queued is False
    known = session.get(Subscriber, outcome.subscriber_id)
    assert (known.name, known.language) == ("Reader", "en")  # a stranger cannot rename them
    assert len(_confirmation_emails(session)) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"email": "not-an-address"}, "Enter an email address"),
        ({"email": "a" * 250 + "@example.org"}, "Enter an email address"),
        ({"name": "n" * 81}, "at most 80"),
        ({"language": "xx"}, "Choose a language"),
        ({"list_ids": []}, "at least one list"),
        ({"list_ids": "accounts"}, "not open to sign-up"),
        ({"list_ids": "unknown"}, "not open to sign-up"),
    ],
)
def test_a_sign_up_that_cannot_be_made_changes_nothing(session, change, message):
    research = make_list(session)
    members = make_list(session, "Progress reports", visibility=ListVisibility.ACCOUNTS)
    session.commit()
    values = {"name": "Ana", "email": "ana@example.org", "language": "en"}
    values["list_ids"] = [research.id]
    values.update(change)
    if values["list_ids"] == "accounts":
        values["list_ids"] = [research.id, members.id]
    elif values["list_ids"] == "unknown":
        values["list_ids"] = [research.id + members.id + 100]

    with pytest.raises(InvalidChoice, match=message):
        lists.sign_up(session, now=utcnow(), **values)
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(Subscriber)) == 0
    assert _confirmation_emails(session) == []


def test_the_confirmation_email_names_the_lists_and_its_link_confirms(app, session, mailbox):
    research = make_list(session)
    session.commit()
    lists.sign_up(
        session,
        name="Ana",
        email="ana@example.org",
        language="en",
        list_ids=[research.id],
        now=utcnow(),
    )
    session.commit()
    delivery.deliver(app)

    message = mailbox.last_to("ana@example.org")
    assert message.subject == "Confirm your newsletter subscription"
    assert "Research updates" in message.text
    token = message.link("/newsletters/confirm/").rsplit("/", 1)[1]
    with app.app_context():
        lists.confirm(session, token, utcnow())
    session.commit()
    subscriber_id = session.scalar(sa.select(Subscriber.id))
    assert _statuses(session, subscriber_id) == {"Research updates": SubscriptionStatus.CONFIRMED}


def test_no_confirmation_goes_to_a_suppressed_address(app, session, mailbox):
    research = make_list(session)
    session.add(
        Suppression(
            email="bounced@example.org", reason=SuppressionReason.BOUNCE, created_at=utcnow()
        )
    )
    session.commit()
    lists.sign_up(
        session,
        name="B",
        email="bounced@example.org",
        language="en",
        list_ids=[research.id],
        now=utcnow(),
    )
    session.commit()
    delivery.deliver(app)
    assert mailbox.to("bounced@example.org") == []


def test_expired_forged_and_orphan_confirmation_links_change_nothing(session):
    research = make_list(session)
    subscriber = subscribe_email(
        session, "ana@example.org", [research], status=SubscriptionStatus.PENDING
    )
    session.commit()
    subscription_id = session.scalar(sa.select(Subscription.id))

    expired = _old_confirm_token(subscription_id, timedelta(days=8))
    with pytest.raises(BadToken, match="expired"):
        lists.confirm(session, expired, utcnow(), secret_key=SECRET)
    forged = _old_confirm_token(subscription_id, timedelta(0))[:-3] + "abc"
    with pytest.raises(BadToken, match="not valid"):
        lists.confirm(session, forged, utcnow(), secret_key=SECRET)
    orphan = _old_confirm_token(subscription_id + 1000, timedelta(0))
    with pytest.raises(BadToken, match="not valid"):
        lists.confirm(session, orphan, utcnow(), secret_key=SECRET)
    assert _statuses(session, subscriber.id) == {"Research updates": SubscriptionStatus.PENDING}


# Unsubscribing ------------------------------------------------------------------------------
def test_unsubscribe_by_token_is_immediate_and_idempotent(session):
    research = make_list(session)
    sharing = make_list(session, "Data-sharing initiative news")
    subscriber = subscribe_email(session, "ana@example.org", [research, sharing])
    session.commit()
    token = make_unsubscribe_token(SECRET, subscriber.id, research.id)

    first = lists.unsubscribe(session, token, utcnow(), secret_key=SECRET)
    session.commit()
    second = lists.unsubscribe(session, token, utcnow(), secret_key=SECRET)
    session.commit()
    assert (first.was_subscribed, second.was_subscribed) == (True, False)
    assert first.list_name == "Research updates"
    assert _statuses(session, subscriber.id) == {
        "Research updates": SubscriptionStatus.UNSUBSCRIBED,
        "Data-sharing initiative news": SubscriptionStatus.CONFIRMED,
    }

    assert lists.unsubscribe_all(session, subscriber.id, utcnow()) == 1
    session.commit()
    assert set(_statuses(session, subscriber.id).values()) == {SubscriptionStatus.UNSUBSCRIBED}


def test_a_forged_unsubscribe_token_is_refused(session):
    research = make_list(session)
    subscriber = subscribe_email(session, "ana@example.org", [research])
    session.commit()
    forged = f"{subscriber.id}.{research.id}.AAAAAAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(BadToken, match="not valid"):
        lists.unsubscribe(session, forged, utcnow(), secret_key=SECRET)
    assert _statuses(session, subscriber.id) == {"Research updates": SubscriptionStatus.CONFIRMED}


# Demo ---------------------------------------------------------------------------------------
def test_the_demo_seed_subscribes_the_demo_participant_once(app, session, make_user):
    participant = make_user(Role.PARTICIPANT, email="participant@demo.engage.localhost")
    first = demo.seed(session, app.config, utcnow())
    again = demo.seed(session, app.config, utcnow())
    session.commit()

    assert first == again == "newsletters: 4 default lists, 2 demo subscriptions"
    subscriber = lists.subscriber_for_user(session, participant.id, utcnow())
    assert _statuses(session, subscriber.id) == {
        "Research updates": SubscriptionStatus.CONFIRMED,
        "Progress reports": SubscriptionStatus.CONFIRMED,
    }
