"""Governance pages for custodians (their registry's inbox, a proposal with its cohort and the
decision form, consent notices), proposers (their proposals and each registry's thread) and
everyone (the public register of projects) — blueprint ``governance``, /governance."""

from __future__ import annotations

from flask import Blueprint

governance = Blueprint("governance", __name__, url_prefix="/governance")
