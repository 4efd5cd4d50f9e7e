"""A participant's consent history as a FHIR R4 ``Bundle`` of ``Consent`` resources.

One ``Consent`` per scope decision (each event of the ledger):

- ``status``: ``active`` for the decision that stands now, ``inactive`` for replaced ones;
- ``scope``: ``research``; ``category``: LOINC 59284-0 (patient consent) and the consent
  category ``research``;
- ``patient``: the participant's pseudonymous id (an identifier, never a name or email);
- ``dateTime``: when the decision was recorded; ``performer``: the participant, or the
  coordination centre for a paper form recorded by staff; ``organization``: the controller;
- ``policy``: the form version's public page (with the SHA-256 of its text as the fragment);
  ``policyRule``: the version's name;
- ``provision.type``: ``permit`` for "permit", ``deny`` for "deny" and "withdraw";
  ``provision.code``: the Engage scope code; ``provision.purpose``: the scope's GA4GH Data Use
  Ontology term (and, for a disease-specific term, its MONDO disease), where one fits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engage.consent.duo import DUO_SYSTEM, DUO_TERMS, MONDO_SYSTEM
from engage.consent.models import CollectionMethod, Decision
from engage.consent.page_queries import History
from engage.hashchain import timestamp

PARTICIPANT_SYSTEM = "urn:engage:participant-pseudonym"
CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
LOINC_SYSTEM = "http://loinc.org"


def _purposes(duo_code: str | None) -> list[dict[str, str]]:
    term = DUO_TERMS.get(duo_code or "")
    if term is None:
        return []
    codings = [{"system": DUO_SYSTEM, "code": term.duo_id, "display": term.label}]
    if term.disease_id:
        codings.append(
            {"system": MONDO_SYSTEM, "code": term.disease_id, "display": term.disease_label}
        )
    return codings


def consent_bundle(
    history: History, *, base_url: str, controller: str, now: datetime
) -> dict[str, Any]:
    """The FHIR R4 ``Bundle`` (type ``collection``) of ``history``'s decisions."""
    base_url = base_url.rstrip("/")
    scope_system = f"{base_url}/fhir/CodeSystem/consent-scopes"
    pseudonym = history.participant.pseudonym if history.participant else None
    standing = {choice.event_id for choice in history.choices}
    entries = []
    for event in history.events:
        version = history.versions[event.form_version_id]
        scope = history.scopes.get((event.form_version_id, event.scope_code))
        resource_id = f"{pseudonym}-{event.seq}"  # FHIR ids: at most 64 of [A-Za-z0-9.-]
        provision: dict[str, Any] = {
            "type": "permit" if event.decision == Decision.PERMIT else "deny",
            "period": {"start": timestamp(event.occurred_at)},
            "code": [
                {
                    "coding": [
                        {
                            "system": scope_system,
                            "code": event.scope_code,
                            "display": scope.title if scope else event.scope_code,
                        }
                    ],
                    "text": f"{event.decision.label}: {scope.title if scope else event.scope_code}",
                }
            ],
        }
        purposes = _purposes(scope.duo_code if scope else None)
        if purposes:
            provision["purpose"] = purposes
        performer = (
            {"display": f"{controller} (paper form recorded by staff)"}
            if event.method == CollectionMethod.PAPER
            else {"identifier": {"system": PARTICIPANT_SYSTEM, "value": pseudonym}}
        )
        resource = {
            "resourceType": "Consent",
            "id": resource_id,
            "status": "active" if event.id in standing else "inactive",
            "scope": {
                "coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": "research"}],
            },
            "category": [
                {
                    "coding": [
                        {"system": LOINC_SYSTEM, "code": "59284-0", "display": "Patient Consent"}
                    ]
                },
                {"coding": [{"system": CONSENT_CATEGORY_SYSTEM, "code": "research"}]},
            ],
            "patient": {"identifier": {"system": PARTICIPANT_SYSTEM, "value": pseudonym}},
            "dateTime": timestamp(event.occurred_at),
            "performer": [performer],
            "organization": [{"display": controller}],
            "policy": [
                {
                    "authority": base_url,
                    "uri": f"{base_url}/consent/forms/{version.number}"
                    f"#sha256={version.text_sha256}",
                }
            ],
            "policyRule": {
                "text": f"Engage consent form, version {version.number}: {version.title}",
            },
            "provision": provision,
        }
        entries.append({"fullUrl": f"{base_url}/fhir/Consent/{resource_id}", "resource": resource})
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": timestamp(now),
        "entry": entries,
    }
