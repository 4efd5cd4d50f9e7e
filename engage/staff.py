"""The ``staff`` blueprint (``/staff/...``): the coordination centre's pages about people
(``engage.accounts.staff_views``), registries (``engage.registries.views``) and the audit log
(``engage.audit_views``).

Those modules add their routes to this one blueprint, so every endpoint keeps its ``staff.``
name; the composition root imports them before it registers the blueprint.
"""

from __future__ import annotations

from flask import Blueprint

staff = Blueprint("staff", __name__, url_prefix="/staff")
