"""Who may open which page: one explicit access table, checked against every URL rule.

Every endpoint of the app must appear in ``ACCESS`` with the answer each kind of visitor gets,
so a new page cannot be added without declaring its access rule. Pages are checked with a GET
and, when they take POST, with a POST of an empty form (a valid CSRF token and nothing else), so
no allowed POST changes anything. Separate tests post data that *would* change rows and check
that only the allowed role changes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from engage.accounts.models import CustodianStatus, Role, User
from engage.audit import AuditEvent
from engage.consent import decisions as consent_decisions
from engage.consent import queries as consent_queries
from engage.consent import versions as consent_versions
from engage.consent.models import ConsentEvent, ConsentFormVersion, VersionStatus
from engage.consent.seed import FIRST_FORM, FIRST_SCOPES
from engage.db import Database
from engage.outbox import OutboxMessage
from engage.registries.models import Registry, RegistryEnrolment
from engage.rounds import setup as round_setup
from engage.rounds.models import EvidenceStatus
from engage.timeutil import utcnow
from engage.topics import services as topic_services
from engage.topics.models import TopicCategory, TopicStatus
from governance import catalogue, proposals
from governance.models import AnalysisMode, ConsentNotice
from newsletters.models import (
    Campaign,
    CampaignStatus,
    MailingList,
    Send,
    SendStatus,
    Suppression,
)
from tests import consent_support
from tests.conftest import PASSWORD, csrf_token, post_form, sign_in
from tests.newsletters.support import make_campaign, make_list

# Outcomes: an HTTP status, or a redirect written as "→ <path>" ("→ sign-in" is checked to
# carry ?next=<the page asked for>).
OK, BAD, FORBIDDEN, NOT_FOUND, NOT_ALLOWED = 200, 400, 403, 404, 405
SIGN_IN = "→ sign-in"
HOME = "→ /"
TO_ACCOUNT = "→ /account"
TO_TOPIC = "→ /topics/N"  # ids in redirect paths are written as N
TO_MODERATION = "→ /topics/moderation"
TO_CAMPAIGN = "→ /staff/newsletters/campaigns/N"
TO_STAFF_ROUND = "→ /staff/rounds/N"
START_AGAIN = "→ /sign-in"  # to the sign-in page with no page to come back to

ANONYMOUS = "anonymous"
ROLES = ("participant", "clinician", "custodian", "organisation", "staff")
CONTRIBUTORS = ("participant", "clinician", "organisation")
VIEWERS = (ANONYMOUS, *ROLES)

# How each viewer of the table is created: role and make_user options.
VIEWER_ACCOUNTS: dict[str, tuple[Role, dict[str, Any]]] = {
    "participant": (Role.PARTICIPANT, {}),
    "clinician": (Role.CLINICIAN, {"clinician_verified": True}),
    "custodian": (Role.CUSTODIAN, {"custodian_status": CustodianStatus.APPROVED}),
    "organisation": (Role.ORGANISATION, {}),
    "staff": (Role.STAFF, {}),
}

Expectation = dict[str, int | str]


def everyone(outcome: int | str) -> Expectation:
    """The same answer for every viewer, signed in or not."""
    return dict.fromkeys(VIEWERS, outcome)


def guests_only(guest: int | str) -> Expectation:
    """Pages for people not signed in: signed-in people are sent home."""
    return {ANONYMOUS: guest, **dict.fromkeys(ROLES, HOME)}


def only(*roles: str, allowed: int | str = OK) -> Expectation:
    """Signed-in people of ``roles`` get ``allowed``; other roles 403; anonymous: sign in."""
    return {
        ANONYMOUS: SIGN_IN,
        **{role: (allowed if role in roles else FORBIDDEN) for role in ROLES},
    }


def signed_in(allowed: int | str = OK) -> Expectation:
    """Any signed-in person gets ``allowed``; anonymous visitors are sent to sign in."""
    return only(*ROLES, allowed=allowed)


@dataclass(frozen=True)
class Access:
    """What each viewer gets from a GET, and from an empty POST when the page takes POST."""

    get: Expectation
    post: Expectation | None = None


ACCESS: dict[str, Access] = {
    # Public pages.
    "pages.home": Access(get=everyone(OK)),
    "pages.healthz": Access(get=everyone(OK)),
    "pages.help": Access(get=everyone(OK)),
    "pages.privacy": Access(get=everyone(OK)),
    "pages.accessibility": Access(get=everyone(OK)),
    # Joining and signing in: an empty form is a 400 with its errors.
    "auth.sign_up": Access(get=guests_only(OK), post=guests_only(BAD)),
    "auth.check_email": Access(get=everyone(OK)),
    "auth.sign_in": Access(get=guests_only(OK), post=guests_only(BAD)),
    # POST only, so a link or an image cannot sign anyone out; without a session it is a
    # harmless redirect home.
    "auth.sign_out": Access(get=everyone(NOT_ALLOWED), post=everyone(HOME)),
    # Links from emails: the table uses a plausible but invalid token, so 400 for everybody.
    # Confirming an address is a POST with the password from the page the link opens.
    "auth.verify_email": Access(get=everyone(BAD), post=everyone(BAD)),
    "auth.confirm_email_change": Access(get=everyone(BAD), post=everyone(BAD)),
    "auth.request_reset": Access(get=everyone(OK), post=everyone(BAD)),
    "auth.reset_password": Access(get=everyone(BAD), post=everyone(BAD)),
    # POST only. A GET of /verify-email/resend is matched by /verify-email/<token> with the
    # token "resend", which is an invalid link (400), not a 405.
    "auth.resend_verification": Access(get=everyone(BAD), post=signed_in(HOME)),
    # The signed-in person's own account. Empty profile and password forms are 400; an empty
    # registries form means "none of them" and is saved.
    "account.profile": Access(get=signed_in(OK), post=signed_in(BAD)),
    "account.change_password": Access(get=signed_in(OK), post=signed_in(BAD)),
    # Two-step sign-in. The code step needs a half-finished sign-in (password given): without
    # one a visitor starts again at the sign-in page (with no page to return to); signed-in
    # people are sent home. The account page sets it up (an empty code is a 400) or shows it
    # (the table's staff and custodian have it on; a set-up form sent then is a 400). Its
    # buttons name themselves in a hidden field: an empty form is a 400.
    "auth.two_factor_code": Access(get=guests_only(START_AGAIN), post=guests_only(START_AGAIN)),
    "auth.two_factor_recovery": Access(get=guests_only(START_AGAIN), post=guests_only(START_AGAIN)),
    "auth.two_factor_setup": Access(get=guests_only(START_AGAIN), post=guests_only(START_AGAIN)),
    "account.two_factor_settings": Access(get=signed_in(OK), post=signed_in(BAD)),
    "account.two_factor_new_codes": Access(get=everyone(NOT_ALLOWED), post=signed_in(BAD)),
    "account.two_factor_turn_off": Access(get=everyone(NOT_ALLOWED), post=signed_in(BAD)),
    # "Confirm it's you": the page, and an empty form is no attempt (the page again).
    "account.reauth_page": Access(get=signed_in(OK), post=signed_in(OK)),
    # Signed-in devices: the page lists only one's own sessions; its buttons (POST only) need
    # the device named (an empty form is a 400, so the table's viewer stays signed in).
    "account.sessions": Access(get=signed_in(OK)),
    "account.end_session": Access(get=everyone(NOT_ALLOWED), post=signed_in(BAD)),
    "account.end_sessions": Access(get=everyone(NOT_ALLOWED), post=signed_in(BAD)),
    # A new email address (an empty form is a 400); cancelling one that is pending (POST only;
    # with none pending it just says so).
    "account.change_email": Access(get=signed_in(OK), post=signed_in(BAD)),
    "account.cancel_email_change": Access(get=everyone(NOT_ALLOWED), post=signed_in(TO_ACCOUNT)),
    # Data rights act on the signed-in person only. An empty POST to the download is a valid
    # request (CSRF token only): the file (200). Deleting needs the box ticked: 400.
    "account.data": Access(get=signed_in(OK), post=signed_in(OK)),
    "account.delete": Access(get=signed_in(OK), post=signed_in(BAD)),
    "account.registries": Access(
        get=only("participant"), post=only("participant", allowed=TO_ACCOUNT)
    ),
    # Staff pages. POST-only endpoints answer 405 to a GET before any access check.
    "staff.users": Access(get=only("staff")),
    "staff.user_detail": Access(get=only("staff")),
    "staff.verify_clinician": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)),
    "staff.decide_custodian": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)),
    "staff.change_role": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)),
    "staff.set_active": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)),
    "staff.registries": Access(get=only("staff")),
    "staff.new_registry": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "staff.edit_registry": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "staff.audit_log": Access(get=only("staff")),
    "staff.data_requests": Access(get=only("staff")),
    # governance: staff pages (proposals, dispatch, matrix, overdue, catalogue).
    # The world's proposal was sent by another staff member: it cannot be edited (→ its page),
    # only its proposer submits it (403), and it is past screening and not yet a project (409).
    "governance_staff.index": Access(get=only("staff")),
    "governance_staff.new_proposal": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "governance_staff.proposal": Access(get=only("staff")),
    "governance_staff.edit_proposal": Access(
        get=only("staff", allowed="→ /staff/governance/proposals/N"),
        post=only("staff", allowed="→ /staff/governance/proposals/N"),
    ),
    "governance_staff.submit_proposal": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=FORBIDDEN)
    ),
    "governance_staff.start_screening": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=409)
    ),
    "governance_staff.return_proposal": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    "governance_staff.reject_proposal": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    "governance_staff.send_proposal": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    "governance_staff.complete_proposal": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=409)
    ),
    "governance_staff.close_proposal": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=409)
    ),
    "governance_staff.extend_deadline": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    "governance_staff.overdue": Access(get=only("staff")),
    "governance_staff.catalogue_page": Access(get=only("staff")),
    "governance_staff.new_variable": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "governance_staff.edit_variable": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "governance_staff.retire_variable": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    "governance_staff.reinstate_variable": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    # governance: custodian, proposer and public pages.
    # The table's custodian decides for another registry than the world's (403); only the
    # proposer acts on a proposal (the world's is another staff member's), staff may read it.
    "governance.registry_inbox": Access(get=signed_in(FORBIDDEN)),
    "governance.registry_proposal": Access(get=signed_in(FORBIDDEN)),
    "governance.open_for_review": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.ask_for_information": Access(
        get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)
    ),
    "governance.check_decision": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.approve": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.approve_with_conditions": Access(
        get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)
    ),
    "governance.decline": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.withdraw_approval": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.registry_notices": Access(get=signed_in(FORBIDDEN)),
    "governance.acknowledge_notice": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.my_proposals": Access(get=only("clinician", "staff")),
    "governance.new_proposal": Access(
        get=only("clinician", "staff"), post=only("clinician", "staff", allowed=BAD)
    ),
    "governance.edit_proposal": Access(get=signed_in(FORBIDDEN), post=signed_in(FORBIDDEN)),
    "governance.proposal_status": Access(get=only("staff")),
    "governance.submit_proposal": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.withdraw_proposal": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.answer_information": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.accept_conditions": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.refuse_conditions": Access(get=everyone(NOT_ALLOWED), post=signed_in(FORBIDDEN)),
    "governance.projects": Access(get=everyone(OK)),
    # governance: the JSON API for registries.
    # The API answers to a bearer token only: a signed-in session without one is 401, on GET
    # and on an empty POST alike. Its description is public. The token page is for approved
    # custodians; revoking answers 404 for a token that is not the signed-in person's.
    "governance_api.openapi_json": Access(get=everyone(OK)),
    "governance_api.list_proposals": Access(get=everyone(401)),
    "governance_api.proposal_detail": Access(get=everyone(401)),
    "governance_api.record_decision": Access(get=everyone(NOT_ALLOWED), post=everyone(401)),
    "governance.tokens_page": Access(get=only("custodian"), post=only("custodian", allowed=BAD)),
    "governance.revoke_token": Access(get=everyone(NOT_ALLOWED), post=signed_in(NOT_FOUND)),
    "outbox_staff.overview": Access(get=only("staff")),
    "outbox_staff.resolve": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)),
    # Research topics. Reading is public; contributing is for people with MS, healthcare
    # professionals and MS organisations; moderation is for staff. Actions answer with a
    # redirect back to the topic (their outcome is flashed there); a form on the topic page
    # sent empty is that page again with its errors (400).
    "topics.list_topics": Access(get=everyone(OK)),
    "topics.detail": Access(get=everyone(OK)),
    "topics.similar": Access(get=everyone(OK)),
    "topics.mine": Access(get=only(*CONTRIBUTORS)),
    "topics.new": Access(get=only(*CONTRIBUTORS), post=only(*CONTRIBUTORS, allowed=BAD)),
    # The world's topic belongs to somebody else: its author-only pages are 404 to others.
    "topics.edit": Access(
        get=only(*CONTRIBUTORS, allowed=NOT_FOUND), post=only(*CONTRIBUTORS, allowed=NOT_FOUND)
    ),
    "topics.withdraw": Access(
        get=everyone(NOT_ALLOWED), post=only(*CONTRIBUTORS, allowed=NOT_FOUND)
    ),
    "topics.support": Access(get=everyone(NOT_ALLOWED), post=only(*CONTRIBUTORS, allowed=TO_TOPIC)),
    "topics.withdraw_support": Access(
        get=everyone(NOT_ALLOWED), post=only(*CONTRIBUTORS, allowed=TO_TOPIC)
    ),
    "topics.comment": Access(get=everyone(NOT_ALLOWED), post=signed_in(BAD)),
    "topics.edit_comment": Access(get=signed_in(NOT_FOUND), post=signed_in(NOT_FOUND)),
    "topics.report_topic": Access(get=everyone(NOT_ALLOWED), post=signed_in(BAD)),
    "topics.report_comment": Access(get=everyone(NOT_ALLOWED), post=signed_in(BAD)),
    "topics.moderation": Access(get=only("staff")),
    "topics.moderate": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)),
    "topics.merge": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)),
    "topics.resolve": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=TO_MODERATION)),
    "topics.settings": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=TO_MODERATION)),
    # Consent. A participant's pages show and change only their own consent: the world's receipt
    # belongs to another participant, so it is not found. Other roles have no consent (403).
    # An empty form lacks the version and page state: 400. Published form versions are public.
    "consent.dashboard": Access(get=only("participant")),
    "consent.change_choice": Access(
        get=everyone(NOT_ALLOWED), post=only("participant", allowed=BAD)
    ),
    # Withdrawing everything optional and leaving show what will happen before the button that
    # does it; the first step of leaving (choosing an option) changes nothing either.
    "consent.withdraw_optional": Access(
        get=only("participant"), post=only("participant", allowed=BAD)
    ),
    "consent.leave": Access(get=only("participant"), post=only("participant", allowed=BAD)),
    "consent.confirm_leave": Access(
        get=everyone(NOT_ALLOWED), post=only("participant", allowed=BAD)
    ),
    "consent.review": Access(get=only("participant"), post=only("participant", allowed=BAD)),
    "consent.form_version": Access(get=everyone(OK)),
    "consent.history": Access(get=only("participant")),
    "consent.receipt": Access(get=only("participant", allowed=NOT_FOUND)),
    "consent.receipt_json": Access(get=only("participant", allowed=NOT_FOUND)),
    "consent.export_json": Access(get=only("participant")),
    "consent.export_fhir": Access(get=only("participant")),
    # Consent staff pages: the world's version and scope are a draft's, so they are editable.
    "consent_staff.forms": Access(get=only("staff")),
    "consent_staff.new_version": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "consent_staff.version": Access(get=only("staff")),
    "consent_staff.edit_version": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "consent_staff.add_scope": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)),
    "consent_staff.edit_scope": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "consent_staff.remove_scope": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    "consent_staff.publish": Access(get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)),
    "consent_staff.erasure_queue": Access(get=only("staff")),
    "consent_staff.update_erasure": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    # The world's user_id is a clinician: consent pages exist for participants only.
    "consent_staff.participant": Access(
        get=only("staff", allowed=NOT_FOUND), post=only("staff", allowed=NOT_FOUND)
    ),
    # Newsletters: subscribers' pages. Preferences are for account holders; public sign-up is
    # for anyone (an empty form is a 400 with its errors). Links from emails carry a signed
    # token: the table's is forged, so every page and button behind one answers 400.
    "newsletters.preferences": Access(
        get=signed_in(OK), post=signed_in("→ /newsletters/preferences")
    ),
    "newsletters.subscribe": Access(get=everyone(OK), post=everyone(BAD)),
    "newsletters.check_email": Access(get=everyone(OK)),
    "newsletters.confirm": Access(get=everyone(BAD), post=everyone(BAD)),
    "newsletters.unsubscribe": Access(get=everyone(BAD)),
    "newsletters.unsubscribe_confirm": Access(get=everyone(NOT_ALLOWED), post=everyone(BAD)),
    "newsletters.unsubscribe_everything": Access(get=everyone(NOT_ALLOWED), post=everyone(BAD)),
    # Mail programs' hooks (no CSRF token: the signed token or signature is the proof). A GET
    # of the one-click URL is the unsubscribe page's (forged token: 400); the inbound-parse hook
    # answers 200 whatever it is sent; the event webhook refuses everything while no
    # verification key is configured (503).
    "newsletters_hooks.one_click_unsubscribe": Access(get=everyone(BAD), post=everyone(BAD)),
    "newsletters_hooks.inbound_unsubscribe": Access(get=everyone(NOT_ALLOWED), post=everyone(OK)),
    "newsletters_hooks.sendgrid_events": Access(get=everyone(NOT_ALLOWED), post=everyone(503)),
    # The archive: the world's send went to a public list, so anyone may read it.
    "newsletters.archive": Access(get=everyone(OK)),
    "newsletters.archive_send": Access(get=everyone(OK)),
    # Newsletter staff pages: lists. Archive and restore need the list's name in the form (400).
    "newsletters_staff.lists": Access(get=only("staff")),
    "newsletters_staff.new_list": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "newsletters_staff.edit_list": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "newsletters_staff.archive_list": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    "newsletters_staff.restore_list": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    # Campaigns: the world's campaign is a draft, so its editor and schedule open; its buttons
    # flash what happened (or why not) back on the campaign's page.
    "newsletters_staff.campaigns": Access(get=only("staff")),
    "newsletters_staff.new_campaign": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "newsletters_staff.campaign": Access(get=only("staff")),
    "newsletters_staff.edit_campaign": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "newsletters_staff.preview_campaign": Access(get=only("staff")),
    "newsletters_staff.campaign_progress": Access(get=only("staff")),
    "newsletters_staff.schedule_campaign": Access(
        get=only("staff"), post=only("staff", allowed=BAD)
    ),
    "newsletters_staff.test_send": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=TO_CAMPAIGN)
    ),
    "newsletters_staff.unschedule_campaign": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=TO_CAMPAIGN)
    ),
    "newsletters_staff.pause_campaign": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=TO_CAMPAIGN)
    ),
    "newsletters_staff.resume_campaign": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=TO_CAMPAIGN)
    ),
    "newsletters_staff.cancel_campaign": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=TO_CAMPAIGN)
    ),
    # Suppressions: the add form posts to the page's own URL, so its GET is the page.
    "newsletters_staff.suppressions": Access(get=only("staff")),
    "newsletters_staff.add_suppression": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "newsletters_staff.remove_suppression": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    # Settling unknown emails: an empty POST names no action.
    # An empty form is explained back on the campaign page, where the choice is.
    "newsletters_staff.settle_unknown": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=TO_CAMPAIGN)
    ),
    # Priority-setting rounds: the list and a round's shortlist are public; ranking is for the
    # roles that take part (an empty ballot is a 400 with its errors). The world's round is
    # open, so it has no results or ballot file yet (404); tests/rounds/test_views.py checks
    # a closed round's for every viewer.
    "rounds.list_rounds": Access(get=everyone(OK)),
    "rounds.round_page": Access(get=everyone(OK)),
    "rounds.save_ballot": Access(get=everyone(NOT_ALLOWED), post=only(*CONTRIBUTORS, allowed=BAD)),
    "rounds.results": Access(get=everyone(NOT_FOUND)),
    "rounds.ballot_file": Access(get=everyone(NOT_FOUND)),
    # Priority rounds: staff pages. The world's round is open: its details and shortlist can
    # no longer change and it has no workshop yet, so those pages send staff back to the
    # round's page (with why, flashed); an empty add-a-topic form is a 400 with its errors.
    "rounds_staff.index": Access(get=only("staff")),
    "rounds_staff.new_round": Access(get=only("staff"), post=only("staff", allowed=BAD)),
    "rounds_staff.round_page": Access(get=only("staff")),
    "rounds_staff.edit_round": Access(
        get=only("staff", allowed=TO_STAFF_ROUND), post=only("staff", allowed=TO_STAFF_ROUND)
    ),
    "rounds_staff.add_to_shortlist": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=BAD)
    ),
    "rounds_staff.remove_from_shortlist": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=TO_STAFF_ROUND)
    ),
    "rounds_staff.workshop_page": Access(
        get=only("staff", allowed=TO_STAFF_ROUND), post=only("staff", allowed=TO_STAFF_ROUND)
    ),
    "rounds_staff.adopt": Access(
        get=everyone(NOT_ALLOWED), post=only("staff", allowed=TO_STAFF_ROUND)
    ),
}

# A token that looks like an itsdangerous one (payload.timestamp.signature) but is not valid.
PLAUSIBLE_BAD_TOKEN = "eyJ1aWQiOjEsImVtYWlsIjoiMDAwMCJ9.Zt9XyA.c2lnbmF0dXJlLXRoYXQtZG9lcy1ub3Q"


def _app_rules(app: Flask) -> list[Rule]:
    """Every URL rule except static files; sign-out last because it ends the session."""
    rules = [r for r in app.url_map.iter_rules() if r.endpoint != "static"]
    return sorted(rules, key=lambda r: (r.endpoint == "auth.sign_out", r.rule))


@dataclass
class World:
    """Rows the URLs point at: a staff target account, a registry, a topic and a comment, and
    consent rows: another participant's receipt and erasure request, the published form
    (number 1) and a draft version with its scopes; and newsletter rows: a public list, a draft
    campaign on it and another campaign's past send."""

    target: User
    registry: Registry
    topic_id: int
    comment_id: int
    message_id: int
    governance: dict[str, Any]
    consent: dict[str, Any]
    newsletters: dict[str, Any]
    rounds: dict[str, Any]

    def url_values(self) -> dict[str, Any]:
        """Concrete values for every URL argument the app uses."""
        return {
            "user_id": self.target.id,
            "registry_id": self.registry.id,
            "token": PLAUSIBLE_BAD_TOKEN,
            "topic_id": self.topic_id,
            "comment_id": self.comment_id,
            "message_id": self.message_id,
            **self.consent,
            **self.governance,
            **self.newsletters,
            **self.rounds,
        }


