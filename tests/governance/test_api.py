"""The registry API (/api/v1): a custodian's token reads their registry's proposals and records
their registry's decisions, with exactly their page rights; every answer is JSON and every
answer these tests receive is validated against the OpenAPI document."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from jsonschema import Draft202012Validator
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_spec_validator import validate as validate_spec

from engage.accounts.models import CustodianStatus, Role, User
from engage.app import create_app
from engage.audit import AuditEvent
from engage.db import Database
from engage.timeutil import utcnow
from governance import chain, decisions, tokens
from governance.api_spec import ApiDecision, openapi_document
from governance.models import ApiToken, DecisionThread, ThreadStatus
from tests.conftest import sign_in
from tests.consent_support import publish
from tests.governance.support import audit_actions, ledger_size, make_proposal

DOCUMENT = openapi_document()
OPENAPI = OpenAPI.from_dict(DOCUMENT)
# Answers to addresses or methods the document does not describe must still be its Error.
ERROR_SCHEMA = Draft202012Validator(DOCUMENT["components"]["schemas"]["Error"])


class AnsweredRequest(WerkzeugOpenAPIRequest):
    """The request an answer was for: only its method and path matter (its body was read)."""

    @property
    def body(self) -> bytes | None:
        return None


def checked(response: Any) -> Any:
    """``response``, after checking it is JSON that the OpenAPI document allows (status, body
    and headers); answers outside the document's paths must be its Error object."""
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:200]
    assert response.headers["Cache-Control"] == "no-store"
    try:
        OPENAPI.validate_response(
            AnsweredRequest(response.request), WerkzeugOpenAPIResponse(response)
        )
    except (PathNotFound, OperationNotFound):
        assert response.status_code >= 400
        ERROR_SCHEMA.validate(response.get_json())
    return response


@pytest.fixture(autouse=True)
def chain_verifies(session):
    """Every test ends with a decision ledger that verifies."""
    yield
    session.rollback()
    assert chain.verify(session).problems == []


def new_token(session, user: User, name: str = "Registry sync") -> str:
    """A fresh token of ``user`` (committed); returns the secret."""
    created = tokens.create_token(session, session.get(User, user.id), name, utcnow())
    session.commit()
    return created.secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class World:
    """Two registries; one proposal sent to both, one only to the other registry; a custodian
    of each registry with a token."""

    def __init__(self, session, make_user, make_registry) -> None:
        self.mine = make_registry(code="MINE", name="My registry")
        self.other = make_registry(code="OTHER", name="Other registry")
        self.staff = make_user(Role.STAFF)
        self.custodian = make_user(Role.CUSTODIAN, registry=self.mine)
        self.other_custodian = make_user(Role.CUSTODIAN, registry=self.other)
        self.shared, (self.my_thread, self.other_thread) = make_proposal(
            session, self.staff, [self.mine, self.other]
        )
        self.elsewhere, _ = make_proposal(
            session, self.staff, [self.other], title="Only for the other registry"
        )
        self.token = new_token(session, self.custodian)
        self.other_token = new_token(session, self.other_custodian)


@pytest.fixture
def world(session, make_user, make_registry) -> World:
    return World(session, make_user, make_registry)


def get(client, path: str, secret: str | None) -> Any:
    return checked(client.get(f"/api/v1{path}", headers=bearer(secret) if secret else {}))


def decide(client, world: World, secret: str, body: Any, proposal_id: int | None = None) -> Any:
    proposal_id = world.shared.id if proposal_id is None else proposal_id
    return checked(
        client.post(f"/api/v1/proposals/{proposal_id}/decision", json=body, headers=bearer(secret))
    )


