"""Suppressed addresses: the queries delivery relies on, and the staff page that lists them,
suppresses an address by hand and lifts a suppression."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role
from engage.audit import AuditEvent
from engage.timeutil import utcnow
from newsletters import suppressions
from newsletters.errors import NotFound
from newsletters.models import Suppression, SuppressionReason
from tests.conftest import post_form

PAGE = "/staff/newsletters/suppressions"
REMOVE = "/staff/newsletters/suppressions/remove"


def _suppress(session, *emails: str, reason=SuppressionReason.BOUNCE) -> None:
    start = utcnow() - timedelta(days=1)
    for n, email in enumerate(emails):
        suppressions.add_suppression(
            session, email, reason, "sendgrid:e", start + timedelta(minutes=n)
        )
    session.commit()


# Services -----------------------------------------------------------------------------------------
def test_addresses_are_compared_lower_cased(session):
    _suppress(session, "Jane@Example.org")

    assert suppressions.is_suppressed(session, " jane@EXAMPLE.org ")
    assert not suppressions.is_suppressed(session, "john@example.org")


def test_suppressed_among_names_the_suppressed_addresses_of_a_batch(session):
    _suppress(session, "a@example.org", "b@example.org")

    found = suppressions.suppressed_among(
        session, ["A@example.org", "c@example.org", "", "b@example.org"]
    )

    assert found == {"a@example.org", "b@example.org"}
    assert suppressions.suppressed_among(session, []) == set()


def test_adding_a_suppression_twice_keeps_the_first(session):
    now = utcnow()
    assert suppressions.add_suppression(
        session, "a@example.org", SuppressionReason.BOUNCE, "sendgrid:1", now
    )
    assert not suppressions.add_suppression(
        session, "A@example.org", SuppressionReason.SPAM_REPORT, "sendgrid:2", now
    )
    session.commit()

    row = session.get(Suppression, "a@example.org")
    assert (row.reason, row.source) == (SuppressionReason.BOUNCE, "sendgrid:1")


def test_removing_a_suppression_that_does_not_exist_is_refused(session, make_user):
    staff = make_user(Role.STAFF)

    with pytest.raises(NotFound):
        suppressions.remove_suppression(session, staff, "nobody@example.org", utcnow())


def test_pages_list_the_newest_first(session):
    _suppress(session, *[f"p{n:02d}@example.org" for n in range(55)])

    first = suppressions.suppression_page(session, 1)
    second = suppressions.suppression_page(session, 2)

    assert (first.total, len(first.rows), first.has_next) == (55, 50, True)
    assert first.rows[0].email == "p54@example.org"
    assert [row.email for row in second.rows] == [f"p{n:02d}@example.org" for n in range(4, -1, -1)]
    assert not second.has_next


# The staff page ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (None, 302),
        (Role.PARTICIPANT, 403),
        (Role.CLINICIAN, 403),
        (Role.ORGANISATION, 403),
        (Role.STAFF, 200),
    ],
)
def test_the_page_is_for_staff_only(client, as_role, role, expected):
    as_role(role)

    response = client.get(PAGE)

    assert response.status_code == expected
    if role is None:
        assert "/sign-in" in response.headers["Location"]


@pytest.mark.parametrize("role", [None, Role.PARTICIPANT, Role.CUSTODIAN])
@pytest.mark.parametrize("url", [PAGE, REMOVE])
def test_only_staff_may_change_suppressions(client, session, as_role, role, url):
    _suppress(session, "jane@example.org")
    as_role(role)

    response = post_form(client, url, {"email": "jane@example.org"})

    assert response.status_code in (302, 403)
    session.expire_all()
    assert [row.email for row in session.scalars(sa.select(Suppression))] == ["jane@example.org"]


def test_staff_see_each_address_with_why_and_since_when(client, session, as_role):
    _suppress(session, "jane@example.org")
    _suppress(session, "spam@example.org", reason=SuppressionReason.SPAM_REPORT)
    as_role(Role.STAFF)

    page = client.get(PAGE).get_data(as_text=True)

    assert "jane@example.org" in page
    assert "The address bounced" in page
    assert "Its owner reported a newsletter as spam" in page
    assert "2 addresses suppressed" in page
    assert len(re.findall(r"<h1[ >]", page)) == 1
    assert 'for="email"' in page
    assert "Lift the suppression of jane@example.org" in page


def test_staff_suppress_an_address_by_hand(client, session, as_role):
    staff = as_role(Role.STAFF)

    response = post_form(client, PAGE, {"email": " Jane@Example.org "})

    assert response.status_code == 303
    assert "jane@example.org is suppressed" in client.get(PAGE).get_data(as_text=True)
    row = session.get(Suppression, "jane@example.org")
    assert (row.reason, row.source) == (SuppressionReason.MANUAL, f"staff:{staff.id}")
    actions = session.scalars(sa.select(AuditEvent.action)).all()
    assert "newsletter_suppression_added" in actions


def test_suppressing_an_address_already_suppressed_changes_nothing(client, session, as_role):
    _suppress(session, "jane@example.org")
    as_role(Role.STAFF)

    response = post_form(client, PAGE, {"email": "jane@example.org"}, follow_redirects=True)

    assert "already suppressed; nothing changed" in response.get_data(as_text=True)
    assert session.get(Suppression, "jane@example.org").reason == SuppressionReason.BOUNCE


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Enter the email address to suppress."),
        ("not an address", "Enter an email address like name@example.org."),
        ("a" * 250 + "@example.org", "An email address has at most 254 characters."),
        ("jane\x00@example.org", "invisible NUL character"),
    ],
)
def test_a_mistyped_address_is_explained_and_nothing_changes(
    client, session, as_role, typed, message
):
    as_role(Role.STAFF)

    response = post_form(client, PAGE, {"email": typed})

    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert 'aria-describedby="email-help email-error"' in page
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 0


def test_staff_lift_a_suppression(client, session, as_role):
    _suppress(session, "jane@example.org", "john@example.org")
    as_role(Role.STAFF)

    response = post_form(client, REMOVE, {"email": "jane@example.org"}, follow_redirects=True)

    assert "jane@example.org is no longer suppressed" in response.get_data(as_text=True)
    session.expire_all()
    assert [row.email for row in session.scalars(sa.select(Suppression))] == ["john@example.org"]
    assert "newsletter_suppression_removed" in session.scalars(sa.select(AuditEvent.action)).all()


@pytest.mark.parametrize(
    ("typed", "status"), [("nobody@example.org", 404), ("", 400), ("x" * 300, 400)]
)
def test_lifting_a_suppression_that_is_not_there_is_explained(
    client, session, as_role, typed, status
):
    _suppress(session, "jane@example.org")
    as_role(Role.STAFF)

    response = post_form(client, REMOVE, {"email": typed})

    assert response.status_code == status
    # The message is announced (copied into the page's live region), not an alert of its own.
    assert '<div class="notice notice-error" data-announce>' in response.get_data(as_text=True)
    assert session.scalar(sa.select(sa.func.count()).select_from(Suppression)) == 1


@pytest.mark.sqlite_only
@pytest.mark.parametrize("url", [PAGE, REMOVE])
def test_changes_need_the_forms_csrf_token(client, session, as_role, url):
    as_role(Role.STAFF)

    response = client.post(url, data={"email": "jane@example.org"})

    assert response.status_code == 400


def test_the_page_number_is_clamped(client, as_role):
    as_role(Role.STAFF)

    assert client.get(PAGE + "?page=-4").status_code == 200
    assert client.get(PAGE + "?page=abc").status_code == 200
    assert client.get(PAGE + "?page=99999999999").status_code == 200