@pytest.fixture
def world(app, make_user, make_registry) -> World:
    """A clinician awaiting verification (a staff target), an active registry, and a published
    topic with one comment, both by another participant."""
    author, staff = make_user(Role.PARTICIPANT), make_user(Role.STAFF)
    session = Database.new_session(app)
    try:
        topic = topic_services.propose_topic(
            session,
            session.get(User, author.id),
            topic_services.TopicDetails(
                title="Does exercise help MS fatigue?",
                question="Does it?",
                rationale="It may.",
                category=TopicCategory.LIFESTYLE,
            ),
            utcnow(),
            3,
        )
        topic_services.change_status(
            session, session.get(User, staff.id), topic, TopicStatus.PUBLISHED, utcnow()
        )
        comment = topic_services.add_comment(
            session, session.get(User, author.id), topic, "A first comment", utcnow()
        )
        session.commit()
        topic_id, comment_id = topic.id, comment.id
        # Publishing queued an email to the author: the outbox pages point at it.
        message_id = session.scalar(sa.select(sa.func.max(OutboxMessage.id)))
        consent = _consent_world(app, session, author, staff)
        registry = make_registry(code="SMSREG")
        governance = _governance_world(session, staff, registry)
        newsletter_ids = _newsletter_world(session, staff)
        round_ids = _rounds_world(session, staff, author)
    finally:
        session.close()
    return World(
        target=make_user(Role.CLINICIAN),
        registry=registry,
        topic_id=topic_id,
        comment_id=comment_id,
        message_id=message_id,
        consent=consent,
        governance=governance,
        newsletters=newsletter_ids,
        rounds=round_ids,
    )


