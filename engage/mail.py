"""Mail transport: one interface, three backends chosen by ``MAIL_BACKEND``.

- ``console`` prints each message (with its text part) to standard output;
- ``file`` writes each message as an ``.eml`` file into ``MAIL_OUTBOX_DIR``;
- ``sendgrid`` sends through the ``sendgrid`` library's ``SendGridAPIClient``
  (``SENDGRID_API_HOST`` points it elsewhere, e.g. at a local fake server in tests).

Message bodies are rendered from ``templates/emails/<name>.txt`` and ``.html``.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import socket
import sys
import threading
import urllib.error
import uuid
from dataclasses import dataclass, field
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Any, Protocol

from flask import Flask, current_app, render_template

log = logging.getLogger(__name__)

# Written .eml files allow header lines up to RFC 5322's hard limit of 998: at the default of 78
# the generator turns a long List-Unsubscribe URL into RFC 2047 encoded-words, which RFC 2369/8058
# readers do not decode (a long non-ASCII subject becomes one longer encoded-word instead).
_EML_POLICY = email_policy.default.clone(max_line_length=998)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
# What may never reach a header line: line breaks (CR, LF, NEL, Unicode separators) and other
# control characters, which could end the header and start another (or make the email library
# refuse the whole message).
_HEADER_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")


def header_text(value: str) -> str:
    """``value`` made safe for one header line: each run of line breaks and other control
    characters becomes one space. Text people typed (a name, a title) may reach a subject, and
    rows stored before names were checked may hold anything."""
    return _HEADER_BREAKS.sub(" ", value).strip()


def _sender_header(sender: str) -> str:
    """The From header from ``MAIL_FROM`` (``Name <address>``): written again with the name
    quoted or encoded, never as raw text."""
    name, address = parseaddr(header_text(sender))
    if not address:
        return header_text(sender)
    return formataddr((header_text(name), address)) if name else address


@dataclass
class Message:
    """An email with a text and an HTML part."""

    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)
    # Only ids and kinds go here (they reach the provider as non-personal data).
    categories: list[str] = field(default_factory=list)
    custom_args: dict[str, str] = field(default_factory=dict)
    # A stable Message-ID (the outbox derives it from the row); None makes a fresh one.
    message_id: str | None = None


# SendGrid accepts at most this many personalizations (recipients) in one request.
MAX_PERSONALIZATIONS = 1000


@dataclass
class BatchRecipient:
    """One recipient of a batch: the address, what to put in place of the batch's
    placeholders (e.g. ``{"-name-": "Ana"}``), and their own headers, ids and Message-ID."""

    to: str
    substitutions: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    custom_args: dict[str, str] = field(default_factory=dict)
    message_id: str | None = None


@dataclass
class Batch:
    """One message sent to many recipients, personalised by substitutions."""

    subject: str
    text: str
    html: str
    recipients: list[BatchRecipient]
    categories: list[str] = field(default_factory=list)

    def message_for(self, recipient: BatchRecipient) -> Message:
        """The message ``recipient`` receives, substitutions applied."""

        def fill(template: str) -> str:
            for placeholder, value in recipient.substitutions.items():
                template = template.replace(placeholder, value)
            return template

        return Message(
            to=recipient.to,
            subject=fill(self.subject),
            text=fill(self.text),
            html=fill(self.html),
            headers=dict(recipient.headers),
            categories=list(self.categories),
            custom_args=dict(recipient.custom_args),
            message_id=recipient.message_id,
        )


@dataclass
class SendResult:
    """What the transport knows after handing a message over."""

    message_id: str | None


class MailError(RuntimeError):
    """The transport could not hand the message over.

    :param transient: True when trying again later may succeed (429, 5xx, network errors).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.transient = transient
        # Seconds the provider asked us to wait (its rate-limit reset), when it said.
        self.retry_after = retry_after


class MailOutcomeUnknown(MailError):
    """The request went out but no answer came back (a timeout or a cut connection after the
    body was sent): the provider may or may not have accepted it, so it must not be re-sent
    blindly."""