# The document ------------------------------------------------------------------------------
def test_the_openapi_document_is_valid_public_and_describes_every_api_route(app, client):
    validate_spec(DOCUMENT)
    response = checked(client.get("/api/v1/openapi.json"))
    assert response.status_code == 200
    assert response.get_json() == DOCUMENT
    documented = {
        (f"/api/v1{path}", method.upper())
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method != "parameters"
    }
    routes = {
        (rule.rule.replace("<int:proposal_id>", "{proposal_id}"), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("governance_api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routes == documented


# Reading -----------------------------------------------------------------------------------
def test_the_list_shows_only_my_registrys_proposals_with_their_cohort(
    client, session, world, make_user
):
    # With a published form and nobody enrolled, the count (0) is suppressed.
    publish(session, world.staff)
    counted, _ = make_proposal(
        session, world.staff, [world.mine], scopes=["MS_RESEARCH"], title="Counted"
    )

    response = get(client, "/proposals", world.token)

    assert response.status_code == 200
    body = response.get_json()
    assert body["registry"]["code"] == "MINE"
    by_id = {p["id"]: p for p in body["proposals"]}
    assert set(by_id) == {world.shared.id, counted.id}
    assert by_id[world.shared.id]["status"] == "sent"
    assert by_id[world.shared.id]["cohort"]["state"] == "unavailable"  # it names no scopes
    assert by_id[counted.id]["cohort"] == {
        "value": None,
        "shown": "fewer than 5",
        "state": "suppressed",
        "note": None,
    }


def test_blind_review_hides_the_other_registries_until_mine_has_decided(client, session, world):
    other = session.get(User, world.other_custodian.id)
    decisions.decline(
        session,
        other,
        session.get(DecisionThread, world.other_thread.id),
        "Too few data.",
        utcnow(),
    )
    session.commit()

    before = get(client, f"/proposals/{world.shared.id}", world.token).get_json()
    assert (before["others_visible"], before["others"]) == (False, [])
    assert before["thread"]["status"] == "sent"
    assert [e["kind"] for e in before["thread"]["events"]] == ["sent"]

    decided = decide(client, world, world.token, {"decision": "approve"})
    assert decided.status_code == 201
    after = get(client, f"/proposals/{world.shared.id}", world.token)

    body = after.get_json()
    assert body["thread"]["status"] == "approved"
    assert body["others_visible"] is True
    assert [(o["registry"]["code"], o["status"]) for o in body["others"]] == [("OTHER", "declined")]
    # Only their status and time: never what they wrote.
    assert "Too few data." not in after.get_data(as_text=True)


def test_another_registrys_proposal_is_not_found_like_a_missing_one(client, session, world):
    before = ledger_size(session)
    elsewhere = get(client, f"/proposals/{world.elsewhere.id}", world.token)
    missing = get(client, "/proposals/999999", world.token)
    deciding = decide(client, world, world.token, {"decision": "approve"}, world.elsewhere.id)
    malformed = decide(client, world, world.token, "not an object", world.elsewhere.id)

    assert [r.status_code for r in (elsewhere, missing, deciding, malformed)] == [404] * 4
    assert (
        elsewhere.get_json()["error"]
        == f"No proposal {world.elsewhere.id} was sent to your registry."
    )
    assert missing.get_json()["error"] == "No proposal 999999 was sent to your registry."
    assert ledger_size(session) == before


# Deciding ----------------------------------------------------------------------------------
def test_a_decline_is_recorded_in_the_chain_and_the_audit_log_as_the_tokens_owner(
    client, session, world
):
    response = decide(client, world, world.token, {"decision": "decline", "text": "No ethics."})

    assert response.status_code == 201
    body = response.get_json()
    assert body["event"]["kind"] == "declined" and body["event"]["text"] == "No ethics."
    assert body["thread"]["status"] == "declined"
    session.expire_all()
    assert session.get(DecisionThread, world.my_thread.id).status == ThreadStatus.DECLINED
    assert audit_actions(session)[-1] == "governance_declined"
    actor = session.scalar(
        sa.select(AuditEvent.actor_id).where(AuditEvent.action == "governance_declined")
    )
    assert actor == world.custodian.id


@pytest.mark.parametrize(
    ("steps", "statuses", "final"),
    [
        ([{"decision": "open"}], [201], "in_review"),
        ([{"decision": "ask_for_information", "text": "Which years?"}], [201], "info_requested"),
        (
            [{"decision": "approve_with_conditions", "text": "Cite the registry."}],
            [201],
            "conditions_set",
        ),
        ([{"decision": "approve"}, {"decision": "approve"}], [201, 409], "approved"),
        ([{"decision": "open"}, {"decision": "open"}], [201, 409], "in_review"),
        (
            [{"decision": "approve"}, {"decision": "withdraw_approval", "text": "Data withdrawn."}],
            [201, 201],
            "approval_withdrawn",
        ),
        ([{"decision": "withdraw_approval", "text": "Never approved."}], [409], "sent"),
        ([{"decision": "decline"}], [422], "sent"),
        ([{"decision": "decline", "text": "   "}], [422], "sent"),
        ([{"decision": "ask_for_information", "text": None}], [422], "sent"),
        ([{"decision": "decline", "text": "x" * 5001}], [422], "sent"),
        ([{"decision": "approve", "text": "A note"}], [400], "sent"),
        ([{"decision": "publish"}], [400], "sent"),
    ],
)
def test_each_decision_answers_with_the_thread_or_a_clear_refusal(
    client, session, world, steps, statuses, final
):
    answers = [decide(client, world, world.token, step) for step in steps]

    assert [a.status_code for a in answers] == statuses
    for answer in answers:
        if answer.status_code != 201:
            assert answer.get_json()["error"]
    session.expire_all()
    assert session.get(DecisionThread, world.my_thread.id).status == final


def test_a_passed_deadline_is_a_conflict(client, session, world):
    thread = session.get(DecisionThread, world.my_thread.id)
    thread.deadline = utcnow() - timedelta(minutes=1)
    session.commit()

    response = decide(client, world, world.token, {"decision": "approve"})

    assert response.status_code == 409
    assert "deadline passed" in response.get_json()["error"]


# Hostile requests --------------------------------------------------------------------------
HOSTILE_BODIES: dict[str, tuple[bytes, str, int]] = {
    "not JSON": (b"decision=approve", "application/json", 400),
    "empty": (b"", "application/json", 400),
    "an array": (b'["approve"]', "application/json", 400),
    "a string": (b'"approve"', "application/json", 400),
    "null": (b"null", "application/json", 400),
    "a number": (b"1e999", "application/json", 400),
    "NaN": (b'{"decision": "approve", "text": NaN}', "application/json", 400),
    "invalid UTF-8": (b'{"decision": "\xff\xfe"}', "application/json", 400),
    "NUL byte in text": (b'{"decision": "decline", "text": "a\\u0000b"}', "application/json", 400),
    "raw NUL byte": (b'{"decision": "decline\x00"}', "application/json", 400),
    "lone surrogate": (b'{"decision": "decline", "text": "\\ud800"}', "application/json", 400),
    "decision a number": (b'{"decision": 1}', "application/json", 400),
    "decision a list": (b'{"decision": ["approve"]}', "application/json", 400),
    "decision an object": (b'{"decision": {"$ne": null}}', "application/json", 400),
    "text a number": (b'{"decision": "decline", "text": 5}', "application/json", 400),
    "text an object": (b'{"decision": "decline", "text": {"a": 1}}', "application/json", 400),
    "unknown field": (b'{"decision": "approve", "registry_id": 1}', "application/json", 400),
    "deep nesting": (b"[" * 30_000 + b"]" * 30_000, "application/json", 400),
    "huge number": (b'{"decision": ' + b"9" * 10_000 + b"}", "application/json", 400),
    "too large": (b'{"text": "' + b"a" * 70_000 + b'"}', "application/json", 413),
    "larger than any request": (b"[" + b"0," * 600_000 + b"0]", "application/json", 413),
    "a form": (b"decision=approve", "application/x-www-form-urlencoded", 415),
    "no content type": (b'{"decision": "approve"}', "", 415),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
def test_hostile_bodies_are_refused_in_json_and_change_nothing(client, session, world, name):
    body, content_type, status = HOSTILE_BODIES[name]
    before = ledger_size(session)
    headers = bearer(world.token)
    if content_type:
        headers["Content-Type"] = content_type

    response = checked(
        client.post(f"/api/v1/proposals/{world.shared.id}/decision", data=body, headers=headers)
    )

    assert response.status_code == status
    assert ledger_size(session) == before


@pytest.mark.sqlite_only
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/nothing-here", 404),
        ("GET", "/api/v1", 404),
        ("DELETE", "/api/v1/proposals", 405),
        ("PUT", "/api/v1/proposals/1/decision", 405),
        ("GET", "/api/v1/proposals/1/decision", 405),
        ("POST", "/api/v1/proposals", 405),
        ("GET", "/api/v1/proposals/99999999999999", 404),
        ("GET", "/api/v1/proposals/-1", 404),
        ("GET", "/api/v1/proposals/%00", 404),
    ],
)
def test_unknown_addresses_and_methods_answer_in_json(app, client, method, path, status):
    response = checked(client.open(path, method=method))
    assert response.status_code == status


def test_an_unexpected_error_is_a_json_500(client, world, monkeypatch):
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("governance.queries.registry_inbox", broken)
    response = get(client, "/proposals", world.token)
    assert response.status_code == 500
    assert "went wrong" in response.get_json()["error"]


# Authentication ----------------------------------------------------------------------------
BAD_AUTHORIZATIONS = {
    "none": None,
    "empty": "",
    "basic scheme": "Basic dXNlcjpwYXNz",
    "scheme only": "Bearer",
    "not our format": "Bearer abc.def.ghi",
    "unknown token": "Bearer eng_" + "A" * 43,
    "prefix only": "Bearer eng_",
    "very long": "Bearer eng_" + "A" * 5000,
    "two tokens": "Bearer eng_" + "A" * 43 + " eng_" + "B" * 43,
}


@pytest.mark.parametrize("name", sorted(BAD_AUTHORIZATIONS))
def test_requests_without_a_valid_token_are_401_with_a_bearer_challenge(client, world, name):
    value = BAD_AUTHORIZATIONS[name]
    headers = {} if value is None else {"Authorization": value}
    before = [
        checked(client.get("/api/v1/proposals", headers=headers)),
        checked(client.get(f"/api/v1/proposals/{world.shared.id}", headers=headers)),
        checked(
            client.post(
                f"/api/v1/proposals/{world.shared.id}/decision",
                json={"decision": "approve"},
                headers=headers,
            )
        ),
    ]
    for response in before:
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json()["error"]


def test_a_signed_in_session_is_not_a_token(client, world):
    sign_in(client, world.custodian)
    response = get(client, "/proposals", None)
    assert response.status_code == 401


def test_a_revoked_token_stops_working_and_the_others_keep_working(client, session, world):
    spare = new_token(session, world.custodian, "Spare")
    assert get(client, "/proposals", world.token).status_code == 200
    token_id = session.scalar(
        sa.select(ApiToken.id).where(ApiToken.token_hash == tokens.token_hash(world.token))
    )
    tokens.revoke_token(session, session.get(User, world.custodian.id), token_id, utcnow())
    session.commit()

    refused = get(client, "/proposals", world.token)

    assert refused.status_code == 401
    assert "revoked" in refused.get_json()["error"]
    assert get(client, "/proposals", spare).status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"is_active": False},
        {"custodian_status": CustodianStatus.DECLINED},
        {"custodian_status": CustodianStatus.PENDING},
        {"role": Role.PARTICIPANT},
    ],
    ids=["deactivated", "declined", "pending", "no longer a custodian"],
)
def test_a_token_stops_working_when_its_owner_loses_custodian_rights(
    client, session, world, change
):
    owner = session.get(User, world.custodian.id)
    for name, value in change.items():
        setattr(owner, name, value)
    session.commit()

    response = get(client, "/proposals", world.token)

    assert response.status_code == 401
    assert "no longer an approved data custodian" in response.get_json()["error"]


