"""SendGrid's Event Webhook over HTTP: only signed, fresh batches are recorded, each event once,
and nothing a caller sends makes it fail (SendGrid retries anything but a 2xx for a day)."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import sqlalchemy as sa

from newsletters import webhook
from newsletters.models import DeliveryStatus, ProviderEvent, Suppression
from tests.newsletters.support_events import one_delivery
from tests.sendgrid_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_PATH,
    EventSigner,
    post_events,
    sendgrid_event,
)


@pytest.fixture
def signer(app) -> EventSigner:
    """SendGrid's signing key, its public half configured in the app."""
    key = EventSigner()
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = key.public_key
    return key


@pytest.fixture
def delivery(session):
    """One accepted delivery to jane@example.org, committed."""
    row = one_delivery(session, "jane@example.org")
    session.commit()
    return row


def _event_count(session) -> int:
    session.rollback()  # see what the requests committed
    return session.scalar(sa.select(sa.func.count()).select_from(ProviderEvent))


def test_a_signed_batch_is_recorded(client, session, signer, delivery):
    events = [sendgrid_event("processed", delivery), sendgrid_event("delivered", delivery)]

    response = post_events(client, events, signer)

    assert response.status_code == 200
    assert response.json == {"recorded": 2, "duplicates": 0, "ignored": 0}
    session.rollback()
    kinds = sorted(
        session.scalars(
            sa.select(ProviderEvent.kind).where(ProviderEvent.delivery_id == delivery.id)
        )
    )
    assert kinds == ["delivered", "processed"]


def test_a_retried_batch_is_recorded_once(client, session, signer, delivery):
    events = [sendgrid_event("delivered", delivery), sendgrid_event("open", delivery)]

    first = post_events(client, events, signer)
    second = post_events(client, events, signer)

    assert first.json == {"recorded": 2, "duplicates": 0, "ignored": 0}
    assert second.status_code == 200
    assert second.json == {"recorded": 0, "duplicates": 2, "ignored": 0}
    assert _event_count(session) == 2


def test_an_event_repeated_within_a_batch_is_recorded_once(client, session, signer, delivery):
    event = sendgrid_event("delivered", delivery)

    response = post_events(client, [event, dict(event)], signer)

    assert response.json == {"recorded": 1, "duplicates": 1, "ignored": 0}
    assert _event_count(session) == 1


def test_a_batch_signed_with_another_key_is_refused(client, session, signer, delivery):
    forger = EventSigner()

    response = post_events(client, [sendgrid_event("bounce", delivery)], forger)

    assert response.status_code == 403
    assert _event_count(session) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0


def test_a_batch_changed_after_signing_is_refused(client, session, signer, delivery):
    signed = json.dumps([sendgrid_event("delivered", delivery)])
    changed = json.dumps([sendgrid_event("bounce", delivery)])

    response = client.post(
        WEBHOOK_PATH,
        data=changed,
        headers={"Content-Type": "application/json", **signer.headers(signed)},
    )

    assert response.status_code == 403
    assert _event_count(session) == 0


@pytest.mark.parametrize("garbage", ["not base64 at all!", "AAAA", "x"])
def test_a_malformed_signature_is_refused(client, session, signer, delivery, garbage):
    response = post_events(
        client,
        [sendgrid_event("delivered", delivery)],
        signer,
        headers={SIGNATURE_HEADER: garbage},
    )

    assert response.status_code == 403
    assert _event_count(session) == 0


@pytest.mark.parametrize("missing", [SIGNATURE_HEADER, TIMESTAMP_HEADER])
def test_a_batch_without_its_signature_headers_is_unauthorised(client, session, signer, missing):
    body = json.dumps([sendgrid_event("delivered", delivery_id=1)])
    headers = {"Content-Type": "application/json", **signer.headers(body)}
    del headers[missing]

    response = client.post(WEBHOOK_PATH, data=body, headers=headers)

    assert response.status_code == 401
    assert _event_count(session) == 0


@pytest.mark.parametrize("offset", [-601, 601, -86_400])
def test_a_stale_or_future_timestamp_is_refused(client, session, signer, delivery, offset):
    """A captured batch cannot be replayed later (its signature covers its timestamp)."""
    response = post_events(
        client,
        [sendgrid_event("bounce", delivery)],
        signer,
        timestamp=int(time.time()) + offset,
    )

    assert response.status_code == 403
    assert _event_count(session) == 0


@pytest.mark.parametrize("timestamp", ["yesterday", "12.5", "-5", "1e9"])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(client, session, signer, timestamp):
    response = post_events(client, [], signer, timestamp=timestamp)

    assert response.status_code == 403


def test_the_allowed_age_is_configurable(app, client, session, signer, delivery):
    app.config["NEWSLETTER_WEBHOOK_MAX_AGE_SECONDS"] = 3600
    response = post_events(
        client,
        [sendgrid_event("delivered", delivery)],
        signer,
        timestamp=int(time.time()) - 1800,
    )

    assert response.status_code == 200
    assert _event_count(session) == 1


def test_an_event_about_an_unknown_delivery_is_ignored_with_success(client, session, signer):
    """SendGrid would retry a refused batch for a day, to no avail."""
    response = post_events(
        client, [sendgrid_event("bounce", delivery_id=987654, send_id=1)], signer
    )

    assert response.status_code == 200
    assert response.json == {"recorded": 0, "duplicates": 0, "ignored": 1}
    assert _event_count(session) == 0


