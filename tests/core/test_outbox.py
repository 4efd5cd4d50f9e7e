"""The mail outbox: queued once per deduplication key, claimed before sending, recorded per
message; poison rows fail alone; unknown outcomes are settled from evidence or by staff."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage import delivery, outbox
from engage.accounts.models import Role, User
from engage.app import create_app
from engage.db import Database
from engage.outbox import OutboxMessage, OutboxStatus
from engage.timeutil import utcnow
from tests.conftest import post_form, sign_in
from tests.fake_sendgrid import FakeSendGrid


def queue_notice(session, user, key: str, **payload) -> int | None:
    """Queue a password-changed notice (any kind with a renderer will do)."""
    row_id = outbox.enqueue(
        session,
        kind="password_changed",
        dedup_key=key,
        now=utcnow(),
        user_id=user.id,
        payload=payload,
    )
    session.commit()
    return row_id


def rows(session) -> list[OutboxMessage]:
    session.expire_all()
    return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


@pytest.fixture
def sendgrid_app(app, fake_sendgrid: FakeSendGrid):
    """The app on the same database, sending through the real client to the fake SendGrid."""
    other = create_app(
        {
            "ENGAGE_CONFIG": "testing",
            "DATABASE_URL": app.config["DATABASE_URL"],
            "MAIL_BACKEND": "sendgrid",
            "SENDGRID_API_KEY": "SG.test-key",
            "SENDGRID_API_HOST": fake_sendgrid.url,
            "SENDGRID_TIMEOUT": 1,
            "BASE_URL": "http://engage.test",
        }
    )
    yield other
    Database.engine(other).dispose()


def test_queuing_twice_with_one_key_queues_once(app, session, make_user):
    user = make_user()
    first = queue_notice(session, user, "notice:1")
    again = queue_notice(session, user, "notice:1")
    assert first is not None and again is None
    assert len(rows(session)) == 1


def test_each_message_is_sent_once_with_a_stable_message_id(app, session, make_user, mailbox):
    users = [make_user() for _ in range(3)]
    ids = [queue_notice(session, user, f"notice:{user.id}") for user in users]

    report = delivery.deliver(app)
    again = delivery.deliver(app)

    assert (report.sent, again.sent) == (3, 0)
    assert [m.to for m in mailbox.messages] == [u.email for u in users]
    found = rows(session)
    assert [r.status for r in found] == [OutboxStatus.SENT] * 3
    assert [r.attempts for r in found] == [1, 1, 1]
    for row, message in zip(found, mailbox.messages, strict=True):
        assert row.id in ids
        assert message.headers["Message-ID"] == row.message_id("engage.localhost")
        assert row.provider_message_id == row.message_id("engage.localhost")


def test_a_message_that_fails_to_render_fails_alone_with_its_attempt_saved(
    app, session, make_user, mailbox
):
    user = make_user()
    poison = outbox.enqueue(
        session,
        kind="consent_review_reminder",
        dedup_key="poison",
        now=utcnow(),
        user_id=user.id,
        payload={},  # no version id: KeyError while rendering
    )
    session.commit()
    healthy = queue_notice(session, user, "healthy")

    report = delivery.deliver(app)

    assert (report.sent, report.failed) == (1, 1)
    failed = session.get(OutboxMessage, poison)
    session.refresh(failed)
    assert failed.status == OutboxStatus.FAILED
    assert failed.attempts == 1
    assert failed.last_error.startswith("could not render: KeyError")
    assert session.get(OutboxMessage, healthy).status == OutboxStatus.SENT
    assert len(mailbox.messages) == 1


def test_a_deactivated_recipient_is_not_sent_anything(app, session, make_user, mailbox):
    user = make_user(is_active=False)
    row_id = queue_notice(session, user, "notice")
    report = delivery.deliver(app)
    assert report.cancelled == 1 and mailbox.messages == []
    assert session.get(OutboxMessage, row_id).status == OutboxStatus.CANCELLED


def test_a_transient_provider_error_is_retried_after_a_backoff(
    sendgrid_app, session, make_user, fake_sendgrid
):
    user = make_user()
    row_id = queue_notice(session, user, "notice")
    fake_sendgrid.enqueue(503)
    start = utcnow()

    first = delivery.deliver(sendgrid_app, now=start)
    too_soon = delivery.deliver(sendgrid_app, now=start + timedelta(seconds=5))
    row = rows(session)[0]
    assert (first.retrying, too_soon.sent) == (1, 0)
    assert row.status == OutboxStatus.PENDING
    assert row.attempts == 1 and "503" in row.last_error
    assert row.next_attempt_at >= start + timedelta(seconds=30)

    later = delivery.deliver(sendgrid_app, now=row.next_attempt_at + timedelta(seconds=1))
    assert later.sent == 1
    row = rows(session)[0]
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 2)
    sends = fake_sendgrid.mail_sends
    assert [r.response_status for r in sends] == [503, 202]
    assert row.provider_message_id == sends[-1].message_id
    assert sends[-1].body["custom_args"] == {"outbox_id": str(row_id)}


def test_a_refused_message_fails_with_the_providers_reason(
    sendgrid_app, session, make_user, fake_sendgrid
):
    queue_notice(session, make_user(), "notice")
    fake_sendgrid.enqueue(400, {"errors": [{"message": "Invalid email", "field": "to"}]})
    report = delivery.deliver(sendgrid_app)
    row = rows(session)[0]
    assert report.failed == 1
    assert row.status == OutboxStatus.FAILED
    assert "Invalid email" in row.last_error
    assert delivery.deliver(sendgrid_app).sent == 0
    assert len(fake_sendgrid.mail_sends) == 1


def test_no_answer_after_sending_is_unknown_and_never_resent_blindly(
    sendgrid_app, session, make_user, fake_sendgrid
):
    queue_notice(session, make_user(), "notice")
    fake_sendgrid.enqueue(202, delay=2.5)  # past the 1 s timeout
    report = delivery.deliver(sendgrid_app)
    assert report.unknown == 1
    later = delivery.deliver(sendgrid_app, now=utcnow() + timedelta(hours=2))
    assert later.sent == 0
    assert rows(session)[0].status == OutboxStatus.UNKNOWN
    assert len(fake_sendgrid.mail_sends) == 1


def test_a_stale_claim_is_settled_from_the_files_that_exist(app, session, make_user, mailbox):
    """A worker died after claiming two emails: it wrote the first and never started the
    second."""
    users = [make_user(), make_user()]
    for user in users:
        queue_notice(session, user, f"notice:{user.id}")
    start = utcnow()
    with app.app_context():
        claim_session = Database.new_session(app)
        token, claimed = delivery.claim(claim_session, app, start, limit=2)
        claim_session.commit()
        first = claim_session.get(OutboxMessage, claimed[0])
        message = delivery._render(claim_session, app, first)
        claim_session.rollback()
        delivery._record(claim_session, first.id, token, attempt_started_at=start, attempts=1)
        app.extensions["engage.mail"].send(message, app.config["MAIL_FROM"])
        claim_session.close()
    assert len(mailbox.messages) == 1

    # While the lease holds nothing happens; after it, evidence decides.
    assert delivery.deliver(app, now=start + timedelta(seconds=10)).sent == 0
    lease = timedelta(seconds=app.config["OUTBOX_LEASE_SECONDS"] + 1)
    report = delivery.deliver(app, now=start + lease)

    assert (report.settled, report.sent) == (1, 1)
    assert sorted(m.to for m in mailbox.messages) == sorted(u.email for u in users)
    found = rows(session)
    assert [r.status for r in found] == [OutboxStatus.SENT, OutboxStatus.SENT]
    assert [r.resolution for r in found] == ["evidence: delivered", None]
    assert [r.attempts for r in found] == [1, 1]


def test_staff_decide_about_an_unknown_email_once(
    sendgrid_app, session, make_user, fake_sendgrid, client
):
    user = make_user()
    row_id = queue_notice(session, user, "notice")
    fake_sendgrid.enqueue(202, delay=2.5)
    delivery.deliver(sendgrid_app)
    staff = make_user(Role.STAFF)
    sign_in(client, staff)

    page = client.get("/staff/outbox").get_data(as_text=True)
    assert "Outcome unknown" in page and "SendGrid did not answer" in page
    assert f"Record decision for email #{row_id}" in page

    done = post_form(client, f"/staff/outbox/{row_id}/resolve", {"decision": "send_again"})
    twice = post_form(client, f"/staff/outbox/{row_id}/resolve", {"decision": "send_again"})

    assert done.status_code == 303
    assert twice.status_code == 409
    assert "nothing was changed" in twice.get_data(as_text=True)
    row = rows(session)[0]
    assert (row.status, row.resolved_by_id, row.resolution) == (
        OutboxStatus.PENDING,
        staff.id,
        "send_again",
    )
    assert delivery.deliver(sendgrid_app).sent == 1
    assert len(fake_sendgrid.mail_sends) == 2


def test_outbox_page_counts_by_kind_and_status(app, session, make_user, client):
    user = make_user()
    queue_notice(session, user, "a")
    queue_notice(session, user, "b")
    delivery.deliver(app)
    queue_notice(session, user, "c")
    sign_in(client, make_user(Role.STAFF))
    page = client.get("/staff/outbox").get_data(as_text=True)
    assert "Password changed notice" in page
    assert "<td>Sent</td><td>2</td>" in page
    assert "<td>Waiting to be sent</td><td>1</td>" in page
    assert "None: every email was sent or is waiting its turn." in page


def test_sign_up_succeeds_while_the_mail_provider_is_down(sendgrid_app, session, fake_sendgrid):
    """The account is saved and the confirmation waits in the outbox: no 500 after commit."""
    fake_sendgrid.enqueue(503)
    client = sendgrid_app.test_client()
    response = post_form(
        client,
        "/sign-up",
        {
            "role": "participant",
            "display_name": "Ana",
            "email": "ana@example.org",
            "password": "a long enough passphrase",
            "password_confirm": "a long enough passphrase",
            "country": "SE",
            "language": "en",
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    assert response.headers["Location"].endswith("/sign-up/check-email")
    user = session.scalar(sa.select(User).where(User.email == "ana@example.org"))
    assert user is not None
    row = rows(session)[0]
    assert (row.kind, row.status, row.attempts) == ("verify_email", OutboxStatus.PENDING, 1)

    later = delivery.deliver(sendgrid_app, now=row.next_attempt_at)
    assert later.sent == 1
    assert fake_sendgrid.mail_sends[-1].body["personalizations"][0]["to"] == [
        {"email": "ana@example.org"}
    ]


def test_a_repeated_sign_up_sends_one_confirmation_and_no_warning(app, client, mailbox):
    form = {
        "role": "participant",
        "display_name": "Ana",
        "email": "ana@example.org",
        "password": "a long enough passphrase",
        "password_confirm": "a long enough passphrase",
        "country": "SE",
        "language": "en",
    }
    for _ in range(3):
        assert post_form(client, "/sign-up", form).status_code == 302
    assert [m.subject for m in mailbox.to("ana@example.org")] == [
        "Confirm your email address for Engage"
    ]


def test_a_sign_up_with_a_confirmed_address_warns_once_an_hour(app, client, make_user, mailbox):
    owner = make_user(email="ana@example.org")
    form = {
        "role": "participant",
        "display_name": "Someone",
        "email": "ana@example.org",
        "password": "a long enough passphrase",
        "password_confirm": "a long enough passphrase",
        "country": "SE",
        "language": "en",
    }
    for _ in range(3):
        assert post_form(client, "/sign-up", form).status_code == 302
    assert [m.subject for m in mailbox.to(owner.email)] == [
        "Someone tried to join Engage with your address"
    ]


def test_an_attempt_that_started_but_left_no_file_is_sent_again(app, session, make_user, mailbox):
    """The worker died between "attempt started" and writing the file: no file, so the email
    was certainly not handed over, and it goes out once."""
    user = make_user()
    queue_notice(session, user, "notice")
    start = utcnow()
    with app.app_context():
        claim_session = Database.new_session(app)
        token, claimed = delivery.claim(claim_session, app, start, limit=1)
        claim_session.commit()
        delivery._record(claim_session, claimed[0], token, attempt_started_at=start, attempts=1)
        claim_session.close()
    lease = timedelta(seconds=app.config["OUTBOX_LEASE_SECONDS"] + 1)
    report = delivery.deliver(app, now=start + lease)
    assert (report.settled, report.sent) == (1, 1)
    row = rows(session)[0]
    assert (row.status, row.resolution, row.attempts) == (
        OutboxStatus.SENT,
        "evidence: not delivered",
        2,
    )
    assert len(mailbox.to(user.email)) == 1