def _newsletter_world(session, staff: User) -> dict[str, Any]:
    """A public mailing list with a draft campaign by staff, and another campaign's send to
    that list that went out yesterday (the archive's entry)."""
    mailing_list = make_list(session, "Research updates")
    draft = make_campaign(session, [mailing_list], created_by_id=staff.id)
    sent = make_campaign(
        session, [mailing_list], subject="Winter research news", status=CampaignStatus.SENT
    )
    when = utcnow() - timedelta(days=1)
    send = Send(
        campaign_id=sent.id,
        occurrence_at=when,
        status=SendStatus.SENT,
        subject=sent.subject,
        preheader=sent.preheader,
        body_markdown=sent.body_markdown,
        audience_size=1,
        started_at=when,
        finished_at=when,
    )
    session.add(send)
    session.commit()
    return {"list_id": mailing_list.id, "campaign_id": draft.id, "send_id": send.id}


def _rounds_world(session, staff: User, author: User) -> dict[str, Any]:
    """A priority-setting round by staff, open since an hour ago, with two shortlisted topics
    by ``author`` on its shortlist."""
    staff, author = session.get(User, staff.id), session.get(User, author.id)
    now = utcnow()
    before = now - timedelta(hours=2)
    round_ = round_setup.create_round(
        session,
        staff,
        round_setup.RoundDetails(
            title="Which treatment questions matter most?",
            question="Which unanswered questions about MS treatment matter most to you?",
            roles=["participant", "clinician", "organisation"],
            opens_at=now - timedelta(hours=1),
            closes_at=now + timedelta(days=7),
        ),
        before,
    )
    for title in ("Does cooling help heat sensitivity?", "Which diet helps with MS fatigue?"):
        topic = topic_services.propose_topic(
            session,
            author,
            topic_services.TopicDetails(
                title=title, question="Does it?", rationale="It may.", category=TopicCategory.CARE
            ),
            before,
            3,
        )
        for status in (TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED):
            topic_services.change_status(session, staff, topic, status, before)
        round_setup.add_to_shortlist(
            session, staff, round_, topic.id, EvidenceStatus.UNANSWERED, "", "", before
        )
    session.commit()
    return {"round_id": round_.id}


