"""The variable catalogue: staff add, edit, retire and reinstate variables; proposals choose
among the active ones, listed by domain; codes are well-formed and unique (no HTTP)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role, User
from engage.timeutil import utcnow
from governance import catalogue, proposals
from governance.catalogue import VariableDetails
from governance.errors import InvalidTransition, InvalidVariable, NotAllowed
from governance.models import AnalysisMode, CatalogueVariable
from tests.consent_support import publish


def variable(code: str = "EDSS", domain: str = "Disability", name: str | None = None):
    return VariableDetails(
        code=code,
        name=name or f"{code.title()} scores",
        domain=domain,
        description="Scores with their dates.",
    )


@pytest.fixture
def staff(session, make_user) -> User:
    return session.get(User, make_user(Role.STAFF).id)


def catalogue_size(session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(CatalogueVariable)) or 0


def test_active_variables_are_listed_by_domain_and_retired_ones_left_out(session, staff):
    now = utcnow()
    edss = catalogue.add_variable(session, staff, variable("EDSS", "Disability"), now)
    catalogue.add_variable(session, staff, variable("SEX", "Demographics", "Sex"), now)
    catalogue.add_variable(session, staff, variable("BIRTH_YEAR", "Demographics", "Birth"), now)
    relapses = catalogue.add_variable(session, staff, variable("RELAPSES", "Course"), now)
    catalogue.retire_variable(session, staff, relapses, now)

    listed = catalogue.active_variables_by_domain(session)

    assert list(listed) == ["Demographics", "Disability"]
    assert [v.code for v in listed["Demographics"]] == ["BIRTH_YEAR", "SEX"]
    assert listed["Disability"] == [edss]
    assert edss.is_active and edss.created_at == now
    assert {v.code for v in catalogue.all_variables(session)} == {
        "EDSS",
        "SEX",
        "BIRTH_YEAR",
        "RELAPSES",
    }


@pytest.mark.parametrize("role", [Role.PARTICIPANT, Role.CLINICIAN, Role.CUSTODIAN])
def test_only_staff_change_the_catalogue(session, staff, make_user, role):
    someone = session.get(User, make_user(role, clinician_verified=True).id)
    edss = catalogue.add_variable(session, staff, variable(), utcnow())
    with pytest.raises(NotAllowed, match="Only coordination-centre staff"):
        catalogue.add_variable(session, someone, variable("MRI"), utcnow())
    with pytest.raises(NotAllowed):
        catalogue.edit_variable(session, someone, edss, variable(name="Changed"), utcnow())
    with pytest.raises(NotAllowed):
        catalogue.retire_variable(session, someone, edss, utcnow())
    assert catalogue_size(session) == 1
    assert edss.name == "Edss scores" and edss.is_active


@pytest.mark.parametrize(
    "code", ["", "E", "1EDSS", "_EDSS", "EDSS-2", "EDSS 2", "ÄDSS", "E" + "D" * 40]
)
def test_a_malformed_code_is_refused_with_the_rule(session, staff, code):
    with pytest.raises(InvalidVariable, match="2 to 40 capital letters"):
        catalogue.add_variable(session, staff, variable(code), utcnow())
    assert catalogue_size(session) == 0


def test_codes_are_trimmed_and_upper_cased(session, staff):
    added = catalogue.add_variable(session, staff, variable("  dmt_exposure2 "), utcnow())
    assert added.code == "DMT_EXPOSURE2"


def test_codes_are_unique(session, staff):
    catalogue.add_variable(session, staff, variable("EDSS"), utcnow())
    mri = catalogue.add_variable(session, staff, variable("MRI"), utcnow())
    with pytest.raises(InvalidVariable, match="already has the code EDSS"):
        catalogue.add_variable(session, staff, variable("edss"), utcnow())
    with pytest.raises(InvalidVariable, match="already has the code EDSS"):
        catalogue.edit_variable(session, staff, mri, variable("EDSS"), utcnow())
    assert catalogue_size(session) == 2
    assert mri.code == "MRI"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "  ", "Write the variable's name"),
        ("domain", "", "Write the variable's domain"),
        ("description", "\n", "Write the variable's description"),
        ("name", "N" * 121, "name is too long"),
        ("domain", "D" * 81, "domain is too long"),
        ("description", "D" * 2001, "description is too long"),
    ],
)
def test_empty_or_overlong_fields_are_refused(session, staff, field, value, message):
    details = variable()
    setattr(details, field, value)
    with pytest.raises(InvalidVariable, match=message):
        catalogue.add_variable(session, staff, details, utcnow())
    assert catalogue_size(session) == 0


def test_editing_changes_the_details_and_the_code_until_a_proposal_requests_it(
    session, staff, make_user
):
    mri = catalogue.add_variable(session, staff, variable("MRI", "Imaging"), utcnow())
    catalogue.edit_variable(
        session, staff, mri, variable("MRI_LESIONS", "Imaging", "MRI lesions"), utcnow()
    )
    assert (mri.code, mri.name, mri.domain) == ("MRI_LESIONS", "MRI lesions", "Imaging")

    publish(session, staff)
    proposals.create_draft(
        session,
        staff,
        proposals.ProposalDetails(
            title="Lesion load and disability",
            lead_researcher="Dr Ana Lind",
            institution="Karolinska Institutet",
            sponsor="MS Society",
            plain_summary="Do more lesions mean more disability?",
            scientific_summary="A cohort study.",
            language="en",
            analysis_mode=AnalysisMode.FEDERATED,
            ethics_reference="EPN 2026-0002",
            topic_id=None,
            decision_deadline=utcnow() + timedelta(days=30),
            scope_codes=["MS_RESEARCH"],
            variable_ids=[mri.id],
        ),
        utcnow(),
    )
    with pytest.raises(InvalidVariable, match="its code cannot change"):
        catalogue.edit_variable(session, staff, mri, variable("MRI", "Imaging"), utcnow())
    catalogue.edit_variable(
        session, staff, mri, variable("MRI_LESIONS", "Imaging", "New T2 lesions"), utcnow()
    )
    assert (mri.code, mri.name) == ("MRI_LESIONS", "New T2 lesions")


def test_retiring_twice_or_reinstating_an_active_variable_changes_nothing(session, staff):
    edss = catalogue.add_variable(session, staff, variable(), utcnow())
    with pytest.raises(InvalidTransition, match="not retired"):
        catalogue.reinstate_variable(session, staff, edss, utcnow())
    catalogue.retire_variable(session, staff, edss, utcnow())
    with pytest.raises(InvalidTransition, match="already retired, so nothing was changed"):
        catalogue.retire_variable(session, staff, edss, utcnow())
    catalogue.reinstate_variable(session, staff, edss, utcnow())
    session.commit()
    assert session.get(CatalogueVariable, edss.id).is_active
    assert catalogue.active_variables_by_domain(session) == {"Disability": [edss]}
