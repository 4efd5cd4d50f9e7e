"""Exactly-once newsletter delivery on PostgreSQL: two workers with an injected failure rate,
and workers SIGKILLed mid-batch and restarted (real processes, the real ``engage`` command)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engage.db import Database
from engage.timeutil import utcnow
from newsletters import delivery, sending
from newsletters.models import (
    Campaign,
    CampaignKind,
    CampaignList,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    ListVisibility,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from tests.crash_support import app_factory, kill_repeatedly, staff_account
from tests.fake_sendgrid import FakeSendGrid

ENGAGE = str(Path(sys.executable).parent / "engage")
LEASE_SECONDS = 2

pytestmark = pytest.mark.postgres


@pytest.fixture
def make_app(pg_url):
    """Apps on the test's schema (engines disposed afterwards)."""
    yield from app_factory(
        pg_url, BASE_URL="http://engage.test", NEWSLETTER_LEASE_SECONDS=LEASE_SECONDS
    )


def seed_send(app, count: int) -> int:
    """``count`` confirmed subscribers on one list, a campaign due now, started; the send id."""
    now = utcnow()
    with app.app_context():
        session = Database.new_session(app)
        session.execute(sa.delete(MailingList))
        mailing_list = MailingList(
            name="Research updates",
            description="",
            visibility=ListVisibility.PUBLIC,
            created_at=now,
            updated_at=now,
        )
        session.add(mailing_list)
        session.flush()
        session.execute(
            sa.insert(Subscriber),
            [
                {
                    "email": f"reader{n}@example.org",
                    "name": f"Reader {n}",
                    "language": "en",
                    "created_at": now,
                }
                for n in range(count)
            ],
        )
        session.execute(
            sa.insert(Subscription).from_select(
                ["subscriber_id", "list_id", "status", "source", "created_at", "confirmed_at"],
                sa.select(
                    Subscriber.id,
                    sa.literal(mailing_list.id),
                    sa.literal(SubscriptionStatus.CONFIRMED.value),
                    sa.literal("signup"),
                    sa.literal(now, Subscriber.created_at.type),
                    sa.literal(now, Subscriber.created_at.type),
                ),
            )
        )
        campaign = Campaign(
            kind=CampaignKind.RESEARCH_UPDATE,
            subject="Spring research news",
            preheader="",
            body_markdown="Dear {name}, here is the news.",
            status=CampaignStatus.SCHEDULED,
            audience={},
            timezone="UTC",
            send_at=now - timedelta(minutes=1),
            next_run_at=now - timedelta(minutes=1),
            created_at=now,
            updated_at=now,
        )
        session.add(campaign)
        session.flush()
        session.add(CampaignList(campaign_id=campaign.id, list_id=mailing_list.id))
        session.flush()
        send = sending.start_occurrence(session, campaign, now)
        session.commit()
        send_id = send.id
        sending.freeze_audience(session, send_id, now)
        session.close()
    return send_id


def statuses(app, send_id: int) -> Counter:
    with app.app_context():
        session = Database.new_session(app)
        found = Counter(
            dict(
                session.execute(
                    sa.select(Delivery.status, sa.func.count())
                    .where(Delivery.send_id == send_id)
                    .group_by(Delivery.status)
                ).all()
            )
        )
        session.close()
    return found


def delivery_ids(app, send_id: int) -> list[int]:
    with app.app_context():
        session = Database.new_session(app)
        ids = list(session.scalars(sa.select(Delivery.id).where(Delivery.send_id == send_id)))
        session.close()
    return sorted(ids)


def test_two_workers_with_failures_deliver_each_recipient_exactly_once(
    make_app, fake_sendgrid: FakeSendGrid
):
    from newsletters import unknown
    from newsletters.models import Send

    worker = make_app(
        MAIL_BACKEND="sendgrid",
        SENDGRID_API_KEY="SG.test-key",
        SENDGRID_API_HOST=fake_sendgrid.url,
        SENDGRID_TIMEOUT=5,
        NEWSLETTER_BATCH_SIZE=50,
        NEWSLETTER_RETRY_BASE_SECONDS=0,
    )
    send_id = seed_send(worker, 3000)
    # About a third of the requests fail: 500s, 503s, 429s (their limit resets at once) and
    # connections dropped after the body was read (the client cannot tell what happened).
    fake_sendgrid.fail_randomly(0.35, statuses=(500, 503, 429), disconnect_share=0.2, seed=11)
    reports = []

    def run() -> None:
        for _ in range(60):
            reports.append(delivery.deliver(worker))
            if statuses(worker, send_id)[DeliveryStatus.PENDING] == 0:
                return

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    fake_sendgrid.fail_randomly(0)
    after_workers = statuses(worker, send_id)

    # A dropped connection leaves its batch unknown; the provider never reports on it (the
    # fake did not accept it), so after a day staff send it again.
    with worker.app_context():
        session = Database.new_session(worker)
        staff = staff_account(session)
        a_day_later = utcnow() + timedelta(hours=25)
        resent = unknown.settle_unreported(
            session, staff, session.get(Send, send_id), unknown.UnknownAction.RESEND, a_day_later
        )
        session.commit()
        session.close()
    reports.append(delivery.deliver(worker, now=a_day_later))

    accepted = Counter(int(d) for d, _e, _m in fake_sendgrid.accepted_personalizations())
    answers = Counter(
        "dropped" if r.response_status is None else r.response_status
        for r in fake_sendgrid.mail_sends
    )
    print(
        f"{len(fake_sendgrid.mail_sends)} requests answered {dict(answers)}; after the two "
        f"workers: {dict(after_workers)}; sent again by staff: {resent}; "
        f"{sum(accepted.values())} recipients accepted"
    )
    assert sum(n for status, n in answers.items() if status != 202) >= 15
    assert answers["dropped"] >= 2, "dropped connections must have been exercised"
    assert after_workers[DeliveryStatus.UNKNOWN] == resent > 0
    assert accepted == Counter(dict.fromkeys(delivery_ids(worker, send_id), 1))
    assert statuses(worker, send_id) == Counter({DeliveryStatus.ACCEPTED: 3000})
    assert sum(r.requests for r in reports) == len(fake_sendgrid.mail_sends)