def _governance_world(session, staff: User, registry: Registry) -> dict[str, Any]:
    """A catalogue variable, and a proposal by staff sent to ``registry`` (one decision
    thread), with one consent notice for that registry; the consent form is published."""
    staff = session.get(User, staff.id)
    now = utcnow()
    variable = catalogue.add_variable(
        session, staff, catalogue.VariableDetails("EDSS_TEST", "EDSS", "Disability", "Scores"), now
    )
    proposal = proposals.create_draft(
        session,
        staff,
        proposals.ProposalDetails(
            title="Fatigue and DMT exposure",
            lead_researcher="Dr A. Researcher",
            institution="Karolinska Institutet",
            sponsor="Network",
            plain_summary="We want to learn about fatigue.",
            scientific_summary="A cohort study.",
            language="en",
            analysis_mode=AnalysisMode.FEDERATED,
            ethics_reference="EC-1",
            topic_id=None,
            decision_deadline=now + timedelta(days=30),
            scope_codes=[FIRST_SCOPES[0].code],
            variable_ids=[variable.id],
        ),
        now,
    )
    proposals.submit(session, staff, proposal, now)
    proposals.start_screening(session, staff, proposal, now)
    (thread,) = proposals.send_to_registries(session, staff, proposal, [registry.id], now)
    notice = ConsentNotice(
        registry_id=registry.id,
        proposal_id=proposal.id,
        pseudonym="00000000-0000-4000-8000-000000000001",
        scope_code=FIRST_SCOPES[0].code,
        receipt_id="00000000-0000-4000-8000-000000000002",
        created_at=now,
    )
    session.add(notice)
    session.commit()
    # An API token held by nobody the table signs in as (the revoke page's token_id).
    from governance.models import ApiToken

    token = ApiToken(
        user_id=staff.id,
        name="Sync",
        display_prefix="eng_AAAAAAAA",
        token_hash="0" * 64,
        created_at=now,
    )
    session.add(token)
    session.commit()
    return {
        "proposal_id": proposal.id,
        "thread_id": thread.id,
        "registry_code": registry.code,
        "notice_id": notice.id,
        "variable_id": variable.id,
        "token_id": token.id,
    }


