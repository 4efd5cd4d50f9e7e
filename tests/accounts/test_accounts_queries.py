"""What other packages may ask about accounts: only reachable people are recipients."""

from __future__ import annotations

from engage.accounts import queries
from engage.accounts.models import CustodianStatus, Role


def test_recipients_are_active_confirmed_accounts_by_role_country_and_language(session, make_user):
    wanted = make_user(Role.PARTICIPANT)
    make_user(Role.PARTICIPANT, email_verified=False)
    make_user(Role.PARTICIPANT, is_active=False)
    clinician = make_user(Role.CLINICIAN)

    found = queries.recipients(session, roles=[Role.PARTICIPANT])
    assert [r.id for r in found] == [wanted.id]
    assert found[0].email == wanted.email and found[0].display_name == wanted.display_name
    both = queries.recipients(session, roles=[Role.PARTICIPANT, Role.CLINICIAN])
    assert [r.id for r in both] == [wanted.id, clinician.id]
    assert queries.recipients(session, roles=[Role.PARTICIPANT], countries=["se"])[0].id == (
        wanted.id
    )
    assert queries.recipients(session, roles=[Role.PARTICIPANT], countries=["DE"]) == []
    assert queries.recipients(session, languages=["de"]) == []


def test_one_recipient_only_while_reachable(session, make_user):
    active, inactive = make_user(), make_user(is_active=False)
    assert queries.recipient(session, active.id).email == active.email
    assert queries.recipient(session, inactive.id) is None
    assert queries.recipient(session, 999_999) is None


def test_custodians_of_a_registry_are_the_approved_ones_bound_to_it(
    session, make_user, make_registry
):
    registry, other = make_registry(), make_registry()
    approved = make_user(Role.CUSTODIAN, registry=registry)
    make_user(Role.CUSTODIAN, registry=registry, custodian_status=CustodianStatus.PENDING)
    make_user(Role.CUSTODIAN, registry=registry, custodian_status=CustodianStatus.DECLINED)
    make_user(Role.CUSTODIAN, registry=other)
    make_user(Role.CUSTODIAN, registry=registry, is_active=False)

    assert [c.id for c in queries.custodians_of(session, registry.id)] == [approved.id]


def test_names_and_addresses_by_id(session, make_user):
    one, two = make_user(display_name="Ana"), make_user(display_name="Ben")
    assert queries.display_names(session, [one.id, two.id, 999_999]) == {
        one.id: "Ana",
        two.id: "Ben",
    }
    assert queries.emails(session, [one.id]) == {one.id: one.email}
    assert queries.display_names(session, []) == {}
    assert queries.user_id_by_email(session, f"  {one.email.upper()} ") == one.id


def test_display_name_of_is_a_column_for_other_packages_statements(session, make_user):
    import sqlalchemy as sa

    from engage.accounts.models import User

    person = make_user(display_name="Ana")
    name = session.scalar(sa.select(queries.display_name_of(User.id)).where(User.id == person.id))
    assert name == "Ana"
