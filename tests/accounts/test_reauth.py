""" "Confirm it's you": sensitive actions ask for the password again (and the authenticator code
when the person uses two-step sign-in) unless it was given within REAUTH_MAX_AGE_SECONDS; what
was submitted is kept, and the action is done once the person has confirmed."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from engage.accounts.models import CustodianStatus, RecoveryCode, Role, User
from engage.accounts.signin import AUTHENTICATED_AT
from engage.app import create_app
from engage.audit import AuditEvent
from engage.consent import versions
from engage.consent.models import ConsentFormVersion
from engage.consent.seed import FIRST_FORM
from engage.db import Database
from engage.timeutil import utcnow
from governance.models import DecisionThread, ThreadStatus
from tests.conftest import PASSWORD, next_totp_code, post_form, sign_in
from tests.consent_support import publish
from tests.governance.support import make_proposal

CONFIRM = "Confirm it's you"
NEW_PASSWORD = "lantern quietly crosses rivers"


def _stale(client: FlaskClient, seconds: int = 3600) -> None:
    """Make the browser's last proof of identity ``seconds`` older."""
    with client.session_transaction() as flask_session:
        flask_session[AUTHENTICATED_AT] -= seconds


def _hidden(page: str) -> dict[str, list[str]]:
    """The hidden fields of the confirmation form (the CSRF token left out)."""
    found: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page):
        if name != "csrf_token":
            found.setdefault(name, []).append(value)
    return found


def _password_hash(session, user_id: int) -> str:
    session.expire_all()
    return session.get(User, user_id).password_hash


