"""The mail transport's contract: what each backend hands over, and how failures are classed.

The SendGrid backend is exercised with the real ``sendgrid`` client against a local fake server
(``tests/fake_sendgrid.py``), so the assertions are on the HTTP request SendGrid would receive.
"""

from __future__ import annotations

import email
import email.policy
import io
import socket
from pathlib import Path

import pytest

from engage.mail import (
    Batch,
    BatchRecipient,
    ConsoleBackend,
    FileBackend,
    MailError,
    MailOutcomeUnknown,
    Message,
    SendGridBackend,
    send_batch,
)
from tests.fake_sendgrid import FakeSendGrid

SENDER = "Engage <no-reply@engage.test>"
API_KEY = "SG.test-key"
UNSUBSCRIBE = "<https://engage.test/u/tok123>, <mailto:unsubscribe@engage.test?subject=42>"


def make_message(**overrides: object) -> Message:
    """A newsletter-like message with every field filled in."""
    fields: dict[str, object] = {
        "to": "Ann Member <ann@example.org>",
        "subject": "Your March update",
        "text": "Hello Ann,\n\nHere is the news.\n",
        "html": "<p>Hello Ann,</p>\n<p>Here is the news.</p>\n",
        "headers": {
            "List-Unsubscribe": UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "categories": ["newsletter", "campaign-7"],
        "custom_args": {"delivery_id": "1234", "campaign_id": "7"},
    }
    fields.update(overrides)
    return Message(**fields)  # type: ignore[arg-type]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- SendGrid: what goes over the wire -------------------------------------------------------


def test_sendgrid_posts_the_exact_v3_body(fake_sendgrid: FakeSendGrid) -> None:
    backend = SendGridBackend(API_KEY, fake_sendgrid.url)

    backend.send(make_message(), SENDER)

    [request] = fake_sendgrid.requests
    assert request.method == "POST"
    assert request.path == "/v3/mail/send"
    body = dict(request.body)
    # SendGrid treats categories as a set of tags; the library prepends each one it is given.
    assert sorted(body.pop("categories")) == ["campaign-7", "newsletter"]
    assert body == {
        "from": {"email": "no-reply@engage.test", "name": "Engage"},
        "personalizations": [{"to": [{"email": "ann@example.org", "name": "Ann Member"}]}],
        "subject": "Your March update",
        "content": [
            {"type": "text/plain", "value": "Hello Ann,\n\nHere is the news.\n"},
            {"type": "text/html", "value": "<p>Hello Ann,</p>\n<p>Here is the news.</p>\n"},
        ],
        "headers": {
            "List-Unsubscribe": UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "custom_args": {"delivery_id": "1234", "campaign_id": "7"},
    }
    # The text part comes first: clients show the last alternative they understand.
    assert [part["type"] for part in request.body["content"]] == ["text/plain", "text/html"]


def test_sendgrid_authenticates_with_a_bearer_key_and_sends_json(
    fake_sendgrid: FakeSendGrid,
) -> None:
    SendGridBackend(API_KEY, fake_sendgrid.url).send(make_message(), SENDER)

    [request] = fake_sendgrid.requests
    assert request.header("Authorization") == f"Bearer {API_KEY}"
    assert request.header("Content-Type") == "application/json"
    assert request.header("Accept") == "application/json"


def test_sendgrid_bare_sender_address_has_no_name(fake_sendgrid: FakeSendGrid) -> None:
    backend = SendGridBackend(API_KEY, fake_sendgrid.url)

    backend.send(
        make_message(to="bob@example.org", headers={}, categories=[], custom_args={}),
        "no-reply@engage.test",
    )

    body = fake_sendgrid.requests[0].body
    assert body["from"] == {"email": "no-reply@engage.test"}
    assert body["personalizations"] == [{"to": [{"email": "bob@example.org"}]}]
    # Nothing empty is sent for absent headers, categories or custom args.
    assert not {"headers", "categories", "custom_args"} & body.keys()


def test_sendgrid_sender_name_with_a_comma_is_kept_whole(fake_sendgrid: FakeSendGrid) -> None:
    backend = SendGridBackend(API_KEY, fake_sendgrid.url)

    backend.send(make_message(), '"Engage, MS Network" <no-reply@engage.test>')

    assert fake_sendgrid.requests[0].body["from"] == {
        "email": "no-reply@engage.test",
        "name": "Engage, MS Network",
    }


def test_sendgrid_result_carries_the_providers_message_id(fake_sendgrid: FakeSendGrid) -> None:
    fake_sendgrid.enqueue(202, headers={"X-Message-Id": "abcDEF123_provider-id"})
    backend = SendGridBackend(API_KEY, fake_sendgrid.url)

    result = backend.send(make_message(), SENDER)

    assert result.message_id == "abcDEF123_provider-id"


def test_sendgrid_each_accepted_message_gets_the_id_the_server_sent(
    fake_sendgrid: FakeSendGrid,
) -> None:
    backend = SendGridBackend(API_KEY, fake_sendgrid.url)

    results = [backend.send(make_message(), SENDER) for _ in range(3)]

    sent_ids = [request.message_id for request in fake_sendgrid.requests]
    assert [result.message_id for result in results] == sent_ids
    assert len(set(sent_ids)) == 3
    assert all(sent_ids)


def test_sendgrid_non_ascii_survives_exactly(fake_sendgrid: FakeSendGrid) -> None:
    subject = "Ça va — ü? Grüße aus Zürich 🧠"
    text = "Ça va — ü\nŁódź, Ærøskøbing, 東京\n"
    html = "<p>Ça va — ü</p><p>Ærøskøbing &amp; 東京</p>"
    backend = SendGridBackend(API_KEY, fake_sendgrid.url)

    backend.send(
        make_message(to="Zoë Ørsted <zoe@example.org>", subject=subject, text=text, html=html),
        "Réseau SEP <no-reply@engage.test>",
    )

    body = fake_sendgrid.requests[0].body
    assert body["subject"] == subject
    assert body["content"] == [
        {"type": "text/plain", "value": text},
        {"type": "text/html", "value": html},
    ]
    assert body["from"] == {"email": "no-reply@engage.test", "name": "Réseau SEP"}
    assert body["personalizations"][0]["to"] == [{"email": "zoe@example.org", "name": "Zoë Ørsted"}]


def test_build_request_body_matches_what_is_sent(fake_sendgrid: FakeSendGrid) -> None:
    message = make_message()

    SendGridBackend(API_KEY, fake_sendgrid.url).send(message, SENDER)

    assert fake_sendgrid.requests[0].body == SendGridBackend.build_request_body(message, SENDER)


# -- SendGrid: how failures are classed -------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_sendgrid_client_errors_are_permanent(fake_sendgrid: FakeSendGrid, status: int) -> None:
    fake_sendgrid.enqueue(
        status,
        {"errors": [{"message": "Does not contain a valid address.", "field": "to.0.email"}]},
    )
    backend = SendGridBackend(API_KEY, fake_sendgrid.url)

    with pytest.raises(MailError) as caught:
        backend.send(make_message(), SENDER)

    assert caught.value.status == status
    assert caught.value.transient is False
    # The client made one attempt and did not retry behind our back.
    assert len(fake_sendgrid.requests) == 1


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_sendgrid_throttling_and_server_errors_are_transient(
    fake_sendgrid: FakeSendGrid, status: int
) -> None:
    fake_sendgrid.enqueue(status, {"errors": [{"message": "try again later"}]})
    backend = SendGridBackend(API_KEY, fake_sendgrid.url)

    with pytest.raises(MailError) as caught:
        backend.send(make_message(), SENDER)

    assert caught.value.status == status
    assert caught.value.transient is True
    assert len(fake_sendgrid.requests) == 1


def test_sendgrid_recovers_after_a_transient_error(fake_sendgrid: FakeSendGrid) -> None:
    fake_sendgrid.enqueue(503)
    backend = SendGridBackend(API_KEY, fake_sendgrid.url)

    with pytest.raises(MailError):
        backend.send(make_message(), SENDER)
    result = backend.send(make_message(), SENDER)

    assert [r.response_status for r in fake_sendgrid.requests] == [503, 202]
    assert result.message_id == fake_sendgrid.requests[1].message_id


def test_sendgrid_refused_connection_is_transient() -> None:
    backend = SendGridBackend(API_KEY, f"http://127.0.0.1:{free_port()}", timeout=2)

    with pytest.raises(MailError) as caught:
        backend.send(make_message(), SENDER)

    assert caught.value.transient is True
    assert caught.value.status is None


def test_sendgrid_answer_later_than_the_timeout_is_an_unknown_outcome(
    fake_sendgrid: FakeSendGrid,
) -> None:
    fake_sendgrid.enqueue(202, delay=3.0)
    backend = SendGridBackend(API_KEY, fake_sendgrid.url, timeout=0.5)

    with pytest.raises(MailOutcomeUnknown) as caught:
        backend.send(make_message(), SENDER)

    # The request did reach the server: a timeout does not mean nothing was sent, so it must
    # not be retried blindly.
    assert caught.value.transient is False
    assert caught.value.status is None
    assert len(fake_sendgrid.requests) == 1


def test_sendgrid_answer_within_the_timeout_is_accepted(fake_sendgrid: FakeSendGrid) -> None:
    fake_sendgrid.enqueue(202, delay=0.2)
    backend = SendGridBackend(API_KEY, fake_sendgrid.url, timeout=2)

    result = backend.send(make_message(), SENDER)

    assert result.message_id == fake_sendgrid.requests[0].message_id


def test_sendgrid_connection_closed_without_answer_is_an_unknown_outcome(
    fake_sendgrid: FakeSendGrid,
) -> None:
    fake_sendgrid.enqueue_disconnect()
    backend = SendGridBackend(API_KEY, fake_sendgrid.url, timeout=2)

    with pytest.raises(MailOutcomeUnknown) as caught:
        backend.send(make_message(), SENDER)

    assert caught.value.transient is False


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"this is not HTTP\r\n\r\n", id="garbled-status-line"),
        pytest.param(
            b'HTTP/1.0 202 Accepted\r\nContent-Length: 100\r\n\r\n{"partial',
            id="cut-off-body",
        ),
    ],
)
def test_sendgrid_malformed_answer_is_an_unknown_outcome(
    fake_sendgrid: FakeSendGrid, raw: bytes
) -> None:
    fake_sendgrid.enqueue_raw(raw)
    backend = SendGridBackend(API_KEY, fake_sendgrid.url, timeout=2)

    with pytest.raises(MailOutcomeUnknown) as caught:
        backend.send(make_message(), SENDER)

    assert caught.value.transient is False


