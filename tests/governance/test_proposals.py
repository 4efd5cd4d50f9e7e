"""A proposal's life: drafted by staff or a verified healthcare professional, submitted,
screened, sent to registries (one decision thread and one chained SENT event each), returned,
rejected, withdrawn, and closed into a project. Refusals record nothing; a repeated click
records one change (no HTTP)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engage.accounts.models import CustodianStatus, Role, User
from engage.db import Database
from engage.timeutil import utcnow
from engage.topics.models import Topic, TopicCategory, TopicStatus
from governance import catalogue, chain, proposals
from governance.catalogue import VariableDetails
from governance.errors import (
    InvalidProposal,
    InvalidTransition,
    NotAllowed,
    ReasonRequired,
)
from governance.models import (
    AnalysisMode,
    DecisionEvent,
    DecisionEventKind,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ProposalStatusChange,
    ThreadStatus,
)
from governance.proposal_details import details_of
from tests.consent_support import publish

S = ProposalStatus


# Fixtures --------------------------------------------------------------------------------------
@pytest.fixture
def people(session, make_user) -> dict[str, User]:
    """Staff, a verified clinician (the proposer) and everyone who may not propose."""
    made = {
        "staff": make_user(Role.STAFF),
        "proposer": make_user(Role.CLINICIAN, clinician_verified=True),
        "other_clinician": make_user(Role.CLINICIAN, clinician_verified=True),
        "unverified_clinician": make_user(Role.CLINICIAN),
        "unconfirmed_email": make_user(
            Role.CLINICIAN, clinician_verified=True, email_verified=False
        ),
        "participant": make_user(Role.PARTICIPANT),
        "organisation": make_user(Role.ORGANISATION),
        "custodian": make_user(Role.CUSTODIAN, custodian_status=CustodianStatus.APPROVED),
    }
    return {name: session.get(User, user.id) for name, user in made.items()}


@pytest.fixture
def form(session, people):
    """The seed consent form, published."""
    return publish(session, people["staff"])


@pytest.fixture
def variables(session, people) -> dict[str, int]:
    """Two active catalogue variables and a retired one, by code."""
    now, staff = utcnow(), people["staff"]
    made = {}
    for code, domain in (("EDSS", "Disability"), ("DMT", "Treatment"), ("OLD_MRI", "Imaging")):
        made[code] = catalogue.add_variable(
            session, staff, VariableDetails(code, f"{code} data", domain, "Dated values."), now
        )
    catalogue.retire_variable(session, staff, made["OLD_MRI"], now)
    session.commit()
    return {code: v.id for code, v in made.items()}


@pytest.fixture
def make_topic(session, people):
    """A research topic in ``status`` (rows made directly, as the topic lifecycle would)."""

    def make(status: TopicStatus) -> Topic:
        now = utcnow()
        topic = Topic(
            title="Does vitamin D slow MS progression?",
            question="Does vitamin D slow disability progression?",
            rationale="Many of us take it.",
            category=TopicCategory.LIFESTYLE,
            status=status,
            author_id=people["participant"].id,
            created_at=now,
            updated_at=now,
        )
        session.add(topic)
        session.commit()
        return topic

    return make


@pytest.fixture
def details(form, variables):
    """Valid details; keyword arguments replace fields."""

    def make(**changes: Any) -> proposals.ProposalDetails:
        base = proposals.ProposalDetails(
            title="Vitamin D and relapse rates",
            lead_researcher="Dr Ana Lind",
            institution="Karolinska Institutet",
            sponsor="MS Society",
            plain_summary="We want to know if vitamin D helps. We will look at relapses.",
            scientific_summary="A retrospective cohort study of 25(OH)D levels and relapses.",
            language="en",
            analysis_mode=AnalysisMode.FEDERATED,
            ethics_reference="EPN 2026-0001",
            topic_id=None,
            decision_deadline=utcnow() + timedelta(days=30),
            scope_codes=["MS_RESEARCH", "IMAGING_DATA"],
            variable_ids=[variables["EDSS"], variables["DMT"]],
        )
        return replace(base, **changes)

    return make


@pytest.fixture
def registries(make_registry):
    return [make_registry(code="NORTH"), make_registry(code="SOUTH")]


@pytest.fixture
def screened(session, people, details):
    """A proposal by the proposer, submitted and under screening (committed)."""
    proposal = proposals.create_draft(session, people["proposer"], details(), utcnow())
    proposals.submit(session, people["proposer"], proposal, utcnow())
    proposals.start_screening(session, people["staff"], proposal, utcnow())
    session.commit()
    return proposal


def recorded(session) -> tuple[int, ...]:
    """How many proposals, status changes, threads and decision events exist."""
    return tuple(
        session.scalar(sa.select(sa.func.count()).select_from(model)) or 0
        for model in (Proposal, ProposalStatusChange, DecisionThread, DecisionEvent)
    )


def history(session, proposal) -> list[tuple[Any, ...]]:
    """The proposal's status changes: (from, to, actor id, reason), oldest first."""
    return [
        (c.from_status, c.to_status, c.actor_id, c.reason)
        for c in session.scalars(
            sa.select(ProposalStatusChange)
            .where(ProposalStatusChange.proposal_id == proposal.id)
            .order_by(ProposalStatusChange.id)
        )
    ]


