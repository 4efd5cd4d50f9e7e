"""Hardening: emails leave after the response has gone out, a server starts in production unless
told otherwise, malformed Host headers answer 400, consent receipts are verified strictly, and
guessable passwords are refused in plain words."""

from __future__ import annotations

import copy
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from werkzeug.serving import make_server

from engage.accounts.models import User
from engage.app import create_app
from engage.consent import receipts
from engage.db import Database
from engage.outbox import OutboxMessage, OutboxStatus
from engage.security import password_problem
from tests.conftest import PASSWORD, post_form
from tests.fake_sendgrid import FakeSendGrid

REPO = Path(__file__).resolve().parents[2]
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


# Serving over real HTTP -----------------------------------------------------------------------
@contextmanager
def served(app) -> Iterator[tuple[str, int]]:
    """Serve ``app`` with werkzeug on a free port in a thread; yields (host, port)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield "127.0.0.1", server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class HttpBrowser:
    """A cookie-keeping HTTP client over raw sockets (one connection per request)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict[str, str] | None = None):
        """Send a request and read the whole answer: (status, headers, body text)."""
        connection = http.client.HTTPConnection(*self.address, timeout=30)
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
            for value in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(value).items():
                    self.cookies[name] = morsel.value
            return response.status, response.headers, text
        finally:
            connection.close()


@pytest.fixture
def sendgrid_app(app, fake_sendgrid: FakeSendGrid):
    """The app on the same database, sending through the real SendGrid client to the fake."""
    other = create_app(
        {
            "ENGAGE_CONFIG": "testing",
            "DATABASE_URL": app.config["DATABASE_URL"],
            "MAIL_BACKEND": "sendgrid",
            "SENDGRID_API_KEY": "SG.test-key",
            "SENDGRID_API_HOST": fake_sendgrid.url,
            "SENDGRID_TIMEOUT": 20,
            "BASE_URL": "http://engage.test",
        }
    )
    yield other
    Database.engine(other).dispose()


def _wait_for_status(session, status: OutboxStatus, timeout: float = 20.0) -> OutboxMessage:
    deadline = time.monotonic() + timeout
    while True:
        session.expire_all()
        row = session.scalar(sa.select(OutboxMessage))
        if row is not None and row.status == status:
            return row
        assert time.monotonic() < deadline, f"the email is {row and row.status}, not {status}"
        time.sleep(0.05)


# Finding 3: the reset answer does not wait for (or reveal) the email ---------------------------
def test_the_reset_answer_is_complete_before_the_mail_provider_answers(
    sendgrid_app, session, make_user, fake_sendgrid
):
    """The provider holds its answer for 3 s; the person's browser has the whole answer while
    the provider has not answered yet, so the request never waited for the email."""
    user = make_user(email="known.person@example.org")
    fake_sendgrid.enqueue(202, delay=3.0)
    with served(sendgrid_app) as address:
        browser = HttpBrowser(address)
        status, _headers, page = browser.request("GET", "/reset-password")
        assert status == 200
        token = CSRF_META.search(page).group(1)
        status, _headers, body = browser.request(
            "POST", "/reset-password", {"csrf_token": token, "email": user.email}
        )
        # Whatever the provider has seen so far, it has answered none of it.
        answered = [r.response_status for r in fake_sendgrid.requests]
        assert status == 200 and "Check your email" in body
        assert answered in ([], [None])

        # The email still goes out, once the answer has gone.
        sent = fake_sendgrid.wait_for_requests(1, timeout=10)
        assert sent[0].body["personalizations"][0]["to"] == [{"email": user.email}]
        row = _wait_for_status(session, OutboxStatus.SENT)
    assert row.kind == "reset_password"


