"""Hostile input to every form: never a 5xx, and nothing stored that should not be.

``FORMS`` lists every form of the app with data that *is* accepted (a test checks that), the
state that data changes, and which of its fields are text, choices or numbers. The tests
spoil that data one way at a time and check the answer is a 4xx and the state is unchanged.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape

from engage.accounts import services as account_services
from engage.accounts.models import CustodianStatus, RegistryEnrolment, Role, User
from engage.audit import AuditEvent
from engage.forms import NUL_MESSAGE
from engage.registries.models import Registry
from engage.security import make_token
from tests.conftest import PASSWORD, csrf_token, post_form, sign_in

NEW_PASSWORD = "a long enough passphrase"
MAX_CONTENT_LENGTH = 1024 * 1024
TRY_AGAIN = "Please try again"
FORM_EXPIRED = "Your form expired or was sent from another page."
TOO_LARGE = "What you sent is too large."
ERROR_SUMMARY = "Please correct the following"
SCRIPT = '<script>alert("engage")</script>'
ATTRIBUTE_BREAKER = '"><img src=x onerror=alert(1)>'


@dataclass
class Kit:
    """What the form preparations need: the app, a client, a session and the factories."""

    app: Flask
    client: FlaskClient
    session: sa.orm.Session
    make_user: Callable[..., User]
    make_registry: Callable[..., Registry]
    as_role: Callable[..., User]
    mailbox: Any

    def fresh(self, model: type, row_id: int) -> Any:
        """The row as the database has it now."""
        self.session.expire_all()
        return self.session.get(model, row_id)

    def count(self, query: sa.Select) -> int:
        """``SELECT count(*)`` of ``query``'s rows."""
        self.session.expire_all()
        return self.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))

    def audit_count(self, action: str) -> int:
        """How many audit events of ``action`` there are."""
        return self.count(sa.select(AuditEvent.id).where(AuditEvent.action == action))

    def token(self, purpose: str, payload: dict[str, Any]) -> str:
        """A correctly signed token, as an emailed link would carry."""
        with self.app.app_context():
            return make_token(purpose, payload)


@pytest.fixture
def kit(app, client, session, make_user, make_registry, as_role, mailbox) -> Kit:
    """The app, a client, a session and the factories, in one object."""
    return Kit(app, client, session, make_user, make_registry, as_role, mailbox)


@dataclass
class Prepared:
    """One form, ready to post: where, data that is accepted, and what that data changes."""

    url: str
    data: dict[str, Any]
    state: Callable[[], Any]
    # The answer to an accepted post: a status, or "→ <path>" for a redirect.
    success: int | str


USER_COLUMNS = (
    "email",
    "display_name",
    "role",
    "country",
    "language",
    "profession",
    "institution",
    "organisation_name",
    "password_hash",
    "is_active",
    "session_version",
    "clinician_verified_at",
    "custodian_status",
    "custodian_registry_id",
)


def _user_state(kit: Kit, user_id: int) -> dict[str, Any]:
    user = kit.fresh(User, user_id)
    return {name: getattr(user, name) for name in USER_COLUMNS}


def _registries_state(kit: Kit) -> list[tuple]:
    kit.session.expire_all()
    return [
        tuple(row)
        for row in kit.session.execute(
            sa.select(
                Registry.id, Registry.code, Registry.name, Registry.country, Registry.is_active
            ).order_by(Registry.id)
        )
    ]


# Every form of the app --------------------------------------------------------------------
def _sign_up(kit: Kit) -> Prepared:
    registry = kit.make_registry(code="SMSREG", name="Swedish MS registry")
    # A custodian sign-up, so that the registry number is checked too.
    data = {
        "role": "custodian",
        "display_name": "Sam",
        "email": "sam@example.org",
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
        "country": "SE",
        "language": "sv",
        "registry": str(registry.id),
        "profession": "Data manager",
        "institution": "Karolinska",
        "organisation_name": "",
    }
    return Prepared(
        "/sign-up", data, lambda: kit.count(sa.select(User.id)), "→ /sign-up/check-email"
    )


def _sign_in(kit: Kit) -> Prepared:
    user = kit.make_user(Role.PARTICIPANT)
    return Prepared(
        "/sign-in",
        {"email": user.email, "password": PASSWORD},
        lambda: kit.audit_count("sign_in"),
        "→ /",
    )