# The happy path --------------------------------------------------------------------------------
def test_a_proposal_goes_from_draft_to_registries_with_threads_and_chained_events(
    session, people, details, registries
):
    proposer, staff = people["proposer"], people["staff"]
    proposal = proposals.create_draft(session, proposer, details(), utcnow())
    proposals.submit(session, proposer, proposal, utcnow())
    proposals.start_screening(session, staff, proposal, utcnow())
    sent_at = utcnow()
    threads = proposals.send_to_registries(
        session, staff, proposal, [r.id for r in registries] * 2, sent_at
    )
    session.commit()

    assert proposal.status == S.SENT and proposal.sent_at == sent_at
    assert proposal.proposer_id == proposer.id
    assert details_of(session, proposal) == details(
        decision_deadline=proposal.decision_deadline,
        scope_codes=["IMAGING_DATA", "MS_RESEARCH"],
    )
    assert [(t.registry_id, t.status, t.deadline) for t in threads] == [
        (r.id, ThreadStatus.SENT, proposal.decision_deadline) for r in registries
    ]
    events = session.scalars(sa.select(DecisionEvent).order_by(DecisionEvent.seq)).all()
    assert [(e.seq, e.kind, e.thread_id, e.actor_id) for e in events] == [
        (1, DecisionEventKind.SENT, threads[0].id, staff.id),
        (2, DecisionEventKind.SENT, threads[1].id, staff.id),
    ]
    assert history(session, proposal) == [
        (None, S.DRAFT, proposer.id, None),
        (S.DRAFT, S.SUBMITTED, proposer.id, None),
        (S.SUBMITTED, S.SCREENING, staff.id, None),
        (S.SCREENING, S.SENT, staff.id, None),
    ]
    assert chain.verify(session).problems == []


def test_staff_draft_proposals_too(session, people, details):
    proposal = proposals.create_draft(session, people["staff"], details(), utcnow())
    assert proposal.status == S.DRAFT and proposal.proposer_id == people["staff"].id


# Who may propose -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("participant", "Only coordination-centre staff and verified healthcare professionals"),
        ("organisation", "Only coordination-centre staff and verified healthcare professionals"),
        ("custodian", "Only coordination-centre staff and verified healthcare professionals"),
        ("unverified_clinician", "Staff must confirm your professional details"),
        ("unconfirmed_email", "Confirm your email address"),
    ],
)
def test_only_staff_and_verified_clinicians_propose(session, people, details, who, message):
    before = recorded(session)
    assert not proposals.can_propose(people[who])
    with pytest.raises(NotAllowed, match=message):
        proposals.create_draft(session, people[who], details(), utcnow())
    assert recorded(session) == before


