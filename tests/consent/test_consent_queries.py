"""The consent query API other packages use: permits, blocking scopes, counts, ids, time travel."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engage.accounts import services as account_services
from engage.accounts.models import Role
from engage.consent import errors, queries
from engage.consent.models import ConsentFormVersion
from engage.timeutil import utcnow
from tests.consent_support import (
    ALL_CODES,
    NEW_SCOPE,
    decide,
    join,
    publish,
    reworded,
)

PURPOSE = ["MS_RESEARCH", "GENOMIC_DATA", "IMAGING_DATA"]  # a 3-scope purpose


@pytest.fixture
def staff(make_user):
    return make_user(Role.STAFF)


@pytest.fixture
def first(session, staff):
    return publish(session, staff, now=utcnow() - timedelta(days=30))


def enrol(session, person, *registries):
    """Record exactly ``registries`` as the person's enrolments, as their profile page does."""
    account_services.set_enrolments(session, person, {r.id for r in registries}, utcnow())
    session.commit()


def test_nothing_is_permitted_before_any_decision_or_form(app, session, staff, make_user):
    person = make_user(Role.PARTICIPANT)
    with pytest.raises(errors.UnknownScope):
        queries.permits(session, person.id, ["SHARE_RECORDS"])  # no form ever had it
    publish(session, staff)
    assert not queries.permits(session, person.id, ["SHARE_RECORDS"])
    assert queries.blocking_scopes(session, person.id, ["GENOMIC_DATA"]) == [
        "GENOMIC_DATA",
        "SHARE_RECORDS",
        "MS_RESEARCH",
    ]
    assert queries.count_permitting(session, ["SHARE_RECORDS"]) == 0
    with pytest.raises(ValueError):
        queries.permits(session, person.id, [])


def test_permits_needs_every_scope_and_the_required_ones(app, session, first, make_user):
    person = make_user(Role.PARTICIPANT)
    join(app, session, person, GENOMIC_DATA=True)
    assert queries.permits(session, person.id, ["GENOMIC_DATA"])
    assert queries.permits(session, person.id, ["MS_RESEARCH", "GENOMIC_DATA"])
    assert not queries.permits(session, person.id, PURPOSE)
    assert queries.blocking_scopes(session, person.id, PURPOSE) == ["IMAGING_DATA"]
    with pytest.raises(errors.UnknownScope, match="NOT_A_SCOPE"):
        queries.blocking_scopes(session, person.id, ["GENOMIC_DATA", "NOT_A_SCOPE"])
    # Withdrawing a required scope blocks everything, even optional scopes still allowed.
    decide(app, session, person, {"SHARE_RECORDS": False})
    assert queries.blocking_scopes(session, person.id, ["GENOMIC_DATA"]) == ["SHARE_RECORDS"]


def _population(app, session, make_user, make_registry):
    """Participants with varied choices in two registries; returns (people, registries)."""
    north, south = make_registry(code="NORTH"), make_registry(code="SOUTH")
    patterns = [
        ({"GENOMIC_DATA": True, "IMAGING_DATA": True}, [north]),
        ({"GENOMIC_DATA": True, "IMAGING_DATA": True}, [south]),
        ({"GENOMIC_DATA": True, "IMAGING_DATA": True}, [north, south]),
        ({"GENOMIC_DATA": True}, [north]),
        ({"IMAGING_DATA": True, "COMMERCIAL_RESEARCH": True}, [south]),
        ({"GENOMIC_DATA": True, "IMAGING_DATA": True, "SHARE_RECORDS": False}, [north]),
        ({"GENOMIC_DATA": True, "IMAGING_DATA": True, "TRIAL_CONTACT": True}, []),
    ]
    people = []
    for allow, registries in patterns:
        person = make_user(Role.PARTICIPANT)
        join(app, session, person, **allow)
        if registries:
            enrol(session, person, *registries)
        people.append(person)
    make_user(Role.PARTICIPANT)  # never decided
    return people, (north, south)


def test_counts_overall_and_by_registry_match_each_persons_answer(
    app, session, first, make_user, make_registry
):
    people, (north, south) = _population(app, session, make_user, make_registry)
    expected = [p.id for p in people if queries.permits(session, p.id, PURPOSE)]
    assert expected == [people[0].id, people[1].id, people[2].id, people[6].id]
    assert queries.count_permitting(session, PURPOSE) == 4
    assert queries.count_permitting(session, PURPOSE, registry_id=north.id) == 2
    assert queries.count_permitting(session, PURPOSE, registry_id=south.id) == 2
    assert queries.count_permitting(session, ["COMMERCIAL_RESEARCH"]) == 1
    assert queries.count_permitting(session, ["SHARE_RECORDS"]) == 6
    batches = list(queries.iter_permitting_ids(session, PURPOSE, batch_size=3))
    assert batches == [expected[:3], expected[3:]]
    assert list(queries.iter_permitting_ids(session, PURPOSE, registry_id=south.id)) == [
        [people[1].id, people[2].id]
    ]
    # The grouped count gives each registry what the one-registry count gives.
    empty = make_registry(code="EMPTY")
    grouped = queries.count_permitting_by_registry(session, PURPOSE, [north.id, south.id, empty.id])
    assert grouped == {north.id: 2, south.id: 2, empty.id: 0}
    assert queries.count_permitting_by_registry(session, ["COMMERCIAL_RESEARCH"], [north.id]) == {
        north.id: queries.count_permitting(session, ["COMMERCIAL_RESEARCH"], registry_id=north.id)
    }
    assert queries.count_permitting_by_registry(session, PURPOSE, []) == {}


