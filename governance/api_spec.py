"""The OpenAPI 3.1 description of the registry API (:mod:`governance.api`), served at
/api/v1/openapi.json. The API's tests validate every answer they receive against it."""

from __future__ import annotations

import copy
import enum
from typing import Any

from governance.models import AnalysisMode, DecisionEventKind, ProposalStatus, ThreadStatus


class ApiDecision(enum.StrEnum):
    """The steps of a registry's decision a custodian records through the API (defined with
    the description, which :mod:`governance.api` imports)."""

    OPEN = "open"
    ASK_FOR_INFORMATION = "ask_for_information"
    APPROVE = "approve"
    APPROVE_WITH_CONDITIONS = "approve_with_conditions"
    DECLINE = "decline"
    WITHDRAW_APPROVAL = "withdraw_approval"


JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    """A closed object: every property listed is required unless ``required`` says otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


STRING = {"type": "string"}
MOMENT = {"type": "string", "format": "date-time"}
BOOLEAN = {"type": "boolean"}
INTEGER = {"type": "integer"}


def _values(enum_class: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [member.value for member in enum_class]}


SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": {"type": "string", "minLength": 1}}),
    "Registry": _object({"id": INTEGER, "code": STRING, "name": STRING}),
    "Cohort": _object(
        {
            "value": _nullable({"type": "integer", "minimum": 0}),
            "shown": STRING,
            "state": {"type": "string", "enum": ["counted", "suppressed", "unavailable"]},
            "note": _nullable(STRING),
        }
    ),
    "ProposalSummary": _object(
        {
            "id": INTEGER,
            "title": STRING,
            "proposal_status": _values(ProposalStatus),
            "thread_id": INTEGER,
            "status": _values(ThreadStatus),
            "status_label": STRING,
            "is_open": BOOLEAN,
            "is_paused": BOOLEAN,
            "is_past_deadline": BOOLEAN,
            "deadline": MOMENT,
            "decided_at": _nullable(MOMENT),
            "cohort": _ref("Cohort"),
        }
    ),
    "ProposalList": _object(
        {
            "registry": _ref("Registry"),
            "proposals": {"type": "array", "items": _ref("ProposalSummary")},
        }
    ),
    "Event": _object(
        {
            "seq": {"type": "integer", "minimum": 1},
            "kind": _values(DecisionEventKind),
            "kind_label": STRING,
            "occurred_at": MOMENT,
            "text": _nullable(STRING),
        }
    ),
    "Thread": _object(
        {
            "id": INTEGER,
            "registry": _ref("Registry"),
            "status": _values(ThreadStatus),
            "status_label": STRING,
            "is_open": BOOLEAN,
            "is_paused": BOOLEAN,
            "deadline": MOMENT,
            "decided_at": _nullable(MOMENT),
            "conditions": _nullable(STRING),
            "events": {"type": "array", "items": _ref("Event")},
        }
    ),
    "OtherDecision": _object(
        {
            "registry": _ref("Registry"),
            "status": _values(ThreadStatus),
            "status_label": STRING,
            "decided_at": _nullable(MOMENT),
        }
    ),
    "ProposalDetail": _object(
        {
            "id": INTEGER,
            "title": STRING,
            "status": _values(ProposalStatus),
            "status_label": STRING,
            "lead_researcher": STRING,
            "institution": STRING,
            "sponsor": STRING,
            "plain_summary": {"type": "string", "description": "Markdown source"},
            "scientific_summary": {"type": "string", "description": "Markdown source"},
            "language": STRING,
            "analysis_mode": _values(AnalysisMode),
            "ethics_reference": STRING,
            "decision_deadline": MOMENT,
            "sent_at": _nullable(MOMENT),
            "scopes": {"type": "array", "items": STRING},
            "variables": {
                "type": "array",
                "items": _object({"code": STRING, "name": STRING, "domain": STRING}),
            },
            "cohort": _ref("Cohort"),
            "thread": _ref("Thread"),
            "others_visible": {
                "type": "boolean",
                "description": "False while blind review hides the other registries' decisions "
                "(until this registry has decided or its deadline passed).",
            },
            "others": {"type": "array", "items": _ref("OtherDecision")},
        }
    ),
    "DecisionRequest": _object(
        {
            "decision": _values(ApiDecision),
            "text": {
                "type": ["string", "null"],
                "maxLength": 5000,
                "description": "The question, the conditions or the reason; required for "
                "ask_for_information, approve_with_conditions, decline and withdraw_approval; "
                "not taken by open and approve.",
            },
        },
        required=["decision"],
    ),
    "DecisionRecorded": _object(
        {
            "proposal_id": INTEGER,
            "event": _ref("Event"),
            "thread": _ref("Thread"),
            "others_visible": BOOLEAN,
            "others": {"type": "array", "items": _ref("OtherDecision")},
        }
    ),
}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": _ref("Error")}},
    }
    if headers:
        response["headers"] = headers
    return response


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema)}}}


RESPONSES: dict[str, Any] = {
    "Unauthorized": _error(
        "No token, or one that is malformed, unknown or revoked, or whose owner is no longer an "
        "approved, active data custodian.",
        {
            "WWW-Authenticate": {
                "required": True,
                "schema": {"type": "string", "pattern": "^Bearer"},
            }
        },
    ),
    "NotFound": _error(
        "No such proposal was sent to your registry (whether it exists elsewhere is not said)."
    ),
    "TooManyRequests": _error("Too many requests for this token or address; slow down."),
    "ServerError": _error("An error on the server's side; nothing was changed."),
    "Unavailable": _error(
        "The database is briefly unavailable.",
        {"Retry-After": {"required": True, "schema": {"type": "string"}}},
    ),
}


def _common(*extra: tuple[str, str]) -> dict[str, Any]:
    """Answers every authenticated endpoint may give, plus ``extra`` (status, response name)."""
    responses = {
        "401": {"$ref": "#/components/responses/Unauthorized"},
        "429": {"$ref": "#/components/responses/TooManyRequests"},
        "500": {"$ref": "#/components/responses/ServerError"},
        "503": {"$ref": "#/components/responses/Unavailable"},
    }
    for status, name in extra:
        responses[status] = {"$ref": f"#/components/responses/{name}"}
    return responses


PROPOSAL_ID = {
    "name": "proposal_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Engage registry API",
        "version": "1.0.0",
        "description": "For the data custodians of a registry of the MS research network: the "
        "proposals sent to their registry, and their registry's decisions. Authenticate with an "
        "API token created at /governance/tokens, sent as `Authorization: Bearer <token>`; it acts "
        'with exactly its owner\'s rights. Every error is JSON: `{"error": "..."}`. Requests are '
        "rate-limited per token and per address (429).",
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearerAuth": []}],
    "paths": {
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI document",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    },
                    "429": {"$ref": "#/components/responses/TooManyRequests"},
                    "500": {"$ref": "#/components/responses/ServerError"},
                },
            }
        },
        "/proposals": {
            "get": {
                "operationId": "listProposals",
                "summary": "The proposals sent to my registry",
                "description": "Open threads first, each group by deadline. The cohort is the "
                "registry's consent-filtered eligible count, suppressed below its small-cell "
                'threshold (value null, shown as "fewer than N").',
                "responses": {"200": _ok("My registry's proposals", "ProposalList"), **_common()},
            }
        },
        "/proposals/{proposal_id}": {
            "parameters": [PROPOSAL_ID],
            "get": {
                "operationId": "getProposal",
                "summary": "One proposal with my registry's thread",
                "description": "Details, consent scopes, variables, cohort, my registry's thread "
                "and its events; the other registries' status and decision time only once my "
                "registry has decided (blind review), never their texts.",
                "responses": {
                    "200": _ok("The proposal", "ProposalDetail"),
                    **_common(("404", "NotFound")),
                },
            },
        },
        "/proposals/{proposal_id}/decision": {
            "parameters": [PROPOSAL_ID],
            "post": {
                "operationId": "recordDecision",
                "summary": "Record a step of my registry's decision",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("DecisionRequest")}},
                },
                "responses": {
                    "201": _ok("The step was recorded", "DecisionRecorded"),
                    "400": _error(
                        "The body is not JSON, not an object, has unknown fields or wrong types, "
                        "or names an unknown decision."
                    ),
                    "409": _error(
                        "The thread's state refuses this step (already decided, decisions "
                        "closed, deadline passed); nothing was changed."
                    ),
                    "413": _error("The body is too large."),
                    "415": _error("The body is not sent as application/json."),
                    "422": _error(
                        "A required text (reason, conditions, question) is missing or too long."
                    ),
                    **_common(("404", "NotFound")),
                },
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An Engage API token: eng_ and 43 URL-safe characters.",
            }
        },
        "schemas": SCHEMAS,
        "responses": RESPONSES,
    },
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document (a copy: callers may change it)."""
    return copy.deepcopy(DOCUMENT)