# What a draft must say -------------------------------------------------------------------------
REFUSED_DETAILS = {
    "empty title": (lambda ctx: {"title": "   "}, "Write the title"),
    "overlong sponsor": (lambda ctx: {"sponsor": "S" * 201}, "sponsor is too long"),
    "no ethics reference": (lambda ctx: {"ethics_reference": ""}, "ethics approval reference"),
    "bad language": (lambda ctx: {"language": "english"}, "two-letter code"),
    "scope not in the published form": (
        lambda ctx: {"scope_codes": ["MS_RESEARCH", "BIOBANK_SAMPLES"]},
        "no scope BIOBANK_SAMPLES",
    ),
    "no scope": (lambda ctx: {"scope_codes": []}, "at least one consent scope"),
    "retired variable": (
        lambda ctx: {"variable_ids": [ctx["variables"]["EDSS"], ctx["variables"]["OLD_MRI"]]},
        "OLD_MRI is retired",
    ),
    "unknown variable": (lambda ctx: {"variable_ids": [-1]}, "not in the catalogue"),
    "no variable": (lambda ctx: {"variable_ids": []}, "at least one variable"),
    "topic not adopted": (
        lambda ctx: {"topic_id": ctx["make_topic"](TopicStatus.SHORTLISTED).id},
        "Only a topic adopted for research",
    ),
    "unknown topic": (lambda ctx: {"topic_id": -1}, "topic does not exist"),
    "past deadline": (
        lambda ctx: {"decision_deadline": utcnow() - timedelta(days=1)},
        "at least a day",
    ),
    "deadline within a day": (
        lambda ctx: {"decision_deadline": utcnow() + timedelta(hours=20)},
        "at least a day",
    ),
    "naive deadline": (
        lambda ctx: {"decision_deadline": (utcnow() + timedelta(days=9)).replace(tzinfo=None)},
        "time zone",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_DETAILS), ids=list(REFUSED_DETAILS))
def test_details_are_checked_and_a_refused_draft_records_nothing(
    session, people, details, variables, make_topic, case
):
    change, message = REFUSED_DETAILS[case]
    wrong = details(**change({"variables": variables, "make_topic": make_topic}))
    before = recorded(session)
    with pytest.raises(InvalidProposal, match=message):
        proposals.create_draft(session, people["proposer"], wrong, utcnow())
    assert recorded(session) == before


def test_without_a_published_consent_form_no_scope_can_be_chosen(
    session, people, variables, details
):
    session.execute(sa.text("DELETE FROM consent_scopes"))
    with pytest.raises(InvalidProposal, match="No consent form is published yet"):
        proposals.create_draft(session, people["proposer"], details(), utcnow())
    assert recorded(session) == (0, 0, 0, 0)


def test_a_draft_is_edited_by_its_proposer_or_staff_while_draft_or_returned(
    session, people, details
):
    proposer, staff = people["proposer"], people["staff"]
    proposal = proposals.create_draft(session, proposer, details(), utcnow())
    proposals.update_draft(
        session,
        proposer,
        proposal,
        details(title="Vitamin D", scope_codes=["MS_RESEARCH"]),
        utcnow(),
    )
    assert proposal.title == "Vitamin D"
    assert details_of(session, proposal).scope_codes == ["MS_RESEARCH"]
    with pytest.raises(NotAllowed, match="Only the proposer or coordination-centre staff"):
        proposals.update_draft(session, people["other_clinician"], proposal, details(), utcnow())

    proposals.submit(session, proposer, proposal, utcnow())
    with pytest.raises(InvalidTransition, match="only a draft or a proposal returned"):
        proposals.update_draft(session, proposer, proposal, details(), utcnow())
    proposals.return_to_proposer(session, staff, proposal, "Name the ethics board.", utcnow())
    proposals.update_draft(session, staff, proposal, details(title="Vitamin D, again"), utcnow())
    proposals.submit(session, proposer, proposal, utcnow())
    assert proposal.title == "Vitamin D, again" and proposal.status == S.SUBMITTED
    assert [to for _from, to, *_ in history(session, proposal)] == [
        S.DRAFT,
        S.SUBMITTED,
        S.RETURNED,
        S.SUBMITTED,
    ]


