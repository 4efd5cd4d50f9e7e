"""Custodian rights: only approved custodians act, and only for their own registry."""

from __future__ import annotations

import pytest

from engage.accounts.models import CustodianStatus, Role
from engage.app import create_app
from engage.db import Database
from engage.security import (
    approved_custodian_required,
    is_approved_custodian,
    is_custodian_of,
    require_custodian_of,
)
from tests.conftest import sign_in


@pytest.fixture
def guarded_app(app):
    """The app on the same database with two custodian-only pages (as governance adds)."""
    other = create_app({"ENGAGE_CONFIG": "testing", "DATABASE_URL": app.config["DATABASE_URL"]})

    @approved_custodian_required
    def decisions():
        return "custodian area"

    @approved_custodian_required
    def registry_page(registry_id: int):
        require_custodian_of(registry_id)
        return f"registry {registry_id}"

    other.add_url_rule("/test/custodian", "test_custodian", decisions)
    other.add_url_rule("/test/registry/<int:registry_id>", "test_registry", registry_page)
    yield other
    Database.engine(other).dispose()


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        (CustodianStatus.APPROVED, True),
        (CustodianStatus.PENDING, False),
        (CustodianStatus.DECLINED, False),
    ],
)
def test_only_approved_custodians_have_rights(
    guarded_app, make_user, make_registry, status, allowed
):
    registry, other_registry = make_registry(), make_registry()
    custodian = make_user(Role.CUSTODIAN, registry=registry, custodian_status=status)
    client = guarded_app.test_client()
    sign_in(client, custodian)

    assert is_approved_custodian(custodian) is allowed
    assert is_custodian_of(custodian, registry.id) is allowed
    assert is_custodian_of(custodian, other_registry.id) is False
    assert client.get("/test/custodian").status_code == (200 if allowed else 403)
    assert client.get(f"/test/registry/{registry.id}").status_code == (200 if allowed else 403)
    # Never another registry's data, approved or not.
    assert client.get(f"/test/registry/{other_registry.id}").status_code == 403


@pytest.mark.parametrize("role", [Role.PARTICIPANT, Role.CLINICIAN, Role.ORGANISATION, Role.STAFF])
def test_other_roles_are_not_custodians(guarded_app, make_user, role):
    client = guarded_app.test_client()
    sign_in(client, make_user(role))
    assert client.get("/test/custodian").status_code == 403


def test_a_deactivated_custodian_has_no_rights(make_user, make_registry):
    custodian = make_user(Role.CUSTODIAN, registry=make_registry(), is_active=False)
    assert is_approved_custodian(custodian) is False


def test_visitors_are_sent_to_sign_in(guarded_app):
    response = guarded_app.test_client().get("/test/custodian")
    assert response.status_code == 302
    assert "/sign-in?next=/test/custodian" in response.headers["Location"]