def _request_reset(kit: Kit) -> Prepared:
    user = kit.make_user(Role.PARTICIPANT)
    return Prepared(
        "/reset-password",
        {"email": user.email},
        lambda: (len(kit.mailbox.messages), kit.audit_count("password_reset_requested")),
        200,
    )


def _reset_password(kit: Kit) -> Prepared:
    user = kit.make_user(Role.PARTICIPANT)
    token = kit.token("reset-password", account_services.reset_payload(user))
    return Prepared(
        f"/reset-password/{token}",
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
        lambda: _user_state(kit, user.id),
        "→ /sign-in",
    )


def _profile_clinician(kit: Kit) -> Prepared:
    user = kit.as_role(Role.CLINICIAN, clinician_verified=True)
    data = {
        "display_name": "Dr Sam",
        "country": "DK",
        "language": "da",
        "profession": "MS nurse",
        "institution": "Rigshospitalet",
    }
    return Prepared("/account", data, lambda: _user_state(kit, user.id), "→ /account")


def _profile_organisation(kit: Kit) -> Prepared:
    user = kit.as_role(Role.ORGANISATION)
    data = {
        "display_name": "Sam",
        "country": "SE",
        "language": "en",
        "organisation_name": "MS Society of Sweden",
    }
    return Prepared("/account", data, lambda: _user_state(kit, user.id), "→ /account")


def _change_password(kit: Kit) -> Prepared:
    user = kit.as_role(Role.PARTICIPANT)
    data = {
        "current_password": PASSWORD,
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
    }
    return Prepared("/account/password", data, lambda: _user_state(kit, user.id), "→ /account")


def _enrolment(kit: Kit) -> Prepared:
    registry = kit.make_registry()
    user = kit.as_role(Role.PARTICIPANT)
    query = sa.select(RegistryEnrolment.registry_id).where(RegistryEnrolment.user_id == user.id)
    return Prepared(
        "/account/registries",
        {"registries": str(registry.id)},
        lambda: kit.count(query),
        "→ /account",
    )


def _staff_target(
    kit: Kit, role: Role, path: str, data: dict[str, str], **options: Any
) -> Prepared:
    target = kit.make_user(role, **options)
    kit.as_role(Role.STAFF)
    return Prepared(
        f"/staff/users/{target.id}/{path}",
        data,
        lambda: _user_state(kit, target.id),
        f"→ /staff/users/{target.id}",
    )


def _verify_clinician(kit: Kit) -> Prepared:
    return _staff_target(kit, Role.CLINICIAN, "clinician", {"verified": "yes"})


def _decide_custodian(kit: Kit) -> Prepared:
    other_registry = kit.make_registry()
    return _staff_target(
        kit,
        Role.CUSTODIAN,
        "custodian",
        {"decision": "approve", "registry": str(other_registry.id), "reason": ""},
        custodian_status=CustodianStatus.PENDING,
    )


def _change_role(kit: Kit) -> Prepared:
    return _staff_target(kit, Role.PARTICIPANT, "role", {"role": "organisation"})


def _set_active(kit: Kit) -> Prepared:
    return _staff_target(kit, Role.PARTICIPANT, "active", {"active": "no"})


def _new_registry(kit: Kit) -> Prepared:
    kit.as_role(Role.STAFF)
    data = {"code": "NEWREG", "name": "New registry", "country": "DK", "is_active": "y"}
    return Prepared(
        "/staff/registries/new", data, lambda: _registries_state(kit), "→ /staff/registries"
    )


def _edit_registry(kit: Kit) -> Prepared:
    registry = kit.make_registry(code="SMSREG", name="Swedish MS registry")
    kit.as_role(Role.STAFF)
    data = {"code": "SMSREG2", "name": "Renamed registry", "country": "INT", "is_active": "y"}
    return Prepared(
        f"/staff/registries/{registry.id}/edit",
        data,
        lambda: _registries_state(kit),
        "→ /staff/registries",
    )


@dataclass(frozen=True)
class FormSpec:
    """A form of the app and the kinds of its fields."""

    prepare: Callable[[Kit], Prepared]
    text_fields: tuple[str, ...] = ()
    choice_fields: tuple[str, ...] = ()
    number_fields: tuple[str, ...] = ()