def test_counts_follow_withdrawals_and_new_versions(
    app, session, staff, first, make_user, make_registry
):
    people, (north, _south) = _population(app, session, make_user, make_registry)
    decide(app, session, people[0], {"IMAGING_DATA": False})
    assert queries.count_permitting(session, PURPOSE) == 3
    assert queries.count_permitting(session, PURPOSE, registry_id=north.id) == 1

    publish(session, staff, reworded("IMAGING_DATA") + [NEW_SCOPE])
    assert queries.count_permitting(session, PURPOSE) == 0  # changed: nobody until they decide
    assert queries.count_permitting(session, ["GENOMIC_DATA"]) == 5  # unchanged: carried over
    assert queries.count_permitting(session, ["BIOBANK_SAMPLES"]) == 0
    decide(app, session, people[1], {"IMAGING_DATA": True})
    assert queries.count_permitting(session, PURPOSE) == 1
    assert [batch for batch in queries.iter_permitting_ids(session, PURPOSE)] == [[people[1].id]]


def test_registry_counts_follow_enrolments_made_before_and_after_deciding(
    app, session, first, make_user, make_registry
):
    north, south = make_registry(code="NORTH"), make_registry(code="SOUTH")
    early, late = make_user(Role.PARTICIPANT), make_user(Role.PARTICIPANT)
    enrol(session, early, north)  # enrolled first, decides later
    everything = {"GENOMIC_DATA": True, "IMAGING_DATA": True}
    join(app, session, early, **everything)
    join(app, session, late, **everything)
    enrol(session, late, north, south)  # decided first, enrols later
    assert queries.count_permitting(session, PURPOSE, registry_id=north.id) == 2
    assert queries.count_permitting(session, PURPOSE, registry_id=south.id) == 1

    enrol(session, late, south)  # leaves the north registry
    decide(app, session, early, {"IMAGING_DATA": False})
    assert queries.count_permitting(session, PURPOSE, registry_id=north.id) == 0
    assert queries.count_permitting(session, ["GENOMIC_DATA"], registry_id=north.id) == 1
    assert list(queries.iter_permitting_ids(session, PURPOSE, registry_id=south.id)) == [[late.id]]
    enrol(session, late)  # no registry at all
    assert queries.count_permitting(session, PURPOSE, registry_id=south.id) == 0
    assert queries.count_permitting(session, PURPOSE) == 1


def test_many_scopes_fall_back_to_a_bitwise_count(app, session, staff, make_user, monkeypatch):
    publish(session, staff)
    people = [make_user(Role.PARTICIPANT) for _ in range(3)]
    join(app, session, people[0], GENOMIC_DATA=True)
    join(app, session, people[1], GENOMIC_DATA=True, TRIAL_CONTACT=True)
    join(app, session, people[2])
    listed = queries.count_permitting(session, ["GENOMIC_DATA"])
    monkeypatch.setattr(queries, "MAX_LISTED_MASKS", 1)
    assert queries.count_permitting(session, ["GENOMIC_DATA"]) == listed == 2


def test_permits_as_of_a_past_time_reads_the_ledger_as_it_was(
    app, session, staff, first, make_user
):
    person = make_user(Role.PARTICIPANT)
    start = utcnow() - timedelta(days=20)
    t = [start + timedelta(days=n) for n in range(6)]
    join(app, session, person, now=t[0], GENOMIC_DATA=True)
    decide(app, session, person, {"GENOMIC_DATA": False}, now=t[2])
    decide(app, session, person, {"GENOMIC_DATA": True}, now=t[4])

    def asked(when):
        return queries.permits(session, person.id, ["GENOMIC_DATA"], as_of=when)

    assert not asked(t[0] - timedelta(seconds=1))  # before the first decision
    assert asked(t[0]) and asked(t[1])
    assert not asked(t[2]) and not asked(t[3])
    assert asked(t[4]) and asked(utcnow())
    assert queries.permits(session, person.id, ["GENOMIC_DATA"])  # now, from the current tables
    assert queries.blocking_scopes(session, person.id, ["GENOMIC_DATA"], as_of=t[3]) == [
        "GENOMIC_DATA"
    ]


def test_time_travel_respects_the_form_version_of_the_time(app, session, staff, first, make_user):
    person = make_user(Role.PARTICIPANT)
    join(app, session, person, now=utcnow() - timedelta(days=10), GENOMIC_DATA=True)
    before_v2 = utcnow()
    second = publish(session, staff, reworded("GENOMIC_DATA"))
    session.expire_all()
    published = session.get(ConsentFormVersion, second.id).published_at
    assert queries.permits(session, person.id, ["GENOMIC_DATA"], as_of=before_v2)
    assert not queries.permits(session, person.id, ["GENOMIC_DATA"], as_of=published)
    assert not queries.permits(session, person.id, ["GENOMIC_DATA"])
    decide(app, session, person, {"GENOMIC_DATA": True})
    assert queries.permits(session, person.id, ["GENOMIC_DATA"], as_of=utcnow())
    assert not queries.permits(session, person.id, ["GENOMIC_DATA"], as_of=published)


def test_current_answers_agree_with_the_ledger_for_everyone(
    app, session, staff, first, make_user, make_registry
):
    people, _ = _population(app, session, make_user, make_registry)
    publish(session, staff, reworded("COMMERCIAL_RESEARCH"))
    decide(app, session, people[4], {"COMMERCIAL_RESEARCH": True})
    now = utcnow()
    for person in people:
        for code in ALL_CODES:
            assert queries.permits(session, person.id, [code]) == queries.permits(
                session, person.id, [code], as_of=now
            ), (person.id, code)