def _consent_world(app: Flask, session, author: User, staff: User) -> dict[str, Any]:
    """Version 1 published; ``author`` consented, then asked for erasure; version 2 a draft."""
    version = consent_support.publish(session, staff)
    outcome = consent_support.join(app, session, author)
    erasure = consent_decisions.leave_programme(
        session,
        session.get(User, author.id),
        consent_decisions.LeaveOption.ERASE,
        version_id=version.id,
        state=consent_queries.current_state(session, author.id),
        now=utcnow(),
        issuer=consent_support.issuer(app),
    ).erasure
    draft = consent_versions.create_draft(
        session, session.get(User, staff.id), FIRST_FORM, utcnow()
    )
    scope_id = consent_queries.scopes_of(session, draft.id)[0].id
    session.commit()
    return {
        "receipt_id": outcome.receipt.id,
        "request_id": erasure.id,
        "number": version.number,
        "version_id": draft.id,
        "scope_id": scope_id,
    }


def _url(app: Flask, rule: Rule, world: World) -> str:
    values = world.url_values()
    missing = rule.arguments - values.keys()
    assert not missing, f"{rule.rule}: give World.url_values a value for {sorted(missing)}"
    return app.url_map.bind("localhost").build(
        rule.endpoint, {name: values[name] for name in rule.arguments}
    )


def _outcome(response: Any, asked: str) -> int | str:
    """The status, or "→ path" for a redirect (sign-in redirects must name the page asked)."""
    if response.status_code not in (301, 302, 303, 307, 308):
        return response.status_code
    location = urlsplit(response.headers["Location"])
    if location.path == "/sign-in":
        next_url = parse_qs(location.query).get("next", [None])[0]
        if next_url is None and not location.query:
            return START_AGAIN
        if next_url != asked:
            return f"→ sign-in?next={next_url} (expected next={asked})"
        return SIGN_IN
    return "→ " + re.sub(r"/\d+(?=/|$)", "/N", location.path)


def _check_every_rule(
    app: Flask,
    client: FlaskClient,
    world: World,
    viewer: str,
    column: str,
    *,
    without_custodian_rights: bool = False,
) -> list[str]:
    """Request every rule as the current client and list where the answer differs.

    :param without_custodian_rights: the viewer is a custodian whose request is not approved:
        CUSTODIAN_ONLY pages must refuse them (403) whatever the column says.
    """
    mismatches = []
    for rule in _app_rules(app):
        access = ACCESS.get(rule.endpoint)
        if access is None:
            mismatches.append(f"{rule.endpoint}: not in ACCESS; declare its access rule")
            continue
        refused = without_custodian_rights and rule.endpoint in CUSTODIAN_ONLY
        url = _url(app, rule, world)
        got = _outcome(client.get(url), url)
        expected = FORBIDDEN if refused and access.get[column] == OK else access.get[column]
        if got != expected:
            mismatches.append(f"GET {url}: {viewer} got {got}, expected {expected}")
        if access.post is not None:
            got = _outcome(post_form(client, url, {}), url)
            expected = FORBIDDEN if refused else access.post[column]
            if got != expected:
                mismatches.append(f"POST {url}: {viewer} got {got}, expected {expected}")
    return mismatches


