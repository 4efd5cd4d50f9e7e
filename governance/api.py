"""The JSON API for registries (/api/v1): the proposals sent to the custodian's registry, one
proposal with the registry's thread, and recording a step of the registry's decision;
authenticated by per-custodian API tokens (:mod:`governance.tokens`); described by OpenAPI
3.1 at /api/v1/openapi.json (:mod:`governance.api_spec`).

A token acts with exactly its owner's page rights: their own registry only. A proposal not
sent to that registry is "not found" (404), never "forbidden", so ids are not confirmed.
Every answer is JSON, errors included (``{"error": "..."}``), whatever the request holds.

There is no endpoint for the proposer's answer to a question: tokens belong to custodians,
and answering is the proposer's (staff or a verified clinician), so it stays on the pages.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, g, jsonify, request
from flask_limiter.util import get_remote_address
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from engage.accounts.models import User
from engage.db import get_session
from engage.extensions import limiter
from engage.registries.models import Registry
from engage.timeutil import utcnow
from engage.views import commit_or_explain
from governance import decisions, queries, tokens
from governance.api_spec import ApiDecision, openapi_document
from governance.cohort import CohortCount, eligible_cohort, scope_codes
from governance.decisions import effective_deadline
from governance.errors import (
    DeadlinePassed,
    GovernanceError,
    InvalidProposal,
    InvalidTransition,
    NotAllowed,
    ReasonRequired,
    TextTooLong,
)
from governance.models import (
    CatalogueVariable,
    DecisionEvent,
    DecisionThread,
    Proposal,
    ProposalVariable,
)
from governance.rules import OPEN_THREAD_STATUSES

log = logging.getLogger(__name__)

api = Blueprint("governance_api", __name__, url_prefix="/api/v1")

# Per token (shared by every endpoint) and per address (whatever the token); settings may
# override them.
TOKEN_RATE_LIMIT = "120 per minute"  # noqa: S105 - a rate, not a secret
ADDRESS_RATE_LIMIT = "300 per minute"
# A decision's JSON: a 5,000-character text, even fully \u-escaped, fits well within this.
MAX_BODY_BYTES = 64 * 1024
# Longer Authorization headers are refused before any parsing.
MAX_AUTHORIZATION_LENGTH = 200
REALM = 'Bearer realm="engage-api"'
RETRY_AFTER_SECONDS = 30


# The decision services, and whether each takes a text (question, conditions, reason).
STEPS: dict[ApiDecision, tuple[Callable[..., DecisionEvent], bool]] = {
    ApiDecision.OPEN: (decisions.open_for_review, False),
    ApiDecision.ASK_FOR_INFORMATION: (decisions.ask_for_information, True),
    ApiDecision.APPROVE: (decisions.approve, False),
    ApiDecision.APPROVE_WITH_CONDITIONS: (decisions.approve_with_conditions, True),
    ApiDecision.DECLINE: (decisions.decline, True),
    ApiDecision.WITHDRAW_APPROVAL: (decisions.withdraw_approval, True),
}
DECISION_FIELDS = frozenset({"decision", "text"})


# Errors ------------------------------------------------------------------------------------
class ApiError(Exception):
    """An answer other than success: its status and a message a person understands."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """``{"error": message}`` with ``status``."""
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers or {})
    return response


HTTP_MESSAGES = {
    400: "The request could not be understood.",
    404: "There is nothing at this address of the API.",
    405: "This address of the API does not take that method.",
    413: f"The request body is too large (at most {MAX_BODY_BYTES:,} bytes).",
}


@api.errorhandler(ApiError)
def _api_error(error: ApiError) -> Response:
    return error_response(error.status, error.message, error.headers)


@api.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 429:
        return error_response(
            429, f"Too many requests ({error.description}); wait a little and try again."
        )
    message = HTTP_MESSAGES.get(status, error.name)
    response = error_response(status, message)
    if status == 405 and "Allow" in error.get_response().headers:
        response.headers["Allow"] = error.get_response().headers["Allow"]
    return response


def _database_unavailable(error: BaseException) -> bool:
    """The database cannot be reached or is too busy (as ``engage.app`` judges it for pages;
    the composition root is not imported from here)."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)