# Status changes --------------------------------------------------------------------------------
def test_a_double_click_records_one_change_and_says_nothing_changed(session, people, details):
    proposer = people["proposer"]
    proposal = proposals.create_draft(session, proposer, details(), utcnow())
    proposals.submit(session, proposer, proposal, utcnow())
    with pytest.raises(InvalidTransition, match="already “submitted for screening”, so nothing"):
        proposals.submit(session, proposer, proposal, utcnow())
    assert len(history(session, proposal)) == 2


@pytest.mark.parametrize(
    "step",
    [
        lambda s, who, p: proposals.start_screening(s, who, p, utcnow()),
        lambda s, who, p: proposals.reject(s, who, p, "Out of scope", utcnow()),
        lambda s, who, p: proposals.return_to_proposer(s, who, p, "Shorter", utcnow()),
        lambda s, who, p: proposals.send_to_registries(s, who, p, [1], utcnow()),
        lambda s, who, p: proposals.set_status(s, who, p, S.DECISIONS_CLOSED, utcnow()),
    ],
    ids=["screen", "reject", "return", "send", "set_status"],
)
def test_staff_steps_are_refused_to_the_proposer(session, people, screened, step):
    before = recorded(session)
    with pytest.raises(NotAllowed, match="Only coordination-centre staff"):
        step(session, people["proposer"], screened)
    assert recorded(session) == before and screened.status == S.SCREENING


def test_only_the_proposer_submits(session, people, details):
    proposal = proposals.create_draft(session, people["proposer"], details(), utcnow())
    with pytest.raises(NotAllowed, match="Only the proposer can submit"):
        proposals.submit(session, people["staff"], proposal, utcnow())


@pytest.mark.parametrize(
    "step",
    [
        lambda s, staff, p: proposals.reject(s, staff, p, "  ", utcnow()),
        lambda s, staff, p: proposals.return_to_proposer(s, staff, p, None, utcnow()),
        lambda s, staff, p: proposals.withdraw(s, staff, p, "", utcnow()),
    ],
    ids=["reject", "return", "withdraw"],
)
def test_a_reason_is_required_and_nothing_is_recorded_without_one(session, people, screened, step):
    before = recorded(session)
    with pytest.raises(ReasonRequired, match="Give a reason"):
        step(session, people["staff"], screened)
    assert recorded(session) == before and screened.status == S.SCREENING


def test_rejection_and_return_keep_their_reason(session, people, details, screened):
    staff = people["staff"]
    proposals.reject(session, staff, screened, "Outside the network's aims.", utcnow())
    assert history(session, screened)[-1] == (
        S.SCREENING,
        S.REJECTED,
        staff.id,
        "Outside the network's aims.",
    )
    with pytest.raises(InvalidTransition, match="“not accepted” cannot become"):
        proposals.start_screening(session, staff, screened, utcnow())


# Sending to registries -------------------------------------------------------------------------
def test_sending_needs_a_proposal_under_screening(session, people, details, registries):
    proposal = proposals.create_draft(session, people["proposer"], details(), utcnow())
    proposals.submit(session, people["proposer"], proposal, utcnow())
    before = recorded(session)
    with pytest.raises(InvalidTransition, match="“submitted for screening” cannot become “sent"):
        proposals.send_to_registries(
            session, people["staff"], proposal, [r.id for r in registries], utcnow()
        )
    assert recorded(session) == before and proposal.sent_at is None


def test_sending_twice_creates_one_set_of_threads(session, people, screened, registries):
    ids = [r.id for r in registries]
    proposals.send_to_registries(session, people["staff"], screened, ids, utcnow())
    with pytest.raises(InvalidTransition, match="already “sent to registries”"):
        proposals.send_to_registries(session, people["staff"], screened, ids, utcnow())
    assert recorded(session)[2:] == (2, 2)