# The table itself -------------------------------------------------------------------------
def test_every_endpoint_declares_its_access_rule(app):
    endpoints = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint != "static"}
    assert sorted(endpoints - ACCESS.keys()) == [], "new endpoints: add them to ACCESS"
    assert sorted(ACCESS.keys() - endpoints) == [], "ACCESS lists endpoints that are gone"
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        assert methods <= {"GET", "POST"}, f"{rule.rule}: the table only knows GET and POST"
        takes_post = ACCESS[rule.endpoint].post is not None
        assert takes_post == ("POST" in methods), f"{rule.endpoint}: post expectation vs methods"
    for endpoint, access in ACCESS.items():
        for expectation in (access.get, access.post):
            assert expectation is None or set(expectation) == set(VIEWERS), endpoint


# Every page, every viewer -----------------------------------------------------------------
@pytest.mark.parametrize("viewer", VIEWERS)
def test_every_page_answers_each_viewer_as_the_access_table_says(
    app, client, world, as_role, viewer
):
    if viewer != ANONYMOUS:
        role, options = VIEWER_ACCOUNTS[viewer]
        as_role(role, **options)
    mismatches = _check_every_rule(app, client, world, viewer, viewer)
    assert mismatches == [], "\n".join(mismatches)


# Accounts whose status gives no rights (yet) are treated by their role like anybody else:
# pending and declined custodians get what an approved custodian gets on every page that needs
# no custodian rights (no page needs them yet; pages that will are listed in CUSTODIAN_ONLY and
# must answer 403 to them). An unconfirmed email address does not change page access
# (the site asks for confirmation in a banner); a clinician awaiting verification sees the
# same pages as a verified one (verification changes how their support counts, not access).
@pytest.mark.parametrize(
    ("viewer", "role", "options", "same_as"),
    [
        (
            "custodian, request pending",
            Role.CUSTODIAN,
            {"custodian_status": CustodianStatus.PENDING},
            "custodian",
        ),
        (
            "custodian, request declined",
            Role.CUSTODIAN,
            {"custodian_status": CustodianStatus.DECLINED},
            "custodian",
        ),
        (
            "participant, email unconfirmed",
            Role.PARTICIPANT,
            {"email_verified": False},
            "participant",
        ),
        (
            "clinician, claim not verified",
            Role.CLINICIAN,
            {"clinician_verified": False},
            "clinician",
        ),
        (
            "organisation, email unconfirmed",
            Role.ORGANISATION,
            {"email_verified": False},
            "organisation",
        ),
        ("staff, email unconfirmed", Role.STAFF, {"email_verified": False}, "staff"),
    ],
)
def test_accounts_without_extra_status_get_what_their_role_gets(
    app, client, world, as_role, viewer, role, options, same_as
):
    as_role(role, **options)
    mismatches = _check_every_rule(
        app,
        client,
        world,
        viewer,
        same_as,
        without_custodian_rights=options.get("custodian_status") != CustodianStatus.APPROVED
        and role == Role.CUSTODIAN,
    )
    assert mismatches == [], "\n".join(mismatches)


# Pages that need approved custodian rights, whatever registry: the custodian's own API tokens.
# (Registry pages need rights for one registry: the table's custodian acts for another one,
# so they answer 403 like they do to everybody but staff.)
CUSTODIAN_ONLY: frozenset[str] = frozenset({"governance.tokens_page"})


def test_custodians_get_nothing_beyond_other_non_staff_accounts_but_custodian_pages():
    # An approved custodian's extra rights are only on CUSTODIAN_ONLY pages; everywhere else a
    # custodian gets at most what any other non-staff signed-in account gets.
    for endpoint, access in ACCESS.items():
        if endpoint in CUSTODIAN_ONLY:
            continue
        for expectation in (access.get, access.post):
            if expectation is None:
                continue
            others = {expectation[role] for role in ("participant", "organisation", "clinician")}
            assert expectation["custodian"] in others | {FORBIDDEN}, endpoint


# POST-only endpoints with data that would change rows ----------------------------------------
def _fresh(session, model: type, row_id: int) -> Any:
    session.expire_all()
    return session.get(model, row_id)


def _account_state(session, user_id: int) -> tuple:
    user = _fresh(session, User, user_id)
    events = session.scalar(sa.select(sa.func.count()).where(AuditEvent.subject_user_id == user_id))
    return (
        user.role,
        user.clinician_verified_at is not None,
        user.custodian_status,
        user.custodian_registry_id,
        user.is_active,
        user.session_version,
        user.display_name,
        events,
    )


@dataclass
class StaffAction:
    """A staff form post that changes an account, and the change it makes."""

    path: str
    target_role: Role
    target_options: dict[str, Any]
    data: dict[str, str]


STAFF_ACTIONS = {
    "verify clinician": StaffAction("clinician", Role.CLINICIAN, {}, {"verified": "yes"}),
    "approve custodian": StaffAction(
        "custodian",
        Role.CUSTODIAN,
        {"custodian_status": CustodianStatus.PENDING},
        {"decision": "approve"},
    ),
    "decline custodian": StaffAction(
        "custodian",
        Role.CUSTODIAN,
        {"custodian_status": CustodianStatus.PENDING},
        {"decision": "decline", "reason": "Not a custodian of this registry."},
    ),
    "change role": StaffAction("role", Role.PARTICIPANT, {}, {"role": "organisation"}),
    "deactivate": StaffAction("active", Role.PARTICIPANT, {}, {"active": "no"}),
}


@pytest.mark.parametrize("action_name", sorted(STAFF_ACTIONS))
@pytest.mark.parametrize("viewer", VIEWERS)
def test_only_staff_change_accounts_through_staff_posts(
    client, session, make_user, as_role, mailbox, viewer, action_name
):
    action = STAFF_ACTIONS[action_name]
    target = make_user(action.target_role, **action.target_options)
    if viewer != ANONYMOUS:
        role, options = VIEWER_ACCOUNTS[viewer]
        as_role(role, **options)
    before = _account_state(session, target.id)
    mail_before = len(mailbox.messages)
    url = f"/staff/users/{target.id}/{action.path}"

    got = _outcome(post_form(client, url, action.data), url)

    after = _account_state(session, target.id)
    if viewer == "staff":
        assert got == "→ /staff/users/N"  # the target's page (ids are written as N)
        assert after != before
    else:
        assert got == (SIGN_IN if viewer == ANONYMOUS else FORBIDDEN)
        assert after == before
        assert len(mailbox.messages) == mail_before


