"""The composition root: ``create_app`` binds extensions, blueprints, signals and the CLI.

This is the only module of ``engage`` that imports ``governance`` and ``newsletters``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, abort, current_app, g, render_template, request
from flask.globals import request_ctx
from flask_login import AnonymousUserMixin, current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter
from werkzeug.sansio.utils import host_is_trusted

from engage import crypto, logs, mail
from engage.db import db
from engage.settings import Config, load_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)

# How long a visitor is asked to wait while the database cannot be reached.
RETRY_AFTER_SECONDS = 30
# The last resort when even the plain error page cannot be rendered.
FALLBACK_ERROR_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    "<title>Something went wrong · Engage</title></head><body><main>"
    "<h1>Sorry, something went wrong on our side</h1>"
    '<p>Please try again in a minute. <a href="/">Go to the home page</a></p>'
    "</main></body></html>"
)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class DatabaseIdConverter(IntegerConverter):
    """``<int:...>`` in URLs, capped at the largest id an integer column holds.

    A larger number is a 404 instead of an overflow in the database driver (a 500).
    """

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)  # PostgreSQL's integer; SQLite's is larger
        super().__init__(url_map, *args, **kwargs)


class AnonymousVisitor(AnonymousUserMixin):
    """A visitor who has not signed in."""

    role = None
    language = "en"
    is_staff = False
    is_email_verified = False


def import_models() -> None:
    """Import every module that defines tables, so ``Base.metadata`` knows them all: the
    mappers can then be configured, and Alembic (``migrations/env.py``) and the tests compare
    the schema with the whole model."""
    from engage import audit, outbox  # noqa: F401
    from engage.accounts import models as account_models  # noqa: F401
    from engage.consent import models as consent_models  # noqa: F401
    from engage.registries import models as registry_models  # noqa: F401
    from engage.rounds import models as round_models  # noqa: F401
    from engage.topics import models as topic_models  # noqa: F401
    from governance import models as governance_models  # noqa: F401
    from newsletters import models as newsletter_models  # noqa: F401


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    """Build the Engage app.

    :param config: a ``Config`` instance, a mapping of overrides applied on top of the
        environment's configuration (tests), or None to read ``ENGAGE_CONFIG``.
    """
    app = Flask(
        "engage",
        instance_path=str(PROJECT_ROOT / "instance"),
        template_folder=str(PROJECT_ROOT / "templates"),
        static_folder=str(Path(__file__).parent / "static"),
    )
    overrides: dict[str, Any] = {}
    if isinstance(config, dict):
        overrides = dict(config)
        config = load_config(overrides.pop("ENGAGE_CONFIG", None))
    config = config or load_config()
    for key, value in overrides.items():
        setattr(config, key, value)
    config.validate()
    app.config.from_object(config)
    app.config["ENGAGE_CONFIG"] = config.ENV_NAME
    if not app.config.get("DATABASE_URL"):
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        app.config["DATABASE_URL"] = f"sqlite:///{Path(app.instance_path) / 'engage.sqlite'}"
    if not app.config.get("MAIL_OUTBOX_DIR"):
        app.config["MAIL_OUTBOX_DIR"] = str(Path(app.instance_path) / "mail")

    import_models()
    _bind_extensions(app)
    _register_blueprints(app)
    _register_template_filters(app)
    _register_error_pages(app)
    _refuse_malformed_hosts(app)
    _add_security_headers(app)
    _register_jobs(app)
    _register_mail_kinds(app)
    _register_ledgers(app)
    _register_demo_seeders(app)
    _register_data_rights(app)
    _connect_receivers()
    _register_cli(app)
    logs.install(app)
    return app


def _bind_extensions(app: Flask) -> None:
    from engage.accounts import signin
    from engage.accounts.models import User
    from engage.extensions import csrf, limiter, login_manager

    _trust_proxies(app)
    db.init_app(app)
    crypto.init_app(app)
    mail.init_app(app)
    csrf.init_app(app)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.anonymous_user = AnonymousVisitor
    login_manager.login_view = "auth.sign_in"
    login_manager.login_message = "Please sign in to see this page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"

    @login_manager.user_loader
    def load_user(identity: str) -> User | None:
        """Load the signed-in person from this browser's session kept on the server; an ended
        or expired session, or a deactivated or deleted account, is nobody."""
        return signin.load_signed_in_user(identity)

    @app.before_request
    def load_signed_in_person() -> None:
        # Before the view runs, so the loader's occasional activity update commits nothing of
        # the view's (static files need nobody).
        if request.endpoint != "static":
            current_user._get_current_object()


def _trust_proxies(app: Flask) -> None:
    """Behind ``TRUSTED_PROXY_COUNT`` reverse proxies, take the client's address, scheme, host
    and port from their X-Forwarded-* headers (rate limits, session lists and secure cookies
    depend on them); with none, those headers are ignored, as any client could send them."""
    count = int(app.config.get("TRUSTED_PROXY_COUNT") or 0)
    if count > 0:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count
        )


def _register_blueprints(app: Flask) -> None:
    # The staff and topics blueprints gather the routes of several modules: each is imported
    # (adding its routes) before its blueprint is registered.
    from engage import audit_views
    from engage.accounts import (
        data_views,  # noqa: F401 - /account/data, /account/delete, /staff/data-requests
        signin_views,  # noqa: F401 - /sign-in, /sign-out
        two_factor_views,  # noqa: F401 - two-step sign-in, re-auth
    )
    from engage.accounts import queries as account_queries
    from engage.accounts import staff_views as account_staff_views  # noqa: F401 - /staff/users
    from engage.accounts.views import account, auth
    from engage.consent.staff_views import consent_staff
    from engage.consent.views import consent
    from engage.outbox_views import outbox_staff
    from engage.pages import pages
    from engage.registries import views as registry_views  # noqa: F401 - /staff/registries
    from engage.rounds.staff_views import rounds_staff
    from engage.rounds.views import rounds
    from engage.staff import staff
    from engage.topics import staff_views as topic_staff_views  # noqa: F401 - moderation
    from engage.topics.views import topics

    app.url_map.converters["int"] = DatabaseIdConverter
    audit_views.init_app(
        app,
        account_emails=account_queries.emails,
        account_id_by_email=account_queries.user_id_by_email,
        action_enums=_audit_action_enums(),
    )
    for blueprint in (pages, auth, account, staff, topics, consent, consent_staff, outbox_staff):
        app.register_blueprint(blueprint)
    app.register_blueprint(rounds)
    app.register_blueprint(rounds_staff)
    _register_governance_blueprints(app)


def _audit_action_enums() -> tuple[type, ...]:
    """The audit actions defined outside ``engage.audit`` (by features and by packages the core
    does not import), offered as filters of the audit log."""
    from engage.accounts.data_rights import DataRightsAction
    from engage.accounts.reauth import ReauthAction
    from engage.accounts.sessions import SessionAuditAction
    from engage.accounts.two_factor import TwoFactorAction
    from engage.rounds.audit_actions import RoundAction
    from governance.decisions import DecisionAction
    from governance.tokens import TokenAction
    from newsletters.suppressions import SuppressionAction
    from newsletters.unknown import UnknownAction

    return (
        TwoFactorAction,
        SessionAuditAction,
        ReauthAction,
        DataRightsAction,
        RoundAction,
        DecisionAction,
        TokenAction,
        SuppressionAction,
        UnknownAction,
    )


def _register_governance_blueprints(app: Flask) -> None:
    """Governance's pages, staff pages and JSON API (the API authenticates by token, so it
    takes no CSRF token; its writes need the token in the Authorization header)."""
    from engage.extensions import csrf
    from governance import (
        catalogue_views,  # noqa: F401 - /staff/governance/catalogue
        proposer_views,  # noqa: F401 - /governance/proposals, /projects
        token_views,  # noqa: F401 - /governance/tokens
    )
    from governance.api import api
    from governance.staff_views import governance_staff
    from governance.views import governance

    csrf.exempt(api)
    for blueprint in (governance, governance_staff, api):
        app.register_blueprint(blueprint)
    _register_newsletter_blueprints(app)


def _register_newsletter_blueprints(app: Flask) -> None:
    """Newsletters' pages, staff pages and hooks (SendGrid's signed event webhook and mail
    programs' one-click unsubscribe POST carry no CSRF token; each checks its own signature)."""
    from engage.extensions import csrf
    from newsletters import (
        archive_views,  # noqa: F401 - /newsletters/archive
        list_staff_views,  # noqa: F401 - /staff/newsletters/lists
        staff_views,  # noqa: F401 - /staff/newsletters/campaigns
        suppression_views,  # noqa: F401 - /staff/newsletters/suppressions
        unknown_views,  # noqa: F401 - /staff/newsletters/sends/<id>/unknown
        views,  # noqa: F401 - /newsletters/preferences, subscribe, confirm, unsubscribe
        webhook,  # noqa: F401 - /newsletters/webhooks/sendgrid
    )
    from newsletters.blueprints import newsletters, newsletters_hooks, newsletters_staff

    csrf.exempt(newsletters_hooks)
    for blueprint in (newsletters, newsletters_staff, newsletters_hooks):
        app.register_blueprint(blueprint)


