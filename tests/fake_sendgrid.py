"""A local fake of SendGrid's v3 HTTP API for tests.

It is a real HTTP server on 127.0.0.1 (a free port, a daemon thread), so the ``sendgrid``
library's own client talks to it through ``SENDGRID_API_HOST`` exactly as it would to SendGrid.
Every request on any path and method is recorded. ``POST /v3/mail/send`` answers 202 with a fresh
``X-Message-Id`` unless a scripted response is queued; other paths answer 404.

Scripting: queued responses are used first, one per request and in order, whatever the path::

    fake.enqueue(400, {"errors": [{"message": "Invalid email", "field": "to"}]})
    fake.enqueue(429)
    fake.enqueue(202, delay=5.0)   # answers late, e.g. past a client's timeout
    fake.enqueue_disconnect()      # closes the connection without answering
    fake.enqueue_raw(b"garbage")   # writes these bytes instead of an HTTP response
    fake.enqueue_rate_limited(30)  # a 429 whose X-RateLimit-Reset is 30 s from now

Unscripted mail sends can also fail at random, deterministically from a seed (for tests that
check nothing is lost or sent twice under failures)::

    fake.fail_randomly(0.2, statuses=(500, 503), disconnect_share=0.25, seed=7)
    fake.fail_randomly(0)          # back to answering 202

:meth:`FakeSendGrid.accepted_personalizations` lists (delivery id, recipient, X-Message-Id) for
every personalization of every mail send answered with a 2xx: what SendGrid would deliver.
``FakeSendGrid(keep_bodies=False)`` keeps only those per-personalization facts instead of the
raw and parsed bodies (memory, for a million recipients).

Run it as a process of its own (the delivery benchmark does); it prints its port on one line
and serves until killed::

    python -m tests.fake_sendgrid --port 0 [--fail-rate 0.1 --seed 3] [--keep-bodies]

Such a process answers ``GET /__fake__/stats`` (counts) and ``GET /__fake__/accepted`` (the
accepted delivery ids) for the process that drives it; requests under ``/__fake__/`` are not
recorded and use no scripted answer.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAIL_SEND_PATH = "/v3/mail/send"
CONTROL_PREFIX = "/__fake__/"
# The per-personalization facts kept of a mail send: (delivery id, recipient address).
Recipients = list[tuple[str | None, str | None]]


@dataclass
class RecordedRequest:
    """One request as the fake received it, and what it answered."""

    method: str
    path: str
    # Header names as sent (HTTP names are case-insensitive; the client's spelling is kept).
    headers: dict[str, str]
    raw_body: bytes
    # The parsed JSON body, or None when the body is empty or not JSON.
    body: Any
    # Filled in once the answer is chosen (None for a disconnect or raw bytes).
    response_status: int | None = None
    message_id: str | None = None
    # With ``keep_bodies=False``: a mail send's (delivery id, address) per personalization,
    # kept instead of the bodies.
    kept_recipients: Recipients | None = None

    def recipients(self) -> Recipients:
        """(delivery id, recipient address) for each personalization of a mail send body."""
        if self.kept_recipients is not None:
            return self.kept_recipients
        return _recipients_of(self.body)

    def header(self, name: str) -> str | None:
        """Return the header ``name`` regardless of case, or None."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


@dataclass
class CannedResponse:
    """A scripted answer to the next request."""

    status: int = 202
    body: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    # "respond" (normal), "disconnect" (close without answering), "raw" (write raw bytes).
    mode: str = "respond"
    raw: bytes = b""


def _recipients_of(body: Any) -> Recipients:
    """(``custom_args.delivery_id``, first ``to`` address) of each personalization in a Mail
    Send body (None for what a personalization lacks)."""
    if not isinstance(body, dict) or not isinstance(body.get("personalizations"), list):
        return []
    found: Recipients = []
    for item in body["personalizations"]:
        item = item if isinstance(item, dict) else {}
        args = item.get("custom_args") if isinstance(item.get("custom_args"), dict) else {}
        to = item.get("to") if isinstance(item.get("to"), list) else []
        first = to[0] if to and isinstance(to[0], dict) else {}
        delivery_id = args.get("delivery_id")
        found.append((None if delivery_id is None else str(delivery_id), first.get("email")))
    return found


