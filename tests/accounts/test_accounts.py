"""Sign-up by role, verification, sign-in, passwords and profiles, through the pages."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import CustodianStatus, Role, User
from engage.audit import AuditEvent
from engage.timeutil import utcnow
from tests.conftest import PASSWORD, post_form, sign_in

SIGN_UP_BASE = {
    "display_name": "Sam",
    "password": "a long enough passphrase",
    "password_confirm": "a long enough passphrase",
    "country": "SE",
    "language": "sv",
}


def _user(session, email: str) -> User:
    session.expire_all()
    return session.scalar(sa.select(User).where(User.email == email))


def _actions(session, user_id: int | None = None) -> list[str]:
    query = sa.select(AuditEvent.action).order_by(AuditEvent.id)
    if user_id is not None:
        query = query.where(AuditEvent.subject_user_id == user_id)
    return list(session.scalars(query))


@pytest.mark.parametrize(
    ("role", "extra"),
    [
        ("participant", {}),
        ("clinician", {"profession": "MS nurse", "institution": "Aarhus University Hospital"}),
        ("organisation", {"organisation_name": "MS Society of Sweden"}),
    ],
)
def test_sign_up_verify_and_sign_in_in_each_self_service_role(
    client, session, mailbox, role, extra
):
    email = f"Sam.{role}@Example.org"
    response = post_form(
        client, "/sign-up", {**SIGN_UP_BASE, "role": role, "email": email, **extra}
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/sign-up/check-email")

    user = _user(session, email.lower())
    assert user.role == Role(role)
    assert user.email_verified_at is None
    assert user.password_hash.startswith("$argon2id$")
    for key, value in extra.items():
        assert getattr(user, key) == value

    message = mailbox.last_to(email.lower())
    assert message.subject == "Confirm your email address for Engage"
    link = message.link("/verify-email/")
    assert link.startswith("http://engage.test/verify-email/")
    path = link.removeprefix("http://engage.test")
    # Opening the link asks for the password and changes nothing; the password confirms the
    # address and signs the person in.
    page = client.get(path)
    assert page.status_code == 200 and "Confirm your email address" in page.get_data(as_text=True)
    assert _user(session, email.lower()).email_verified_at is None
    response = post_form(client, path, {"password": SIGN_UP_BASE["password"]})
    assert response.status_code == 302
    assert _user(session, email.lower()).email_verified_at is not None
    home = client.get("/").get_data(as_text=True)
    assert "Sam" in home and "Sign out" in home
    # The link works once.
    again = client.get(path)
    assert again.status_code == 400
    assert "This link has already been used" in again.get_data(as_text=True)
    assert _actions(session, user.id) == ["sign_up", "email_verified", "sign_in"]


def test_clinician_needs_profession_and_institution(client, session):
    response = post_form(
        client, "/sign-up", {**SIGN_UP_BASE, "role": "clinician", "email": "c@example.org"}
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Enter your profession." in page
    assert "Enter the hospital or practice where you work." in page
    # What the person typed is kept, except the password.
    assert 'value="c@example.org"' in page
    assert SIGN_UP_BASE["password"] not in page
    assert _user(session, "c@example.org") is None


def test_custodian_sign_up_is_a_request_without_rights_until_approved(
    client, session, make_registry, make_user
):
    registry = make_registry(code="DMSR", name="Danish MS Registry")
    other = make_registry(code="OFSEP", name="OFSEP")
    response = post_form(
        client,
        "/sign-up",
        {**SIGN_UP_BASE, "role": "custodian", "email": "cus@example.org", "registry": registry.id},
    )
    assert response.status_code == 302
    user = _user(session, "cus@example.org")
    assert user.custodian_status == CustodianStatus.PENDING
    assert not user.is_approved_custodian

    staff = make_user(Role.STAFF)
    sign_in(client, staff)
    response = post_form(
        client, f"/staff/users/{user.id}/custodian", {"decision": "approve", "registry": other.id}
    )
    assert response.status_code == 302
    user = _user(session, "cus@example.org")
    assert user.is_approved_custodian and user.custodian_registry_id == other.id
    assert "custodian_approved" in _actions(session, user.id)


def test_custodian_must_choose_an_existing_registry(client, session, make_registry):
    make_registry()
    response = post_form(
        client,
        "/sign-up",
        {**SIGN_UP_BASE, "role": "custodian", "email": "cus@example.org", "registry": 99999},
    )
    assert response.status_code == 400
    assert "Choose the registry you look after." in response.get_data(as_text=True)
    assert _user(session, "cus@example.org") is None


def test_sign_up_with_an_existing_email_answers_like_success_and_tells_the_owner(
    client, session, mailbox, make_user
):
    owner = make_user(Role.PARTICIPANT, email="owner@example.org")
    response = post_form(
        client,
        "/sign-up",
        {
            **SIGN_UP_BASE,
            "role": "clinician",
            "email": "OWNER@example.org",
            "profession": "x",
            "institution": "y",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/sign-up/check-email")
    assert mailbox.last_to("owner@example.org").subject == (
        "Someone tried to join Engage with your address"
    )
    assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 1
    assert _user(session, "owner@example.org").role == owner.role


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1", "Use at least 10 characters."),
        ("password123", "This password is too common"),
        ("aaaaaaaaaaaa", "repeats too few characters"),
        ("weak.user@example.org", "must not be your email address"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(client, session, password, reason):
    response = post_form(
        client,
        "/sign-up",
        {
            **SIGN_UP_BASE,
            "role": "participant",
            "email": "weak.user@example.org",
            "password": password,
            "password_confirm": password,
        },
    )
    assert response.status_code == 400
    assert reason in response.get_data(as_text=True)
    assert _user(session, "weak.user@example.org") is None


def test_sign_in_failures_say_only_that_email_or_password_is_wrong(client, session, make_user):
    user = make_user(Role.PARTICIPANT)
    unknown = post_form(client, "/sign-in", {"email": "nobody@example.org", "password": PASSWORD})
    wrong = post_form(client, "/sign-in", {"email": user.email, "password": "not the password"})
    for response in (unknown, wrong):
        assert response.status_code == 400
        assert "The email address or password is wrong." in response.get_data(as_text=True)
    assert _actions(session).count("sign_in_failed") == 2


def test_deactivated_account_cannot_sign_in(client, make_user):
    user = make_user(Role.PARTICIPANT, is_active=False)
    response = post_form(client, "/sign-in", {"email": user.email, "password": PASSWORD})
    assert response.status_code == 400
    assert "The email address or password is wrong." in response.get_data(as_text=True)


def test_sign_in_redirects_only_to_local_next(client, make_user):
    user = make_user(Role.PARTICIPANT)
    response = post_form(
        client, "/sign-in?next=https://evil.example/", {"email": user.email, "password": PASSWORD}
    )
    assert response.headers["Location"] == "/"
    client.get("/")  # new page, same session
    post_form(client, "/sign-out")
    response = post_form(
        client, "/sign-in?next=/account", {"email": user.email, "password": PASSWORD}
    )
    assert response.headers["Location"] == "/account"


def test_remember_me_sets_a_lasting_cookie(client, make_user):
    user = make_user(Role.PARTICIPANT)
    response = post_form(
        client, "/sign-in", {"email": user.email, "password": PASSWORD, "remember": "y"}
    )
    cookies = response.headers.getlist("Set-Cookie")
    remember = [c for c in cookies if c.startswith("remember_token=")]
    assert remember and "HttpOnly" in remember[0] and "Expires=" in remember[0]


def test_sign_out_is_post_only_and_audited(client, session, make_user):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    assert client.get("/sign-out").status_code == 405
    assert client.get("/account").status_code == 200
    assert post_form(client, "/sign-out").status_code == 302
    assert client.get("/account").status_code == 302
    assert _actions(session, user.id)[-1] == "sign_out"


def test_verification_link_tampered_or_expired_is_refused(app, client, session, mailbox):
    post_form(client, "/sign-up", {**SIGN_UP_BASE, "role": "participant", "email": "v@example.org"})
    link = mailbox.last_to("v@example.org").link("/verify-email/")
    path = link.removeprefix("http://engage.test")
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    response = client.get(tampered)
    assert response.status_code == 400
    assert "This link is not valid." in response.get_data(as_text=True)
    app.config["EMAIL_VERIFICATION_MAX_AGE"] = -1
    response = client.get(path)
    assert response.status_code == 400
    assert "This link has expired." in response.get_data(as_text=True)
    assert _user(session, "v@example.org").email_verified_at is None


def test_password_reset_link_works_once(client, session, mailbox, make_user):
    user = make_user(Role.PARTICIPANT)
    response = post_form(client, "/reset-password", {"email": user.email})
    assert response.status_code == 200
    link = mailbox.last_to(user.email).link("/reset-password/")
    path = link.removeprefix("http://engage.test")
    new = "another long passphrase"
    response = post_form(client, path, {"password": new, "password_confirm": new})
    assert response.status_code == 302
    assert mailbox.last_to(user.email).subject == "Your Engage password was changed"
    # Second use of the same link is refused.
    response = post_form(
        client,
        path,
        {"password": "yet another passphrase", "password_confirm": "yet another passphrase"},
    )
    assert response.status_code == 400
    assert "already been used" in response.get_data(as_text=True)
    sign_in(client, user, password=new)
    actions = _actions(session, user.id)
    assert "password_reset_requested" in actions and "password_reset" in actions


def test_password_reset_for_unknown_email_looks_the_same(client, mailbox, make_user):
    user = make_user(Role.PARTICIPANT)
    known = post_form(client, "/reset-password", {"email": user.email})
    unknown = post_form(client, "/reset-password", {"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 200

    def comparable(page, email: str) -> str:
        # CSRF tokens carry a timestamp, so they may differ between any two pages.
        text = re.sub(
            r'(name="csrf[-_]token" (?:content|value)=)"[^"]+"', r"\1", page.get_data(as_text=True)
        )
        return text.replace(email, "ADDRESS")

    assert comparable(known, user.email) == comparable(unknown, "nobody@example.org")
    assert mailbox.to("nobody@example.org") == []


def test_change_password_ends_other_sessions(app, client, session, make_user, mailbox):
    user = make_user(Role.PARTICIPANT)
    other_device = app.test_client()
    sign_in(client, user)
    sign_in(other_device, user)
    new = "a brand new passphrase"
    response = post_form(
        client,
        "/account/password",
        {"current_password": PASSWORD, "password": new, "password_confirm": new},
    )
    assert response.status_code == 302
    assert client.get("/account").status_code == 200
    assert other_device.get("/account").status_code == 302
    assert mailbox.last_to(user.email).subject == "Your Engage password was changed"
    assert "password_changed" in _actions(session, user.id)


def test_change_password_with_wrong_current_password(client, make_user):
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    response = post_form(
        client,
        "/account/password",
        {
            "current_password": "wrong wrong wrong",
            "password": "a brand new passphrase",
            "password_confirm": "a brand new passphrase",
        },
    )
    assert response.status_code == 400
    assert "Your current password is not right." in response.get_data(as_text=True)


def test_edit_profile_and_clinician_claim_needs_rechecking(client, session, make_user):
    user = make_user(Role.CLINICIAN, clinician_verified=True)
    sign_in(client, user)
    response = post_form(
        client,
        "/account",
        {
            "display_name": "Dr New",
            "country": "DK",
            "language": "da",
            "profession": "Neurologist",
            "institution": "Another hospital",
        },
    )
    assert response.status_code == 302
    saved = _user(session, user.email)
    assert (saved.display_name, saved.country, saved.language) == ("Dr New", "DK", "da")
    assert saved.clinician_verified_at is None


def test_participant_records_registry_enrolments(client, session, make_user, make_registry):
    first, second = make_registry(code="A1"), make_registry(code="B2")
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    response = post_form(client, "/account/registries", {"registries": [first.id, second.id]})
    assert response.status_code == 302
    page = client.get("/account").get_data(as_text=True)
    assert first.name in page and second.name in page
    response = post_form(client, "/account/registries", {"registries": [second.id]})
    assert response.status_code == 302
    page = client.get("/account").get_data(as_text=True)
    assert first.name not in page and second.name in page


def test_unverified_sign_ups_are_removed_after_retention(app, session, make_user):
    from engage.accounts.jobs import remove_unverified_accounts

    stale = make_user(Role.PARTICIPANT, email_verified=False)
    fresh_verified = make_user(Role.PARTICIPANT)
    later = utcnow() + timedelta(days=app.config["UNVERIFIED_ACCOUNT_RETENTION_DAYS"] + 1)
    summary = remove_unverified_accounts(session, later, app.config)
    session.commit()
    assert summary == "removed 1 unverified account(s)"
    assert session.get(User, stale.id) is None
    assert session.get(User, fresh_verified.id) is not None
    assert "unverified_account_removed" in _actions(session, stale.id)
