"""Signing SendGrid Event Webhook batches the way SendGrid does, for tests and benchmarks.

SendGrid signs each POST with an ECDSA P-256 key: the signature is base64(ECDSA-SHA256 over
``timestamp + body``), sent in ``X-Twilio-Email-Event-Webhook-Signature`` with the timestamp in
``X-Twilio-Email-Event-Webhook-Timestamp``. Its Mail Settings page shows the public key as
base64 DER (SubjectPublicKeyInfo without the PEM armour): what ``SENDGRID_WEBHOOK_PUBLIC_KEY``
holds and what :attr:`EventSigner.public_key` returns::

    signer = EventSigner()
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = signer.public_key
    response = post_events(client, [sendgrid_event("bounce", delivery)], signer)
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
WEBHOOK_PATH = "/newsletters/webhooks/sendgrid"


class EventSigner:
    """An EC P-256 key pair standing in for SendGrid's signing key."""

    def __init__(self) -> None:
        self._private_key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_key(self) -> str:
        """The public key as SendGrid shows it: base64 of its DER SubjectPublicKeyInfo."""
        der = self._private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    def signature(self, payload: str | bytes, timestamp: str) -> str:
        """base64(ECDSA-SHA256(timestamp + payload)), as SendGrid computes it."""
        body = payload.encode("utf-8") if isinstance(payload, str) else payload
        signed = self._private_key.sign(timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signed).decode("ascii")

    def headers(self, payload: str | bytes, timestamp: int | str | None = None) -> dict[str, str]:
        """The two signature headers for ``payload`` (timestamp: now, unless given)."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        return {
            SIGNATURE_HEADER: self.signature(payload, stamp),
            TIMESTAMP_HEADER: stamp,
        }


def sendgrid_event(
    kind: str,
    delivery: Any = None,
    *,
    delivery_id: int | str | None = None,
    send_id: int | str | None = None,
    event_id: str | None = None,
    timestamp: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One event as SendGrid posts it: custom args (``delivery_id``, ``send_id``) at the top
    level, an ``sg_event_id``, unix seconds, and the recipient's address.

    :param delivery: a ``Delivery`` row (or anything with ``id``, ``send_id`` and ``email``).
    """
    event: dict[str, Any] = {
        "email": getattr(delivery, "email", "someone@example.org"),
        "timestamp": int(time.time()) if timestamp is None else timestamp,
        "event": kind,
        "sg_event_id": event_id or uuid.uuid4().hex,
        "sg_message_id": f"{uuid.uuid4().hex[:22]}.filter0001",
        "category": ["newsletter"],
    }
    if delivery is not None:
        event["delivery_id"] = str(delivery.id)
        event["send_id"] = str(delivery.send_id)
        event["category"] = ["newsletter", f"send-{delivery.send_id}"]
    if delivery_id is not None:
        event["delivery_id"] = str(delivery_id)
    if send_id is not None:
        event["send_id"] = str(send_id)
    event.update(extra)
    return event


@dataclass
class WebhookAnswer:
    """The webhook's answer to a POST made over real HTTP."""

    status_code: int
    body: bytes

    @property
    def json(self) -> Any:
        """The answer's JSON body."""
        return json.loads(self.body or b"null")


def post_events(
    app_client_or_url: Any,
    events: list[Any] | str | bytes,
    signer: EventSigner,
    *,
    timestamp: int | str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """Sign ``events`` (a list, or a body given as is) and POST them to the webhook.

    :param app_client_or_url: a Flask test client (posts to the webhook's path; returns its
        response), or the webhook's full URL on a running server (returns a
        :class:`WebhookAnswer`).
    :param headers: replace or add headers after signing (e.g. a forged signature).
    """
    body = events if isinstance(events, str | bytes) else json.dumps(events)
    raw = body.encode("utf-8") if isinstance(body, str) else body
    sent = {"Content-Type": "application/json", **signer.headers(raw, timestamp), **(headers or {})}
    if not isinstance(app_client_or_url, str):
        return app_client_or_url.post(WEBHOOK_PATH, data=raw, headers=sent)
    request = urllib.request.Request(app_client_or_url, data=raw, headers=sent, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - test URL
            return WebhookAnswer(response.status, response.read())
    except urllib.error.HTTPError as error:
        return WebhookAnswer(error.code, error.read())