def _environment(url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ENGAGE_CONFIG": "development",
            "DATABASE_URL": url,
            "NEWSLETTER_LEASE_SECONDS": str(LEASE_SECONDS),
            "NEWSLETTER_BATCH_SIZE": "50",
            "NEWSLETTER_RETRY_BASE_SECONDS": "0",
            "BASE_URL": "http://engage.test",
            "SCHEDULER_IN_PROCESS": "false",
            **extra,
        }
    )
    return env


def _run_until_settled(args, env, app, send_id: int, rounds: int = 20) -> None:
    for _ in range(rounds):
        found = statuses(app, send_id)
        busy = found[DeliveryStatus.PENDING] or found[DeliveryStatus.CLAIMED]
        settles = found[DeliveryStatus.UNKNOWN] and env["MAIL_BACKEND"] == "file"
        if not busy and not settles:
            return
        if found[DeliveryStatus.CLAIMED]:
            time.sleep(LEASE_SECONDS + 0.5)
        subprocess.run(args, env=env, check=True, capture_output=True, timeout=120)
    raise AssertionError(f"delivery did not settle: {statuses(app, send_id)}")


def test_a_worker_killed_mid_batch_and_restarted_sends_each_recipient_exactly_once(
    pg_url, make_app, tmp_path
):
    mail_dir = tmp_path / "mail"
    app = make_app(MAIL_BACKEND="file", MAIL_OUTBOX_DIR=str(mail_dir))
    send_id = seed_send(app, 1500)
    env = _environment(pg_url, MAIL_BACKEND="file", MAIL_OUTBOX_DIR=str(mail_dir))
    args = [ENGAGE, "newsletters", "deliver"]

    landed = kill_repeatedly(
        args,
        env,
        kills=6,
        seed=5,
        progress=lambda: len(list(mail_dir.glob("*.eml"))),
        spread=1.0,
    )
    _run_until_settled(args, env, app, send_id)

    files = list(mail_dir.glob("*.eml"))
    print(f"kills landed (files before, at the kill): {landed}; files at the end: {len(files)}")
    assert len([1 for a, b in landed if a < b < 1500]) >= 2, "kills must land mid-send"
    per_delivery = Counter(int(f.name.split("-")[2].split(".")[0]) for f in files)
    assert sorted(per_delivery) == delivery_ids(app, send_id)
    assert set(per_delivery.values()) == {1}
    assert statuses(app, send_id) == Counter({DeliveryStatus.ACCEPTED: 1500})