FORMS: dict[str, FormSpec] = {
    "sign-up": FormSpec(
        _sign_up,
        (
            "display_name",
            "email",
            "password",
            "password_confirm",
            "profession",
            "institution",
            "organisation_name",
        ),
        ("role", "country", "language"),
        ("registry",),
    ),
    "sign-in": FormSpec(_sign_in, ("email", "password")),
    "reset request": FormSpec(_request_reset, ("email",)),
    "reset with token": FormSpec(_reset_password, ("password", "password_confirm")),
    "profile (clinician)": FormSpec(
        _profile_clinician,
        ("display_name", "profession", "institution"),
        ("country", "language"),
    ),
    "profile (organisation)": FormSpec(
        _profile_organisation, ("display_name", "organisation_name"), ("country", "language")
    ),
    "change password": FormSpec(
        _change_password, ("current_password", "password", "password_confirm")
    ),
    "registries enrolment": FormSpec(_enrolment, number_fields=("registries",)),
    "staff: clinician verification": FormSpec(_verify_clinician, choice_fields=("verified",)),
    "staff: custodian decision": FormSpec(
        _decide_custodian, ("reason",), ("decision",), ("registry",)
    ),
    "staff: role": FormSpec(_change_role, choice_fields=("role",)),
    "staff: active flag": FormSpec(_set_active, choice_fields=("active",)),
    "staff: new registry": FormSpec(_new_registry, ("code", "name"), ("country",)),
    "staff: edit registry": FormSpec(_edit_registry, ("code", "name"), ("country",)),
}

TEXT_CASES = [(form, field) for form, spec in FORMS.items() for field in spec.text_fields]
CHOICE_CASES = [(form, field) for form, spec in FORMS.items() for field in spec.choice_fields]
NUMBER_CASES = [(form, field) for form, spec in FORMS.items() for field in spec.number_fields]


def _landing(response: Any) -> int | str:
    """The status, or "→ path" for a redirect."""
    if 300 <= response.status_code < 400:
        return f"→ {urlsplit(response.headers['Location']).path}"
    return response.status_code


def _post_spoiled(kit: Kit, form: str, **changes: Any) -> tuple[Any, Prepared, Any]:
    """Prepare ``form``, post its data with ``changes``, and return (response, form, before)."""
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    response = post_form(kit.client, prepared.url, {**prepared.data, **changes})
    return response, prepared, before


def _assert_refused(response: Any, prepared: Prepared, before: Any, *texts: str) -> str:
    """A 400 page showing ``texts``, and nothing stored."""
    page = response.get_data(as_text=True)
    assert response.status_code == 400, page
    for text in texts:
        assert text in page
    assert prepared.state() == before
    return page


# The table is right ---------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_the_prepared_data_is_accepted_and_stored(kit, form):
    # Every refusal below spoils exactly this data, so it must be good to begin with.
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    response = post_form(kit.client, prepared.url, prepared.data)
    assert _landing(response) == prepared.success, response.get_data(as_text=True)
    assert prepared.state() != before


# CSRF --------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_missing_csrf_token_is_a_friendly_400_and_nothing_is_stored(kit, form):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    response = kit.client.post(prepared.url, data=prepared.data)
    _assert_refused(response, prepared, before, TRY_AGAIN, FORM_EXPIRED)


@pytest.mark.parametrize("form", FORMS)
def test_wrong_csrf_tokens_are_refused(kit, form):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    own = csrf_token(kit.client)
    wrong_tokens = {
        "another session's": csrf_token(kit.app.test_client()),
        "garbage": "not-a-token",
        "truncated": own[:-6],
        "with NUL": own + "\x00",
        "empty": "",
    }
    for kind, wrong in wrong_tokens.items():
        response = kit.client.post(prepared.url, data={**prepared.data, "csrf_token": wrong})
        assert response.status_code == 400, kind
        _assert_refused(response, prepared, before, TRY_AGAIN, FORM_EXPIRED)


# Bodies that are not an HTML form ---------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_json_bodies_are_not_read_as_a_form(kit, form):
    # Even with a valid CSRF token in the header a JSON body is not form data: the post is
    # handled as an empty form (refused, or for a list of checkboxes "none ticked").
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    token = csrf_token(kit.client)
    bodies = {
        "object": {**prepared.data, "csrf_token": token},
        "list": [prepared.data],
        "string": "display_name=Sam",
        "number": 42,
        "nested": {name: {"value": value} for name, value in prepared.data.items()},
        "lists": {name: [value, 1, None] for name, value in prepared.data.items()},
    }
    raw_bodies = {"null": "null", "malformed": '{"email": ', "empty": ""}
    headers = {"X-CSRFToken": token}
    responses = {
        **{
            shape: kit.client.post(prepared.url, json=body, headers=headers)
            for shape, body in bodies.items()
        },
        **{
            shape: kit.client.post(
                prepared.url, data=raw, headers=headers, content_type="application/json"
            )
            for shape, raw in raw_bodies.items()
        },
    }
    for shape, response in responses.items():
        assert response.status_code in (302, 400), shape
    assert prepared.state() == before