# The page, its fields and the rules ---------------------------------------------------------------
def test_a_recent_sign_in_needs_no_confirmation(client, session, make_user):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    before = _password_hash(session, user.id)

    response = post_form(
        client,
        "/account/password",
        {"current_password": PASSWORD, "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )

    assert response.status_code == 302
    assert _password_hash(session, user.id) != before


def test_a_stale_page_asks_to_confirm_and_then_comes_back(client, make_user):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    _stale(client)

    page = client.get("/account/password")

    text = page.get_data(as_text=True)
    assert page.status_code == 200 and CONFIRM in text
    assert "Code from your authenticator app" not in text  # no two-step sign-in, no code
    action = re.search(r'<form method="post" action="([^"]+)"', text).group(1).replace("&amp;", "&")
    assert urlsplit(action).path == "/account/confirm"
    assert parse_qs(urlsplit(action).query)["next"] == ["/account/password"]
    wrong = post_form(client, action, {"reauth_password": "not my password"})
    assert wrong.status_code == 400 and "Your password is not right." in wrong.get_data(
        as_text=True
    )

    confirmed = post_form(client, action, {"reauth_password": PASSWORD})

    assert confirmed.status_code == 303 and confirmed.headers["Location"] == "/account/password"
    assert "Change my password" in client.get("/account/password").get_data(as_text=True)


def test_a_stale_post_keeps_what_was_typed_and_is_done_after_confirming(client, session, make_user):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    before = _password_hash(session, user.id)
    _stale(client)
    typed = {
        "current_password": PASSWORD,
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
    }

    asked = post_form(client, "/account/password", typed)

    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and CONFIRM in page
    assert _password_hash(session, user.id) == before  # nothing done yet
    carried = _hidden(page)
    assert carried == {name: [value] for name, value in typed.items()}
    assert 'action="/account/password"' in page
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert token, "the page carries a fresh CSRF token"

    wrong = client.post(
        "/account/password",
        data={**carried, "reauth_password": "wrong one", "csrf_token": token.group(1)},
    )
    assert wrong.status_code == 400 and CONFIRM in wrong.get_data(as_text=True)
    assert _hidden(wrong.get_data(as_text=True)) == carried  # still kept
    assert _password_hash(session, user.id) == before

    done = client.post(
        "/account/password",
        data={**carried, "reauth_password": PASSWORD, "csrf_token": token.group(1)},
    )

    assert done.status_code == 302 and done.headers["Location"] == "/account"
    assert _password_hash(session, user.id) != before
    assert session.scalars(
        sa.select(AuditEvent.action).where(AuditEvent.action == "reauth_refused")
    ).all() == ["reauth_refused"]


def test_carried_values_are_escaped(client, make_user):
    sign_in(client, make_user(Role.PARTICIPANT))
    _stale(client)
    payload = '"><script>alert(1)</script>'

    page = post_form(
        client,
        "/account/password",
        {"current_password": payload, "password": "x", "password_confirm": "x"},
    ).get_data(as_text=True)

    assert "<script>alert(1)</script>" not in page
    assert "&#34;&gt;&lt;script&gt;" in page or "&quot;&gt;&lt;script&gt;" in page


def test_people_with_two_step_sign_in_also_give_a_code(app, client, session, make_user):
    user = make_user(Role.PARTICIPANT, two_factor=True)
    sign_in(client, user)
    before = _password_hash(session, user.id)
    _stale(client)
    typed = {
        "current_password": PASSWORD,
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
    }
    page = post_form(client, "/account/password", typed).get_data(as_text=True)
    assert "Code from your authenticator app" in page

    without_code = post_form(client, "/account/password", {**typed, "reauth_password": PASSWORD})
    assert without_code.status_code == 400
    assert "6-digit code" in without_code.get_data(as_text=True)
    assert _password_hash(session, user.id) == before

    done = post_form(
        client,
        "/account/password",
        {**typed, "reauth_password": PASSWORD, "reauth_code": next_totp_code(app, user.email)},
    )

    assert done.status_code == 302
    assert _password_hash(session, user.id) != before


def test_confirming_is_rate_limited_per_account(database_url, make_user):
    limited = create_app(
        {"ENGAGE_CONFIG": "testing", "DATABASE_URL": database_url, "RATELIMIT_ENABLED": True}
    )
    limited.config["REAUTH_RATE_LIMIT"] = "2 per minute"
    client = limited.test_client()
    try:
        sign_in(client, make_user(Role.PARTICIPANT))
        _stale(client)
        statuses = [
            post_form(client, "/account/confirm", {"reauth_password": "wrong"}).status_code
            for _ in range(3)
        ]
        page = client.get("/account/password").status_code
    finally:
        Database.engine(limited).dispose()
    assert statuses == [400, 400, 429]
    assert page == 200  # asking is not an attempt


# Every sensitive action asks when stale -----------------------------------------------------------
@dataclass
class Sensitive:
    """A sensitive action ready to post: the signed-in client, where, what, and its state."""

    client: FlaskClient
    url: str
    data: dict[str, str]
    state: Callable[[], Any]
    # The answer once confirmed: a status, or the path of the redirect.
    done: int | str
    # Who is signed in (their code is needed too when they use two-step sign-in).
    actor: User


def _fresh(app: Flask, model: type, row_id: int, *columns: str) -> tuple:
    db = Database.new_session(app)
    try:
        row = db.get(model, row_id)
        return tuple(getattr(row, column) for column in columns)
    finally:
        db.close()


def _staff_on(app, client, make_user, role: Role, path: str, data: dict, **options) -> Sensitive:
    target = make_user(role, **options)
    staff = make_user(Role.STAFF)
    sign_in(client, staff)
    return Sensitive(
        client,
        f"/staff/users/{target.id}/{path}",
        data,
        lambda: _fresh(
            app,
            User,
            target.id,
            "role",
            "is_active",
            "clinician_verified_at",
            "custodian_status",
        ),
        f"/staff/users/{target.id}",
        staff,
    )


def _change_password(app, client, make_user, make_registry) -> Sensitive:
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    data = {
        "current_password": PASSWORD,
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
    }
    return Sensitive(
        client,
        "/account/password",
        data,
        lambda: _fresh(app, User, user.id, "password_hash"),
        "/account",
        user,
    )


def _turn_off(app, client, make_user, make_registry) -> Sensitive:
    user = make_user(Role.PARTICIPANT, two_factor=True)
    sign_in(client, user)
    return Sensitive(
        client,
        "/account/two-factor/turn-off",
        {"button": "turn-off"},
        lambda: _fresh(app, User, user.id, "totp_enabled_at"),
        "/account/two-factor",
        user,
    )


def _new_codes(app, client, make_user, make_registry) -> Sensitive:
    user = make_user(Role.PARTICIPANT, two_factor=True)
    sign_in(client, user)

    def codes() -> list[str]:
        db = Database.new_session(app)
        try:
            query = sa.select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)
            return sorted(db.scalars(query))
        finally:
            db.close()

    return Sensitive(
        client, "/account/two-factor/recovery-codes", {"button": "new-codes"}, codes, 200, user
    )


def _change_role(app, client, make_user, make_registry) -> Sensitive:
    return _staff_on(app, client, make_user, Role.PARTICIPANT, "role", {"role": "organisation"})


def _set_active(app, client, make_user, make_registry) -> Sensitive:
    return _staff_on(app, client, make_user, Role.PARTICIPANT, "active", {"active": "no"})


def _verify_clinician(app, client, make_user, make_registry) -> Sensitive:
    return _staff_on(app, client, make_user, Role.CLINICIAN, "clinician", {"verified": "yes"})


def _decide_custodian(app, client, make_user, make_registry) -> Sensitive:
    return _staff_on(
        app,
        client,
        make_user,
        Role.CUSTODIAN,
        "custodian",
        {"decision": "decline", "reason": "Not a custodian of this registry"},
        custodian_status=CustodianStatus.PENDING,
    )


def _publish_consent_form(app, client, make_user, make_registry) -> Sensitive:
    staff = make_user(Role.STAFF)
    db = Database.new_session(app)
    try:
        publish(db, staff)  # the draft starts from the published version's scopes
        draft = versions.create_draft(db, db.get(User, staff.id), FIRST_FORM, utcnow())
        db.commit()
        draft_id = draft.id
    finally:
        db.close()
    sign_in(client, staff)
    return Sensitive(
        client,
        f"/staff/consent/forms/{draft_id}/publish",
        {"confirm": "y"},
        lambda: _fresh(app, ConsentFormVersion, draft_id, "status"),
        f"/staff/consent/forms/{draft_id}",
        staff,
    )


def _registry_decision(action: str, data: dict[str, str], status_before=ThreadStatus.SENT):
    def prepare(app, client, make_user, make_registry) -> Sensitive:
        registry = make_registry(code="NORTH")
        custodian = make_user(Role.CUSTODIAN, registry=registry)
        staff = make_user(Role.STAFF)
        db = Database.new_session(app)
        try:
            publish(db, staff)
            proposal, (thread,) = make_proposal(db, staff, [registry], scopes=["MS_RESEARCH"])
            thread.status = status_before
            db.commit()
            proposal_id, thread_id = proposal.id, thread.id
        finally:
            db.close()
        sign_in(client, custodian)
        url = f"/governance/registries/NORTH/proposals/{proposal_id}"
        return Sensitive(
            client,
            f"{url}/{action}",
            data,
            lambda: _fresh(app, DecisionThread, thread_id, "status"),
            url,
            custodian,
        )

    return prepare


SENSITIVE = {
    "account.change_password": _change_password,
    "account.two_factor_turn_off": _turn_off,
    "account.two_factor_new_codes": _new_codes,
    "staff.change_role": _change_role,
    "staff.set_active": _set_active,
    "staff.verify_clinician": _verify_clinician,
    "staff.decide_custodian": _decide_custodian,
    "consent_staff.publish": _publish_consent_form,
    "governance.approve": _registry_decision("approve", {}),
    "governance.approve_with_conditions": _registry_decision(
        "approve-with-conditions", {"conditions": "Only aggregated results leave the registry."}
    ),
    "governance.decline": _registry_decision("decline", {"decline_reason": "Ethics say no."}),
    "governance.withdraw_approval": _registry_decision(
        "withdraw-approval",
        {"withdraw_reason": "Our ethics board changed its mind."},
        status_before=ThreadStatus.APPROVED,
    ),
}


@pytest.mark.parametrize("endpoint", SENSITIVE)
def test_each_sensitive_action_asks_to_confirm_when_stale_and_then_does_it(
    app, client, make_user, make_registry, endpoint
):
    action = SENSITIVE[endpoint](app, client, make_user, make_registry)
    assert app.url_map.bind("localhost").match(urlsplit(action.url).path, "POST")[0] == endpoint
    before = action.state()
    _stale(client)

    asked = post_form(action.client, action.url, action.data)

    assert asked.status_code == 200 and CONFIRM in asked.get_data(as_text=True)
    assert action.state() == before
    extra = {"reauth_password": PASSWORD}
    if action.actor.totp_enabled_at is not None:
        extra["reauth_code"] = next_totp_code(app, action.actor.email)
    done = post_form(action.client, action.url, {**action.data, **extra})
    landing = (
        urlsplit(done.headers["Location"]).path
        if done.status_code in (302, 303)
        else done.status_code
    )
    assert landing == action.done, done.get_data(as_text=True)
    assert action.state() != before
