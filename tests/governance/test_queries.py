"""What people may read of decisions: blind review for custodians, the whole matrix for staff,
a registry's inbox and staff's overdue list, each in a fixed number of statements."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from engage.accounts.models import CustodianStatus, Role
from engage.timeutil import utcnow
from governance import chain, decisions, queries
from governance.errors import NotAllowed
from governance.models import ProposalStatus, ThreadStatus
from tests.governance.support import counting_statements, make_proposal, set_proposal_status


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
def registries(make_registry):
    """Three registries, named so that their order is North, South, West."""
    return [
        make_registry(code=code, name=f"{name} MS Registry")
        for code, name in (("NORTH", "North"), ("SOUTH", "South"), ("WEST", "West"))
    ]


@pytest.fixture
def custodians(make_user, registries):
    """One approved custodian per registry."""
    return [make_user(Role.CUSTODIAN, registry=registry) for registry in registries]


def later(days: float) -> datetime:
    return utcnow() + timedelta(days=days)


# Blind review ---------------------------------------------------------------------------------
def test_a_custodian_sees_the_others_only_once_their_registry_decided(
    session, staff, registries, custodians
):
    proposal, (north, south, west) = make_proposal(session, staff, registries)
    north_custodian, south_custodian, _west_custodian = custodians
    decisions.approve_with_conditions(
        session, south_custodian, south, "Share results with us first.", later(1)
    )
    decisions.ask_for_information(session, north_custodian, north, "Which years?", later(1))
    session.commit()

    view = queries.thread_view(session, north_custodian, proposal)
    assert view.thread.id == north.id
    assert [e.text for e in view.events] == [None, "Which years?"]
    assert (view.others, view.others_visible) == ([], False)

    decisions.decline(session, north_custodian, north, "We lack capacity.", later(2))
    session.commit()
    view = queries.thread_view(session, north_custodian, proposal)
    assert view.others_visible
    assert [(o.registry_code, o.status, o.decided_at) for o in view.others] == [
        ("SOUTH", ThreadStatus.CONDITIONS_SET, south.decided_at),
        ("WEST", ThreadStatus.SENT, None),
    ]
    # Never the others' texts (conditions, reasons) or their deadlines.
    assert not any(hasattr(o, name) for o in view.others for name in ("conditions", "deadline"))

    # South decided too: it sees North's decline, but not the reason.
    south_view = queries.thread_view(session, south_custodian, proposal)
    assert south_view.thread.conditions == "Share results with us first."
    assert [(o.registry_code, o.status) for o in south_view.others] == [
        ("NORTH", ThreadStatus.DECLINED),
        ("WEST", ThreadStatus.SENT),
    ]


def test_an_expired_registry_sees_the_others(session, staff, registries, custodians):
    proposal, (north, south, _west) = make_proposal(session, staff, registries)
    decisions.approve(session, custodians[1], south, later(1))
    assert decisions.expire_thread(session, north, north.deadline)
    session.commit()
    view = queries.thread_view(session, custodians[0], proposal)
    assert view.thread.status == ThreadStatus.EXPIRED
    assert [(o.registry_code, o.status) for o in view.others] == [
        ("SOUTH", ThreadStatus.APPROVED),
        ("WEST", ThreadStatus.SENT),  # the scheduler has not reached it yet
    ]


def test_staff_and_the_proposer_see_the_whole_matrix(
    session, staff, make_user, registries, custodians
):
    other_staff = make_user(Role.STAFF)
    proposal, (north, _south, _west) = make_proposal(session, staff, registries)
    decisions.decline(session, custodians[0], north, "No capacity.", later(1))
    session.commit()
    for viewer in (staff, other_staff):
        view = queries.thread_view(session, viewer, proposal)
        assert view.thread is None and view.others_visible
        assert [(r.registry_code, r.status) for r in view.others] == [
            ("NORTH", ThreadStatus.DECLINED),
            ("SOUTH", ThreadStatus.SENT),
            ("WEST", ThreadStatus.SENT),
        ]
    assert queries.matrix(session, proposal) == view.others


@pytest.mark.parametrize("who", ["unrelated registry", "pending", "participant", "clinician"])
def test_no_one_else_sees_the_decisions(session, staff, make_user, make_registry, registries, who):
    proposal, _threads = make_proposal(session, staff, registries[:2])
    viewer = {
        "unrelated registry": lambda: make_user(Role.CUSTODIAN, registry=registries[2]),
        "pending": lambda: make_user(
            Role.CUSTODIAN, registry=registries[0], custodian_status=CustodianStatus.PENDING
        ),
        "participant": lambda: make_user(Role.PARTICIPANT),
        "clinician": lambda: make_user(Role.CLINICIAN, clinician_verified=True),
    }[who]()
    with pytest.raises(NotAllowed, match="Only custodians of the registries"):
        queries.thread_view(session, viewer, proposal)


def test_a_view_costs_two_statements_whatever_the_number_of_registries(
    session, staff, make_registry, make_user
):
    many = [make_registry() for _ in range(8)]
    custodian = make_user(Role.CUSTODIAN, registry=many[0])
    proposal, (thread, *_rest) = make_proposal(session, staff, many)
    decisions.approve(session, custodian, thread, later(1))
    session.commit()
    with counting_statements(session) as statements:
        view = queries.thread_view(session, custodian, proposal)
    assert len(view.others) == 7
    assert len(statements) == 2, statements


# The registry's inbox ---------------------------------------------------------------------------
def test_the_inbox_lists_open_threads_first_by_deadline(session, staff, registries, custodians):
    north = registries[0]
    now = utcnow()
    soon, _ = make_proposal(session, staff, [north], title="Soon", deadline=now + timedelta(3))
    late, _ = make_proposal(session, staff, [north], title="Late", deadline=now + timedelta(9))
    done, (done_thread,) = make_proposal(
        session, staff, [north], title="Decided", deadline=now + timedelta(1)
    )
    paused, (paused_thread,) = make_proposal(
        session, staff, [north], title="Paused", deadline=now + timedelta(5)
    )
    make_proposal(session, staff, registries[1:], title="Someone else's")
    decisions.approve(session, custodians[0], done_thread, now)
    decisions.ask_for_information(session, custodians[0], paused_thread, "Why?", now)
    session.commit()

    inbox = queries.registry_inbox(session, north.id, now + timedelta(days=2))
    assert [(e.proposal_title, e.is_open) for e in inbox] == [
        ("Soon", True),
        ("Paused", True),
        ("Late", True),
        ("Decided", False),
    ]
    by_title = {e.proposal_title: e for e in inbox}
    # Two days paused so far: the paused registry's deadline has moved on by as much.
    assert by_title["Paused"].is_paused
    assert by_title["Paused"].deadline == paused_thread.deadline + timedelta(days=2)
    assert by_title["Decided"].status == ThreadStatus.APPROVED
    assert not any(e.is_past_deadline for e in inbox)
    assert queries.registry_inbox(session, north.id, now + timedelta(days=4))[0].is_past_deadline


def test_the_inbox_is_one_statement_whatever_its_size(session, staff, registries):
    north = registries[0]
    for n in range(12):
        make_proposal(session, staff, [north], title=f"Proposal {n}")
    session.expire_all()
    with counting_statements(session) as statements:
        inbox = queries.registry_inbox(session, north.id, utcnow())
    assert len(inbox) == 12
    assert len(statements) == 1, statements


# Overdue threads --------------------------------------------------------------------------------
def test_overdue_lists_open_threads_past_or_near_their_deadline(
    session, staff, registries, custodians
):
    now = utcnow()
    north, south, west = registries

    def sent(title, hours, *to):
        return make_proposal(session, staff, to, title=title, deadline=now + timedelta(hours=hours))

    sent("Past", -2, north)
    sent("Tomorrow", 20, south)
    sent("Next week", 24 * 7, west)
    _p, (decided,) = sent("Decided", 5, north)
    _p, (paused,) = sent("Paused", 5, south)
    closed, _threads = sent("Closed", -5, west)
    decisions.approve(session, custodians[0], decided, now)
    decisions.ask_for_information(session, custodians[1], paused, "Why?", now)
    session.commit()
    set_proposal_status(session, closed, ProposalStatus.DECISIONS_CLOSED)

    with counting_statements(session) as statements:
        found = queries.overdue(session, now)
    assert len(statements) == 1
    assert [(o.proposal_title, o.registry_code, o.is_past) for o in found] == [
        ("Past", "NORTH", True),
        ("Tomorrow", "SOUTH", False),
    ]
