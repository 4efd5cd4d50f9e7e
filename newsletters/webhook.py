"""SendGrid's Event Webhook: ``POST /newsletters/webhooks/sendgrid``.

SendGrid signs each batch (ECDSA over the timestamp header followed by the raw body) with the
key whose public half staff copy into ``SENDGRID_WEBHOOK_PUBLIC_KEY``. Nothing is read from a
batch before its signature is checked, and nothing unsigned is ever accepted: without a
configured key the endpoint answers 503. A timestamp further than
``NEWSLETTER_WEBHOOK_MAX_AGE_SECONDS`` (600) from now is refused, so a captured batch cannot
be replayed later.

The answers are small JSON objects (SendGrid reads only the status): 200 with the counts of
what was recorded; 401 without the signature headers; 403 for a bad signature or a stale
timestamp; 413 for a body over 5 MB; 400 for a body that is not a JSON array of objects;
503 when no key is configured. SendGrid retries non-2xx answers for 24 hours, so events that
are merely useless (an unknown delivery, an unknown kind) are counted as ignored with a 200.
"""

from __future__ import annotations

import binascii
import functools
import json
import logging
import time
from typing import Any

from flask import current_app, jsonify, request
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader
from werkzeug.exceptions import RequestEntityTooLarge

from engage.db import get_session
from engage.timeutil import utcnow
from newsletters import events
from newsletters.blueprints import newsletters_hooks

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_AGE_SECONDS = 600
# Problems with the configuration are logged once per process, not on every request.
_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


@functools.lru_cache(maxsize=4)
def _verifier(public_key: str) -> EventWebhook:
    """The verifier of ``public_key`` (parsing it costs more than checking a signature)."""
    return EventWebhook(public_key.strip())


def _answer(status: int, **body: Any):
    return jsonify(body), status


def _refusal(status: int, error: str):
    return _answer(status, error=error)


def _timestamp_is_fresh(timestamp: str, max_age: int) -> bool:
    """Whether ``timestamp`` (unix seconds, as SendGrid sends it) is within ``max_age`` of now."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    return abs(time.time() - int(timestamp)) <= max_age


def signature_is_valid(
    verifier: EventWebhook, payload: str, signature: str, timestamp: str
) -> bool:
    """Whether ``signature`` signs ``timestamp + payload`` (a malformed signature is not)."""
    try:
        return bool(verifier.verify_signature(payload, signature, timestamp))
    except (binascii.Error, ValueError, TypeError):
        return False


def _read_batch(raw: str) -> list[dict[str, Any]] | None:
    """The batch of events, or None when ``raw`` is not a JSON array of objects."""
    try:
        batch = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(batch, list) or not all(isinstance(item, dict) for item in batch):
        return None
    return batch


@newsletters_hooks.route("/webhooks/sendgrid", methods=["POST"])
def sendgrid_events():
    """Record a signed batch of SendGrid events (bounces, drops, spam reports, unsubscribes,
    processed and delivered messages)."""
    config = current_app.config
    public_key = config.get("SENDGRID_WEBHOOK_PUBLIC_KEY")
    if not public_key:
        _warn_once(
            "SendGrid events are refused: SENDGRID_WEBHOOK_PUBLIC_KEY is not set "
            "(copy the verification key from SendGrid's Mail Settings)"
        )
        return _refusal(503, "webhook not configured")
    try:
        verifier = _verifier(public_key)
    except (ValueError, TypeError):
        _warn_once("SendGrid events are refused: SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid key")
        return _refusal(503, "webhook not configured")

    signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
    timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
    if not signature or not timestamp:
        return _refusal(401, "signature headers missing")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _refusal(413, "body too large")
    # The app's limit is for forms; a batch of events may be larger (up to this view's own).
    request.max_content_length = MAX_BODY_BYTES
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _refusal(413, "body too large")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        return _refusal(400, "body is not UTF-8 text")

    max_age = int(config.get("NEWSLETTER_WEBHOOK_MAX_AGE_SECONDS", DEFAULT_MAX_AGE_SECONDS))
    if not _timestamp_is_fresh(timestamp, max_age):
        return _refusal(403, "timestamp missing or too old")
    if not signature_is_valid(verifier, payload, signature, timestamp):
        return _refusal(403, "signature does not match")

    batch = _read_batch(payload)
    if batch is None:
        return _refusal(400, "body is not a JSON array of events")
    session = get_session()
    summary = events.record_events(session, batch, utcnow(), config)
    session.commit()
    return _answer(200, **summary.counts())
