"""Consent receipts: signed with HMAC-SHA256, verifiable later.

A receipt is a JSON document whose fields follow the Kantara Initiative's Consent Receipt
Specification (receipt id, time, jurisdiction, collection method, controller, the form and the
SHA-256 of its text, each scope with its decision, the participant's pseudonymous id). The
platform signs it: ``signature.value`` is the HMAC-SHA256 (hex), under ``CONSENT_RECEIPT_KEY``,
of the canonical JSON (keys sorted, no white space, UTF-8) of the document without its
``signature`` member. ``signature.key_id`` names the key (the first 16 hex digits of its
SHA-256) so a verifier can tell a receipt signed under an older key from a forged one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engage.hashchain import canonical_json

RECEIPT_FORMAT = "engage-consent-receipt/1"
SIGNATURE_ALGORITHM = "HMAC-SHA256"


@dataclass(frozen=True)
class ReceiptIssuer:
    """Who issues receipts and with which key (from the app's configuration)."""

    key: str
    jurisdiction: str
    controller: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ReceiptIssuer:
        """The issuer configured by ``CONSENT_RECEIPT_KEY``, ``CONSENT_JURISDICTION`` and
        ``CONSENT_CONTROLLER``."""
        return cls(
            key=config["CONSENT_RECEIPT_KEY"],
            jurisdiction=config["CONSENT_JURISDICTION"],
            controller=config["CONSENT_CONTROLLER"],
        )

    @property
    def key_id(self) -> str:
        """A public name for the key: the first 16 hex digits of its SHA-256."""
        return key_id(self.key)


def key_id(key: str) -> str:
    """The public name of ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _mac(document: Mapping[str, Any], key: str) -> str:
    unsigned = {name: value for name, value in document.items() if name != "signature"}
    return hmac.new(key.encode("utf-8"), canonical_json(unsigned), hashlib.sha256).hexdigest()


def sign(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``document`` with its ``signature`` member (any previous signature is replaced)."""
    signed = {name: value for name, value in document.items() if name != "signature"}
    signed["signature"] = {
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": key_id(key),
        "value": _mac(signed, key),
    }
    return signed


@dataclass(frozen=True)
class ReceiptCheck:
    """The outcome of verifying a receipt."""

    is_valid: bool
    reason: str


def verify(document: Any, key: str) -> ReceiptCheck:
    """Check a receipt's signature against ``key``; say why it fails when it does."""
    if not isinstance(document, dict):
        return ReceiptCheck(False, "this is not a consent receipt (not a JSON object)")
    signature = document.get("signature")
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        return ReceiptCheck(False, "the receipt has no signature")
    if signature.get("algorithm") != SIGNATURE_ALGORITHM:
        return ReceiptCheck(False, f"unknown signature algorithm {signature.get('algorithm')!r}")
    if document.get("format") != RECEIPT_FORMAT:
        return ReceiptCheck(False, f"unknown receipt format {document.get('format')!r}")
    if signature.get("key_id") != key_id(key):
        return ReceiptCheck(
            False, f"signed with another key ({signature.get('key_id')!r}), not this platform's"
        )
    try:
        expected = _mac(document, key)
    except (TypeError, ValueError):
        return ReceiptCheck(False, "the receipt holds values that are not plain JSON")
    if not hmac.compare_digest(expected, signature["value"]):
        return ReceiptCheck(False, "the signature does not match: the receipt was changed")
    return ReceiptCheck(True, "the signature is valid: the platform issued this receipt as it is")
