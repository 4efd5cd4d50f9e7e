"""Staff pages of governance: proposals (editor, screening, dispatch), the decision matrix,
the overdue list and the variable catalogue (blueprint ``governance_staff``, /staff/governance)."""

from __future__ import annotations

from flask import Blueprint

governance_staff = Blueprint("governance_staff", __name__, url_prefix="/staff/governance")