@pytest.mark.parametrize("form", FORMS)
def test_json_body_without_csrf_header_is_refused(kit, form):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    response = kit.client.post(
        prepared.url, json={**prepared.data, "csrf_token": csrf_token(kit.client)}
    )
    _assert_refused(response, prepared, before, TRY_AGAIN)


@pytest.mark.parametrize("form", FORMS)
def test_uploaded_files_in_place_of_fields_are_ignored(kit, form):
    # Engage takes no uploads: a file sent under a field's name is not that field's value.
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    data: dict[str, Any] = {"csrf_token": csrf_token(kit.client)}
    for name in prepared.data:
        data[name] = (io.BytesIO(b"<script>x</script>"), f"{name}.txt")
    response = kit.client.post(prepared.url, data=data, content_type="multipart/form-data")
    # Refused, or (registries enrolment) read as "no box ticked", which changes nothing here.
    assert response.status_code in (302, 400)
    assert prepared.state() == before


# Size --------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_body_over_max_content_length_is_a_4xx_page(kit, form):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    response = post_form(
        kit.client, prepared.url, {**prepared.data, "padding": "x" * (MAX_CONTENT_LENGTH + 1)}
    )
    _assert_refused(response, prepared, before, TOO_LARGE)


@pytest.mark.parametrize("form", FORMS)
def test_a_megabyte_value_within_max_content_length_is_refused(kit, form):
    # Werkzeug parses it (no form memory limit applies to url-encoded bodies): the form's
    # own length and choice checks refuse it.
    spec = FORMS[form]
    field = (*spec.text_fields, *spec.choice_fields, *spec.number_fields)[0]
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    data = {**prepared.data, "csrf_token": csrf_token(kit.client), field: "x" * 1_000_000}
    assert len(urlencode(data, doseq=True)) < MAX_CONTENT_LENGTH
    response = kit.client.post(prepared.url, data=data)
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


@pytest.mark.parametrize("length", [10_000])
@pytest.mark.parametrize(("form", "field"), TEXT_CASES)
def test_over_long_text_is_refused_next_to_the_form(kit, form, field, length):
    response, prepared, before = _post_spoiled(kit, form, **{field: "a" * length})
    page = _assert_refused(response, prepared, before)
    assert ERROR_SUMMARY in page


# Characters ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("form", "field"), TEXT_CASES)
def test_nul_in_text_is_refused_not_a_500(kit, form, field):
    # PostgreSQL text cannot hold NUL: it must be a form error, never reach the database.
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    value = str(prepared.data[field]) or "x"
    spoiled = {field: value[:2] + "\x00" + value[2:]}
    response = post_form(kit.client, prepared.url, {**prepared.data, **spoiled})
    page = _assert_refused(response, prepared, before, ERROR_SUMMARY)
    if "password" not in field and field != "code":
        assert NUL_MESSAGE in page


@pytest.mark.parametrize(
    "sample",
    ["\x01\x07\x1b[31m\x7f", "🧠👩🏽\u200d⚕️ \u202eevil\u202c שלום \ufeff\u200b"],
    ids=["control characters", "emoji, RTL and invisible characters"],
)
@pytest.mark.parametrize(("form", "field"), TEXT_CASES)
def test_unusual_characters_are_stored_or_refused_never_a_500(kit, form, field, sample):
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    value = f"{prepared.data[field]}{sample}"
    response = post_form(kit.client, prepared.url, {**prepared.data, field: value})
    if response.status_code == 400:
        assert prepared.state() == before
    else:
        assert _landing(response) == prepared.success
        assert prepared.state() != before


