"""Public pages: home and the health check."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, jsonify, render_template

from engage.db import Database

pages = Blueprint("pages", __name__)
log = logging.getLogger(__name__)


@pages.route("/")
def home():
    """What the network is and what each role can do here."""
    return render_template("pages/home.html")


@pages.route("/healthz")
def healthz():
    """200 when the database answers, 503 when it doesn't (for load balancers)."""
    try:
        with Database.engine().connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        log.warning("health check: database unreachable (%s)", exc.__class__.__name__)
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200