class FakeSendGrid:
    """A scriptable fake SendGrid API server; start it with :meth:`start` or use the fixture.

    :param keep_bodies: keep each request's raw and parsed body (the default); when False,
        keep only the per-personalization facts of mail sends (see ``RecordedRequest``).
    """

    def __init__(self, keep_bodies: bool = True) -> None:
        self.keep_bodies = keep_bodies
        # Unscripted mail sends fail at this rate (see fail_randomly).
        self._failure_rate = 0.0
        self._failure_statuses: tuple[int, ...] = (500, 503)
        self._disconnect_share = 0.0
        self._random = random.Random(0)
        self.requests: list[RecordedRequest] = []
        self._canned: collections.deque[CannedResponse] = collections.deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        # Set on stop() so a handler sleeping through a delay wakes up at once.
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeSendGrid:
        """Bind ``port`` (0: a free one) on 127.0.0.1 and serve in a daemon thread."""
        self._stopping.clear()
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-sendgrid",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed handlers and release the port."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._server is None:
            raise RuntimeError("the fake SendGrid server is not running")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The base address to give the client as its host, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    # -- scripting -------------------------------------------------------------------------

    def enqueue(
        self,
        status: int,
        body: Any = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next unscripted request with ``status`` and the JSON ``body``.

        :param delay: seconds to wait before answering (to outlast a client's timeout).
        :param headers: extra response headers; a 2xx answer gets a fresh ``X-Message-Id``
            unless this names one.
        """
        self._push(CannedResponse(status=status, body=body, delay=delay, headers=headers or {}))

    def enqueue_disconnect(self, delay: float = 0.0) -> None:
        """Close the next connection after reading the request, without answering."""
        self._push(CannedResponse(mode="disconnect", delay=delay))

    def enqueue_raw(self, data: bytes, delay: float = 0.0) -> None:
        """Write ``data`` verbatim as the next answer, then close (for malformed responses)."""
        self._push(CannedResponse(mode="raw", raw=data, delay=delay))

    def enqueue_rate_limited(self, reset_in_seconds: float, limit: int = 600) -> None:
        """Answer the next request with a 429 whose ``X-RateLimit-Reset`` (unix seconds) lies
        ``reset_in_seconds`` ahead, as SendGrid does when a rate limit is exhausted."""
        self.enqueue(
            429,
            {"errors": [{"field": None, "message": "too many requests"}]},
            headers={
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time() + reset_in_seconds)),
            },
        )

    def fail_randomly(
        self,
        rate: float,
        statuses: Iterable[int] = (500, 503),
        disconnect_share: float = 0.0,
        seed: int = 0,
    ) -> None:
        """Answer ``rate`` (0 to 1) of the unscripted mail sends with a failure from here on.

        The draws come from a random generator seeded with ``seed``, so the n-th unscripted mail
        send fails or not the same way on every run. A failure is one of ``statuses`` (chosen
        at random), or, for ``disconnect_share`` of the failures, a connection closed after the
        body was read (the client cannot tell whether it was sent). ``rate=0`` switches it off.
        """
        if not 0 <= rate <= 1 or not 0 <= disconnect_share <= 1:
            raise ValueError("rate and disconnect_share are shares between 0 and 1")
        chosen = tuple(statuses)
        if rate and not chosen and disconnect_share < 1:
            raise ValueError("give at least one status to fail with")
        with self._lock:
            self._failure_rate = rate
            self._failure_statuses = chosen
            self._disconnect_share = disconnect_share
            self._random = random.Random(seed)

    def reset(self) -> None:
        """Forget recorded requests and queued responses (a failure rate stays set)."""
        with self._lock:
            self.requests.clear()
            self._canned.clear()

    def accepted_personalizations(self) -> list[tuple[str | None, str | None, str | None]]:
        """(delivery id, recipient address, X-Message-Id) for every personalization of every
        mail send answered with a 2xx, in the order the requests arrived: what SendGrid would
        deliver (a 2xx the client never read, after a delay past its timeout, counts too)."""
        accepted = []
        for request in self.mail_sends:
            if request.response_status is not None and 200 <= request.response_status < 300:
                accepted.extend(
                    (delivery_id, email, request.message_id)
                    for delivery_id, email in request.recipients()
                )
        return accepted

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests were recorded; return a copy of them.

        Raises ``TimeoutError`` when fewer arrived within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self.requests)} of {count} requests arrived")
                self._arrived.wait(remaining)
            return list(self.requests)

    @property
    def mail_sends(self) -> list[RecordedRequest]:
        """The recorded ``POST /v3/mail/send`` requests."""
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path == MAIL_SEND_PATH]

    # -- used by the handler ---------------------------------------------------------------

    def _push(self, canned: CannedResponse) -> None:
        with self._lock:
            self._canned.append(canned)

    def _record(self, request: RecordedRequest) -> CannedResponse | None:
        """Record ``request`` and return the scripted answer for it, if any (a random failure
        for an unscripted mail send, when :meth:`fail_randomly` asked for them)."""
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
            if self._canned:
                return self._canned.popleft()
            if self._failure_rate and request.method == "POST" and request.path == MAIL_SEND_PATH:
                return self._random_failure()
            return None

    def _random_failure(self) -> CannedResponse | None:
        """Draw whether this mail send fails, and how (the lock is held)."""
        if self._random.random() >= self._failure_rate:
            return None
        if not self._failure_statuses or self._random.random() < self._disconnect_share:
            return CannedResponse(mode="disconnect")
        status = self._random.choice(self._failure_statuses)
        return CannedResponse(
            status=status, body={"errors": [{"field": None, "message": "injected failure"}]}
        )

    def stats(self) -> dict[str, Any]:
        """Counts for a driving process: requests, mail sends by answer, accepted recipients."""
        sends = self.mail_sends
        statuses = collections.Counter(
            "disconnect" if r.response_status is None else str(r.response_status) for r in sends
        )
        return {
            "requests": len(self.requests),
            "mail_sends": len(sends),
            "statuses": dict(statuses),
            "accepted_personalizations": len(self.accepted_personalizations()),
        }

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Don't hold the port after stop(), so many fixtures in a row never collide.
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up before a delayed answer is expected, not an error.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSendGrid
    server_version = "FakeSendGrid/1.0"
    # Each connection answers one request and closes, like a request through urllib.
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; tests read ``requests`` instead."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        raw = self._read_body()
        if self.path.startswith(CONTROL_PREFIX):
            self._control()
            return
        try:
            parsed = json.loads(raw.decode("utf-8")) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        recorded = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=dict(self.headers.items()),
            raw_body=raw,
            body=parsed,
        )
        if not self.fake.keep_bodies:
            recorded.kept_recipients = _recipients_of(parsed) if self.path == MAIL_SEND_PATH else []
            recorded.raw_body, recorded.body = b"", None
        canned = self.fake._record(recorded)
        if canned is None:
            if self.command == "POST" and self.path == MAIL_SEND_PATH:
                canned = CannedResponse(status=202)
            else:
                canned = CannedResponse(
                    status=404, body={"errors": [{"field": None, "message": "not found"}]}
                )
        self.fake._sleep(canned.delay)
        if canned.mode == "disconnect":
            self.close_connection = True
            return
        if canned.mode == "raw":
            self.wfile.write(canned.raw)
            self.wfile.flush()
            self.close_connection = True
            return
        self._respond(recorded, canned)

    def _control(self) -> None:
        """Answer a driving process's question (not recorded, no scripted answer used)."""
        if self.command == "GET" and self.path == CONTROL_PREFIX + "stats":
            payload: Any = self.fake.stats()
        elif self.command == "GET" and self.path == CONTROL_PREFIX + "accepted":
            payload = {"delivery_ids": [d for d, _e, _m in self.fake.accepted_personalizations()]}
        elif self.command == "POST" and self.path == CONTROL_PREFIX + "reset":
            self.fake.reset()
            payload = {"reset": True}
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps(payload).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _respond(self, recorded: RecordedRequest, canned: CannedResponse) -> None:
        payload = b"" if canned.body is None else json.dumps(canned.body).encode("utf-8")
        headers = dict(canned.headers)
        if 200 <= canned.status < 300 and not any(k.lower() == "x-message-id" for k in headers):
            headers["X-Message-Id"] = uuid.uuid4().hex[:22]
        recorded.response_status = canned.status
        recorded.message_id = next(
            (v for k, v in headers.items() if k.lower() == "x-message-id"), None
        )
        self.send_response(canned.status)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)


def main(argv: list[str] | None = None) -> None:
    """Serve a fake SendGrid until killed, printing the port it listens on."""
    parser = argparse.ArgumentParser(description="A local fake of SendGrid's v3 API.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of mail sends failing")
    parser.add_argument(
        "--disconnect-share", type=float, default=0.0, help="share of failures that disconnect"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the failure draws")
    parser.add_argument(
        "--keep-bodies", action="store_true", help="keep request bodies (memory grows with them)"
    )
    args = parser.parse_args(argv)
    fake = FakeSendGrid(keep_bodies=args.keep_bodies)
    fake.fail_randomly(args.fail_rate, disconnect_share=args.disconnect_share, seed=args.seed)
    fake.start(port=args.port)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    print(fake.port, flush=True)
    stopped.wait()
    fake.stop()


if __name__ == "__main__":
    main()