@pytest.mark.parametrize("sample", ["Sam 🧠", "سام", "שלום עולם", "👩🏽\u200d⚕️ Dr S"])
def test_display_names_keep_emoji_and_rtl_text_exactly(kit, sample):
    prepared = _sign_up(kit)
    response = post_form(kit.client, prepared.url, {**prepared.data, "display_name": sample})
    assert _landing(response) == prepared.success
    kit.session.expire_all()
    user = kit.session.scalar(sa.select(User).where(User.email == "sam@example.org"))
    assert user.display_name == sample

    sign_in(kit.client, user, NEW_PASSWORD)
    response = post_form(
        kit.client, "/account", {"display_name": sample + "!", "country": "SE", "language": "en"}
    )
    assert _landing(response) == "→ /account"
    assert kit.fresh(User, user.id).display_name == sample + "!"


# Choices and numbers ------------------------------------------------------------------------------
def _assert_each_value_refused(kit: Kit, form: str, field: str, values: list[str]) -> None:
    prepared = FORMS[form].prepare(kit)
    before = prepared.state()
    for value in values:
        response = post_form(kit.client, prepared.url, {**prepared.data, field: value})
        assert response.status_code == 400, f"{field}={value[:20]!r}"
        _assert_refused(response, prepared, before, ERROR_SUMMARY)


@pytest.mark.parametrize(("form", "field"), CHOICE_CASES)
def test_unknown_choice_values_are_refused(kit, form, field):
    _assert_each_value_refused(kit, form, field, ["admin", "", "x" * 10_000, "\x00", "🧠"])


@pytest.mark.parametrize(("form", "field"), NUMBER_CASES)
def test_numbers_that_name_no_registry_are_refused(kit, form, field):
    _assert_each_value_refused(
        kit, form, field, ["abc", "-5", "1.5", "0", "99999999999999999999", "1e3"]
    )


@pytest.mark.parametrize("role", ["staff", "admin", "STAFF", "participant "])
def test_sign_up_refuses_roles_that_are_not_offered(kit, role):
    response, prepared, before = _post_spoiled(kit, "sign-up", role=role)
    _assert_refused(response, prepared, before, ERROR_SUMMARY)
    assert kit.count(sa.select(User.id).where(User.role == Role.STAFF)) == 0


def test_staff_cannot_grant_custodian_rights_by_role_change(kit):
    response, prepared, before = _post_spoiled(kit, "staff: role", role="custodian")
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


def test_enrolment_in_a_retired_registry_is_refused(kit):
    retired = kit.make_registry(is_active=False)
    response, prepared, before = _post_spoiled(
        kit, "registries enrolment", registries=str(retired.id)
    )
    _assert_refused(response, prepared, before, ERROR_SUMMARY)


def test_registry_codes_stay_unique_whatever_the_case(kit):
    kit.make_registry(code="OLDREG")
    response, prepared, before = _post_spoiled(kit, "staff: new registry", code=" oldreg ")
    _assert_refused(response, prepared, before, "Another registry already uses the code")


# Repeated fields -------------------------------------------------------------------------------
def test_sign_up_with_the_email_sent_twice_uses_the_first(kit):
    prepared = _sign_up(kit)
    data = {**prepared.data, "email": ["first@example.org", "second@example.org"]}
    assert _landing(post_form(kit.client, "/sign-up", data)) == prepared.success
    kit.session.expire_all()
    assert list(kit.session.scalars(sa.select(User.email))) == ["first@example.org"]


@pytest.mark.parametrize(
    ("roles", "created"),
    [
        (["staff", "participant"], None),
        (["participant", "staff"], Role.PARTICIPANT),
    ],
)
def test_sign_up_with_the_role_sent_twice_uses_the_first(kit, roles, created):
    prepared = _sign_up(kit)
    response = post_form(kit.client, "/sign-up", {**prepared.data, "role": roles})
    kit.session.expire_all()
    stored = list(kit.session.scalars(sa.select(User.role)))
    if created is None:
        assert response.status_code == 400
        assert stored == []
    else:
        assert _landing(response) == prepared.success
        assert stored == [created]


def test_a_registry_ticked_twice_is_one_enrolment(kit):
    prepared = _enrolment(kit)
    registry_id = prepared.data["registries"]
    response = post_form(kit.client, prepared.url, {"registries": [registry_id, registry_id]})
    assert _landing(response) == prepared.success
    assert prepared.state() == 1


def test_staff_role_sent_twice_uses_the_first(kit):
    prepared = _change_role(kit)
    response = post_form(kit.client, prepared.url, {"role": ["organisation", "staff"]})
    assert _landing(response) == prepared.success
    assert prepared.state()["role"] == Role.ORGANISATION


