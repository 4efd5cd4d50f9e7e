"""Eligible-cohort counts: participants of a registry whose current consent permits every scope
a proposal needs, suppressed below the registry's small-cell threshold (0 included)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engage.accounts import services as account_services
from engage.accounts.models import Role
from engage.registries.models import Registry
from engage.timeutil import utcnow
from governance import chain, cohort
from governance.errors import InvalidProposal
from tests.consent_support import decide, join, publish
from tests.governance.support import counting_statements, make_proposal

SCOPES = ["GENOMIC_DATA", "MS_RESEARCH"]


@pytest.fixture(autouse=True)
def chain_verifies(session):
    """Every test ends with a decision ledger that verifies."""
    yield
    session.rollback()
    assert chain.verify(session).problems == []


@pytest.fixture
def staff(make_user):
    return make_user(Role.STAFF)


@pytest.fixture
def form(session, staff):
    """The seed consent form, published a month ago."""
    return publish(session, staff, now=utcnow() - timedelta(days=30))


@pytest.fixture
def north(make_registry):
    return make_registry(code="NORTH", name="North MS Registry")


@pytest.fixture
def south(make_registry):
    return make_registry(code="SOUTH", name="South MS Registry")


def participants(app, session, make_user, registry, count, **allow):
    """``count`` participants enrolled in ``registry`` who joined with ``allow``."""
    people = []
    for _ in range(count):
        person = make_user(Role.PARTICIPANT)
        account_services.set_enrolments(session, person, {registry.id}, utcnow())
        session.commit()
        join(app, session, person, **allow)
        people.append(person)
    return people


def test_small_counts_are_suppressed_and_zero_too(app, session, staff, form, make_user, north):
    proposal, _threads = make_proposal(session, staff, [north], scopes=SCOPES)
    assert cohort.eligible_cohort(session, proposal, north) == cohort.CohortCount(
        None, "fewer than 5"
    )
    people = participants(app, session, make_user, north, 4, GENOMIC_DATA=True)
    participants(app, session, make_user, north, 3, GENOMIC_DATA=False)
    count = cohort.eligible_cohort(session, proposal, north)
    assert (count.value, count.shown, count.is_suppressed) == (None, "fewer than 5", True)

    people += participants(app, session, make_user, north, 1, GENOMIC_DATA=True)
    assert cohort.eligible_cohort(session, proposal, north) == cohort.CohortCount(5, "5")

    # A withdrawal takes the count back below the threshold.
    decide(app, session, people[0], {"GENOMIC_DATA": False})
    assert cohort.eligible_cohort(session, proposal, north).shown == "fewer than 5"


def test_each_registry_uses_its_own_threshold(app, session, staff, form, make_user, north, south):
    proposal, _threads = make_proposal(session, staff, [south, north], scopes=SCOPES)
    participants(app, session, make_user, north, 3, GENOMIC_DATA=True)
    participants(app, session, make_user, south, 3, GENOMIC_DATA=True)
    session.get(Registry, south.id).small_cell_threshold = 3
    session.commit()
    with counting_statements(session) as statements:
        counts = cohort.cohorts_for(session, proposal)
    assert list(counts) == [north.id, south.id]  # by registry name
    assert counts == {
        north.id: cohort.CohortCount(None, "fewer than 5"),
        south.id: cohort.CohortCount(3, "3"),
    }
    # Registries, scopes, then consent's asked codes, current form and one grouped count.
    assert len(statements) == 5, statements


def test_the_cohort_page_costs_the_same_statements_for_more_registries(
    app, session, staff, form, make_registry
):
    few = [make_registry() for _ in range(2)]
    many = [make_registry() for _ in range(12)]
    small, _ = make_proposal(session, staff, few, scopes=SCOPES)
    large, _ = make_proposal(session, staff, many, scopes=SCOPES, title="Larger")
    with counting_statements(session) as for_few:
        cohort.cohorts_for(session, small)
    with counting_statements(session) as for_many:
        counts = cohort.cohorts_for(session, large)
    assert len(for_few) == len(for_many) == 5
    assert all(count.shown == "fewer than 5" for count in counts.values())


def test_large_counts_are_shown_with_thousands_separators():
    assert cohort.suppressed(12_345, 5) == cohort.CohortCount(12_345, "12,345")
    assert cohort.suppressed(0, 1) == cohort.CohortCount(None, "fewer than 1")


def test_a_proposal_without_scopes_cannot_be_counted(session, staff, form, north):
    proposal, _threads = make_proposal(session, staff, [north])
    with pytest.raises(InvalidProposal, match="names no consent scopes"):
        cohort.eligible_cohort(session, proposal, north)
    with pytest.raises(InvalidProposal, match="names no consent scopes"):
        cohort.cohorts_for(session, proposal)


def test_a_scope_no_form_ever_had_is_a_clear_error(session, staff, form, north):
    proposal, _threads = make_proposal(session, staff, [north], scopes=["NOT_A_SCOPE"])
    with pytest.raises(InvalidProposal, match="NOT_A_SCOPE"):
        cohort.eligible_cohort(session, proposal, north)


def test_no_threads_no_counts(session, staff, form):
    proposal, _threads = make_proposal(session, staff, [], scopes=SCOPES)
    assert cohort.cohorts_for(session, proposal) == {}