@api.errorhandler(Exception)
def _unexpected_error(error: Exception) -> Response:
    if _database_unavailable(error):
        log.warning("database unavailable on %s %s", request.method, request.path)
        return error_response(
            503,
            "The service is briefly unavailable; try again in a minute.",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    # The type and where, never the request body (it may hold what custodians wrote).
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(500, "Something went wrong on our side; nothing was changed.")


@api.before_app_request
def _json_routing_errors() -> Response | None:
    """An unknown address or method under /api/v1 is answered in JSON too (routing fails
    before any blueprint is chosen, so the blueprint's handlers would not see it)."""
    error = request.routing_exception
    in_api = request.path == api.url_prefix or request.path.startswith(f"{api.url_prefix}/")
    if error is None or not in_api or not isinstance(error, HTTPException):
        return None
    if (error.code or 0) < 400:
        return None  # e.g. a redirect to the canonical address
    # No blueprint is chosen, so its after_request does not run either.
    return _never_cache(_http_error(error))


@api.after_request
def _never_cache(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


# Rate limits -------------------------------------------------------------------------------
def _token_limit() -> str:
    return current_app.config.get("GOVERNANCE_API_TOKEN_RATE_LIMIT", TOKEN_RATE_LIMIT)


def _address_limit() -> str:
    return current_app.config.get("GOVERNANCE_API_ADDRESS_RATE_LIMIT", ADDRESS_RATE_LIMIT)


def _token_key() -> str:
    """Requests are counted per presented token (by its hash: no secret reaches the limiter's
    storage); requests without one, per address."""
    header = request.headers.get("Authorization", "")
    if not header:
        return f"address:{get_remote_address()}"
    return "token:" + hashlib.sha256(header.encode("utf-8", "surrogatepass")).hexdigest()


limiter.shared_limit(_token_limit, scope="governance-api-token", key_func=_token_key)(api)
limiter.shared_limit(_address_limit, scope="governance-api-address")(api)


# Authentication ----------------------------------------------------------------------------
def _unauthorized(message: str, *, invalid: bool) -> ApiError:
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    return ApiError(401, message, {"WWW-Authenticate": challenge})


def _token_owner() -> User:
    """The approved custodian the request's bearer token acts for (its use noted)."""
    header = request.headers.get("Authorization", "")
    if not header.strip():
        raise _unauthorized(
            "Send your API token in the Authorization header: “Bearer <token>”.", invalid=False
        )
    scheme, _, secret = header.strip().partition(" ")
    if (
        len(header) > MAX_AUTHORIZATION_LENGTH
        or scheme.lower() != "bearer"
        or not tokens.TOKEN_PATTERN.match(secret.strip())
    ):
        raise _unauthorized(
            "The Authorization header must be “Bearer <token>” with an Engage API token.",
            invalid=True,
        )
    session = get_session()
    try:
        owner = tokens.authenticate(session, secret.strip(), utcnow())
    except tokens.TokenRefused as refused:
        session.rollback()
        raise _unauthorized(str(refused), invalid=True) from None
    # Its use is kept even when the request is then refused.
    session.commit()
    return owner


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``view`` for the token's owner (``g.api_user``) or answer 401."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        g.api_user = _token_owner()
        return view(*args, **kwargs)

    return wrapped


# Reading the request -----------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx explaining what is wrong with it."""
    if request.mimetype != "application/json":
        raise ApiError(415, "Send the body as JSON, with “Content-Type: application/json”.")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, HTTP_MESSAGES[413])
    body = request.get_data(cache=False)
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, HTTP_MESSAGES[413])
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "The body is not valid JSON (UTF-8).") from None
    if not isinstance(data, dict):
        raise ApiError(400, 'The body must be a JSON object, e.g. {"decision": "approve"}.')
    return data


