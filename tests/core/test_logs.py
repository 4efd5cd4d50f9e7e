"""No email address, link token, bearer token or password reaches the logs.

Every log record of the process is captured (the root logger at DEBUG, and Werkzeug's,
SQLAlchemy's and APScheduler's loggers at DEBUG too) during whole journeys through the test
client and through a real served app, and each record is formatted completely (message,
arguments, traceback, every attribute); none may hold what the journey typed or was sent.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import url_for

from engage import logs
from engage.accounts.models import CustodianStatus, Role, User
from engage.db import Database
from engage.timeutil import utcnow
from governance import tokens as api_tokens
from newsletters.models import Subscriber
from newsletters.tokens import make_unsubscribe_token
from tests.conftest import post_form
from tests.core.test_hardening import HttpBrowser, served
from tests.newsletters.support import make_list

REPO = Path(__file__).resolve().parents[2]
CAPTURED_LOGGERS = ("werkzeug", "sqlalchemy", "apscheduler", "engage", "governance", "newsletters")


class EveryRecord(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        """Each record formatted completely: message, arguments, traceback, attributes."""
        found = []
        for record in self.records:
            parts = [self.format(record), str(record.msg), repr(record.args), repr(vars(record))]
            if record.exc_info and record.exc_info[0] is not None:
                parts.append("".join(traceback.format_exception(*record.exc_info)))
            parts += [record.exc_text or "", record.stack_info or ""]
            found.append("\n".join(parts))
        return found


@pytest.fixture
def every_record() -> Iterator[EveryRecord]:
    """Capture every log record of the process while the test runs."""
    handler = EveryRecord()
    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(name) for name in CAPTURED_LOGGERS)]
    # Loggers that do not pass records up get the handler themselves.
    loggers += [
        logger
        for logger in root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    hooked = [logger for logger in loggers if logger is root or not logger.propagate]
    for logger in hooked:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in hooked:
            logger.removeHandler(handler)
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled


def _path(link: str) -> str:
    return link.removeprefix("http://engage.test")


def _token(path: str) -> str:
    return re.search(r"/(?:verify-email|reset-password|confirm)/([^/?#]+)", path).group(1)


def _leaks(texts: list[str], secrets: dict[str, str]) -> list[str]:
    return [
        f"{label} in: {text[:300]}"
        for text in texts
        for label, secret in secrets.items()
        if secret.lower() in text.lower()
    ]


def test_journeys_leave_no_address_token_or_password_in_the_logs(
    app, client, session, make_user, make_registry, mailbox, every_record, monkeypatch
):
    person, reader = "journey.person@example.org", "journey.reader@example.org"
    first, second = "violet harbour lantern", "amber meadow compass"
    secrets = {"person's address": person, "reader's address": reader}
    secrets |= {"first password": first, "second password": second}

    # Sign up, confirm the address, sign in and out.
    sign_up = {
        "role": "participant",
        "display_name": "Journey Person",
        "email": person,
        "password": first,
        "password_confirm": first,
        "country": "SE",
        "language": "en",
    }
    assert post_form(client, "/sign-up", sign_up).status_code == 302
    verify = _path(mailbox.last_to(person).link("/verify-email/"))
    secrets["verification token"] = _token(verify)
    assert client.get(verify).status_code == 200
    assert post_form(client, verify, {"password": first}).status_code == 302
    assert post_form(client, "/sign-out").status_code == 302
    assert post_form(client, "/sign-in", {"email": person, "password": first}).status_code == 302
    assert post_form(client, "/sign-out").status_code == 302

    # Reset the password from the emailed link, and sign in with the new one.
    assert post_form(client, "/reset-password", {"email": person}).status_code == 200
    reset = _path(mailbox.last_to(person).link("/reset-password/"))
    secrets["reset token"] = _token(reset)
    assert client.get(reset).status_code == 200
    new = {"password": second, "password_confirm": second}
    assert post_form(client, reset, new).status_code == 302
    assert post_form(client, "/sign-in", {"email": person, "password": second}).status_code == 302
    assert post_form(client, "/sign-out").status_code == 302

    # Newsletters: sign up, confirm, unsubscribe from the page and with one click.
    research = make_list(session, "Research updates")
    session.commit()
    subscribe = {"name": "Reader", "email": reader, "language": "en", "lists": [research.id]}
    assert post_form(client, "/newsletters/subscribe", subscribe).status_code == 303
    confirm = _path(mailbox.last_to(reader).link("/newsletters/confirm/"))
    secrets["confirmation token"] = _token(confirm)
    assert client.get(confirm).status_code == 200
    assert post_form(client, confirm).status_code == 303
    subscriber = session.scalar(sa.select(Subscriber).where(Subscriber.email == reader))
    unsubscribe = make_unsubscribe_token(app.config["SECRET_KEY"], subscriber.id, research.id)
    secrets["unsubscribe token"] = unsubscribe
    assert client.get(f"/newsletters/unsubscribe/{unsubscribe}").status_code == 200
    assert post_form(client, f"/newsletters/unsubscribe/{unsubscribe}/confirm").status_code == 303
    one_click = client.post(
        f"/newsletters/unsubscribe/{unsubscribe}", data={"List-Unsubscribe": "One-Click"}
    )
    assert one_click.status_code == 200

    # Error pages whose address holds a token, an address or a secret query parameter.
    forged = "Zm9yZ2VkLXRva2VuLWZvci1sb2dz.forged.signature"
    secrets["forged token"] = forged
    assert client.get(f"/reset-password/{forged}").status_code == 400
    assert client.get(f"/verify-email/{forged}/more").status_code == 404
    query = f"/newsletters/confirm/{forged}?email={reader.replace('@', '%40')}&token={forged}x"
    assert client.get(query).status_code == 400

    # The registries' API with a bearer token, and with a wrong one.
    registry = make_registry(code="LOGREG")
    custodian = make_user(
        Role.CUSTODIAN,
        email="journey.custodian@example.org",
        registry=registry,
        custodian_status=CustodianStatus.APPROVED,
        two_factor=False,
    )
    secrets["custodian's address"] = custodian.email
    created = api_tokens.create_token(session, session.get(User, custodian.id), "Sync", utcnow())
    session.commit()
    secrets["API token"] = created.secret
    answer = client.get("/api/v1/proposals", headers={"Authorization": f"Bearer {created.secret}"})
    assert answer.status_code == 200
    wrong = "wrong-" + created.secret[::-1]
    secrets["wrong API token"] = wrong
    assert (
        client.get("/api/v1/proposals", headers={"Authorization": f"Bearer {wrong}"}).status_code
        == 401
    )

    # A 500 inside a request holding a token, whose error message holds the token and address.
    from engage.accounts import views as account_views

    def broken(_purpose, token, _max_age):
        raise RuntimeError(f"cannot confirm {token} for {person}")

    monkeypatch.setattr(account_views, "read_token", broken)
    assert client.get(verify).status_code == 500

    # The same through a real server: Werkzeug's access log and the error log.
    with served(app) as address:
        browser = HttpBrowser(address)
        assert browser.request("GET", verify)[0] == 500
        assert browser.request("GET", reset)[0] == 500
        unsubscribe_page = f"/newsletters/unsubscribe/{unsubscribe}?code=12345678"
        assert browser.request("GET", unsubscribe_page)[0] == 200
        assert browser.request("GET", query)[0] == 400
        connection = http.client.HTTPConnection(*address, timeout=30)
        try:
            connection.request(
                "GET", "/api/v1/proposals", headers={"Authorization": f"Bearer {created.secret}"}
            )
            assert connection.getresponse().status == 200
        finally:
            connection.close()

    texts = every_record.texts()
    assert _leaks(texts, secrets) == []
    # What was captured is what would have leaked, redacted (Werkzeug colours its lines).
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", text) for text in texts]
    assert any('"GET /reset-password/[redacted] HTTP/1.1" 500' in text for text in plain)
    assert any("GET /newsletters/unsubscribe/[redacted]?code=[redacted]" in text for text in texts)
    errors = [text for text in texts if "unexpected error on GET /verify-email/[redacted]" in text]
    assert len(errors) == 2
    assert all("RuntimeError: cannot confirm [redacted] for [email]" in text for text in errors)
    assert any("sqlalchemy.engine" in text for text in texts)


def test_every_rule_with_a_token_argument_is_redacted(app, every_record):
    """Derived from the URL map: a new link with a token is covered without a list to keep."""
    token = "eyJzZWNyZXQiOiJsaW5rIn0.Zz9xYw.c2lnbmF0dXJlLW9mLWEtbGluaw"
    with app.test_request_context():
        paths = [
            url_for(
                rule.endpoint, **{arg: token if arg == "token" else 7 for arg in rule.arguments}
            )
            for rule in app.url_map.iter_rules()
            if "token" in rule.arguments
        ]
    assert len(paths) >= 5
    log = logging.getLogger("engage.tests")
    for path in paths:
        log.warning("visited %s", f"https://engage.example{path}")
    texts = every_record.texts()
    assert _leaks(texts, {"token": token}) == []
    assert len([t for t in texts if "/[redacted]" in t]) >= len(paths)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /governance/tokens/12/revoke", "GET /governance/tokens/12/revoke"),
        ("GET /staff/users?page=2&q=ana", "GET /staff/users?page=2&q=ana"),
        ("GET /x?api_key=abc&code=99&next=/", "GET /x?api_key=[redacted]&code=[redacted]&next=/"),
        ("to Ana.B+x@Example.co.uk and ana%40example.org", "to [email] and [email]"),
        ("Authorization: Bearer abcdefgh12345678", "Authorization: Bearer [redacted]"),
        ("the bearer of bad news", "the bearer of bad news"),
    ],
)
def test_redaction_keeps_what_is_not_secret(text, expected):
    assert logs.redact(text) == expected


def test_database_errors_reach_the_logs_without_their_values(app, make_user, every_record):
    """``hide_parameters`` keeps the statement's values out of SQLAlchemy's part of an error;
    PostgreSQL's own details (the failing row, the duplicate key) are redacted in the logs."""
    user = make_user(email="hidden.parameter@example.org")
    engine = Database.engine(app)
    with engine.connect() as connection, pytest.raises(sa.exc.IntegrityError) as raised:
        connection.execute(
            sa.insert(User.__table__).values(
                email=user.email,
                display_name="Twin Quietname",
                password_hash="x",
                role="participant",
            )
        )
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(raised.value)
    logging.getLogger("engage.tests").error("the insert failed", exc_info=raised.value)
    texts = every_record.texts()
    assert any("the insert failed" in text for text in texts)
    assert _leaks(texts, {"address": user.email, "name": "Quietname"}) == []


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        (
            "DETAIL:  Failing row contains (7, Ana (Lund), x, participant, null).\n[SQL: INSERT]",
            "DETAIL:  Failing row contains ([redacted]).\n[SQL: INSERT]",
        ),
        (
            "DETAIL:  Key (lower(display_name::text))=(Ana Lund) already exists.",
            "DETAIL:  Key (lower(display_name::text))=([redacted]) already exists.",
        ),
        (
            'DETAIL:  Key (user_id, topic_id)=(3, 4) is not present in table "users".',
            'DETAIL:  Key (user_id, topic_id)=([redacted]) is not present in table "users".',
        ),
    ],
)
def test_postgresql_error_details_are_redacted(detail, expected):
    assert logs.redact(detail) == expected


