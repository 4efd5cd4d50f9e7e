"""Custodians' API tokens: created for approved custodians only (at most ten active), shown
once, stored as a hash, revoked by their owner; creating and revoking are audited; and the
token page at /governance/tokens."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import CustodianStatus, Role, User
from engage.audit import AuditEvent
from engage.timeutil import utcnow
from governance import tokens
from governance.errors import NotAllowed, ReasonRequired, TextTooLong
from governance.models import ApiToken
from tests.conftest import post_form, sign_in


def _me(session, user: User) -> User:
    return session.get(User, user.id)


def _token_events(session) -> list[AuditEvent]:
    return list(
        session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.action.like("governance_api_token_%"))
            .order_by(AuditEvent.id)
        )
    )


# Services ----------------------------------------------------------------------------------
def test_a_new_token_is_stored_only_as_its_hash_and_its_creation_is_audited(session, make_user):
    custodian = make_user(Role.CUSTODIAN)

    created = tokens.create_token(session, _me(session, custodian), "  Sync server ", utcnow())
    session.commit()

    assert tokens.TOKEN_PATTERN.match(created.secret)
    row = session.scalar(sa.select(ApiToken))
    assert row.name == "Sync server"
    assert row.token_hash == hashlib.sha256(created.secret.encode()).hexdigest()
    assert row.display_prefix == created.secret[:12] and row.display_prefix.startswith("eng_")
    stored = " ".join(str(getattr(row, c.key)) for c in ApiToken.__table__.columns)
    assert created.secret not in stored
    (event,) = _token_events(session)
    assert (event.action, event.actor_id) == ("governance_api_token_created", custodian.id)
    assert created.secret not in str(event.details)


def test_two_tokens_are_different(session, make_user):
    me = _me(session, make_user(Role.CUSTODIAN))
    first = tokens.create_token(session, me, "One", utcnow())
    second = tokens.create_token(session, me, "Two", utcnow())
    assert first.secret != second.secret


@pytest.mark.parametrize(
    ("role", "options"),
    [
        (Role.CUSTODIAN, {"custodian_status": CustodianStatus.PENDING}),
        (Role.CUSTODIAN, {"custodian_status": CustodianStatus.DECLINED}),
        (Role.CUSTODIAN, {"is_active": False}),
        (Role.STAFF, {}),
        (Role.PARTICIPANT, {}),
        (Role.CLINICIAN, {"clinician_verified": True}),
    ],
)
def test_only_approved_custodians_get_tokens(session, make_user, role, options):
    person = make_user(role, **options)
    with pytest.raises(NotAllowed):
        tokens.create_token(session, _me(session, person), "Mine", utcnow())


@pytest.mark.parametrize(
    ("name", "error"), [("", ReasonRequired), ("   ", ReasonRequired), ("x" * 81, TextTooLong)]
)
def test_a_token_needs_a_short_name(session, make_user, name, error):
    with pytest.raises(error):
        tokens.create_token(session, _me(session, make_user(Role.CUSTODIAN)), name, utcnow())


def test_at_most_ten_active_tokens_and_revoking_frees_a_place(session, make_user):
    me = _me(session, make_user(Role.CUSTODIAN))
    created = [tokens.create_token(session, me, f"T{n}", utcnow()) for n in range(10)]
    session.commit()

    with pytest.raises(tokens.TooManyTokens):
        tokens.create_token(session, me, "Eleventh", utcnow())
    session.rollback()
    tokens.revoke_token(session, me, created[0].token.id, utcnow())
    tokens.create_token(session, me, "Eleventh", utcnow())
    session.commit()

    assert tokens.active_count(session, me.id) == 10


def test_only_the_owner_revokes_and_revoking_twice_records_once(session, make_user):
    me = _me(session, make_user(Role.CUSTODIAN))
    other = _me(session, make_user(Role.CUSTODIAN))
    created = tokens.create_token(session, me, "Mine", utcnow())
    session.commit()

    with pytest.raises(tokens.TokenNotFound):
        tokens.revoke_token(session, other, created.token.id, utcnow())
    tokens.revoke_token(session, me, created.token.id, utcnow())
    tokens.revoke_token(session, me, created.token.id, utcnow())
    session.commit()

    assert [e.action for e in _token_events(session)] == [
        "governance_api_token_created",
        "governance_api_token_revoked",
    ]
    with pytest.raises(tokens.TokenRefused):
        tokens.authenticate(session, created.secret, utcnow())


def test_authenticating_notes_the_use_at_most_once_a_minute(session, make_user):
    me = _me(session, make_user(Role.CUSTODIAN))
    created = tokens.create_token(session, me, "Mine", utcnow())
    now = utcnow()

    assert tokens.authenticate(session, created.secret, now).id == me.id
    assert tokens.authenticate(session, created.secret, now + timedelta(seconds=30))
    assert created.token.last_used_at == now
    later = now + timedelta(minutes=2)
    tokens.authenticate(session, created.secret, later)
    assert created.token.last_used_at == later


# The page ----------------------------------------------------------------------------------
def test_the_page_shows_a_new_token_once_and_then_only_its_prefix(client, session, make_user):
    custodian = make_user(Role.CUSTODIAN)
    sign_in(client, custodian)

    created = post_form(client, "/governance/tokens", {"name": "Nightly sync"})

    assert created.status_code == 201
    page = created.get_data(as_text=True)
    secret = re.search(r">(eng_[A-Za-z0-9_-]{43})</textarea>", page).group(1)
    assert created.headers["Cache-Control"] == "no-store"
    row = session.scalar(sa.select(ApiToken))
    assert row.token_hash == tokens.token_hash(secret)
    again = client.get("/governance/tokens").get_data(as_text=True)
    assert secret not in again
    assert "Nightly sync" in again and row.display_prefix in again


def test_an_empty_name_is_explained(client, make_user):
    sign_in(client, make_user(Role.CUSTODIAN))
    response = post_form(client, "/governance/tokens", {"name": "  "})
    assert response.status_code == 400
    assert "Give the token a name" in response.get_data(as_text=True)


def test_the_eleventh_token_is_refused_on_the_page(client, session, make_user):
    custodian = make_user(Role.CUSTODIAN)
    for n in range(10):
        tokens.create_token(session, _me(session, custodian), f"T{n}", utcnow())
    session.commit()
    sign_in(client, custodian)

    response = post_form(client, "/governance/tokens", {"name": "One more"})

    assert response.status_code == 400
    assert "revoke one" in response.get_data(as_text=True)
    assert tokens.active_count(session, custodian.id) == 10


def test_revoking_from_the_page(client, session, make_user):
    custodian = make_user(Role.CUSTODIAN)
    created = tokens.create_token(session, _me(session, custodian), "Old server", utcnow())
    session.commit()
    sign_in(client, custodian)

    response = post_form(client, f"/governance/tokens/{created.token.id}/revoke")

    assert response.status_code == 303
    session.expire_all()
    assert session.get(ApiToken, created.token.id).revoked_at is not None
    page = client.get("/governance/tokens").get_data(as_text=True)
    assert "is revoked" in page and "revoked " in page


def test_another_persons_token_is_not_found_and_stays_active(client, session, make_user):
    owner = make_user(Role.CUSTODIAN)
    created = tokens.create_token(session, _me(session, owner), "Theirs", utcnow())
    session.commit()
    sign_in(client, make_user(Role.CUSTODIAN))

    response = post_form(client, f"/governance/tokens/{created.token.id}/revoke")

    assert response.status_code == 404
    session.expire_all()
    assert session.get(ApiToken, created.token.id).revoked_at is None


@pytest.mark.parametrize(
    ("role", "options"),
    [
        (Role.CUSTODIAN, {"custodian_status": CustodianStatus.PENDING}),
        (Role.STAFF, {}),
        (Role.PARTICIPANT, {}),
    ],
)
def test_the_page_is_for_approved_custodians_only(client, session, make_user, role, options):
    sign_in(client, make_user(role, **options))
    assert client.get("/governance/tokens").status_code == 403
    assert post_form(client, "/governance/tokens", {"name": "Sneaky"}).status_code == 403
    assert session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


def test_visitors_are_asked_to_sign_in(client):
    response = client.get("/governance/tokens")
    assert response.status_code == 302 and "/sign-in" in response.headers["Location"]
