"""Data rights through the pages: "Download my data", "Delete my account" and the staff list of
requests (``engage.accounts.data_rights`` and each package's contribution)."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts import data_rights, staff_services
from engage.accounts import queries as account_queries
from engage.accounts import services as account_services
from engage.accounts.models import (
    DataRequest,
    DataRequestKind,
    DataRequestStatus,
    RecoveryCode,
    Role,
    User,
    UserSession,
)
from engage.accounts.signin import AUTHENTICATED_AT
from engage.audit import AuditEvent
from engage.consent import ledger as consent_ledger
from engage.consent.models import ConsentEvent, ConsentParticipant, Decision, ErasureRequest
from engage.db import Database
from engage.outbox import OutboxMessage, OutboxStatus
from engage.registries.models import RegistryEnrolment
from engage.security import verify_password
from engage.timeutil import utcnow
from engage.topics.models import (
    ContentReport,
    ReportStatus,
    Topic,
    TopicCategory,
    TopicComment,
    TopicStatus,
    TopicSupport,
)
from governance import decisions as governance_decisions
from governance.models import ApiToken, DecisionThread
from newsletters.models import (
    Delivery,
    DeliveryStatus,
    Send,
    SendStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from tests import consent_support
from tests.conftest import PASSWORD, post_form, sign_in
from tests.governance.support import make_proposal
from tests.newsletters.support import make_campaign, make_list, subscribe_email, subscribe_user

TOKEN_HASH = "ab" * 32


# Rows written straight to the database --------------------------------------------------------
def _topic(session, author: User, title: str, status=TopicStatus.PUBLISHED) -> Topic:
    now = utcnow()
    topic = Topic(
        title=title,
        question=f"{title}?",
        rationale="Because it matters.",
        category=TopicCategory.LIFESTYLE,
        status=status,
        reference_links=[],
        author_id=author.id,
        support_count=0,
        created_at=now,
        updated_at=now,
        published_at=now if status == TopicStatus.PUBLISHED else None,
    )
    session.add(topic)
    session.flush()
    return topic


def _support(session, supporter: User, topic: Topic) -> None:
    session.add(
        TopicSupport(
            topic_id=topic.id, user_id=supporter.id, role=supporter.role, created_at=utcnow()
        )
    )
    topic.support_count += 1
    session.flush()


def _comment(session, author: User, topic: Topic, body: str) -> TopicComment:
    comment = TopicComment(topic_id=topic.id, author_id=author.id, body=body, created_at=utcnow())
    session.add(comment)
    session.flush()
    return comment


def _report(session, reporter: User, topic: Topic, reason: str) -> None:
    session.add(
        ContentReport(
            topic_id=topic.id,
            reporter_id=reporter.id,
            reason=reason,
            status=ReportStatus.OPEN,
            created_at=utcnow(),
        )
    )
    session.flush()


def _queued_email(session, user: User, kind: str = "password_changed", **values) -> OutboxMessage:
    now = utcnow()
    row = OutboxMessage(
        kind=kind,
        dedup_key=f"test:{kind}:{user.id}:{time.monotonic_ns()}",
        user_id=user.id,
        payload={"secret_link": "never-exported"},
        token="t" * 32,
        status=OutboxStatus.PENDING,
        created_at=now,
        next_attempt_at=now,
        **values,
    )
    session.add(row)
    session.flush()
    return row


def _send_copy(session, subscriber: Subscriber, mailing_list, email: str, status) -> Delivery:
    campaign = make_campaign(session, [mailing_list], subject=f"News {time.monotonic_ns()}")
    now = utcnow()
    send = Send(
        campaign_id=campaign.id,
        occurrence_at=now,
        status=SendStatus.SENDING,
        subject=campaign.subject,
        preheader="",
        body_markdown="Hello",
        audience_size=1,
        started_at=now,
    )
    session.add(send)
    session.flush()
    copy = Delivery(
        send_id=send.id,
        subscriber_id=subscriber.id,
        list_id=mailing_list.id,
        user_id=subscriber.user_id,
        email=email,
        name="Pat",
        status=status,
        next_attempt_at=now,
        accepted_at=now if status == DeliveryStatus.ACCEPTED else None,
    )
    session.add(copy)
    session.flush()
    return copy


def _download(client) -> dict:
    response = post_form(client, "/account/data")
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return json.loads(response.get_data(as_text=True))


# Download my data --------------------------------------------------------------------------------
def test_download_holds_everything_about_me_and_nothing_about_others(
    app, client, session, make_user, make_registry
):
    staff = make_user(Role.STAFF)
    me = make_user(Role.PARTICIPANT, email="pat@example.org", display_name="Pat")
    other = make_user(Role.PARTICIPANT, email="alex@example.org", display_name="Alex")
    registry = make_registry(name="Swedish MS Registry")
    session.add(RegistryEnrolment(user_id=me.id, registry_id=registry.id, created_at=utcnow()))
    consent_support.publish(session, staff)
    consent_support.join(app, session, me, SURVEY_RECONTACT=True)
    mine = _topic(session, me, "Does sleep help MS fatigue")
    theirs = _topic(session, other, "Vitamin D and relapses")
    _support(session, me, theirs)
    _comment(session, me, theirs, "I take vitamin D every winter.")
    _comment(session, other, mine, "Alex's private thoughts")
    _report(session, me, theirs, "Off topic")
    mailing_list = make_list(session, "Research updates")
    subscriber = subscribe_user(session, me.id, [mailing_list])
    _send_copy(session, subscriber, mailing_list, "pat@example.org", DeliveryStatus.ACCEPTED)
    _queued_email(session, me)
    session.commit()
    sign_in(client, me)

    response = post_form(client, "/account/data")

    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="engage-my-data-{utcnow().date().isoformat()}.json"'
    )
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    document = json.loads(body)
    assert document["format"] == data_rights.EXPORT_FORMAT
    assert document["profile"]["email"] == "pat@example.org"
    assert document["profile"]["display_name"] == "Pat"
    assert [r["registry"] for r in document["registry_enrolments"]] == ["Swedish MS Registry"]
    assert [t["title"] for t in document["topics"]["proposed"]] == ["Does sleep help MS fatigue"]
    assert [s["topic"] for s in document["topics"]["supports"]] == ["Vitamin D and relapses"]
    assert [c["text"] for c in document["topics"]["comments"]] == ["I take vitamin D every winter."]
    assert [r["reason"] for r in document["topics"]["reports"]] == ["Off topic"]
    consent = document["consent"]
    assert {e["scope_code"] for e in consent["events"]} >= {"SHARE_RECORDS", "SURVEY_RECONTACT"}
    assert len(consent["receipts"]) == 1 and consent["receipts"][0]["signature"]["value"]
    assert [s["list"] for s in document["newsletters"]["subscriptions"]] == ["Research updates"]
    assert len(document["newsletters"]["newsletters_sent"]) == 1
    assert [e["kind"] for e in document["emails"]] == ["password_changed"]
    assert [r["kind"] for r in document["data_requests"]] == ["Download of my data"]
    assert "sign_in" in {e["event"] for e in document["security_events"]}
    assert len(document["sessions"]) == 1
    # Another person's words, secrets and email contents are never in it.
    assert "Alex's private thoughts" not in body and "alex@example.org" not in body
    assert "never-exported" not in body and "argon2" not in body
    request = session.scalar(sa.select(DataRequest).where(DataRequest.user_id == me.id))
    assert (request.kind, request.status) == (DataRequestKind.EXPORT, DataRequestStatus.COMPLETED)
    assert session.scalar(sa.select(AuditEvent.action).where(AuditEvent.action == "data_exported"))


def test_download_decrypts_a_clinicians_professional_details(client, make_user):
    clinician = make_user(Role.CLINICIAN)
    sign_in(client, clinician)

    profile = _download(client)["profile"]

    assert (profile["profession"], profile["institution"]) == ("Neurologist", "Karolinska")


def test_custodian_download_names_tokens_and_decisions_but_never_token_hashes(
    client, session, make_user, make_registry
):
    registry = make_registry(name="Danish MS Registry")
    custodian = make_user(Role.CUSTODIAN, registry=registry)
    staff = make_user(Role.STAFF)
    session.add(
        ApiToken(
            user_id=custodian.id,
            name="Nightly sync",
            display_prefix="eng_ABCDEFGH",
            token_hash=TOKEN_HASH,
            created_at=utcnow(),
        )
    )
    _proposal, (thread,) = make_proposal(session, staff, [registry], title="Sleep and MS")
    actor = session.get(User, custodian.id)
    governance_decisions.open_for_review(session, actor, thread, utcnow())
    governance_decisions.approve(session, actor, session.get(DecisionThread, thread.id), utcnow())
    session.commit()
    sign_in(client, custodian)

    response = post_form(client, "/account/data")

    body = response.get_data(as_text=True)
    governance = json.loads(body)["governance"]
    assert [(t["name"], t["starts_with"]) for t in governance["api_tokens"]] == [
        ("Nightly sync", "eng_ABCDEFGH")
    ]
    assert [(d["registry"], d["proposal"]) for d in governance["decisions"]][-1] == (
        "Danish MS Registry",
        "Sleep and MS",
    )
    assert TOKEN_HASH not in body


@contextmanager
def _counting(app):
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    engine = Database.engine(app)
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def _busy_person(app, session, make_user, staff, mailing_list, items: int) -> User:
    """A participant with ``items`` of every kind of row the download reads."""
    person = make_user(Role.PARTICIPANT)
    elsewhere = _topic(session, staff, f"Staff topic for {person.id}")
    subscriber = subscribe_user(session, person.id, [mailing_list])
    for n in range(items):
        topic = _topic(session, person, f"Topic {person.id}-{n}")
        _comment(session, person, elsewhere, f"Comment {n}")
        _support(session, person, topic)
        _report(session, person, topic, f"Report {n}")
        _queued_email(session, person, kind=f"kind_{n}")
        _send_copy(
            session, subscriber, mailing_list, f"p{person.id}@example.org", DeliveryStatus.ACCEPTED
        )
    session.commit()
    consent_support.join(app, session, person)
    return person


def test_download_runs_the_same_number_of_statements_however_much_data(app, session, make_user):
    staff = make_user(Role.STAFF)
    consent_support.publish(session, staff)
    mailing_list = make_list(session, "Research updates")
    session.commit()
    counts = {}
    for items in (1, 30):
        person = _busy_person(app, session, make_user, staff, mailing_list, items)
        client = app.test_client()
        sign_in(client, person)
        with _counting(app) as statements:
            document = _download(client)
        assert len(document["topics"]["comments"]) == items
        assert len(document["newsletters"]["newsletters_sent"]) == items
        counts[items] = len(statements)

    assert counts[1] == counts[30], counts


# Delete my account -------------------------------------------------------------------------------
def test_delete_page_explains_what_is_kept_and_needs_the_box_ticked(client, session, make_user):
    me = make_user(Role.PARTICIPANT)
    sign_in(client, me)

    page = client.get("/account/delete")
    refused = post_form(client, "/account/delete", {})

    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "What is deleted" in text and "What is kept, and why" in text
    assert refused.status_code == 400
    assert "Tick the box to confirm that you understand." in refused.get_data(as_text=True)
    assert session.get(User, me.id).deleted_at is None


def test_delete_asks_to_confirm_identity_when_the_sign_in_is_old(client, session, make_user):
    me = make_user(Role.PARTICIPANT)
    sign_in(client, me)
    with client.session_transaction() as browser:
        browser[AUTHENTICATED_AT] = int(time.time()) - 24 * 3600

    response = post_form(client, "/account/delete", {"understood": "y"})

    assert "Your password" in response.get_data(as_text=True)
    session.expire_all()
    assert session.get(User, me.id).deleted_at is None


def _everything_of_a_participant(app, session, make_user, me: User) -> dict:
    """Consent, topics, newsletters, emails, two-factor rows of ``me``; returns the ids."""
    staff = make_user(Role.STAFF)
    other = make_user(Role.PARTICIPANT)
    consent_support.publish(session, staff)
    consent_support.join(app, session, me, SURVEY_RECONTACT=True)
    published = _topic(session, me, "Does sleep help MS fatigue")
    _support(session, other, published)
    unpublished = _topic(session, me, "Cooling vests", status=TopicStatus.SUBMITTED)
    theirs = _topic(session, other, "Vitamin D and relapses")
    _support(session, me, theirs)
    comment = _comment(session, me, theirs, "I take vitamin D every winter.")
    mailing_list = make_list(session, "Research updates")
    account_subscriber = subscribe_user(session, me.id, [mailing_list])
    public_subscriber = subscribe_email(session, me.email, [mailing_list], name="Pat")
    queued_copy = _send_copy(
        session, account_subscriber, mailing_list, me.email, DeliveryStatus.PENDING
    )
    past_copy = _send_copy(
        session, public_subscriber, mailing_list, me.email, DeliveryStatus.ACCEPTED
    )
    session.add(
        Suppression(email=me.email, reason=SuppressionReason.BOUNCE, source="", created_at=utcnow())
    )
    queued_email = _queued_email(session, me)
    row = session.get(User, me.id)
    row.totp_secret, row.totp_enabled_at = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", utcnow()
    session.add(RecoveryCode(user_id=me.id, code_hash="c" * 64, created_at=utcnow()))
    session.commit()
    return {
        "published": published.id,
        "unpublished": unpublished.id,
        "theirs": theirs.id,
        "comment": comment.id,
        "queued_copy": queued_copy.id,
        "past_copy": past_copy.id,
        "public_subscriber": public_subscriber.id,
        "queued_email": queued_email.id,
    }


def test_deleting_my_account_erases_who_i_am_and_keeps_the_tallies(
    app, client, session, make_user, mailbox
):
    me = make_user(Role.PARTICIPANT, email="pat@example.org", display_name="Pat Smith")
    ids = _everything_of_a_participant(app, session, make_user, me)
    other_browser = app.test_client()
    sign_in(other_browser, me)
    sign_in(client, me)

    response = post_form(client, "/account/delete", {"understood": "y"})

    assert response.status_code == 200
    assert "Your account is deleted" in response.get_data(as_text=True)
    session.expire_all()
    user = session.get(User, me.id)
    # Identity: gone, and no way back in.
    assert user.email == f"deleted-{me.id}@deleted.invalid"
    assert user.display_name == "Deleted account"
    assert (user.profession, user.institution, user.organisation_name) == (None, None, None)
    assert (user.country, user.totp_secret, user.totp_enabled_at) == ("ZZ", None, None)
    assert not user.is_active and user.deleted_at is not None
    with app.app_context():
        assert not verify_password(user.password_hash, PASSWORD)
    assert session.scalars(sa.select(RecoveryCode).where(RecoveryCode.user_id == me.id)).all() == []
    sessions = session.scalars(sa.select(UserSession).where(UserSession.user_id == me.id)).all()
    assert len(sessions) == 2
    assert all(s.ended_at is not None and s.ip_address == "" for s in sessions)
    # The request and its outcome, and the audit log.
    request = session.scalar(sa.select(DataRequest).where(DataRequest.user_id == me.id))
    assert (request.kind, request.status) == (DataRequestKind.ERASURE, DataRequestStatus.COMPLETED)
    assert "Consent:" in request.outcome and "Newsletters:" in request.outcome
    assert "pat@example.org" not in request.outcome
    assert session.scalar(
        sa.select(AuditEvent.action).where(
            AuditEvent.action == "account_deleted", AuditEvent.subject_user_id == me.id
        )
    )
    # Topics: published content stays under "Deleted account", supports stay counted.
    assert session.get(Topic, ids["published"]).support_count == 1
    assert session.get(Topic, ids["unpublished"]).status == TopicStatus.WITHDRAWN
    assert session.get(Topic, ids["theirs"]).support_count == 1
    assert session.get(TopicComment, ids["comment"]) is not None
    page = client.get(f"/topics/{ids['theirs']}").get_data(as_text=True)
    assert "Deleted account" in page and "Pat Smith" not in page
    # Consent: everything withdrawn by new events; the ledger is intact; erasure queued.
    assert session.get(ConsentParticipant, me.id).permitted_mask == 0
    last = session.scalars(
        sa.select(ConsentEvent).where(ConsentEvent.user_id == me.id).order_by(ConsentEvent.seq)
    ).all()
    assert {e.scope_code for e in last if e.decision == Decision.WITHDRAW} >= {
        "SHARE_RECORDS",
        "SURVEY_RECONTACT",
    }
    assert consent_ledger.verify(session).problems == []
    assert session.scalar(sa.select(ErasureRequest).where(ErasureRequest.user_id == me.id))
    # Newsletters: unsubscribed, queued copy skipped, the address gone everywhere.
    statuses = session.scalars(sa.select(Subscription.status)).all()
    assert set(statuses) == {SubscriptionStatus.UNSUBSCRIBED}
    assert session.get(Delivery, ids["queued_copy"]).status == DeliveryStatus.SKIPPED
    assert session.get(Delivery, ids["past_copy"]).status == DeliveryStatus.ACCEPTED
    addresses = (
        session.scalars(sa.select(Delivery.email)).all()
        + session.scalars(sa.select(Subscriber.email).where(Subscriber.email.is_not(None))).all()
    )
    assert addresses and not any("pat@example.org" in a for a in addresses)
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0
    # Emails: the queued one is cancelled; nothing can reach the account any more.
    assert session.get(OutboxMessage, ids["queued_email"]).status == OutboxStatus.CANCELLED
    assert account_queries.recipient(session, me.id) is None
    # Both browsers are signed out, and the old address and password open nothing.
    assert client.get("/account").status_code == 302
    assert other_browser.get("/account").status_code == 302
    refused = post_form(client, "/sign-in", {"email": "pat@example.org", "password": PASSWORD})
    assert refused.status_code == 400
    before = len(mailbox.messages)
    post_form(client, "/reset-password", {"email": "pat@example.org"})
    assert len(mailbox.messages) == before


def test_deleting_a_custodian_revokes_every_api_token(client, session, make_user):
    custodian = make_user(Role.CUSTODIAN)
    session.add(
        ApiToken(
            user_id=custodian.id,
            name="Nightly sync",
            display_prefix="eng_ABCDEFGH",
            token_hash=TOKEN_HASH,
            created_at=utcnow(),
        )
    )
    session.commit()
    sign_in(client, custodian)

    post_form(client, "/account/delete", {"understood": "y"})

    session.expire_all()
    token = session.scalar(sa.select(ApiToken).where(ApiToken.user_id == custodian.id))
    assert token.revoked_at is not None
    assert session.scalar(
        sa.select(AuditEvent.action).where(AuditEvent.action == "governance_api_token_revoked")
    )


def test_a_second_deletion_is_refused_and_changes_nothing(app, session, make_user):
    me = make_user(Role.ORGANISATION)
    rights = data_rights.registered(app)
    with app.app_context():
        data_rights.delete_account(
            session, session.get(User, me.id), utcnow(), rights=rights, config=app.config
        )
        session.commit()
        with pytest.raises(data_rights.AccountAlreadyDeleted):
            data_rights.delete_account(
                session, session.get(User, me.id), utcnow(), rights=rights, config=app.config
            )
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(DataRequest)) == 1


def test_staff_cannot_reactivate_a_deleted_account(app, session, make_user):
    me, staff = make_user(Role.PARTICIPANT), make_user(Role.STAFF)
    with app.app_context():
        data_rights.delete_account(
            session,
            session.get(User, me.id),
            utcnow(),
            rights=data_rights.registered(app),
            config=app.config,
        )
        session.commit()

    with pytest.raises(account_services.InvalidDecision):
        staff_services.set_active(
            session, session.get(User, staff.id), session.get(User, me.id), True, utcnow()
        )


def test_removing_unconfirmed_sign_ups_keeps_a_deleted_account(app, session, make_user):
    me = make_user(Role.PARTICIPANT, email_verified=False)
    with app.app_context():
        data_rights.delete_account(
            session,
            session.get(User, me.id),
            utcnow(),
            rights=data_rights.registered(app),
            config=app.config,
        )
        session.commit()

    removed = staff_services.remove_unverified_accounts(
        session, utcnow() + timedelta(days=90), 30
    )
    session.commit()

    assert removed == 0
    assert session.get(User, me.id) is not None


# Staff: the list of requests ---------------------------------------------------------------------
def test_staff_see_requests_newest_first_filtered_and_paged(client, session, make_user):
    staff = make_user(Role.STAFF)
    people = [make_user(Role.PARTICIPANT) for _ in range(3)]
    start = utcnow() - timedelta(days=1)
    for n in range(30):
        session.add(
            DataRequest(
                user_id=people[n % 3].id,
                kind=DataRequestKind.EXPORT if n % 2 else DataRequestKind.ERASURE,
                status=DataRequestStatus.COMPLETED,
                requested_at=start + timedelta(minutes=n),
                completed_at=start + timedelta(minutes=n),
                outcome=f"Outcome number {n:02d}.",
            )
        )
    session.commit()
    sign_in(client, staff)

    first = client.get("/staff/data-requests").get_data(as_text=True)
    second = client.get("/staff/data-requests?page=2").get_data(as_text=True)
    erasures = client.get("/staff/data-requests?kind=erasure").get_data(as_text=True)

    assert "30 requests found" in first
    assert first.index("Outcome number 29.") < first.index("Outcome number 28.")
    assert "Outcome number 04." not in first and "Outcome number 04." in second
    assert "15 requests found" in erasures
    assert "Outcome number 29." not in erasures and "Outcome number 28." in erasures
    assert people[0].email in first


# Access and CSRF ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/account/data", "/account/delete"])
def test_data_pages_need_a_signed_in_person(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in")


@pytest.mark.parametrize("role", [Role.PARTICIPANT, Role.CLINICIAN, Role.ORGANISATION])
def test_only_staff_see_the_list_of_requests(client, make_user, role):
    sign_in(client, make_user(role))

    assert client.get("/staff/data-requests").status_code == 403


@pytest.mark.sqlite_only
@pytest.mark.parametrize("path", ["/account/data", "/account/delete"])
def test_posts_without_a_csrf_token_change_nothing(client, session, make_user, path):
    me = make_user(Role.PARTICIPANT)
    sign_in(client, me)

    response = client.post(path, data={"understood": "y"})

    assert response.status_code == 400
    assert session.get(User, me.id).deleted_at is None
    assert session.scalar(sa.select(sa.func.count()).select_from(DataRequest)) == 0
