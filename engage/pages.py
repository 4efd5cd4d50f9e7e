"""Public pages: home, help and contact, the privacy notice, the accessibility statement, and
the health check."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, render_template

from engage.db import Database

pages = Blueprint("pages", __name__)
log = logging.getLogger(__name__)


@pages.route("/")
def home():
    """What the network is and what each role can do here."""
    return render_template("pages/home.html")


def _contact() -> dict[str, str]:
    """Who runs Engage and where to write to them, as the configuration names them."""
    config = current_app.config
    return {
        "support_email": config["SUPPORT_EMAIL"],
        "controller": config["CONSENT_CONTROLLER"],
    }


@pages.route("/help", endpoint="help")
def help_and_contact():
    """How to get help, how to contact the coordination centre, and the words we use."""
    return render_template("pages/help.html", **_contact())


@pages.route("/privacy")
def privacy():
    """The privacy notice: who is responsible, what we keep and why, and people's rights."""
    config = current_app.config
    return render_template(
        "pages/privacy.html",
        unconfirmed_days=config["UNVERIFIED_ACCOUNT_RETENTION_DAYS"],
        session_days=config["SESSION_RETENTION_DAYS"],
        **_contact(),
    )


@pages.route("/accessibility")
def accessibility():
    """The accessibility statement: the standard we aim for, how we test, what is not there yet."""
    return render_template("pages/accessibility.html", **_contact())


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