@pytest.mark.parametrize(
    ("chosen", "message"),
    [
        (lambda regs, retired: [], "at least one registry"),
        (lambda regs, retired: [regs[0].id, -5], "does not exist"),
        (lambda regs, retired: [regs[0].id, retired.id], "no longer takes part"),
    ],
    ids=["none", "unknown", "retired"],
)
def test_sending_needs_active_registries(
    session, people, screened, registries, make_registry, chosen, message
):
    retired = make_registry(code="OLD", name="Old Registry", is_active=False)
    before = recorded(session)
    with pytest.raises(InvalidProposal, match=message):
        proposals.send_to_registries(
            session, people["staff"], screened, chosen(registries, retired), utcnow()
        )
    assert recorded(session) == before and screened.status == S.SCREENING


def test_sending_after_the_decision_deadline_is_refused(session, people, screened, registries):
    too_late = screened.decision_deadline + timedelta(minutes=1)
    before = recorded(session)
    with pytest.raises(InvalidProposal, match="decision deadline has passed"):
        proposals.send_to_registries(
            session, people["staff"], screened, [registries[0].id], too_late
        )
    assert recorded(session) == before and screened.status == S.SCREENING


def test_staff_extend_one_registrys_open_deadline_with_a_reason(
    session, people, screened, registries
):
    staff = people["staff"]
    north, south = proposals.send_to_registries(
        session, staff, screened, [r.id for r in registries], utcnow()
    )
    later = north.deadline + timedelta(days=7)
    with pytest.raises(ReasonRequired):
        proposals.extend_deadline(session, staff, north, later, " ", utcnow())
    with pytest.raises(InvalidProposal, match="later than the current one"):
        proposals.extend_deadline(
            session, staff, north, north.deadline - timedelta(days=1), "Holidays", utcnow()
        )
    with pytest.raises(NotAllowed):
        proposals.extend_deadline(session, people["proposer"], north, later, "Mine", utcnow())

    proposals.extend_deadline(session, staff, north, later, "Board meets in May.", utcnow())

    assert north.deadline == later and south.deadline == screened.decision_deadline
    event = session.scalars(sa.select(DecisionEvent).order_by(DecisionEvent.seq.desc())).first()
    assert (event.seq, event.kind, event.thread_id) == (
        3,
        DecisionEventKind.DEADLINE_EXTENDED,
        north.id,
    )
    assert f"{later:%Y-%m-%d %H:%M}" in event.text and "Board meets in May." in event.text

    south.status = ThreadStatus.DECLINED
    session.flush()
    with pytest.raises(InvalidTransition, match="already “declined”"):
        proposals.extend_deadline(session, staff, south, later, "Too late", utcnow())
    assert recorded(session)[3] == 3
    assert chain.verify(session).problems == []


# Withdrawal and the project's end ----------------------------------------------------------------
def test_the_proposer_withdraws_and_open_threads_stay_as_they_are(
    session, people, screened, registries
):
    proposer = people["proposer"]
    threads = proposals.send_to_registries(
        session, people["staff"], screened, [r.id for r in registries], utcnow()
    )
    with pytest.raises(NotAllowed):
        proposals.withdraw(session, people["other_clinician"], screened, "Not mine", utcnow())
    proposals.withdraw(session, proposer, screened, "Funding ended.", utcnow())
    with pytest.raises(InvalidTransition, match="already “withdrawn by the proposer”"):
        proposals.withdraw(session, proposer, screened, "Again", utcnow())

    assert screened.status == S.WITHDRAWN
    assert [t.status for t in threads] == [ThreadStatus.SENT, ThreadStatus.SENT]
    assert history(session, screened)[-1] == (S.SENT, S.WITHDRAWN, proposer.id, "Funding ended.")