def test_a_token_acts_for_its_owners_current_registry(client, session, world):
    # Staff moved the custodian to the other registry: the token follows their rights.
    owner = session.get(User, world.custodian.id)
    owner.custodian_registry_id = world.other.id
    session.commit()

    listed = get(client, "/proposals", world.token).get_json()
    assert {p["id"] for p in listed["proposals"]} == {world.shared.id, world.elsewhere.id}


def test_use_is_noted_at_most_once_a_minute(client, session, world):
    def last_used() -> Any:
        session.expire_all()
        return session.scalar(
            sa.select(ApiToken.last_used_at).where(
                ApiToken.token_hash == tokens.token_hash(world.token)
            )
        )

    assert last_used() is None
    get(client, "/proposals", world.token)
    first = last_used()
    get(client, "/proposals", world.token)
    assert first is not None and last_used() == first


# Rate limits -------------------------------------------------------------------------------
@pytest.fixture
def limited_app(database_url):
    """The app with rate limits on: 3 requests per token, 5 per address, per minute."""
    limited = create_app(
        {
            "ENGAGE_CONFIG": "testing",
            "DATABASE_URL": database_url,
            "RATELIMIT_ENABLED": True,
            "GOVERNANCE_API_TOKEN_RATE_LIMIT": "3 per minute",
            "GOVERNANCE_API_ADDRESS_RATE_LIMIT": "5 per minute",
        }
    )
    yield limited
    Database.engine(limited).dispose()