class MailBackend(Protocol):
    """What every backend offers."""

    def send(self, message: Message, sender: str) -> SendResult:
        """Hand ``message`` over for delivery, or raise ``MailError``."""

    def was_delivered(self, message_id: str) -> bool | None:
        """Evidence about an earlier attempt: True when the message with ``message_id`` was
        handed over, False when it certainly was not, None when this backend cannot tell."""


def _as_email_message(message: Message, sender: str) -> EmailMessage:
    """Build a standard multipart/alternative message."""
    email = EmailMessage()
    email["From"] = _sender_header(sender)
    # A bare address: no display name (people's names never reach address headers).
    email["To"] = header_text(message.to)
    email["Subject"] = header_text(message.subject)
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = header_text(message.message_id or make_msgid(domain="engage.localhost"))
    for name, value in message.headers.items():
        email[header_text(name)] = header_text(value)
    email.set_content(message.text)
    email.add_alternative(message.html, subtype="html")
    return email


class ConsoleBackend:
    """Print messages; for development without a mail folder."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stdout

    def send(self, message: Message, sender: str) -> SendResult:
        """Print the headers and the text part."""
        email = _as_email_message(message, sender)
        lines = [f"{k}: {v}" for k, v in email.items()]
        print("\n".join([*lines, "", message.text, "-" * 72]), file=self.stream, flush=True)
        return SendResult(message_id=email["Message-ID"])

    def was_delivered(self, message_id: str) -> bool | None:
        """A printed message leaves no evidence."""
        return None


class FileBackend:
    """Write each message as an ``.eml`` file into a folder (the development default).

    A message with a stable Message-ID is written under a name derived from it, atomically
    (a temporary file renamed into place), so the file is whole or absent and its presence is
    the evidence that settles an attempt whose outcome was unknown. Writing the same message
    again replaces the file: there is never a second copy.
    """

    _lock = threading.Lock()

    def __init__(self, outbox_dir: str | Path) -> None:
        self.outbox_dir = Path(outbox_dir)

    @staticmethod
    def file_name(message_id: str) -> str:
        """The file a message with ``message_id`` is written to."""
        return _SAFE_NAME.sub("_", message_id.strip("<>")) + ".eml"

    def send(self, message: Message, sender: str) -> SendResult:
        """Write the message and return its Message-ID."""
        from engage.timeutil import utcnow

        email = _as_email_message(message, sender)
        with self._lock:
            self.outbox_dir.mkdir(parents=True, exist_ok=True)
        if message.message_id:
            name = self.file_name(message.message_id)
        else:
            name = f"{utcnow():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
        target = self.outbox_dir / name
        temporary = self.outbox_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(email.as_bytes(policy=_EML_POLICY))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        return SendResult(message_id=email["Message-ID"])

    def was_delivered(self, message_id: str) -> bool | None:
        """True when the message's file exists (it is written whole or not at all)."""
        return (self.outbox_dir / self.file_name(message_id)).exists()