# Kept input ------------------------------------------------------------------------------------
def test_sign_up_keeps_name_and_email_but_never_echoes_the_password(kit):
    prepared = _sign_up(kit)
    secret = "my very secret passphrase"
    response = post_form(
        kit.client,
        "/sign-up",
        {
            **prepared.data,
            "display_name": "Sam Kept",
            "email": "kept@example.org",
            "password": secret,
            "password_confirm": secret + " typo",
        },
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "The two passwords are not the same." in page
    assert 'value="Sam Kept"' in page
    assert 'value="kept@example.org"' in page
    assert secret not in page
    assert prepared.state() == 0


# HTML in text is stored as text and shown escaped ----------------------------------------
def _assert_escaped(page: str, payload: str) -> None:
    """``payload`` appears in ``page`` only HTML-escaped."""
    assert payload not in page
    assert "<script>alert" not in page and "<img src=x" not in page
    assert str(escape(payload)) in page


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAKER])
def test_html_in_a_clinician_sign_up_is_shown_escaped_everywhere(kit, payload):
    response = post_form(
        kit.client,
        "/sign-up",
        {
            "role": "clinician",
            "display_name": payload,
            "email": "html@example.org",
            "password": NEW_PASSWORD,
            "password_confirm": NEW_PASSWORD,
            "country": "SE",
            "language": "en",
            "profession": payload,
            "institution": payload,
        },
    )
    assert _landing(response) == "→ /sign-up/check-email"
    kit.session.expire_all()
    user = kit.session.scalar(sa.select(User).where(User.email == "html@example.org"))
    assert (user.display_name, user.profession, user.institution) == (payload,) * 3
    _assert_escaped(kit.mailbox.last_to("html@example.org").html, payload)

    sign_in_response = post_form(
        kit.client, "/sign-in", {"email": user.email, "password": NEW_PASSWORD}
    )
    assert _landing(sign_in_response) == "→ /"
    _assert_escaped(kit.client.get("/").get_data(as_text=True), payload)  # welcome flash
    _assert_escaped(kit.client.get("/account").get_data(as_text=True), payload)

    staff_client = kit.app.test_client()
    sign_in(staff_client, kit.make_user(Role.STAFF))
    for url in ("/staff/users", f"/staff/users?q={user.email}", f"/staff/users/{user.id}"):
        _assert_escaped(staff_client.get(url).get_data(as_text=True), payload)
    response = post_form(staff_client, f"/staff/users/{user.id}/clinician", {"verified": "yes"})
    assert _landing(response) == f"→ /staff/users/{user.id}"
    _assert_escaped(staff_client.get(f"/staff/users/{user.id}").get_data(as_text=True), payload)


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAKER])
def test_html_in_an_organisation_profile_is_shown_escaped(kit, payload):
    user = kit.as_role(Role.ORGANISATION)
    response = post_form(
        kit.client,
        "/account",
        {
            "display_name": payload,
            "country": "SE",
            "language": "en",
            "organisation_name": payload,
        },
    )
    assert _landing(response) == "→ /account"
    assert kit.fresh(User, user.id).organisation_name == payload
    _assert_escaped(kit.client.get("/account").get_data(as_text=True), payload)
    staff_client = kit.app.test_client()
    sign_in(staff_client, kit.make_user(Role.STAFF))
    _assert_escaped(staff_client.get(f"/staff/users/{user.id}").get_data(as_text=True), payload)


def test_html_in_a_registry_name_is_shown_escaped_wherever_registries_are_listed(kit):
    staff = kit.make_user(Role.STAFF)
    sign_in(kit.client, staff)
    response = post_form(
        kit.client,
        "/staff/registries/new",
        {"code": "XSS", "name": SCRIPT, "country": "SE", "is_active": "y"},
    )
    assert _landing(response) == "→ /staff/registries"
    registry = kit.session.scalar(sa.select(Registry).where(Registry.code == "XSS"))
    assert registry.name == SCRIPT
    _assert_escaped(kit.client.get("/staff/registries").get_data(as_text=True), SCRIPT)
    page = kit.client.get(f"/staff/registries/{registry.id}/edit").get_data(as_text=True)
    _assert_escaped(page, SCRIPT)

    custodian = kit.make_user(
        Role.CUSTODIAN, registry=registry, custodian_status=CustodianStatus.PENDING
    )
    _assert_escaped(kit.client.get(f"/staff/users/{custodian.id}").get_data(as_text=True), SCRIPT)

    guest = kit.app.test_client()
    _assert_escaped(guest.get("/sign-up").get_data(as_text=True), SCRIPT)
    participant = kit.make_user(Role.PARTICIPANT)
    sign_in(guest, participant)
    assert (
        _landing(post_form(guest, "/account/registries", {"registries": str(registry.id)}))
        == "→ /account"
    )
    _assert_escaped(guest.get("/account/registries").get_data(as_text=True), SCRIPT)
    _assert_escaped(guest.get("/account").get_data(as_text=True), SCRIPT)