def test_an_active_project_names_its_topic_and_is_completed_or_closed(
    session, people, details, make_topic, registries
):
    staff = people["staff"]
    topic = make_topic(TopicStatus.ADOPTED)
    long_title = "Vitamin D supplements and relapse rates in relapsing-remitting MS: a cohort"
    proposal = proposals.create_draft(
        session, staff, details(topic_id=topic.id, title=long_title), utcnow()
    )
    proposals.submit(session, staff, proposal, utcnow())
    proposals.start_screening(session, staff, proposal, utcnow())
    proposals.send_to_registries(session, staff, proposal, [registries[0].id], utcnow())
    # The scheduler closes the decisions; the decisions' closing makes it a project.
    proposals.set_status(session, None, proposal, S.DECISIONS_CLOSED, utcnow())
    assert topic.proposal_reference is None
    proposals.set_status(session, staff, proposal, S.ACTIVE, utcnow())
    session.commit()

    assert topic.proposal_reference == f"Project {proposal.id}: {long_title}"[:80]
    assert len(topic.proposal_reference) == 80
    with pytest.raises(InvalidTransition, match="cannot become “withdrawn"):
        proposals.withdraw(session, staff, proposal, "Changed our minds", utcnow())
    proposals.complete(session, staff, proposal, utcnow())
    with pytest.raises(InvalidTransition, match="“completed” cannot become “closed”"):
        proposals.close(session, staff, proposal, utcnow(), reason="Stopped")
    assert [c[1:3] for c in history(session, proposal)[-3:]] == [
        (S.DECISIONS_CLOSED, None),
        (S.ACTIVE, staff.id),
        (S.COMPLETED, staff.id),
    ]


def test_set_status_refuses_steps_that_have_their_own_service(session, people, screened):
    for status in (S.SENT, S.WITHDRAWN):
        with pytest.raises(InvalidTransition, match="only through its own step"):
            proposals.set_status(session, people["staff"], screened, status, utcnow())
    with pytest.raises(InvalidTransition, match="“being screened by staff” cannot become"):
        proposals.close(session, people["staff"], screened, utcnow())


def test_the_plain_summary_is_graded_in_its_language(session, people, details):
    proposal = proposals.create_draft(session, people["proposer"], details(), utcnow())
    assert proposals.plain_summary_level(proposal).grade is not None
    proposal.language = "fr"
    assert proposals.plain_summary_level(proposal).grade is None


# Races (PostgreSQL) ------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True, scope="session")
@pytest.mark.parametrize("step", ["screen", "send"])
def test_five_simultaneous_clicks_record_one_change_and_one_set_of_threads(
    app, session, people, details, registries, step
):
    staff, proposer = people["staff"], people["proposer"]
    proposal = proposals.create_draft(session, proposer, details(), utcnow())
    proposals.submit(session, proposer, proposal, utcnow())
    if step == "send":
        proposals.start_screening(session, staff, proposal, utcnow())
    session.commit()
    registry_ids = [r.id for r in registries]
    barrier = threading.Barrier(5)
    results: list[Any] = [None] * 5

    def click(index: int) -> None:
        own = Database.new_session(app)
        try:
            mine, me = own.get(Proposal, proposal.id), own.get(User, staff.id)
            barrier.wait(10)
            if step == "screen":
                proposals.start_screening(own, me, mine, utcnow())
            else:
                proposals.send_to_registries(own, me, mine, registry_ids, utcnow())
            own.commit()
            results[index] = "done"
        except Exception as error:  # noqa: BLE001 - handed to the test
            own.rollback()
            results[index] = error
        finally:
            own.close()

    threads = [threading.Thread(target=click, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a click is stuck (a deadlock?)"

    assert results.count("done") == 1, results
    refused = [r for r in results if r != "done"]
    assert all(isinstance(r, InvalidTransition) for r in refused), refused
    assert all("nothing was changed" in str(r) for r in refused)
    session.expire_all()
    target = S.SCREENING if step == "screen" else S.SENT
    changes = session.scalars(
        sa.select(ProposalStatusChange).where(ProposalStatusChange.to_status == target)
    ).all()
    assert len(changes) == 1
    expected_threads = 0 if step == "screen" else len(registries)
    assert recorded(session)[2:] == (expected_threads, expected_threads)
    assert chain.verify(session).problems == []