REGISTRY_DATA = {"code": "NEWREG", "name": "New registry", "country": "DK", "is_active": "y"}


def _registries(session) -> list[tuple]:
    session.expire_all()
    return list(
        session.execute(
            sa.select(
                Registry.id, Registry.code, Registry.name, Registry.country, Registry.is_active
            ).order_by(Registry.id)
        )
    )


@pytest.mark.parametrize("viewer", VIEWERS)
def test_only_staff_add_and_edit_registries(client, session, make_registry, as_role, viewer):
    registry = make_registry(code="SMSREG", name="Swedish MS registry")
    if viewer != ANONYMOUS:
        role, options = VIEWER_ACCOUNTS[viewer]
        as_role(role, **options)
    before = _registries(session)

    added = _outcome(
        post_form(client, "/staff/registries/new", REGISTRY_DATA), "/staff/registries/new"
    )
    edit_url = f"/staff/registries/{registry.id}/edit"
    edited = _outcome(
        post_form(client, edit_url, {**REGISTRY_DATA, "code": "SMSREG", "name": "Renamed"}),
        edit_url,
    )

    after = _registries(session)
    if viewer == "staff":
        assert (added, edited) == ("→ /staff/registries", "→ /staff/registries")
        assert {row.code for row in after} == {"SMSREG", "NEWREG"}
        assert any(row.name == "Renamed" for row in after)
    else:
        refused = SIGN_IN if viewer == ANONYMOUS else FORBIDDEN
        assert (added, edited) == (refused, refused)
        assert after == before


@pytest.mark.parametrize("viewer", VIEWERS)
def test_only_participants_record_registry_enrolments(
    client, session, make_registry, as_role, viewer
):
    registry = make_registry()
    user = None
    if viewer != ANONYMOUS:
        role, options = VIEWER_ACCOUNTS[viewer]
        user = as_role(role, **options)

    got = _outcome(
        post_form(client, "/account/registries", {"registries": str(registry.id)}),
        "/account/registries",
    )

    session.expire_all()
    rows = list(session.scalars(sa.select(RegistryEnrolment.user_id)))
    if viewer == "participant":
        assert got == TO_ACCOUNT
        assert rows == [user.id]
    else:
        assert got == (SIGN_IN if viewer == ANONYMOUS else FORBIDDEN)
        assert rows == []


def _consent_rows(session) -> tuple:
    session.expire_all()
    events = session.scalar(sa.select(sa.func.count()).select_from(ConsentEvent))
    versions = list(
        session.execute(
            sa.select(ConsentFormVersion.number, ConsentFormVersion.status).order_by(
                ConsentFormVersion.number
            )
        )
    )
    return events, versions


@pytest.mark.parametrize("viewer", VIEWERS)
def test_only_participants_record_consent_and_only_staff_publish_forms(
    app, client, session, make_user, as_role, viewer
):
    staff = make_user(Role.STAFF)
    published = consent_support.publish(session, staff)
    draft = consent_versions.create_draft(
        session, session.get(User, staff.id), FIRST_FORM, utcnow()
    )
    session.commit()
    draft_id = draft.id
    if viewer != ANONYMOUS:
        role, options = VIEWER_ACCOUNTS[viewer]
        as_role(role, **options)
    before = _consent_rows(session)
    state = consent_queries.state_token(None)

    choice = _outcome(
        post_form(
            client,
            "/consent/choice",
            {
                "version_id": published.id,
                "state": state,
                "scope": "GENOMIC_DATA",
                "decision": "permit",
            },
        ),
        "/consent/choice",
    )
    publish_url = f"/staff/consent/forms/{draft_id}/publish"
    publishing = _outcome(post_form(client, publish_url, {"confirm": "y"}), publish_url)

    events, versions = _consent_rows(session)
    refused = SIGN_IN if viewer == ANONYMOUS else FORBIDDEN
    assert choice == ("→ /consent" if viewer == "participant" else refused)
    assert events == before[0] + (1 if viewer == "participant" else 0)
    if viewer == "staff":
        assert publishing == "→ /staff/consent/forms/N"
        assert versions == [(1, VersionStatus.SUPERSEDED), (2, VersionStatus.PUBLISHED)]
    else:
        assert publishing == refused
        assert versions == before[1]


def _newsletter_rows(session) -> tuple:
    session.expire_all()
    lists = list(
        session.execute(
            sa.select(MailingList.name, MailingList.is_archived).order_by(MailingList.id)
        )
    )
    campaigns = list(session.scalars(sa.select(Campaign.subject).order_by(Campaign.id)))
    suppressed = list(session.scalars(sa.select(Suppression.email)))
    return lists, campaigns, suppressed


@pytest.mark.parametrize("viewer", VIEWERS)
def test_only_staff_change_mailing_lists_campaigns_and_suppressions(
    client, session, as_role, viewer
):
    mailing_list = make_list(session, "Research updates")
    session.commit()
    list_id = mailing_list.id
    if viewer != ANONYMOUS:
        role, options = VIEWER_ACCOUNTS[viewer]
        as_role(role, **options)
    before = _newsletter_rows(session)
    posts = {
        "/staff/newsletters/lists/new": {
            "name": "Trial news",
            "description": "New trials.",
            "visibility": "public",
            "required_scope": "",
        },
        "/staff/newsletters/campaigns/new": {
            "kind": "research_update",
            "subject": "Spring news",
            "body": "Dear {name}, news.",
            "list_ids": str(list_id),
        },
        # After the campaign: an archived list is not offered for new campaigns.
        f"/staff/newsletters/lists/{list_id}/archive": {"name": "Research updates"},
        "/staff/newsletters/suppressions": {"email": "someone@example.org"},
    }

    got = [_outcome(post_form(client, url, data), url) for url, data in posts.items()]

    after = _newsletter_rows(session)
    if viewer == "staff":
        assert got == [
            "→ /staff/newsletters/lists",
            TO_CAMPAIGN,
            "→ /staff/newsletters/lists",
            "→ /staff/newsletters/suppressions",
        ]
        assert after == (
            [("Research updates", True), ("Trial news", False)],
            ["Spring news"],
            ["someone@example.org"],
        )
    else:
        assert got == [SIGN_IN if viewer == ANONYMOUS else FORBIDDEN] * len(posts)
        assert after == before