def test_html_in_a_decline_reason_is_escaped_in_the_email(kit):
    prepared = _decide_custodian(kit)
    response = post_form(kit.client, prepared.url, {"decision": "decline", "reason": SCRIPT})
    assert _landing(response) == prepared.success
    assert prepared.state()["custodian_status"] == CustodianStatus.DECLINED
    message = kit.mailbox.messages[-1]
    _assert_escaped(message.html, SCRIPT)
    assert SCRIPT in message.text  # plain text is not HTML: kept as typed


@pytest.mark.parametrize("payload", [SCRIPT, ATTRIBUTE_BREAKER])
def test_typed_values_echoed_back_are_escaped(kit, payload):
    response = post_form(kit.client, "/sign-in", {"email": payload, "password": "x"})
    assert response.status_code == 400
    _assert_escaped(response.get_data(as_text=True), payload)
    response = post_form(kit.client, "/reset-password", {"email": payload})
    assert response.status_code == 400
    _assert_escaped(response.get_data(as_text=True), payload)
    sign_in(kit.client, kit.make_user(Role.STAFF))
    page = kit.client.get("/staff/users", query_string={"q": payload[:100]})
    assert page.status_code == 200
    _assert_escaped(page.get_data(as_text=True), payload)


# The user search (GET) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [
        {"q": "x" * 10_000},
        {"q": "\x00"},
        {"q": "%_\\"},
        {"q": "🧠\u202e"},
        {"q": "' OR 1=1 --"},
        {"role": "admin"},
        {"role": "\x00"},
        {"role": ["staff", "admin"]},
        {"pending": "abc"},
        {"page": "abc"},
        {"page": "-5"},
        {"page": "0"},
        {"page": "1.5"},
        {"page": "99999999999999999999"},
        {"page": "\x00"},
        {"q": "a", "role": "participant", "pending": "y", "page": "2", "unknown": "x"},
    ],
    ids=lambda p: ",".join(f"{k}={str(v)[:12]!r}" for k, v in p.items()),
)
def test_user_search_survives_any_parameters(kit, params):
    kit.make_user(Role.PARTICIPANT, email="findme@example.org")
    sign_in(kit.client, kit.make_user(Role.STAFF))
    response = kit.client.get("/staff/users", query_string=params)
    assert response.status_code == 200
    assert "found." in response.get_data(as_text=True)
    audit = kit.client.get("/staff/audit", query_string={"page": params.get("page", "1")})
    assert audit.status_code == 200


def test_user_search_with_nul_or_over_long_text_is_not_a_filter(kit):
    kit.make_user(Role.PARTICIPANT, email="findme@example.org")
    sign_in(kit.client, kit.make_user(Role.STAFF))
    everyone = kit.client.get("/staff/users").get_data(as_text=True)
    assert "2 accounts found." in everyone
    for q in ("find\x00me", "x" * 101):
        page = kit.client.get("/staff/users", query_string={"q": q}).get_data(as_text=True)
        assert "2 accounts found." in page
    found = kit.client.get("/staff/users", query_string={"q": "FINDME"}).get_data(as_text=True)
    assert "1 account found." in found