def _register_template_filters(app: Flask) -> None:
    from engage.security import is_safe_next
    from engage.text import render_markdown

    app.jinja_env.filters["markdown"] = render_markdown
    app.jinja_env.tests["safe_next"] = is_safe_next


def database_unavailable(error: BaseException | None) -> bool:
    """True when ``error`` means the database cannot be reached or is too busy right now (a
    refused or lost connection, a full pool), as opposed to a mistake in a query."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError)


def _discard_request_session() -> None:
    """Roll back and close this request's database session (see ``engage.db.get_session``).

    After a failed statement the session refuses further use until rolled back, and after a
    lost connection it cannot be used at all; the error page must not depend on it.
    """
    session = g.pop("db_session", None)
    if session is None:
        return
    try:
        session.rollback()
        session.close()
    except sa_exc.SQLAlchemyError:  # a dead connection: the pool discards it
        log.warning("could not roll back the failed request's session", exc_info=True)


def _render_plain_error(status: int, headers: dict[str, str] | None = None):
    """An error page that reads nothing but its template: no signed-in person, no database.

    Flask's ``render_template`` runs the context processors, and Flask-Login's loads the
    signed-in person from the database; so the template is rendered from the environment
    directly, and a fixed page is the answer if even that fails.
    """
    try:
        body = current_app.jinja_env.get_template(f"errors/{status}.html").render()
    except Exception:  # the last resort must not raise
        log.exception("the %s error page could not be rendered", status)
        body = FALLBACK_ERROR_PAGE
    return body, status, {"Content-Type": "text/html; charset=utf-8", **(headers or {})}


def _service_unavailable():
    """The friendly 503 for a database that cannot be reached, with when to try again."""
    _discard_request_session()
    log.warning("database unavailable on %s %s", request.method, request.path)
    return _render_plain_error(503, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def _internal_error():
    """The 500 page, after rolling back whatever the failed request left in its session."""
    _discard_request_session()
    return _render_plain_error(500)


def _register_error_pages(app: Flask) -> None:
    def render_error(status: int, message: str | None = None):
        # The page's header reads the signed-in person, which needs the database.
        try:
            return render_template(f"errors/{status}.html", message=message), status
        except Exception as exc:
            if database_unavailable(exc):
                return _service_unavailable()
            log.exception("the %s error page failed on %s %s", status, request.method, request.path)
            return _internal_error()

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return render_error(
            400, "Your form expired or was sent from another page. Please try again."
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        if status in {400, 403, 404, 405, 429}:
            response = render_error(status)
            if status == 405 and error.get_response().headers.get("Allow"):
                return response[0], status, {"Allow": error.get_response().headers["Allow"]}
            return response
        if status == 413:
            return render_error(400, "What you sent is too large.")
        if isinstance(error, InternalServerError):
            # Flask's own 500, when an error handler failed: it carries the original error.
            if database_unavailable(error.original_exception):
                return _service_unavailable()
            return _internal_error()
        return error

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        if database_unavailable(error):
            return _service_unavailable()
        # Log the type and where, never the request body (it may hold personal data).
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _internal_error()


def is_usable_host(host: str, trusted_hosts: list[str] | None = None) -> bool:
    """Whether Werkzeug can route a request with ``Host: host``: valid characters and port,
    a name IDNA can encode (labels of 1 to 63 characters), and one of ``trusted_hosts`` when
    that list is set."""
    if not host_is_trusted(host, trusted_hosts):
        return False
    try:
        host.lower().partition(":")[0].encode("idna")
    except UnicodeError:
        return False
    return True


def _refuse_malformed_hosts(app: Flask) -> None:
    """Answer 400 with the ordinary 400 page to a request whose ``Host`` header Werkzeug
    refuses (a space, a quote, a slash, an unclosed IPv6 bracket, an empty or overlong name):
    without this, such a request is served with an empty host, or gets no URL adapter and the
    error page itself fails (a 500 with a traceback)."""

    def refuse_malformed_host() -> None:
        host = request.environ.get("HTTP_HOST")
        if host is None or is_usable_host(host, app.config.get("TRUSTED_HOSTS")):
            return
        # The error page builds its links (all relative) with a URL adapter: give it one bound
        # to a name that cannot mislead anyone.
        request_ctx.url_adapter = app.url_map.bind(
            "invalid.invalid", script_name=request.root_path or "/", url_scheme=request.scheme
        )
        abort(400)

    # First, before anything reads the person or the database for a request answered 400.
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_malformed_host)


def _add_security_headers(app: Flask) -> None:
    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=()"
        )
        if app.config.get("SESSION_COOKIE_SECURE"):
            response.headers.setdefault(
                "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
            )
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def _connect_receivers() -> None:
    """Connect the packages' signal receivers (see ``engage.signals``); connecting twice is a
    no-op, so several apps in one process share them."""
    from engage.consent import masks as consent_masks
    from governance import notices as governance_notices
    from newsletters import notices as newsletter_notices

    consent_masks.connect_receivers()
    governance_notices.connect_receivers()
    newsletter_notices.connect_receivers()


def _register_jobs(app: Flask) -> None:
    from engage import delivery
    from engage.accounts import jobs as account_jobs
    from engage.accounts import sessions as account_sessions
    from engage.consent import jobs as consent_jobs
    from engage.rounds import jobs as round_jobs
    from engage.scheduler import JobRegistry
    from governance import jobs as governance_jobs
    from newsletters import jobs as newsletter_jobs

    registry = JobRegistry()
    registry.register(
        "outbox.deliver",
        delivery.deliver_due,
        "interval",
        description="Send queued emails (claim, send, record; settle unknown outcomes)",
        seconds=15,
    )
    account_jobs.register(registry)
    registry.register(
        "accounts.remove_old_sessions",
        account_sessions.remove_old_sessions_job,
        "interval",
        description="Delete sign-in sessions ended or expired past the retention period",
        hours=6,
    )
    consent_jobs.register(registry)
    governance_jobs.register(registry)
    round_jobs.register(registry)
    newsletter_jobs.register(registry)
    app.extensions["engage.jobs"] = registry


def _register_mail_kinds(app: Flask) -> None:
    from engage import delivery, outbox
    from engage.accounts import emails as account_emails
    from engage.consent import emails as consent_emails
    from engage.rounds import emails as round_emails
    from engage.topics import emails as topic_emails
    from governance import emails as governance_emails
    from newsletters import emails as newsletter_emails

    kinds = outbox.MailKinds()
    account_emails.register_kinds(kinds)
    topic_emails.register_kinds(kinds)
    round_emails.register_kinds(kinds)
    consent_emails.register_kinds(kinds)
    governance_emails.register_kinds(kinds)
    newsletter_emails.register_kinds(kinds)
    outbox.init_app(app, kinds)
    delivery.init_app(app)


def _register_ledgers(app: Flask) -> None:
    from engage import hashchain
    from engage.consent import ledger as consent_ledger
    from engage.rounds import chain as rounds_chain
    from governance import chain as governance_chain

    ledgers = hashchain.Ledgers()
    ledgers.register("consent", consent_ledger.verify)
    ledgers.register("decision", governance_chain.verify)
    ledgers.register("ballot", rounds_chain.verify)
    hashchain.init_app(app, ledgers)


def _register_demo_seeders(app: Flask) -> None:
    from engage import demo
    from governance import demo as governance_demo
    from newsletters import demo as newsletter_demo

    seeders = demo.DemoSeeders()
    seeders.register(governance_demo.seed)
    seeders.register(newsletter_demo.seed)
    demo.init_app(app, seeders)


def _register_data_rights(app: Flask) -> None:
    """What each package adds to "Download my data" and does on "Delete my account" (see
    ``engage.accounts.data_rights``); erasers run in this order, consent first, while the
    account is still the participant's."""
    from engage.accounts import data_rights
    from engage.consent import data_rights as consent_data_rights
    from engage.rounds import data_rights as round_data_rights
    from engage.topics import data_rights as topic_data_rights
    from governance import data_rights as governance_data_rights
    from newsletters import data_rights as newsletter_data_rights

    rights = data_rights.DataRights()
    consent_data_rights.register(rights)
    topic_data_rights.register(rights)
    round_data_rights.register(rights)
    newsletter_data_rights.register(rights)
    governance_data_rights.register(rights)
    data_rights.init_app(app, rights)


def _register_cli(app: Flask) -> None:
    """Add the core's and the packages' command groups to ``app.cli`` (the ``engage`` console
    script, ``engage.cli``, runs them)."""
    from engage import commands
    from engage.accounts.cli import users_group
    from engage.consent.cli import consent_group
    from engage.keys_cli import keys_group
    from engage.rounds.cli import rounds_group
    from engage.topics.cli import topics_group
    from newsletters.cli import newsletters_group

    groups = (
        commands.run_command,
        commands.db_group,
        users_group,
        commands.demo_group,
        commands.scheduler_group,
        topics_group,
        rounds_group,
        consent_group,
        commands.audit_group,
        commands.outbox_group,
        keys_group,
        newsletters_group,
    )
    for command in groups:
        app.cli.add_command(command)
