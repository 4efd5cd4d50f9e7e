"""The JSON API for registries (/api/v1): proposals sent to the custodian's registry, one
proposal, recording a decision, answering a request for information; authenticated by
per-custodian API tokens; described by OpenAPI 3 at /api/v1/openapi.json."""

from __future__ import annotations

from flask import Blueprint

api = Blueprint("governance_api", __name__, url_prefix="/api/v1")