def test_huge_ids_in_urls_are_not_found(kit):
    sign_in(kit.client, kit.make_user(Role.STAFF))
    for url in (
        "/staff/users/99999999999999999999",
        "/staff/users/2147483648",
        "/staff/registries/99999999999999999999/edit",
        "/staff/users/-1",
    ):
        assert kit.client.get(url).status_code == 404
    response = post_form(kit.client, "/staff/users/99999999999999999999/active", {"active": "no"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "next_url",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/%0d%0aSet-Cookie:%20x=1",
        "javascript:alert(1)",
        "/" + "a" * 5000,
        "/\x00",
    ],
)
def test_sign_in_next_never_leaves_the_site(kit, next_url):
    user = kit.make_user(Role.PARTICIPANT)
    response = post_form(
        kit.client,
        "/sign-in",
        {"email": user.email, "password": PASSWORD},
        query_string={"next": next_url},
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.netloc in ("", "localhost")
    assert location.path.startswith("/") and not location.path.startswith("//")
    assert "\n" not in response.headers["Location"] and "\r" not in response.headers["Location"]
    again = kit.client.get("/sign-in", query_string={"next": next_url})
    assert again.status_code == 302
    assert urlsplit(again.headers["Location"]).netloc in ("", "localhost")


# Links from emails ------------------------------------------------------------------------------
def _tampered(good: str, other_purpose: str) -> dict[str, str]:
    return {
        "random": "Zm9vYmFy.ZZZZZZ.aW52YWxpZC1zaWduYXR1cmUtaW52YWxpZC1zaWduYXR1cmU",
        "truncated": good[:-5],
        # The first character: the last one of a base64 signature may carry only padding bits.
        "one character changed": ("f" if good[0] != "f" else "g") + good[1:],
        "5,000 characters": good + "A" * (5000 - len(good)),
        "other purpose": other_purpose,
        "NUL": good + "%00",
        "dots": "..",
        "unicode": "🧠.\u202e.x",
    }


TAMPERINGS = list(_tampered("x" * 40, "y"))


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_tampered_verification_links_are_refused(kit, tampering):
    user = kit.make_user(Role.PARTICIPANT, email_verified=False)
    good = kit.token("verify-email", account_services.verification_payload(user))
    reset = kit.token("reset-password", account_services.reset_payload(user))
    token = _tampered(good, reset)[tampering]
    response = kit.client.get(f"/verify-email/{token}")
    assert response.status_code == 400
    assert "This link does not work" in response.get_data(as_text=True)
    assert kit.fresh(User, user.id).email_verified_at is None
    assert kit.client.get(f"/verify-email/{good}").status_code == 302  # the real one works
    assert kit.fresh(User, user.id).email_verified_at is not None


@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_tampered_reset_links_are_refused(kit, tampering):
    user = kit.make_user(Role.PARTICIPANT)
    good = kit.token("reset-password", account_services.reset_payload(user))
    verify = kit.token("verify-email", account_services.verification_payload(user))
    token = _tampered(good, verify)[tampering]
    before = _user_state(kit, user.id)
    assert kit.client.get(f"/reset-password/{token}").status_code == 400
    response = post_form(
        kit.client,
        f"/reset-password/{token}",
        {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    assert response.status_code == 400
    assert "This link does not work" in response.get_data(as_text=True)
    assert _user_state(kit, user.id) == before
    assert kit.client.get(f"/reset-password/{good}").status_code == 200  # the real one works


@pytest.mark.parametrize(
    "payload",
    [
        {"uid": "1", "email": "x"},
        {"uid": None},
        {"uid": [1]},
        {},
        {"uid": 2**40},
    ],
)
def test_signed_links_with_a_strange_payload_are_refused(kit, payload):
    user = kit.make_user(Role.PARTICIPANT, email_verified=False)
    payload = {**payload, "uid": user.id} if payload.get("uid") == 2**40 else payload
    for purpose, url in (
        ("verify-email", "/verify-email/"),
        ("reset-password", "/reset-password/"),
    ):
        token = kit.token(purpose, payload)
        assert kit.client.get(url + token).status_code == 400
    assert kit.fresh(User, user.id).email_verified_at is None


# Methods ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_get_the_405_page(kit, method):
    target = kit.make_user(Role.PARTICIPANT)
    registry = kit.make_registry()
    kit.as_role(Role.STAFF)
    before = _user_state(kit, target.id), _registries_state(kit)
    values = {
        "user_id": target.id,
        "registry_id": registry.id,
        "token": "x" * 40,
        "topic_id": 1,
        "comment_id": 1,
    }
    adapter = kit.app.url_map.bind("localhost")
    rules = [r for r in kit.app.url_map.iter_rules() if r.endpoint != "static"]
    for rule in rules:
        url = adapter.build(rule.endpoint, {k: values[k] for k in rule.arguments})
        response = kit.client.open(
            url, method=method, data={"csrf_token": csrf_token(kit.client), "active": "no"}
        )
        assert response.status_code == 405, url
        assert "That can't be done from here" in response.get_data(as_text=True)
        assert method not in response.headers["Allow"]
    assert len(rules) > 20  # every page was tried
    assert (_user_state(kit, target.id), _registries_state(kit)) == before
