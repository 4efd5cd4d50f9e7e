"""The fake SendGrid server's extensions for newsletter delivery tests and the benchmark:
rate-limit answers, seeded random failures, what it accepted per personalization, a lean
memory mode, and running it as a process of its own. Driven by the real ``sendgrid`` client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient

from tests.fake_sendgrid import FakeSendGrid

ROOT = Path(__file__).resolve().parents[2]


def _body(*delivery_ids: int) -> dict[str, Any]:
    """A Mail Send body with one personalization per delivery id, as delivery builds it."""
    return {
        "from": {"email": "news@engage.test"},
        "subject": "News",
        "content": [{"type": "text/plain", "value": "Hello"}],
        "categories": ["newsletter", "send-1"],
        "personalizations": [
            {
                "to": [{"email": f"reader{n}@example.org"}],
                "custom_args": {"delivery_id": str(n), "send_id": "1"},
            }
            for n in delivery_ids
        ],
    }


def _send(url: str, body: dict[str, Any], timeout: float = 5.0) -> Any:
    """POST ``body`` through the real client; return its response, or the error it raised."""
    client = SendGridAPIClient(api_key="SG.test", host=url)
    client.client.timeout = timeout
    try:
        return client.client.mail.send.post(request_body=body)
    except Exception as exc:  # noqa: BLE001 - the test looks at what came back
        return exc


def _outcomes(fake: FakeSendGrid, count: int) -> list[str]:
    """Send ``count`` single-recipient mail sends; name what each got back."""
    found = []
    for n in range(count):
        answer = _send(fake.url, _body(n))
        if isinstance(answer, http_errors.HTTPError):
            found.append(str(answer.status_code))
        elif isinstance(answer, Exception):
            found.append("disconnect")
        else:
            found.append(str(answer.status_code))
    return found


def test_a_rate_limited_answer_says_when_the_limit_resets(fake_sendgrid):
    fake_sendgrid.enqueue_rate_limited(30)

    answer = _send(fake_sendgrid.url, _body(1))

    assert isinstance(answer, http_errors.TooManyRequestsError)
    headers = {key.lower(): value for key, value in answer.headers.items()}
    assert headers["x-ratelimit-remaining"] == "0"
    assert headers["x-ratelimit-limit"] == "600"
    assert abs(int(headers["x-ratelimit-reset"]) - (time.time() + 30)) <= 2
    assert _send(fake_sendgrid.url, _body(2)).status_code == 202  # only the next request


def test_random_failures_follow_their_seed(fake_sendgrid):
    fake_sendgrid.fail_randomly(0.4, statuses=(500, 503), seed=11)
    first = _outcomes(fake_sendgrid, 40)
    fake_sendgrid.fail_randomly(0.4, statuses=(500, 503), seed=11)
    second = _outcomes(fake_sendgrid, 40)

    assert first == second
    assert set(first) == {"202", "500", "503"}
    assert 8 <= sum(outcome != "202" for outcome in first) <= 24


def test_a_share_of_random_failures_drops_the_connection(fake_sendgrid):
    fake_sendgrid.fail_randomly(1.0, disconnect_share=1.0, seed=1)

    outcomes = _outcomes(fake_sendgrid, 3)

    assert outcomes == ["disconnect"] * 3
    # The body was read before hanging up: the client cannot know whether it was sent.
    assert [len(r.recipients()) for r in fake_sendgrid.mail_sends] == [1, 1, 1]
    fake_sendgrid.fail_randomly(0)
    assert _outcomes(fake_sendgrid, 2) == ["202", "202"]


def test_scripted_answers_and_other_paths_are_not_failed_at_random(fake_sendgrid):
    fake_sendgrid.fail_randomly(1.0, seed=3)
    fake_sendgrid.enqueue(202)

    assert _send(fake_sendgrid.url, _body(1)).status_code == 202
    client = SendGridAPIClient(api_key="SG.test", host=fake_sendgrid.url)
    with pytest.raises(http_errors.NotFoundError):
        client.client.templates.get()


def test_accepted_personalizations_list_what_sendgrid_would_deliver(fake_sendgrid):
    fake_sendgrid.enqueue(202)
    fake_sendgrid.enqueue(503)
    fake_sendgrid.enqueue(400, {"errors": [{"message": "bad"}]})
    fake_sendgrid.enqueue(202, delay=1.5)  # answered after the client gave up

    accepted_answer = _send(fake_sendgrid.url, _body(1, 2))
    _send(fake_sendgrid.url, _body(3))
    _send(fake_sendgrid.url, _body(4))
    late = _send(fake_sendgrid.url, _body(5), timeout=0.5)
    fake_sendgrid.wait_for_requests(4)
    time.sleep(1.5)

    message_id = accepted_answer.headers["X-Message-Id"]
    late_id = fake_sendgrid.mail_sends[3].message_id
    assert isinstance(late, Exception)
    assert fake_sendgrid.accepted_personalizations() == [
        ("1", "reader1@example.org", message_id),
        ("2", "reader2@example.org", message_id),
        ("5", "reader5@example.org", late_id),
    ]


def test_without_bodies_only_the_recipients_are_kept():
    fake = FakeSendGrid(keep_bodies=False).start()
    try:
        _send(fake.url, _body(7, 8))
        [request] = fake.mail_sends
        assert (request.raw_body, request.body) == (b"", None)
        assert request.recipients() == [("7", "reader7@example.org"), ("8", "reader8@example.org")]
        assert [d for d, _e, _m in fake.accepted_personalizations()] == ["7", "8"]
    finally:
        fake.stop()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - local test server
        return json.loads(response.read())


def test_it_runs_as_a_process_of_its_own():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_sendgrid", "--port", "0", "--fail-rate", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(process.stdout.readline().strip())
        url = f"http://127.0.0.1:{port}"

        assert _send(url, _body(1, 2)).status_code == 202
        assert _send(url, _body(3)).status_code == 202

        assert _get_json(url + "/__fake__/stats") == {
            "requests": 2,
            "mail_sends": 2,
            "statuses": {"202": 2},
            "accepted_personalizations": 3,
        }
        assert _get_json(url + "/__fake__/accepted") == {"delivery_ids": ["1", "2", "3"]}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()
