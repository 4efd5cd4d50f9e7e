"""Staff pages: people, professional verification, custodian requests, roles, registries."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from engage.accounts.models import CustodianStatus, Role, User
from engage.audit import AuditEvent
from engage.registries.models import Registry
from tests.conftest import post_form, sign_in


@pytest.fixture
def staff(client, make_user):
    user = make_user(Role.STAFF, display_name="Staff Member")
    sign_in(client, user)
    return user


def _audit(session, action: str) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)))


def _fresh(session, user: User) -> User:
    session.expire_all()
    return session.get(User, user.id)


def test_list_and_search_people(client, staff, make_user):
    make_user(Role.PARTICIPANT, display_name="Ingrid Holm", email="ingrid@example.org")
    make_user(Role.CLINICIAN, display_name="Dr Lund", email="lund@clinic.example")
    page = client.get("/staff/users?q=ingrid").get_data(as_text=True)
    assert "Ingrid Holm" in page and "Dr Lund" not in page and "1 account found." in page
    page = client.get("/staff/users?role=clinician").get_data(as_text=True)
    assert "Dr Lund" in page and "Ingrid Holm" not in page
    page = client.get("/staff/users?pending=y").get_data(as_text=True)
    assert "Dr Lund" in page and "Ingrid Holm" not in page
    # Wildcards typed by staff are literal text.
    assert "0 accounts found." in client.get("/staff/users?q=%25_").get_data(as_text=True)


def test_people_list_paginates(client, staff, make_user):
    for n in range(30):
        make_user(Role.PARTICIPANT, display_name=f"Person {n:02d}")
    first = client.get("/staff/users").get_data(as_text=True)
    second = client.get("/staff/users?page=2").get_data(as_text=True)
    assert "Page 1 of 2" in first and "Page 2 of 2" in second
    assert "31 accounts found." in first
    row_link = re.compile(r'href="/staff/users/\d+"')
    assert (len(row_link.findall(first)), len(row_link.findall(second))) == (25, 6)


def test_verify_a_clinician(client, session, staff, make_user):
    clinician = make_user(Role.CLINICIAN)
    response = post_form(client, f"/staff/users/{clinician.id}/clinician", {"verified": "yes"})
    assert response.status_code == 302
    assert _fresh(session, clinician).is_verified_clinician
    [event] = _audit(session, "clinician_verified")
    assert (event.actor_id, event.subject_user_id) == (staff.id, clinician.id)
    post_form(client, f"/staff/users/{clinician.id}/clinician", {"verified": "no"})
    assert not _fresh(session, clinician).is_verified_clinician
    assert len(_audit(session, "clinician_unverified")) == 1


def test_verifying_a_non_clinician_is_refused(client, session, staff, make_user):
    participant = make_user(Role.PARTICIPANT)
    response = post_form(client, f"/staff/users/{participant.id}/clinician", {"verified": "yes"})
    assert response.status_code == 400
    assert "Only healthcare professionals" in response.get_data(as_text=True)
    assert _fresh(session, participant).clinician_verified_at is None


def test_decline_a_custodian_request_needs_a_reason_and_tells_the_person(
    client, session, staff, make_user, mailbox
):
    custodian = make_user(Role.CUSTODIAN, custodian_status=CustodianStatus.PENDING)
    no_reason = post_form(client, f"/staff/users/{custodian.id}/custodian", {"decision": "decline"})
    assert no_reason.status_code == 400
    assert "Give a reason when declining a request." in no_reason.get_data(as_text=True)
    assert _fresh(session, custodian).custodian_status == CustodianStatus.PENDING
    response = post_form(
        client,
        f"/staff/users/{custodian.id}/custodian",
        {"decision": "decline", "reason": "We could not confirm your role at the registry."},
    )
    assert response.status_code == 302
    assert _fresh(session, custodian).custodian_status == CustodianStatus.DECLINED
    message = mailbox.last_to(custodian.email)
    assert "was not approved" in message.text
    assert "We could not confirm your role at the registry." in message.text
    assert len(_audit(session, "custodian_declined")) == 1
    # A decided request can't be decided again.
    again = post_form(client, f"/staff/users/{custodian.id}/custodian", {"decision": "approve"})
    assert again.status_code == 400


def test_approved_custodian_is_told_and_bound(
    client, session, staff, make_user, make_registry, mailbox
):
    registry = make_registry(name="Swedish MS Registry", code="SMSREG")
    custodian = make_user(
        Role.CUSTODIAN, custodian_status=CustodianStatus.PENDING, registry=registry
    )
    post_form(
        client,
        f"/staff/users/{custodian.id}/custodian",
        {"decision": "approve", "registry": registry.id},
    )
    assert _fresh(session, custodian).is_approved_custodian
    assert "You now act for Swedish MS Registry." in mailbox.last_to(custodian.email).text


def test_change_role_and_deactivate(app, client, session, staff, make_user):
    person = make_user(Role.PARTICIPANT)
    person_client = app.test_client()
    sign_in(person_client, person)
    assert (
        post_form(client, f"/staff/users/{person.id}/role", {"role": "organisation"}).status_code
        == 302
    )
    assert _fresh(session, person).role == Role.ORGANISATION
    [event] = _audit(session, "role_changed")
    assert event.details == {"old": "participant", "new": "organisation"}
    assert (
        post_form(client, f"/staff/users/{person.id}/role", {"role": "custodian"}).status_code
        == 400
    )
    assert (
        post_form(client, f"/staff/users/{person.id}/active", {"active": "no"}).status_code == 302
    )
    assert not _fresh(session, person).is_active
    assert person_client.get("/account").status_code == 302  # their session has ended
    assert len(_audit(session, "account_deactivated")) == 1


def test_staff_cannot_demote_or_deactivate_themselves(client, session, staff):
    assert (
        post_form(client, f"/staff/users/{staff.id}/role", {"role": "participant"}).status_code
        == 400
    )
    assert post_form(client, f"/staff/users/{staff.id}/active", {"active": "no"}).status_code == 400
    me = _fresh(session, staff)
    assert me.role == Role.STAFF and me.is_active


def test_manage_registries(client, session, staff):
    response = post_form(
        client,
        "/staff/registries/new",
        {"name": "Norwegian MS Registry", "code": "nmsr", "country": "NO", "is_active": "y"},
    )
    assert response.status_code == 302
    registry = session.scalar(sa.select(Registry).where(Registry.code == "NMSR"))
    assert registry.name == "Norwegian MS Registry" and registry.country == "NO"
    duplicate = post_form(
        client, "/staff/registries/new", {"name": "Other", "code": "NMSR", "country": "NO"}
    )
    assert duplicate.status_code == 400
    assert "already uses the code NMSR" in duplicate.get_data(as_text=True)
    response = post_form(
        client,
        f"/staff/registries/{registry.id}/edit",
        {"name": "Norwegian MS Registry and Biobank", "code": "NMSR", "country": "NO"},
    )
    assert response.status_code == 302
    session.expire_all()
    registry = session.get(Registry, registry.id)
    assert registry.name == "Norwegian MS Registry and Biobank" and not registry.is_active
    assert "Norwegian MS Registry and Biobank" in client.get("/staff/registries").get_data(
        as_text=True
    )
    assert len(_audit(session, "registry_created")) == 1
    assert len(_audit(session, "registry_updated")) == 1
    # A retired registry is no longer offered at sign-up.
    anonymous = client.application.test_client()
    assert "Norwegian MS Registry" not in anonymous.get("/sign-up").get_data(as_text=True)


def test_audit_log_page_lists_events_with_names(client, staff, make_user):
    clinician = make_user(Role.CLINICIAN, email="doc@clinic.example")
    post_form(client, f"/staff/users/{clinician.id}/clinician", {"verified": "yes"})
    page = client.get("/staff/audit").get_data(as_text=True)
    assert "clinician verified" in page and "doc@clinic.example" in page
    assert "sign in" in page


def test_audit_events_are_append_only(session, staff):
    from engage.audit import AuditLogIsAppendOnly

    event = session.scalars(sa.select(AuditEvent)).first()
    event.action = "something_else"
    with pytest.raises(AuditLogIsAppendOnly):
        session.flush()
    session.rollback()
    event = session.scalars(sa.select(AuditEvent)).first()
    session.delete(event)
    with pytest.raises(AuditLogIsAppendOnly):
        session.flush()


def test_people_list_page_links_keep_only_search_parameters(client, staff, make_user):
    for n in range(30):
        make_user(Role.PARTICIPANT, display_name=f"Person {n:02d}")
    response = client.get("/staff/users?q=person&endpoint=x&_external=1&_anchor=a")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'href="/staff/users?page=2&amp;q=person"' in page