def test_requests_are_limited_per_token_and_per_address(limited_app, session, world):
    client = limited_app.test_client()

    first = [get(client, "/proposals", world.token).status_code for _ in range(4)]
    # Another token from the same address has its own count, until the address's limit.
    second = [get(client, "/proposals", world.other_token).status_code for _ in range(2)]
    third = get(client, "/proposals", new_token(session, world.custodian, "Third"))
    elsewhere = limited_app.test_client().get(
        "/api/v1/proposals", headers=bearer(world.token), environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )

    assert first == [200, 200, 200, 429]
    assert second == [200, 200]
    assert third.status_code == 429  # the address has made 5 counted requests
    assert "Too many requests" in third.get_json()["error"]
    assert checked(elsewhere).status_code == 429  # the first token is spent everywhere


def test_a_rate_limited_decision_is_json_and_records_nothing(limited_app, session, world):
    client = limited_app.test_client()
    for _ in range(3):
        get(client, "/proposals", world.token)
    before = ledger_size(session)

    response = decide(client, world, world.token, {"decision": "approve"})

    assert response.status_code == 429
    assert ledger_size(session) == before


def test_every_decision_the_api_offers_is_documented():
    documented = DOCUMENT["components"]["schemas"]["DecisionRequest"]["properties"]["decision"]
    assert documented["enum"] == [member.value for member in ApiDecision]
    assert json.dumps(DOCUMENT)  # plain JSON, nothing Python-only