def test_resend_verification_needs_a_session_and_mails_only_the_signed_in_person(
    client, session, make_user, mailbox
):
    other = make_user(Role.PARTICIPANT, email_verified=False)
    got = _outcome(
        post_form(client, "/verify-email/resend", {"email": other.email}), "/verify-email/resend"
    )
    assert got == SIGN_IN
    assert mailbox.messages == []

    me = make_user(Role.PARTICIPANT, email_verified=False)
    sign_in(client, me)
    response = post_form(
        client, "/verify-email/resend", {"email": other.email, "user_id": str(other.id)}
    )
    assert _outcome(response, "/verify-email/resend") == HOME
    assert [m.to for m in mailbox.messages] == [me.email]


def test_sign_out_without_a_session_is_a_harmless_redirect(client, session):
    response = post_form(client, "/sign-out")
    assert _outcome(response, "/sign-out") == HOME
    session.expire_all()
    assert session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == 0


@pytest.mark.parametrize("viewer", ROLES)
def test_sign_out_needs_post_and_csrf_and_then_ends_the_session(client, as_role, viewer):
    role, options = VIEWER_ACCOUNTS[viewer]
    as_role(role, **options)
    assert client.get("/sign-out").status_code == NOT_ALLOWED
    assert client.post("/sign-out").status_code == BAD  # no CSRF token
    assert client.get("/account").status_code == OK  # still signed in

    assert _outcome(post_form(client, "/sign-out"), "/sign-out") == HOME
    assert _outcome(client.get("/account"), "/account") == SIGN_IN


@pytest.mark.parametrize("viewer", ["staff", "participant"])
def test_staff_pages_for_a_missing_account_or_registry(client, as_role, viewer):
    role, options = VIEWER_ACCOUNTS[viewer]
    as_role(role, **options)
    expected = NOT_FOUND if viewer == "staff" else FORBIDDEN
    assert client.get("/staff/users/999999").status_code == expected
    assert client.get("/staff/registries/999999/edit").status_code == expected
    for path in ("clinician", "custodian", "role", "active"):
        assert post_form(client, f"/staff/users/999999/{path}").status_code == expected


# Object level: the account pages only ever act on the signed-in person ------------------------
def test_account_urls_never_name_an_account(app):
    account_rules = [r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/account")]
    assert account_rules, "the account pages moved; update this test"
    assert [
        r for r in app.url_map.iter_rules() if r.rule.startswith("/account") and r.arguments
    ] == []


EDITABLE = ("display_name", "country", "language", "profession", "institution", "organisation_name")
PROTECTED = (
    "email",
    "role",
    "password_hash",
    "is_active",
    "session_version",
    "custodian_status",
    "custodian_registry_id",
    "clinician_verified_at",
)


def _row(session, user_id: int) -> dict[str, Any]:
    user = _fresh(session, User, user_id)
    return {name: getattr(user, name) for name in (*EDITABLE, *PROTECTED)}


@pytest.mark.parametrize("viewer", ROLES)
def test_profile_post_changes_only_the_signed_in_person(
    client, session, make_user, as_role, viewer
):
    other = make_user(Role.PARTICIPANT, display_name="Other person")
    other_before = _row(session, other.id)
    role, options = VIEWER_ACCOUNTS[viewer]
    me = as_role(role, **options)
    my_before = _row(session, me.id)

    response = post_form(
        client,
        "/account",
        {
            "display_name": "Renamed",
            "country": "DK",
            "language": "da",
            "profession": "Neurologist",
            "institution": "Karolinska",
            "organisation_name": "MS Society",
            # Fields the form does not have, naming the other account or asking for more rights.
            "user_id": str(other.id),
            "id": str(other.id),
            "email": other.email,
            "role": "staff",
            "is_active": "n",
            "custodian_status": "approved",
            "password_hash": "x",
            "session_version": "99",
        },
    )

    assert _outcome(response, "/account") == TO_ACCOUNT
    assert _row(session, other.id) == other_before
    mine = _row(session, me.id)
    assert (mine["display_name"], mine["country"], mine["language"]) == ("Renamed", "DK", "da")
    assert {k: mine[k] for k in PROTECTED} == {k: my_before[k] for k in PROTECTED}
    page = client.get(f"/account?user_id={other.id}").get_data(as_text=True)
    assert me.email in page and other.email not in page


def test_password_change_affects_only_the_signed_in_person(client, session, make_user, as_role):
    other = make_user(Role.PARTICIPANT)
    other_before = _row(session, other.id)
    me = as_role(Role.PARTICIPANT)
    my_hash = _row(session, me.id)["password_hash"]
    new_password = "another long passphrase"

    response = post_form(
        client,
        "/account/password",
        {
            "current_password": PASSWORD,
            "password": new_password,
            "password_confirm": new_password,
            "user_id": str(other.id),
            "email": other.email,
        },
    )

    assert _outcome(response, "/account/password") == TO_ACCOUNT
    assert _row(session, me.id)["password_hash"] != my_hash
    assert _row(session, other.id) == other_before
    sign_in(client.application.test_client(), other)  # the other's password still works


def test_enrolments_change_only_for_the_signed_in_person(
    client, session, make_user, make_registry, as_role
):
    first, second = make_registry(), make_registry()
    other = make_user(Role.PARTICIPANT)
    session.add(RegistryEnrolment(user_id=other.id, registry_id=first.id, created_at=utcnow()))
    session.commit()
    me = as_role(Role.PARTICIPANT)

    response = post_form(
        client,
        "/account/registries",
        {
            "registries": str(second.id),
            "user_id": str(other.id),
        },
    )

    assert _outcome(response, "/account/registries") == TO_ACCOUNT
    session.expire_all()
    rows = {
        tuple(row)
        for row in session.execute(
            sa.select(RegistryEnrolment.user_id, RegistryEnrolment.registry_id)
        )
    }
    assert rows == {(other.id, first.id), (me.id, second.id)}


def test_a_csrf_token_from_another_session_is_refused(app, client, make_user, as_role, session):
    target = make_user(Role.PARTICIPANT)
    as_role(Role.STAFF)
    other_client = app.test_client()
    foreign_token = csrf_token(other_client)
    before = _account_state(session, target.id)

    response = client.post(
        f"/staff/users/{target.id}/active", data={"csrf_token": foreign_token, "active": "no"}
    )

    assert response.status_code == BAD
    assert "Please try again" in response.get_data(as_text=True)
    assert _account_state(session, target.id) == before