class SendGridBackend:
    """Send through SendGrid's v3 Mail Send API with the official client."""

    def __init__(self, api_key: str, host: str | None = None, timeout: float = 10.0) -> None:
        from sendgrid import SendGridAPIClient

        kwargs: dict[str, Any] = {"api_key": api_key}
        if host:
            kwargs["host"] = host.rstrip("/")
        self.client = SendGridAPIClient(**kwargs)
        self.client.client.timeout = timeout

    @staticmethod
    def build_request_body(message: Message, sender: str) -> dict[str, Any]:
        """Return the v3 ``/mail/send`` JSON body for one message."""
        from sendgrid.helpers.mail import (
            Category,
            CustomArg,
            From,
            Header,
            HtmlContent,
            Mail,
            PlainTextContent,
            To,
        )

        name, address = parseaddr(header_text(sender))
        mail = Mail(
            from_email=From(address, header_text(name) or None),
            to_emails=To(header_text(message.to)),
            subject=header_text(message.subject),
            plain_text_content=PlainTextContent(message.text),
            html_content=HtmlContent(message.html),
        )
        for header_name, value in message.headers.items():
            mail.add_header(Header(header_text(header_name), header_text(value)))
        if message.message_id:
            # Not a reserved header for SendGrid; kept so replies and bounces thread by it.
            mail.add_header(Header("Message-ID", message.message_id))
        for category in message.categories:
            mail.add_category(Category(category))
        for key, value in message.custom_args.items():
            mail.add_custom_arg(CustomArg(key, value))
        return mail.get()

    @staticmethod
    def build_batch_body(batch: Batch, sender: str) -> dict[str, Any]:
        """Return one v3 ``/mail/send`` body carrying every recipient of ``batch`` as its own
        personalization (own address, substitutions, headers and ``custom_args``)."""
        if not 1 <= len(batch.recipients) <= MAX_PERSONALIZATIONS:
            raise ValueError(f"a batch holds 1 to {MAX_PERSONALIZATIONS} recipients")
        name, address = parseaddr(header_text(sender))
        personalizations = []
        for recipient in batch.recipients:
            personalization: dict[str, Any] = {"to": [{"email": header_text(recipient.to)}]}
            subject = batch.subject
            for placeholder, value in recipient.substitutions.items():
                if placeholder in subject:
                    subject = subject.replace(placeholder, header_text(value))
            if subject != batch.subject:
                personalization["subject"] = header_text(subject)
            if recipient.substitutions:
                personalization["substitutions"] = dict(recipient.substitutions)
            headers = {header_text(k): header_text(v) for k, v in recipient.headers.items()}
            if recipient.message_id:
                headers["Message-ID"] = recipient.message_id
            if headers:
                personalization["headers"] = headers
            if recipient.custom_args:
                personalization["custom_args"] = dict(recipient.custom_args)
            personalizations.append(personalization)
        body: dict[str, Any] = {
            "from": {"email": address, **({"name": header_text(name)} if name else {})},
            "subject": header_text(batch.subject),
            "personalizations": personalizations,
            "content": [
                {"type": "text/plain", "value": batch.text},
                {"type": "text/html", "value": batch.html},
            ],
        }
        if batch.categories:
            body["categories"] = list(batch.categories)
        return body

    def send_batch(self, batch: Batch, sender: str) -> SendResult:
        """POST every recipient of ``batch`` in one request (all accepted or none)."""
        return self._post(self.build_batch_body(batch, sender))

    def send(self, message: Message, sender: str) -> SendResult:
        """POST the message; 2xx is accepted, 429/5xx/network errors are transient."""
        return self._post(self.build_request_body(message, sender))

    def _post(self, body: dict[str, Any]) -> SendResult:
        """Hand one request body over, turning every failure into a ``MailError``."""
        from python_http_client import exceptions as http_errors

        try:
            response = self.client.send(body)
        except http_errors.HTTPError as exc:
            status = getattr(exc, "status_code", None)
            transient = status == 429 or (status is not None and status >= 500)
            raise MailError(
                f"SendGrid answered {status}: {_error_reason(exc)}",
                status=status,
                transient=transient,
                retry_after=_retry_after(getattr(exc, "headers", None)) if transient else None,
            ) from exc
        # urllib wraps what fails while connecting or sending in URLError: refused, DNS, a
        # connect timeout. Nothing was accepted, so trying again later is safe.
        except urllib.error.URLError as exc:
            if _request_may_have_arrived(exc.reason):
                raise MailOutcomeUnknown(
                    f"SendGrid did not answer: {exc.reason.__class__.__name__}"
                ) from exc
            raise MailError(
                f"SendGrid unreachable: {exc.reason.__class__.__name__}", transient=True
            ) from exc
        # The body was sent and the answer never came or came garbled (a read timeout, a
        # closed or reset connection): the provider may have accepted the message.
        except (OSError, http.client.HTTPException) as exc:
            raise MailOutcomeUnknown(f"SendGrid did not answer: {exc.__class__.__name__}") from exc
        headers = getattr(response, "headers", None) or {}
        message_id = headers.get("X-Message-Id") if hasattr(headers, "get") else None
        return SendResult(message_id=message_id)


    def was_delivered(self, message_id: str) -> bool | None:
        """Only the provider's events can tell (the outbox passes its id in ``custom_args``)."""
        return None