def test_a_consent_withdrawn_while_a_send_is_under_way_stops_that_persons_copy(
    make_app, fake_sendgrid: FakeSendGrid
):
    from engage.accounts.models import Role, User
    from engage.consent.seed import ensure_first_form
    from tests import consent_support

    worker = make_app(
        MAIL_BACKEND="sendgrid",
        SENDGRID_API_KEY="SG.test-key",
        SENDGRID_API_HOST=fake_sendgrid.url,
        NEWSLETTER_BATCH_SIZE=1,
    )
    now = utcnow()
    with worker.app_context():
        session = Database.new_session(worker)
        staff = staff_account(session)
        people = [
            User(
                email=f"p{n:02d}@example.org",
                display_name=f"P{n}",
                password_hash="x",
                role=Role.PARTICIPANT,
                country="SE",
                language="en",
                email_verified_at=now,
                is_active=True,
                session_version=1,
                created_at=now,
            )
            for n in range(24)
        ]
        session.add_all(people)
        session.commit()
        ensure_first_form(session, staff, now, 8)
        session.commit()
        for person in people:
            consent_support.join(worker, session, person, SURVEY_RECONTACT=True)
        session.execute(sa.delete(MailingList))
        surveys = MailingList(
            name="Survey alerts",
            description="",
            visibility=ListVisibility.ACCOUNTS,
            required_scope="SURVEY_RECONTACT",
            created_at=now,
            updated_at=now,
        )
        session.add(surveys)
        session.flush()
        for person in people:
            subscriber = Subscriber(user_id=person.id, language="en", created_at=now)
            session.add(subscriber)
            session.flush()
            session.add(
                Subscription(
                    subscriber_id=subscriber.id,
                    list_id=surveys.id,
                    status=SubscriptionStatus.CONFIRMED,
                    source="preferences",
                    created_at=now,
                    confirmed_at=now,
                )
            )
        campaign = Campaign(
            kind=CampaignKind.SURVEY_ALERT,
            subject="A new survey",
            preheader="",
            body_markdown="Dear {name}, a survey is open.",
            status=CampaignStatus.SCHEDULED,
            audience={},
            timezone="UTC",
            send_at=now,
            next_run_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(campaign)
        session.flush()
        session.add(CampaignList(campaign_id=campaign.id, list_id=surveys.id))
        session.flush()
        send = sending.start_occurrence(session, campaign, now)
        session.commit()
        send_id = send.id
        sending.freeze_audience(session, send_id, now)
        withdrawing = people[-8:]
        for _ in range(40):
            fake_sendgrid.enqueue(202, delay=0.05)
        thread = threading.Thread(target=delivery.deliver, args=(worker,))
        thread.start()
        fake_sendgrid.wait_for_requests(4, timeout=30)
        for person in withdrawing:
            consent_support.decide(worker, session, person, {"SURVEY_RECONTACT": False})
        thread.join(timeout=60)
        session.close()

    received = Counter(
        p["to"][0]["email"] for r in fake_sendgrid.mail_sends for p in r.body["personalizations"]
    )
    stopped = {person.email for person in withdrawing}
    assert not stopped & set(received), "nobody who withdrew received the survey alert"
    assert received == Counter({p.email: 1 for p in people if p.email not in stopped})
    assert statuses(worker, send_id) == Counter(
        {DeliveryStatus.ACCEPTED: 16, DeliveryStatus.SKIPPED: 8}
    )


def test_killed_sendgrid_workers_never_send_twice_and_the_providers_events_settle_the_rest(
    pg_url, make_app, fake_sendgrid: FakeSendGrid
):
    from newsletters import events, unknown
    from newsletters.models import Send

    app = make_app(
        MAIL_BACKEND="sendgrid",
        SENDGRID_API_KEY="SG.test-key",
        SENDGRID_API_HOST=fake_sendgrid.url,
    )
    send_id = seed_send(app, 1000)
    for _ in range(200):  # slow answers, so kills land while a batch is in flight
        fake_sendgrid.enqueue(202, delay=0.15)
    env = _environment(
        pg_url,
        MAIL_BACKEND="sendgrid",
        SENDGRID_API_KEY="SG.test-key",
        SENDGRID_API_HOST=fake_sendgrid.url,
    )
    args = [ENGAGE, "newsletters", "deliver"]

    landed = kill_repeatedly(
        args, env, kills=5, seed=9, progress=lambda: len(fake_sendgrid.mail_sends), spread=1.0
    )
    time.sleep(LEASE_SECONDS + 0.5)
    _run_until_settled(args, env, app, send_id)
    after_kills = statuses(app, send_id)

    # SendGrid reports every message it accepted ("processed"), retrying for a day.
    accepted = fake_sendgrid.accepted_personalizations()
    with app.app_context():
        session = Database.new_session(app)
        staff = staff_account(session)
        session.commit()
        processed = [
            {
                "event": "processed",
                "sg_event_id": f"processed-{delivery_id}",
                "timestamp": int(time.time()),
                "delivery_id": delivery_id,
                "send_id": str(send_id),
                "email": email,
                "sg_message_id": message_id,
            }
            for delivery_id, email, message_id in accepted
        ]
        events.record_events(session, processed, utcnow())
        session.commit()
        # What is still unknown never reached the provider: after a day without a report,
        # staff send it again.
        resent = unknown.settle_unreported(
            session,
            staff,
            session.get(Send, send_id),
            unknown.UnknownAction.RESEND,
            utcnow() + timedelta(hours=25),
        )
        session.commit()
        session.close()
    with app.app_context():  # what staff sent again is due at once here
        session = Database.new_session(app)
        session.execute(
            sa.update(Delivery)
            .where(Delivery.send_id == send_id, Delivery.status == DeliveryStatus.PENDING)
            .values(next_attempt_at=utcnow())
        )
        session.commit()
        session.close()
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=120)

    received = Counter(int(d) for d, _e, _m in fake_sendgrid.accepted_personalizations())
    print(
        f"kills landed (requests before, at the kill): {landed}; after the kills: "
        f"{dict(after_kills)}; sent again by staff: {resent}"
    )
    assert len([1 for a, b in landed if a < b < 20]) >= 2, "kills must land mid-send"
    assert after_kills[DeliveryStatus.UNKNOWN] >= 1, "a kill should leave a batch in doubt"
    assert sorted(received) == delivery_ids(app, send_id)
    assert set(received.values()) == {1}, "no recipient reached the provider twice"
    assert statuses(app, send_id) == Counter({DeliveryStatus.ACCEPTED: 1000})
