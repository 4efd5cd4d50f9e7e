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
"""

from __future__ import annotations

import collections
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAIL_SEND_PATH = "/v3/mail/send"


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


class FakeSendGrid:
    """A scriptable fake SendGrid API server; start it with :meth:`start` or use the fixture."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._canned: collections.deque[CannedResponse] = collections.deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        # Set on stop() so a handler sleeping through a delay wakes up at once.
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeSendGrid:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        self._stopping.clear()
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
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

    def reset(self) -> None:
        """Forget recorded requests and queued responses."""
        with self._lock:
            self.requests.clear()
            self._canned.clear()

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
        """Record ``request`` and return the scripted answer for it, if any."""
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
            return self._canned.popleft() if self._canned else None

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