def _request_may_have_arrived(reason: object) -> bool:
    """Whether a failure while connecting or sending may still have delivered the request.

    Refused connections and name lookups fail before a byte is sent; a timeout or reset while
    writing the body may come after the provider read all of it.
    """
    if isinstance(reason, ConnectionRefusedError | socket.gaierror):
        return False
    if isinstance(reason, str):  # urllib's own messages (e.g. "no host given")
        return False
    return isinstance(reason, TimeoutError | ConnectionResetError | BrokenPipeError)


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from a rate-limited answer: ``Retry-After`` or SendGrid's
    ``X-RateLimit-Reset`` (a Unix time); None when neither is readable."""
    import time

    if headers is None or not hasattr(headers, "get"):
        return None
    for name, to_seconds in (
        ("Retry-After", float),
        ("X-RateLimit-Reset", lambda value: float(value) - time.time()),
    ):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, min(to_seconds(value), 3600.0))
        except (TypeError, ValueError):
            continue
    return None


def _error_reason(exc: Exception) -> str:
    """The provider's error messages from an error body, without any message content."""
    body = getattr(exc, "body", b"") or b""
    try:
        errors = json.loads(body).get("errors", [])
        reasons = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
    except (ValueError, AttributeError):
        reasons = []
    return "; ".join(r for r in reasons if r)[:500] or "no reason given"


def send_batch(backend: MailBackend, batch: Batch, sender: str) -> list[SendResult]:
    """Send ``batch`` through ``backend``: one request with SendGrid, one message per
    recipient with the others (so the file backend's evidence stays per message)."""
    if isinstance(backend, SendGridBackend):
        return [backend.send_batch(batch, sender)]
    return [backend.send(batch.message_for(recipient), sender) for recipient in batch.recipients]


def make_backend(app: Flask) -> MailBackend:
    """Build the backend named by the app's ``MAIL_BACKEND`` setting."""
    name = app.config["MAIL_BACKEND"]
    if name == "console":
        return ConsoleBackend()
    if name == "file":
        return FileBackend(app.config["MAIL_OUTBOX_DIR"])
    if name == "sendgrid":
        return SendGridBackend(
            app.config["SENDGRID_API_KEY"],
            app.config["SENDGRID_API_HOST"],
            timeout=float(app.config.get("SENDGRID_TIMEOUT", 10)),
        )
    raise ValueError(f"unknown MAIL_BACKEND {name!r}")


def init_app(app: Flask) -> None:
    """Bind the configured backend to ``app``."""
    app.extensions["engage.mail"] = make_backend(app)


def send(message: Message) -> SendResult:
    """Send ``message`` through the current app's backend (logs the kind, never the content)."""
    backend: MailBackend = current_app.extensions["engage.mail"]
    result = backend.send(message, current_app.config["MAIL_FROM"])
    log.info("mail handed over: categories=%s", ",".join(message.categories) or "-")
    return result


def render_message(template: str, *, to: str, subject: str, **context: Any) -> Message:
    """Render ``templates/emails/<template>.txt`` and ``.html`` into a :class:`Message`."""
    context.setdefault("base_url", current_app.config["BASE_URL"].rstrip("/"))
    text = render_template(f"emails/{template}.txt", subject=subject, **context)
    html = render_template(f"emails/{template}.html", subject=subject, **context)
    return Message(to=to, subject=subject, text=text, html=html, categories=[template])


def send_template(template: str, *, to: str, subject: str, **context: Any) -> SendResult:
    """Render and send one templated message."""
    return send(render_message(template, to=to, subject=subject, **context))