def _text_field(data: dict[str, Any]) -> str | None:
    text = data.get("text")
    if text is None:
        return None
    if not isinstance(text, str):
        raise ApiError(400, "“text” must be a string.")
    if "\x00" in text:
        raise ApiError(400, "“text” must not contain NUL characters.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (\ud800) no database can store
        raise ApiError(400, "“text” must be valid Unicode text.") from None
    return text


def _decision_request() -> tuple[ApiDecision, str | None]:
    data = _json_object()
    unknown = sorted(set(data) - DECISION_FIELDS)
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(unknown)[:200]}.")
    value = data.get("decision")
    if not isinstance(value, str) or value not in ApiDecision.__members__.values():
        raise ApiError(
            400, "“decision” must be one of: " + ", ".join(member.value for member in ApiDecision)
        )
    decision = ApiDecision(value)
    text = _text_field(data)
    if text is not None and text.strip() and not STEPS[decision][1]:
        raise ApiError(400, f"“{decision.value}” records no text; leave “text” out.")
    return decision, text


# Lookups -----------------------------------------------------------------------------------
def _not_found(proposal_id: int) -> ApiError:
    return ApiError(404, f"No proposal {proposal_id} was sent to your registry.")


def _my_thread(session: Session, user: User, proposal_id: int) -> tuple[Proposal, DecisionThread]:
    """The proposal and the user's registry's thread on it; 404 when there is none."""
    row = session.execute(
        sa.select(Proposal, DecisionThread)
        .join(DecisionThread, DecisionThread.proposal_id == Proposal.id)
        .where(
            Proposal.id == proposal_id,
            DecisionThread.registry_id == user.custodian_registry_id,
        )
    ).first()
    if row is None:
        raise _not_found(proposal_id)
    return row.Proposal, row.DecisionThread


def _my_registry(session: Session, user: User) -> Registry:
    registry = session.get(Registry, user.custodian_registry_id)
    assert registry is not None  # an approved custodian is bound to a registry
    return registry


# Answers -----------------------------------------------------------------------------------
def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _cohort(session: Session, proposal: Proposal, registry: Registry) -> dict[str, Any]:
    try:
        count: CohortCount = eligible_cohort(session, proposal, registry)
    except InvalidProposal as error:
        return {"value": None, "shown": "not available", "state": "unavailable", "note": str(error)}
    return {
        "value": count.value,
        "shown": count.shown,
        "state": "suppressed" if count.is_suppressed else "counted",
        "note": None,
    }


def _event(event: DecisionEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "kind": event.kind.value,
        "kind_label": event.kind.label,
        "occurred_at": _iso(event.occurred_at),
        "text": event.text,
    }


def _thread(
    thread: DecisionThread, events: list[DecisionEvent], registry: Registry, now: datetime
) -> dict[str, Any]:
    return {
        "id": thread.id,
        "registry": {"id": registry.id, "code": registry.code, "name": registry.name},
        "status": thread.status.value,
        "status_label": thread.status.label,
        "is_open": thread.status in OPEN_THREAD_STATUSES,
        "is_paused": thread.paused_since is not None,
        "deadline": _iso(effective_deadline(thread, now)),
        "decided_at": _iso(thread.decided_at),
        "conditions": thread.conditions,
        "events": [_event(event) for event in events],
    }


def _variables(session: Session, proposal: Proposal) -> list[dict[str, str]]:
    rows = session.scalars(
        sa.select(CatalogueVariable)
        .join(ProposalVariable, ProposalVariable.variable_id == CatalogueVariable.id)
        .where(ProposalVariable.proposal_id == proposal.id)
        .order_by(CatalogueVariable.domain, CatalogueVariable.code)
    )
    return [{"code": v.code, "name": v.name, "domain": v.domain} for v in rows]


def _thread_answer(session: Session, user: User, proposal: Proposal, now: datetime) -> dict:
    """The user's registry's thread with its events, and the others as blind review allows."""
    try:
        view = queries.thread_view(session, user, proposal)
    except NotAllowed:
        raise _not_found(proposal.id) from None
    assert view.thread is not None  # custodians see their own thread
    return {
        "thread": _thread(view.thread, view.events, _my_registry(session, user), now),
        "others_visible": view.others_visible,
        "others": [
            {
                "registry": {"id": o.registry_id, "code": o.registry_code, "name": o.registry_name},
                "status": o.status.value,
                "status_label": o.status.label,
                "decided_at": _iso(o.decided_at),
            }
            for o in view.others
        ],
    }