def test_sqlalchemy_rows_are_not_logged(app, make_user, every_record):
    make_user(email="row.value@example.org")
    with Database.engine(app).connect() as connection:
        assert connection.execute(sa.select(User.__table__.c.email)).scalar() is not None
    texts = every_record.texts()
    assert any("Row [values not logged]" in text for text in texts)
    assert _leaks(texts, {"address": "row.value@example.org"}) == []


GUNICORN_CHECK = """
import json, logging.config, runpy, sys
from engage.app import create_app
settings = runpy.run_path("engage/gunicorn_conf.py")
logging.config.dictConfig(settings["logconfig_dict"])
create_app({"ENGAGE_CONFIG": "testing", "DATABASE_URL": sys.argv[1]})  # as in each worker
atoms = {"h": "10.0.0.1", "l": "-", "u": "-", "t": "[01/Dec/2026:10:00:00 +0000]",
         "r": "GET /reset-password/SECRETTOKEN123456 HTTP/1.1", "s": "302", "b": "0",
         "f": "https://engage.example/verify-email/OTHERTOKEN987654?email=a%40b.org",
         "a": "Mozilla/5.0", "D": "1234"}
logging.getLogger("gunicorn.access").info(settings["access_log_format"], atoms)
logging.getLogger("gunicorn.error").error("worker failed for %s", "ana@example.org")
"""


def test_gunicorn_logs_through_its_config_are_redacted(tmp_path):
    """gunicorn applies ``logconfig_dict`` with dictConfig and logs each request through
    ``gunicorn.access`` with a dict of atoms (gunicorn itself is not a dependency)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", GUNICORN_CHECK, f"sqlite:///{tmp_path / 'x.sqlite'}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    access = result.stdout.strip()
    assert access.startswith('10.0.0.1 - - [01/Dec/2026:10:00:00 +0000] "GET /reset-password/[')
    assert "SECRETTOKEN" not in access and "OTHERTOKEN" not in access and "a%40b" not in access
    assert "/verify-email/[redacted]?email=[email]" in access
    assert "worker failed for [email]" in result.stderr
    assert "ana@example.org" not in result.stderr