# -- File backend ----------------------------------------------------------------------------


def read_eml(path: Path) -> email.message.EmailMessage:
    """Parse an ``.eml`` file the way a mail reader would."""
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_file_backend_writes_one_eml_per_message(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"  # created on first send
    backend = FileBackend(outbox)

    results = [backend.send(make_message(subject=f"Update {n}"), SENDER) for n in range(3)]

    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 3
    parsed = [read_eml(path) for path in files]
    assert sorted(m["Subject"] for m in parsed) == ["Update 0", "Update 1", "Update 2"]
    assert {m["Message-ID"] for m in parsed} == {r.message_id for r in results}
    assert len({r.message_id for r in results}) == 3


def test_file_backend_eml_round_trips_headers_and_parts(tmp_path: Path) -> None:
    text = (
        "Ça va — ü\n\nLine two, with a long sentence " + "that keeps going " * 8 + "to the end.\n"
    )
    html = "<p>Ça va — ü</p>\n<p>Grüße &amp; 東京</p>\n"
    message = make_message(subject="Ça va — ü", text=text, html=html)

    FileBackend(tmp_path).send(message, SENDER)

    [path] = tmp_path.glob("*.eml")
    parsed = read_eml(path)
    assert parsed["From"] == SENDER
    assert parsed["To"] == "Ann Member <ann@example.org>"
    assert parsed["Subject"] == "Ça va — ü"
    assert parsed["List-Unsubscribe"] == UNSUBSCRIBE
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Date"] is not None
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == text
    assert parts[1].get_content() == html
    assert parsed.get_body(preferencelist=("plain",)).get_content() == text
    assert parsed.get_body(preferencelist=("html",)).get_content() == html


def test_file_backend_keeps_a_long_unsubscribe_url_verbatim(tmp_path: Path) -> None:
    # RFC 8058 readers take the URL from the raw header; it must not become encoded-words.
    url = "https://engage.test/newsletters/unsubscribe/" + "tok-" * 30
    header = f"<{url}>, <mailto:unsubscribe@engage.test?subject=42>"
    subject = "Ça va — ü, the long monthly update of the network, with news for everyone"
    message = make_message(subject=subject, headers={"List-Unsubscribe": header})

    FileBackend(tmp_path).send(message, SENDER)

    [path] = tmp_path.glob("*.eml")
    raw = path.read_bytes()
    assert f"\nList-Unsubscribe: {header}\n".encode() in raw
    parsed = read_eml(path)
    assert parsed["List-Unsubscribe"] == header
    assert parsed["Subject"] == subject
    assert all(len(line) <= 998 for line in raw.splitlines())


def test_file_backend_ends_a_body_with_a_line_break(tmp_path: Path) -> None:
    # MIME bodies are made of lines, so a body without a final newline gets one; nothing else
    # changes (rendered templates often lack it).
    FileBackend(tmp_path).send(make_message(text="Ça va — ü", html="<p>ü</p>"), SENDER)

    [path] = tmp_path.glob("*.eml")
    parts = list(read_eml(path).iter_parts())
    assert parts[0].get_content() == "Ça va — ü\n"
    assert parts[1].get_content() == "<p>ü</p>\n"


# -- Console backend -------------------------------------------------------------------------


def test_console_backend_prints_headers_and_the_text_part() -> None:
    stream = io.StringIO()
    message = make_message(subject="Ça va — ü", text="Hello Ann,\nÇa va — ü\n")

    result = ConsoleBackend(stream).send(message, SENDER)

    output = stream.getvalue()
    lines = output.splitlines()
    assert f"From: {SENDER}" in lines
    assert "To: Ann Member <ann@example.org>" in lines
    assert "Subject: Ça va — ü" in lines
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines
    assert f"Message-ID: {result.message_id}" in lines
    assert "Hello Ann,\nÇa va — ü\n" in output
    # Only the text part is printed, not the HTML.
    assert "<p>" not in output
    assert lines[-1] == "-" * 72


def test_file_backend_writes_a_message_with_a_stable_id_once_and_whole(tmp_path: Path) -> None:
    backend = FileBackend(tmp_path)
    message = make_message(message_id="<outbox-000000000007.abc@engage.test>")

    assert backend.was_delivered(message.message_id) is False
    backend.send(message, SENDER)
    backend.send(message, SENDER)  # an attempt whose outcome was unknown, made again

    files = list(tmp_path.iterdir())
    assert [f.name for f in files] == ["outbox-000000000007.abc_engage.test.eml"]
    assert read_eml(files[0])["Message-ID"] == message.message_id
    assert backend.was_delivered(message.message_id) is True


# -- Batches ---------------------------------------------------------------------------------


def make_batch(count: int) -> Batch:
    return Batch(
        subject="Research update for -name-",
        text="Hello -name-,\nNews.\nUnsubscribe: -unsubscribe-\n",
        html="<p>Hello -name-,</p><p><a href='-unsubscribe-'>Unsubscribe</a></p>",
        categories=["research_update"],
        recipients=[
            BatchRecipient(
                to=f"person{n}@example.org",
                substitutions={"-name-": f"Person {n}", "-unsubscribe-": f"https://e.test/u/{n}"},
                headers={
                    "List-Unsubscribe": f"<https://e.test/u/{n}>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
                custom_args={"outbox_id": str(n)},
                message_id=f"<outbox-{n:012d}.t@engage.test>",
            )
            for n in range(count)
        ],
    )


def test_sendgrid_batch_is_one_request_with_a_personalization_per_recipient(
    fake_sendgrid: FakeSendGrid,
) -> None:
    backend = SendGridBackend(API_KEY, fake_sendgrid.url)

    results = send_batch(backend, make_batch(3), SENDER)

    assert len(fake_sendgrid.mail_sends) == 1
    body = fake_sendgrid.mail_sends[0].body
    assert results[0].message_id == fake_sendgrid.mail_sends[0].message_id
    assert body["personalizations"][1] == {
        "to": [{"email": "person1@example.org"}],
        "subject": "Research update for Person 1",
        "substitutions": {"-name-": "Person 1", "-unsubscribe-": "https://e.test/u/1"},
        "headers": {
            "List-Unsubscribe": "<https://e.test/u/1>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Message-ID": "<outbox-000000000001.t@engage.test>",
        },
        "custom_args": {"outbox_id": "1"},
    }
    assert len(body["personalizations"]) == 3
    assert body["content"][0] == {
        "type": "text/plain",
        "value": "Hello -name-,\nNews.\nUnsubscribe: -unsubscribe-\n",
    }
    assert body["categories"] == ["research_update"]
    assert body["from"] == {"email": "no-reply@engage.test", "name": "Engage"}


def test_sendgrid_batch_holds_at_most_1000_recipients() -> None:
    assert len(SendGridBackend.build_batch_body(make_batch(1000), SENDER)["personalizations"]) == (
        1000
    )
    with pytest.raises(ValueError, match="1 to 1000"):
        SendGridBackend.build_batch_body(make_batch(1001), SENDER)


def test_sendgrid_batch_failure_is_one_error_for_the_whole_request(
    fake_sendgrid: FakeSendGrid,
) -> None:
    fake_sendgrid.enqueue(503)
    with pytest.raises(MailError) as caught:
        send_batch(SendGridBackend(API_KEY, fake_sendgrid.url), make_batch(2), SENDER)
    assert caught.value.transient is True


def test_file_backend_writes_each_batch_recipient_its_own_message(tmp_path: Path) -> None:
    send_batch(FileBackend(tmp_path), make_batch(2), SENDER)

    parsed = [read_eml(path) for path in sorted(tmp_path.glob("*.eml"))]
    assert [m["To"] for m in parsed] == ["person0@example.org", "person1@example.org"]
    assert parsed[1]["Subject"] == "Research update for Person 1"
    assert "https://e.test/u/1" in parsed[1].get_body(preferencelist=("plain",)).get_content()
    assert parsed[1]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed[1]["Message-ID"] == "<outbox-000000000001.t@engage.test>"