def test_an_event_naming_another_send_than_its_delivery_is_ignored(
    client, session, signer, delivery
):
    event = sendgrid_event("bounce", delivery, send_id=delivery.send_id + 1000)

    response = post_events(client, [event], signer)

    assert response.json == {"recorded": 0, "duplicates": 0, "ignored": 1}
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0


def test_malformed_events_in_a_valid_batch_are_ignored_and_counted(
    client, session, signer, delivery
):
    good = sendgrid_event("delivered", delivery)
    bad = [
        {"event": "delivered", "delivery_id": str(delivery.id)},  # no sg_event_id
        sendgrid_event("machine_opened", delivery),  # a kind Engage does not track
        sendgrid_event("delivered", delivery, timestamp="soon"),
        sendgrid_event("delivered", delivery_id="12abc"),
        sendgrid_event("delivered", delivery_id=str(2**40)),  # past an integer column
        sendgrid_event("delivered", delivery_id=True),
        sendgrid_event("delivered", delivery, sg_event_id=["a", "list"]),
        sendgrid_event("delivered", delivery, sg_event_id="x" * 101),
        sendgrid_event("delivered", delivery, timestamp=float("inf")),
    ]

    response = post_events(client, [good, *bad], signer)

    assert response.status_code == 200
    assert response.json == {"recorded": 1, "duplicates": 0, "ignored": len(bad)}


@pytest.mark.parametrize(
    "body",
    ["not json", '{"event": "bounce"}', '"a string"', "[1, 2]", '[{"event": "open"}, null]', ""],
)
def test_a_body_that_is_not_an_array_of_events_is_a_bad_request(client, session, signer, body):
    response = post_events(client, body, signer)

    assert response.status_code == 400
    assert _event_count(session) == 0


def test_a_body_that_is_not_utf8_is_a_bad_request(client, signer):
    response = post_events(client, b"[\xff\xfe]", signer)

    assert response.status_code == 400


def test_deeply_nested_json_is_a_bad_request(client, signer):
    response = post_events(client, "[" * 100_000 + "]" * 100_000, signer)

    assert response.status_code == 400


def test_an_empty_batch_records_nothing(client, signer):
    response = post_events(client, [], signer)

    assert response.status_code == 200
    assert response.json == {"recorded": 0, "duplicates": 0, "ignored": 0}


@pytest.mark.sqlite_only
def test_a_body_over_five_megabytes_is_too_large(client, signer):
    body = json.dumps([{"sg_event_id": "x", "padding": "a" * (5 * 1024 * 1024)}])

    response = post_events(client, body, signer)

    assert response.status_code == 413


def test_a_body_over_the_apps_form_limit_but_under_five_megabytes_is_read(
    client, session, signer, delivery
):
    """The app-wide limit (1 MB, for forms) does not cut a large batch of events short."""
    events = [sendgrid_event("open", delivery) for _ in range(6000)]
    body = json.dumps(events)
    assert 1024 * 1024 < len(body) < 5 * 1024 * 1024

    response = post_events(client, body, signer)

    assert response.status_code == 200
    assert response.json["recorded"] == 6000


@pytest.mark.parametrize("key", [None, ""])
def test_without_a_configured_key_nothing_is_accepted(app, client, session, delivery, key):
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = key
    unconfigured = EventSigner()

    response = post_events(client, [sendgrid_event("bounce", delivery)], unconfigured)

    assert response.status_code == 503
    assert response.json == {"error": "webhook not configured"}
    assert _event_count(session) == 0


def test_a_configured_key_that_is_not_a_key_refuses_everything(app, client, signer):
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = "bm90IGEga2V5"

    response = post_events(client, [], signer)

    assert response.status_code == 503


def test_only_post_is_allowed(client, signer):
    assert client.get(WEBHOOK_PATH).status_code == 405


def test_processed_settles_an_unknown_delivery_through_the_webhook(client, session, signer):
    unknown = one_delivery(session, "sam@example.org", status=DeliveryStatus.UNKNOWN)
    session.commit()

    response = post_events(client, [sendgrid_event("processed", unknown)], signer)

    assert response.status_code == 200
    session.expire_all()
    assert session.get(type(unknown), unknown.id).status == DeliveryStatus.ACCEPTED


# Two retries of one batch at once (PostgreSQL: SQLite has one writer at a time) ---------------
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session")
def test_two_retries_of_a_batch_posted_at_once_record_each_event_once(
    app, session, signer, delivery
):
    events = [sendgrid_event("delivered", delivery)] + [
        sendgrid_event(kind, delivery) for kind in ("open", "click", "bounce", "open")
    ]
    body = json.dumps(events)
    barrier = threading.Barrier(4)
    answers: list = [None] * 4

    def post(index: int) -> None:
        client = app.test_client()
        headers = {"Content-Type": "application/json", **signer.headers(body)}
        barrier.wait(10)
        answers[index] = client.post(WEBHOOK_PATH, data=body, headers=headers)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [answer.status_code for answer in answers] == [200] * 4
    assert sum(answer.json["recorded"] for answer in answers) == len(events)
    assert sum(answer.json["duplicates"] for answer in answers) == 3 * len(events)
    assert _event_count(session) == len(events)
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 1


def test_a_missing_key_is_logged_once_not_on_every_request(app, client, caplog):
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = None
    webhook._warned.clear()

    with caplog.at_level(logging.WARNING, logger="newsletters.webhook"):
        for _ in range(3):
            assert post_events(client, [], EventSigner()).status_code == 503

    warnings = [r for r in caplog.records if r.name == "newsletters.webhook"]
    assert len(warnings) == 1
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in warnings[0].getMessage()