def test_known_and_unknown_addresses_get_the_same_reset_answer(client, make_user, mailbox):
    known, unknown = "known.person@example.org", "other.person@example.org"
    assert len(known) == len(unknown)
    make_user(email=known)
    answers = [post_form(client, "/reset-password", {"email": email}) for email in (known, unknown)]

    def comparable(response, email: str):
        body = response.get_data(as_text=True).replace(email, "ADDRESS")
        body = re.sub(r'(name="csrf_token" value|name="csrf-token" content)="[^"]*"', r"\1", body)
        headers = sorted((k, v) for k, v in response.headers.items() if k != "Set-Cookie")
        return response.status_code, headers, body

    assert comparable(answers[0], known) == comparable(answers[1], unknown)
    assert answers[0].status_code == 200
    # Flask's test client closes each response, so the email sent after it has arrived.
    assert mailbox.last_to(known).subject
    assert mailbox.to(unknown) == []


def test_a_failed_delivery_after_the_response_leaves_the_email_queued(
    sendgrid_app, session, make_user, fake_sendgrid
):
    user = make_user(email="known.person@example.org")
    fake_sendgrid.enqueue(503)
    client = sendgrid_app.test_client()
    response = post_form(client, "/reset-password", {"email": user.email})
    assert response.status_code == 200
    row = _wait_for_status(session, OutboxStatus.PENDING)
    assert (row.kind, row.attempts) == ("reset_password", 1)


