"""A participant's consent history as a JSON document they can download."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engage.consent.models import Decision
from engage.consent.page_queries import History
from engage.hashchain import timestamp

HISTORY_FORMAT = "engage-consent-history/1"


def history_document(
    history: History, *, now: datetime, jurisdiction: str, controller: str
) -> dict[str, Any]:
    """The whole history: current choices, every event with its hashes, versions, erasures.

    The participant appears only by their pseudonymous id.
    """
    versions = history.versions
    current_scopes = {
        code: scope
        for (version_id, code), scope in history.scopes.items()
        if version_id == history.current_version_id
    }
    current = []
    for choice in history.choices:
        scope = current_scopes.get(choice.scope_code)
        on_current_wording = scope is not None and scope.revision == choice.scope_revision
        current.append(
            {
                "scope_code": choice.scope_code,
                "title": scope.title if scope else None,
                "decision": choice.decision.value,
                "permitted": on_current_wording and choice.decision == Decision.PERMIT,
                "on_current_form": scope is not None,
                "needs_new_decision": scope is not None and not on_current_wording,
                "since": timestamp(choice.decided_at),
                "form_version": versions[choice.form_version_id].number
                if choice.form_version_id in versions
                else None,
            }
        )
    return {
        "format": HISTORY_FORMAT,
        "exported_at": timestamp(now),
        "jurisdiction": jurisdiction,
        "controller": {"name": controller},
        "participant": history.participant.pseudonym if history.participant else None,
        "current": current,
        "events": [
            {
                "seq": event.seq,
                "occurred_at": timestamp(event.occurred_at),
                "scope_code": event.scope_code,
                "decision": event.decision.value,
                "form_version": versions[event.form_version_id].number,
                "scope_revision": event.scope_revision,
                "collection_method": event.method.value,
                "recorded_by_staff": event.actor_id is not None,
                "receipt_id": event.receipt_id,
                "prev_hash": event.prev_hash,
                "hash": event.hash,
            }
            for event in history.events
        ],
        "form_versions": [
            {
                "version": version.number,
                "title": version.title,
                "language": version.language,
                "ethics_reference": version.ethics_reference,
                "published_at": timestamp(version.published_at) if version.published_at else None,
                "text_sha256": version.text_sha256,
                "is_current": version.id == history.current_version_id,
            }
            for version in sorted(versions.values(), key=lambda v: v.number)
        ],
        "erasure_requests": [
            {
                "status": request.status.value,
                "requested_at": timestamp(request.requested_at),
                "updated_at": timestamp(request.updated_at),
                "note": request.note,
            }
            for request in history.erasure_requests
        ],
    }
