"""Consent receipts: signed with HMAC-SHA256, verifiable later.

A receipt is a JSON document whose fields follow the Kantara Initiative's Consent Receipt
Specification (receipt id, time, jurisdiction, collection method, controller, the form and the
SHA-256 of its text, each scope with its decision, the participant's pseudonymous id). The
platform signs it: ``signature.value`` is the HMAC-SHA256 (hex), under ``CONSENT_RECEIPT_KEY``,
of the canonical JSON (keys sorted, no white space, UTF-8) of the document without its
``signature`` member. ``signature.key_id`` names the key (the first 16 hex digits of its
SHA-256) so a verifier can tell a receipt signed under an older key from a forged one.

Verifying is strict: a receipt file is parsed refusing members named twice (plain JSON parsing
keeps the last one silently, so a person reading the file and the verifier could see different
values), and its members and their types must be exactly those of the format, the signature's
too (an extra member would be read by people but covered by no signature).
"""

from __future__ import annotations

import hashlib
import hmac
import json
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


class ReceiptFormatError(ValueError):
    """The text is not a well-formed consent receipt (its reason is a plain sentence)."""


# The members of a receipt of RECEIPT_FORMAT and the types of their values (a tuple: any of
# them; None: JSON null). Nothing else is allowed: a verifier must read exactly what was signed.
_TEXT = str
_OPTIONAL_TEXT = (str, type(None))
SIGNATURE_MEMBERS: dict[str, Any] = {"algorithm": _TEXT, "key_id": _TEXT, "value": _TEXT}
FORM_MEMBERS: dict[str, Any] = {
    "version": int,
    "title": _TEXT,
    "language": _TEXT,
    "ethics_reference": _OPTIONAL_TEXT,
    "published_at": _OPTIONAL_TEXT,
    "text_sha256": _TEXT,
}
SCOPE_MEMBERS: dict[str, Any] = {
    "code": _TEXT,
    "title": _TEXT,
    "kind": _TEXT,
    "duo_code": _OPTIONAL_TEXT,
    "required": bool,
    "revision": int,
    "decision": _OPTIONAL_TEXT,
    "permitted": bool,
    "changed_now": bool,
}
RECEIPT_MEMBERS: dict[str, Any] = {
    "format": _TEXT,
    "receipt_id": _TEXT,
    "issued_at": _TEXT,
    "jurisdiction": _TEXT,
    "controller": {"name": _TEXT},
    "collection_method": _TEXT,
    "recorded_by_staff": bool,
    "participant": _TEXT,
    "form": FORM_MEMBERS,
    "taking_part": bool,
    "scopes": [SCOPE_MEMBERS],
    "signature": SIGNATURE_MEMBERS,
}
OPTIONAL_RECEIPT_MEMBERS: dict[str, Any] = {"paper_reference": _TEXT}
_HEX = frozenset("0123456789abcdef")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing a member named twice (json keeps the last silently, so
    a reader and the verifier could see different values)."""
    document: dict[str, Any] = {}
    for name, value in pairs:
        if name in document:
            raise ReceiptFormatError(f"the member {name!r} appears twice in one object")
        document[name] = value
    return document


def _reject_constant(name: str) -> Any:
    raise ReceiptFormatError(f"{name} is not a JSON number")


def load(text: str | bytes) -> Any:
    """Parse a receipt file's JSON, refusing what plain JSON parsing would let through
    ambiguously: a member named twice in an object, and NaN or Infinity.

    :raises ReceiptFormatError: the text is not strict JSON.
    """
    try:
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except RecursionError:
        raise ReceiptFormatError("the JSON is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReceiptFormatError(f"not valid JSON ({exc})") from None


def _type_matches(value: Any, expected: Any) -> bool:
    """Whether ``value`` has the JSON type ``expected`` (booleans are not numbers here)."""
    if isinstance(expected, tuple):
        return any(_type_matches(value, option) for option in expected)
    if expected is int:
        return type(value) is int
    return isinstance(value, expected)


def _shape_problem(
    value: Any, shape: Any, where: str, optional: Mapping[str, Any] | None = None
) -> str | None:
    """Why ``value`` does not have ``shape`` (members and types), or None when it does."""
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where} is not a list"
        for number, item in enumerate(value, start=1):
            problem = _shape_problem(item, shape[0], f"{where} item {number}")
            if problem:
                return problem
        return None
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where} is not an object"
        allowed = {**shape, **(optional or {})}
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            return f"{where} has members a receipt does not have: {', '.join(unknown)}"
        missing = sorted(set(shape) - set(value))
        if missing:
            return f"{where} lacks the members {', '.join(missing)}"
        for name, member in allowed.items():
            if name in value:
                problem = _shape_problem(value[name], member, f"{where} member {name!r}")
                if problem:
                    return problem
        return None
    if not _type_matches(value, shape):
        return f"{where} has a value of the wrong type"
    return None


def shape_problem(document: Any) -> str | None:
    """Why ``document`` is not shaped as a receipt of :data:`RECEIPT_FORMAT` (unknown or
    missing members, wrong types, a malformed signature), or None when it is."""
    if not isinstance(document, dict):
        return "this is not a consent receipt (not a JSON object)"
    if document.get("format") != RECEIPT_FORMAT:
        return f"unknown receipt format {document.get('format')!r}"
    problem = _shape_problem(document, RECEIPT_MEMBERS, "the receipt", OPTIONAL_RECEIPT_MEMBERS)
    if problem:
        return problem
    signature = document["signature"]
    if signature["algorithm"] != SIGNATURE_ALGORITHM:
        return f"unknown signature algorithm {signature['algorithm']!r}"
    if len(signature["key_id"]) != 16 or not set(signature["key_id"]) <= _HEX:
        return "the signature's key_id is not 16 lowercase hexadecimal digits"
    if len(signature["value"]) != 64 or not set(signature["value"]) <= _HEX:
        return "the signature's value is not 64 lowercase hexadecimal digits"
    return None


def verify(document: Any, key: str) -> ReceiptCheck:
    """Check a receipt's shape and signature against ``key``; say why it fails when it does.

    Give it what :func:`load` parsed from a file: ``json.loads`` keeps the last of duplicate
    members, which this function can no longer see.
    """
    if (
        isinstance(document, dict)
        and document.get("format") == RECEIPT_FORMAT
        and not isinstance(document.get("signature"), dict)
    ):
        return ReceiptCheck(False, "the receipt has no signature")
    problem = shape_problem(document)
    if problem:
        return ReceiptCheck(False, problem)
    signature = document["signature"]
    if signature["key_id"] != key_id(key):
        return ReceiptCheck(
            False, f"signed with another key ({signature['key_id']!r}), not this platform's"
        )
    try:
        expected = _mac(document, key)
    except (TypeError, ValueError):
        return ReceiptCheck(False, "the receipt holds values that are not plain JSON")
    if not hmac.compare_digest(expected, signature["value"]):
        return ReceiptCheck(False, "the signature does not match: the receipt was changed")
    return ReceiptCheck(True, "the signature is valid: the platform issued this receipt as it is")


def verify_text(text: str | bytes, key: str) -> ReceiptCheck:
    """Parse a receipt file strictly (:func:`load`) and verify it (:func:`verify`)."""
    try:
        document = load(text)
    except ReceiptFormatError as exc:
        return ReceiptCheck(False, str(exc))
    return verify(document, key)