# Finding 6: engage.wsgi serves production unless told otherwise ------------------------------
def _import_wsgi(tmp_path: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """``python -c 'import engage.wsgi'`` in a clean environment plus ``environment``."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), **environment}
    return subprocess.run(
        [sys.executable, "-c", "import engage.wsgi"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_wsgi_entry_point_runs_production_when_engage_config_is_unset(tmp_path):
    result = _import_wsgi(tmp_path)
    assert result.returncode == 1
    assert "Engage cannot start: SECRET_KEY is missing" in result.stderr
    assert "Production needs PostgreSQL" in result.stderr
    assert "ENCRYPTION_KEYS is missing" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_wsgi_entry_point_refuses_the_testing_configuration(tmp_path):
    result = _import_wsgi(tmp_path, ENGAGE_CONFIG="testing")
    assert result.returncode == 1
    assert "ENGAGE_CONFIG=testing is for the test suite only" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_wsgi_entry_point_runs_development_only_when_asked_with_a_warning(tmp_path):
    database = tmp_path / "engage.sqlite"
    result = _import_wsgi(
        tmp_path,
        ENGAGE_CONFIG="development",
        DATABASE_URL=f"sqlite:///{database}",
        MAIL_OUTBOX_DIR=str(tmp_path / "mail"),
    )
    # Past the configuration: it stops only because this database is not migrated.
    assert "ENGAGE_CONFIG=development: Engage is serving with development settings" in (
        result.stderr
    )
    assert "Never let this server be reached from the internet" in result.stderr
    assert result.returncode == 1 and "has not been set up yet" in result.stderr


# Finding 7: malformed Host headers answer 400 ------------------------------------------------
BAD_HOSTS = ["evil host", "[::1", 'a"b', "x/y", "", "a" * 300, "a" * 64 + ".org", "a:99999"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("host", BAD_HOSTS)
def test_a_malformed_host_answers_400_through_the_test_client(client, host):
    response = client.get("/", headers={"Host": host})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "<h1>Please try again</h1>" in page and 'href="/"' in page


@pytest.mark.sqlite_only
def test_malformed_hosts_answer_400_from_a_real_server(app):
    errors: list[str] = []
    with served(app) as address:
        for host in [*BAD_HOSTS, "localhost", "127.0.0.1:8000"]:
            connection = http.client.HTTPConnection(*address, timeout=30)
            try:
                connection.putrequest("GET", "/", skip_host=True, skip_accept_encoding=True)
                connection.putheader("Host", host)
                connection.endheaders()
                response = connection.getresponse()
                page = response.read().decode()
            finally:
                connection.close()
            expected = 200 if host in ("localhost", "127.0.0.1:8000") else 400
            if response.status != expected or "Traceback" in page:
                errors.append(f"{host[:20]!r}: {response.status}")
            if expected == 400 and "<h1>Please try again</h1>" not in page:
                errors.append(f"{host[:20]!r}: not the 400 page")
    assert errors == []


@pytest.mark.sqlite_only
def test_hosts_outside_trusted_hosts_answer_400(app, client):
    app.config["TRUSTED_HOSTS"] = ["engage.example"]
    assert client.get("/", headers={"Host": "engage.example"}).status_code == 200
    assert client.get("/", headers={"Host": "elsewhere.example"}).status_code == 400


# Finding 9: receipts are verified strictly -------------------------------------------------
KEY = "a receipt key for these tests only, long enough"


def _receipt(**changes) -> dict:
    document = {
        "format": receipts.RECEIPT_FORMAT,
        "receipt_id": "7d7a3c6e-1111-4222-8333-944455556666",
        "issued_at": "2026-01-02T03:04:05.000006+00:00",
        "jurisdiction": "EU",
        "controller": {"name": "MS research network coordination centre"},
        "collection_method": "online",
        "recorded_by_staff": False,
        "participant": "0b7f2a5e-0000-4000-8000-000000000001",
        "form": {
            "version": 2,
            "title": "Taking part",
            "language": "en",
            "ethics_reference": None,
            "published_at": "2026-01-01T00:00:00.000000+00:00",
            "text_sha256": "ab" * 32,
        },
        "taking_part": True,
        "scopes": [
            {
                "code": "SHARE",
                "title": "Share records",
                "kind": "purpose",
                "duo_code": "HMB",
                "required": True,
                "revision": 1,
                "decision": "permit",
                "permitted": True,
                "changed_now": True,
            },
            {
                "code": "GENOMIC",
                "title": "Genomic data",
                "kind": "data",
                "duo_code": None,
                "required": False,
                "revision": 3,
                "decision": "deny",
                "permitted": False,
                "changed_now": False,
            },
        ],
    }
    document.update(changes)
    return receipts.sign(document, KEY)


def test_a_receipt_as_issued_verifies():
    assert receipts.verify_text(json.dumps(_receipt(), indent=2), KEY).is_valid
    assert receipts.verify_text(json.dumps(_receipt(paper_reference="P-12")), KEY).is_valid


@pytest.mark.parametrize(
    ("where", "text_of"),
    [
        # The signed value comes last, where plain JSON parsing would keep it.
        ("top level", lambda signed: '{"participant": "someone else", ' + json.dumps(signed)[1:]),
        (
            "a scope",
            lambda signed: json.dumps(signed).replace(
                '"decision": "deny"', '"decision": "permit", "decision": "deny"'
            ),
        ),
        (
            "the signature",
            lambda signed: json.dumps(signed).replace(
                '"algorithm": "HMAC-SHA256"', '"algorithm": "none", "algorithm": "HMAC-SHA256"'
            ),
        ),
    ],
)
def test_a_member_named_twice_is_refused_anywhere(where, text_of):
    text = text_of(_receipt())
    # Plain parsing keeps the last value, which the signature covers: it would pass.
    assert receipts.verify(json.loads(text), KEY).is_valid
    check = receipts.verify_text(text, KEY)
    assert not check.is_valid
    assert "appears twice" in check.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s["signature"].update(note="checked by staff"), "members a receipt does not"),
        (lambda s: s["signature"].pop("key_id"), "lacks the members key_id"),
        (lambda s: s["signature"].update(value=1), "wrong type"),
        (lambda s: s["signature"].update(value="AB" * 32), "64 lowercase hexadecimal"),
        (lambda s: s["signature"].update(key_id="x"), "16 lowercase hexadecimal"),
        (lambda s: s.update(signature=[]), "no signature"),
    ],
)
def test_unknown_missing_or_malformed_signature_members_are_refused(change, reason):
    signed = _receipt()
    change(signed)
    check = receipts.verify(signed, KEY)
    assert not check.is_valid
    assert reason in check.reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"comment": "added after signing"}, "members a receipt does not have: comment"),
        ({"taking_part": "yes"}, "member 'taking_part' has a value of the wrong type"),
        ({"recorded_by_staff": 0}, "member 'recorded_by_staff' has a value of the wrong type"),
        ({"scopes": {"SHARE": "permit"}}, "member 'scopes' is not a list"),
        ({"controller": "someone"}, "member 'controller' is not an object"),
        ({"paper_reference": 12}, "member 'paper_reference' has a value of the wrong type"),
    ],
)
def test_unknown_members_and_wrong_types_are_refused_even_when_signed(changes, reason):
    """Signed with the right key (so the signature matches), yet not a receipt of the format."""
    check = receipts.verify(_receipt(**changes), KEY)
    assert not check.is_valid
    assert reason in check.reason


@pytest.mark.parametrize("member", ["taking_part", "scopes", "participant", "form"])
def test_a_missing_member_is_refused_even_when_signed(member):
    document = _receipt()
    del document[member]
    check = receipts.verify(receipts.sign(document, KEY), KEY)
    assert not check.is_valid
    assert f"lacks the members {member}" in check.reason


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("form", "version"), True),
        (("form", "version"), "2"),
        (("form", "extra"), 1),
        (("scopes", 0, "revision"), 1.0),
        (("scopes", 1, "permitted"), None),
        (("scopes", 1, "duo_code"), 5),
    ],
)
def test_nested_members_have_their_types(path, value):
    document = copy.deepcopy(_receipt())
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    check = receipts.verify(receipts.sign(document, KEY), KEY)
    assert not check.is_valid


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', "[1, 2", b"\xff\xfe{"])
def test_what_is_not_strict_json_is_refused_without_a_traceback(text):
    check = receipts.verify_text(text, KEY)
    assert not check.is_valid
    with pytest.raises(receipts.ReceiptFormatError):
        receipts.load(text)


def test_the_verify_receipt_command_refuses_a_duplicated_member(app, runner, tmp_path):
    signed = receipts.sign(receipts.sign(_receipt(), KEY), app.config["CONSENT_RECEIPT_KEY"])
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(signed))
    assert runner.invoke(args=["consent", "verify-receipt", str(path)]).exit_code == 0
    path.write_text('{"taking_part": false, ' + json.dumps(signed)[1:])
    result = runner.invoke(args=["consent", "verify-receipt", str(path)])
    assert result.exit_code != 0
    assert "appears twice" in result.output and "Traceback" not in result.output


# Finding 11: guessable passwords are refused in plain words ---------------------------------
@pytest.mark.parametrize(
    ("password", "words"),
    [
        ("Password1!", "too close to a common one"),
        ("Qwerty12345", "too common"),
        ("passwordpassword", "typed twice"),
        ("Qwertyuiop1", "too close to a common one"),
        ("ana.lindqvist77", "too close to your email address"),
        ("Ana Lindqvist 1", "your email address, your name"),
        ("Engage2026!", None),
        ("multiplesclerosis1", "words about this site"),
    ],
)
def test_guessable_passwords_are_refused_with_advice(password, words):
    problem = password_problem(password, "ana.lindqvist@example.org", "Ana Lindqvist")
    assert problem is not None
    if words:
        assert words in problem
    # Plain words: no zxcvbn jargon, British spelling.
    assert "Capitalization" not in problem and "top-10" not in problem


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "a long enough passphrase",
        "quiet river lantern",
        "another long passphrase",
        "a good long staff passphrase",
        "Tr0ub4dor&3 plum",
        "vG7#kL9!qR2$",
        "ünïcödé wörds ärë fïnë",
        "x7" + "a long random-ish tail " * 10,  # over 100 characters: only the start is judged
    ],
)
def test_strong_passwords_pass(password):
    assert password_problem(password, "ana.lindqvist@example.org", "Ana Lindqvist") is None


def test_length_limits_stay_10_to_256():
    assert password_problem("k9#Vq2!x") == "Use at least 10 characters."
    assert password_problem("quiet river lantern " * 13) == "Use at most 256 characters."
    assert password_problem("quiet river lantern " * 12) is None


def test_sign_up_explains_a_guessable_password(client, session):
    response = post_form(
        client,
        "/sign-up",
        {
            "role": "participant",
            "display_name": "Ana",
            "email": "ana@example.org",
            "password": "Password1!",
            "password_confirm": "Password1!",
            "country": "SE",
            "language": "en",
        },
    )
    assert response.status_code == 400
    assert "too close to a common one" in response.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 0