# Endpoints ---------------------------------------------------------------------------------
@api.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 description of this API (public)."""
    return jsonify(openapi_document())


@api.get("/proposals")
@token_required
def list_proposals() -> Response:
    """The proposals sent to the token owner's registry: open ones first, by deadline."""
    session, user, now = get_session(), g.api_user, utcnow()
    registry = _my_registry(session, user)
    entries = queries.registry_inbox(session, registry.id, now)
    proposals = {
        p.id: p
        for p in session.scalars(
            sa.select(Proposal).where(Proposal.id.in_([e.proposal_id for e in entries]))
        )
    }
    return jsonify(
        registry={"id": registry.id, "code": registry.code, "name": registry.name},
        proposals=[
            {
                "id": entry.proposal_id,
                "title": entry.proposal_title,
                "proposal_status": entry.proposal_status.value,
                "thread_id": entry.thread_id,
                "status": entry.status.value,
                "status_label": entry.status.label,
                "is_open": entry.is_open,
                "is_paused": entry.is_paused,
                "is_past_deadline": entry.is_past_deadline,
                "deadline": _iso(entry.deadline),
                "decided_at": _iso(entry.decided_at),
                "cohort": _cohort(session, proposals[entry.proposal_id], registry),
            }
            for entry in entries
        ],
    )


@api.get("/proposals/<int:proposal_id>")
@token_required
def proposal_detail(proposal_id: int) -> Response:
    """One proposal sent to the owner's registry: its details, scopes, variables, cohort, the
    registry's thread with its events, and the other registries' decisions once blind review
    allows."""
    session, user, now = get_session(), g.api_user, utcnow()
    proposal, _thread_row = _my_thread(session, user, proposal_id)
    registry = _my_registry(session, user)
    return jsonify(
        id=proposal.id,
        title=proposal.title,
        status=proposal.status.value,
        status_label=proposal.status.label,
        lead_researcher=proposal.lead_researcher,
        institution=proposal.institution,
        sponsor=proposal.sponsor,
        plain_summary=proposal.plain_summary,
        scientific_summary=proposal.scientific_summary,
        language=proposal.language,
        analysis_mode=proposal.analysis_mode.value,
        ethics_reference=proposal.ethics_reference,
        decision_deadline=_iso(proposal.decision_deadline),
        sent_at=_iso(proposal.sent_at),
        scopes=scope_codes(session, proposal),
        variables=_variables(session, proposal),
        cohort=_cohort(session, proposal, registry),
        **_thread_answer(session, user, proposal, now),
    )


@api.post("/proposals/<int:proposal_id>/decision")
@token_required
def record_decision(proposal_id: int) -> Any:
    """Record one step of the owner's registry's decision; 201 with the updated thread."""
    session, user, now = get_session(), g.api_user, utcnow()
    _proposal, thread = _my_thread(session, user, proposal_id)
    decision, text = _decision_request()
    step, takes_text = STEPS[decision]

    def change(db: Session) -> DecisionEvent:
        if takes_text:
            return step(db, user, thread, text or "", now)
        return step(db, user, thread, now)

    def explain(error: GovernanceError) -> Response:
        if isinstance(error, InvalidTransition | DeadlinePassed):
            return error_response(409, str(error))
        if isinstance(error, ReasonRequired | TextTooLong):
            return error_response(422, str(error))
        # NotAllowed cannot happen for the thread's own custodian; answer as for any other.
        return error_response(404, _not_found(proposal_id).message)

    def done(event: DecisionEvent) -> tuple[Response, int]:
        proposal = session.get(Proposal, proposal_id)
        assert proposal is not None
        body = {"proposal_id": proposal_id, "event": _event(event)}
        body.update(_thread_answer(session, user, proposal, utcnow()))
        return jsonify(body), 201

    return commit_or_explain(change, errors=GovernanceError, explain=explain, done=done)
