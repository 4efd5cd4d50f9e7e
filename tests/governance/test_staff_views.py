"""Governance's staff pages, through the test client: the proposals list, the editor, each
status step with its refusals, dispatch with cohorts, deadline extensions, the decision
matrix and chart, the overdue list and the variable catalogue."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role, User
from engage.consent.seed import FIRST_SCOPES
from engage.timeutil import utcnow
from engage.topics import services as topic_services
from engage.topics.models import TopicCategory, TopicStatus
from governance import catalogue, proposal_details, proposals
from governance.models import (
    AnalysisMode,
    CatalogueVariable,
    DecisionEvent,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ProposalStatusChange,
    ThreadStatus,
)
from tests import consent_support
from tests.conftest import post_form, sign_in

BASE = "/staff/governance"
SCOPE = FIRST_SCOPES[0].code


@pytest.fixture
def staff(make_user, session) -> User:
    """A signed-out staff member, with the consent form published and two variables."""
    person = make_user(Role.STAFF)
    consent_support.publish(session, person)
    actor = session.get(User, person.id)
    for code, name, domain in (
        ("EDSS", "EDSS score", "Disability"),
        ("DMT_EXPOSURE", "DMT exposure", "Treatment"),
    ):
        catalogue.add_variable(
            session, actor, catalogue.VariableDetails(code, name, domain, f"{name}."), utcnow()
        )
    session.commit()
    return person


@pytest.fixture
def signed_in_staff(client, staff) -> User:
    sign_in(client, staff)
    return staff


def variable_id(session, code: str) -> int:
    return session.scalar(sa.select(CatalogueVariable.id).where(CatalogueVariable.code == code))


def deadline_text(days: float = 30) -> str:
    return (utcnow() + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")


def proposal_data(session, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "Fatigue and DMT exposure",
        "lead_researcher": "Dr Ana Lind",
        "institution": "Karolinska Institutet",
        "sponsor": "MS Society",
        "plain_summary": "We want to learn why people with MS feel tired. We use data you "
        "already gave.",
        "language": "en",
        "scientific_summary": "A retrospective cohort study.",
        "analysis_mode": "federated",
        "ethics_reference": "EPN 2026-0001",
        "topic_id": "",
        "decision_deadline": deadline_text(),
        "scope_codes": [SCOPE],
        "variable_ids": [str(variable_id(session, "EDSS"))],
    }
    data.update(changes)
    return data


def draft(session, staff: User, **changes: Any) -> Proposal:
    """A draft by ``staff`` made with the service; commits."""
    details = proposals.ProposalDetails(
        title="Vitamin D and relapses",
        lead_researcher="Dr A",
        institution="KI",
        sponsor="Network",
        plain_summary="Does vitamin D help?",
        scientific_summary="A cohort study.",
        language="en",
        analysis_mode=AnalysisMode.POOLED,
        ethics_reference="EC-1",
        topic_id=None,
        decision_deadline=utcnow() + timedelta(days=30),
        scope_codes=[SCOPE],
        variable_ids=[variable_id(session, "EDSS")],
    )
    for name, value in changes.items():
        setattr(details, name, value)
    proposal = proposals.create_draft(session, session.get(User, staff.id), details, utcnow())
    session.commit()
    return proposal


def moved(session, staff: User, proposal: Proposal, *steps: str, registries=()) -> Proposal:
    """Take ``proposal`` through ``steps`` with the services; commits."""
    actor = session.get(User, staff.id)
    now = utcnow()
    for step in steps:
        if step == "submit":
            proposals.submit(session, actor, proposal, now)
        elif step == "screen":
            proposals.start_screening(session, actor, proposal, now)
        elif step == "send":
            proposals.send_to_registries(session, actor, proposal, [r.id for r in registries], now)
        else:
            proposals.set_status(session, actor, proposal, ProposalStatus(step), now)
    session.commit()
    return proposal


def status_of(session, proposal_id: int) -> ProposalStatus:
    session.expire_all()
    return session.get(Proposal, proposal_id).status


def changes_of(session, proposal_id: int) -> int:
    session.expire_all()
    return session.scalar(
        sa.select(sa.func.count())
        .select_from(ProposalStatusChange)
        .where(ProposalStatusChange.proposal_id == proposal_id)
    )


def text(response) -> str:
    return response.get_data(as_text=True)


# The list ---------------------------------------------------------------------------------------
def test_the_list_groups_proposals_by_status_with_counts(client, session, signed_in_staff):
    draft(session, signed_in_staff, title="First draft")
    draft(session, signed_in_staff, title="Second draft")
    moved(session, signed_in_staff, draft(session, signed_in_staff, title="Sent in"), "submit")
    page = text(client.get(BASE))
    assert "Draft (2)" in page and "Submitted for screening (1)" in page
    assert "First draft" in page and "Sent in" in page
    for link in ("/proposals/new", "/overdue", "/catalogue"):
        assert f'href="{BASE}{link}"' in page
    assert ">Governance</a>" in page  # the staff navigation links here


def test_the_list_without_proposals(client, signed_in_staff):
    assert "No proposals yet." in text(client.get(BASE))


@pytest.mark.parametrize("role", [Role.PARTICIPANT, Role.CLINICIAN, Role.CUSTODIAN])
def test_other_roles_are_refused_every_staff_page(client, make_user, role):
    sign_in(client, make_user(role, clinician_verified=role == Role.CLINICIAN))
    for url in (BASE, f"{BASE}/proposals/new", f"{BASE}/overdue", f"{BASE}/catalogue"):
        assert client.get(url).status_code == 403, url
    assert post_form(client, f"{BASE}/proposals/new", {"title": "x"}).status_code == 403


# The editor -------------------------------------------------------------------------------------
def test_the_editor_offers_scopes_variables_by_domain_and_adopted_topics(
    client, session, signed_in_staff, make_user
):
    author = make_user(Role.PARTICIPANT)
    actor = session.get(User, signed_in_staff.id)
    adopted = topic_services.propose_topic(
        session,
        session.get(User, author.id),
        topic_services.TopicDetails(
            "Exercise and fatigue", "Does it?", "It may.", TopicCategory.LIFESTYLE
        ),
        utcnow(),
        3,
    )
    session.flush()
    for step in (TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED, TopicStatus.ADOPTED):
        topic_services.change_status(session, actor, adopted, step, utcnow())
    session.commit()
    page = text(client.get(f"{BASE}/proposals/new"))
    assert FIRST_SCOPES[0].title in page and f'value="{SCOPE}"' in page
    assert "<legend>Disability</legend>" in page and "<legend>Treatment</legend>" in page
    assert "EDSS score (EDSS)" in page
    assert '<option selected value="">None</option>' in page or ">None</option>" in page
    assert f'value="{adopted.id}"' in page and "Exercise and fatigue" in page
    assert 'type="datetime-local"' in page and "UTC" in page
    assert 'type="radio"' in page


def test_a_new_draft_is_saved_and_its_reading_level_shown(client, session, signed_in_staff):
    response = post_form(client, f"{BASE}/proposals/new", proposal_data(session))
    assert response.status_code == 303
    proposal = session.scalars(sa.select(Proposal)).one()
    assert proposal.status == ProposalStatus.DRAFT
    assert proposal.proposer_id == signed_in_staff.id
    assert proposal.analysis_mode == AnalysisMode.FEDERATED
    assert proposal.decision_deadline.tzinfo is not None
    page = text(client.get(response.headers["Location"]))
    assert "The draft is saved." in page and "Flesch-Kincaid grade" in page
    assert "Fatigue and DMT exposure" in page and "EDSS score" in page


def test_the_deadline_is_read_as_utc(client, session, signed_in_staff):
    when = (utcnow() + timedelta(days=10)).replace(second=0, microsecond=0)
    post_form(
        client,
        f"{BASE}/proposals/new",
        proposal_data(session, decision_deadline=when.strftime("%Y-%m-%dT%H:%M")),
    )
    saved = session.scalars(sa.select(Proposal)).one()
    assert saved.decision_deadline.astimezone(UTC) == when


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"title": ""}, "Write the title."),
        ({"scope_codes": []}, "Choose at least one consent scope."),
        ({"variable_ids": []}, "Choose at least one variable."),
        ({"analysis_mode": "telepathy"}, "Choose pooled or federated analysis."),
        ({"decision_deadline": "next week"}, "Give a date and time"),
        ({"decision_deadline": "99999-01-01T10:00"}, "Give a date and time"),
        ({"decision_deadline": "9999-01-01T10:00"}, "within the next 10 years"),
        ({"topic_id": "123456"}, "Choose a topic from the list, or None."),
        ({"language": "xx"}, "Choose a language from the list."),
        ({"variable_ids": ["x"]}, "Choose among the variables the catalogue offers"),
        ({"variable_ids": ["99999999999"]}, "Choose among the variables the catalogue offers"),
        ({"scope_codes": ["NOPE"]}, "Choose among the scopes of the published consent form"),
        ({"title": "x" * 201}, "at most 200"),
        # Refused by the service: shown in the error summary, what was typed kept.
        ({"decision_deadline": deadline_text(0.5)}, "at least a day to decide"),
    ],
)
def test_a_refused_draft_keeps_what_was_typed_and_records_nothing(
    client, session, signed_in_staff, changes, message
):
    data = proposal_data(session, sponsor="Typed <sponsor>", **changes)
    response = post_form(client, f"{BASE}/proposals/new", data)
    assert response.status_code == 400
    page = text(response)
    assert message.lower() in page.lower()
    assert 'class="error-summary"' in page
    assert "Typed &lt;sponsor&gt;" in page
    assert session.scalar(sa.select(sa.func.count()).select_from(Proposal)) == 0


def test_a_retired_variable_is_refused_with_its_code(client, session, signed_in_staff):
    data = proposal_data(session)
    variable = session.get(CatalogueVariable, variable_id(session, "EDSS"))
    catalogue.retire_variable(session, session.get(User, signed_in_staff.id), variable, utcnow())
    session.commit()
    response = post_form(client, f"{BASE}/proposals/new", data)
    assert response.status_code == 400
    assert "no longer offered (it may have been retired)" in text(response)
    assert session.scalar(sa.select(sa.func.count()).select_from(Proposal)) == 0


def test_without_a_published_consent_form_the_editor_says_so(client, make_user):
    sign_in(client, make_user(Role.STAFF))
    page = text(client.get(f"{BASE}/proposals/new"))
    assert "No consent form is published yet" in page


def test_editing_a_draft_fills_the_form_and_saves(client, session, signed_in_staff):
    proposal = draft(session, signed_in_staff)
    page = text(client.get(f"{BASE}/proposals/{proposal.id}/edit"))
    assert 'value="Vitamin D and relapses"' in page
    assert proposal.decision_deadline.strftime("%Y-%m-%dT%H:%M") in page
    assert re.search(r'value="pooled"[^>]*checked|checked[^>]*value="pooled"', page)
    data = proposal_data(
        session,
        title="Vitamin D, revised",
        variable_ids=[str(variable_id(session, "EDSS")), str(variable_id(session, "DMT_EXPOSURE"))],
    )
    response = post_form(client, f"{BASE}/proposals/{proposal.id}/edit", data)
    assert response.status_code == 303
    session.expire_all()
    assert session.get(Proposal, proposal.id).title == "Vitamin D, revised"
    saved = proposal_details.details_of(session, session.get(Proposal, proposal.id))
    assert len(saved.variable_ids) == 2


def test_a_sent_proposal_cannot_be_edited(client, session, signed_in_staff, make_registry):
    proposal = moved(
        session,
        signed_in_staff,
        draft(session, signed_in_staff),
        "submit",
        "screen",
        "send",
        registries=[make_registry()],
    )
    response = client.get(f"{BASE}/proposals/{proposal.id}/edit")
    assert response.status_code == 303
    assert "only a draft or a proposal returned" in text(client.get(response.headers["Location"]))
    response = post_form(client, f"{BASE}/proposals/{proposal.id}/edit", proposal_data(session))
    assert response.status_code == 303
    session.expire_all()
    assert session.get(Proposal, proposal.id).title == "Vitamin D and relapses"


def test_missing_proposals_are_not_found(client, signed_in_staff):
    for url in (f"{BASE}/proposals/999999", f"{BASE}/proposals/999999/edit"):
        assert client.get(url).status_code == 404
    assert post_form(client, f"{BASE}/proposals/999999/screening").status_code == 404
    assert post_form(client, f"{BASE}/threads/999999/deadline").status_code == 404


# Status steps -----------------------------------------------------------------------------------
def test_the_proposer_submits_and_staff_screen(client, session, signed_in_staff):
    proposal = draft(session, signed_in_staff)
    page = text(client.get(f"{BASE}/proposals/{proposal.id}"))
    assert "Submit for screening" in page and "Start screening" not in page
    response = post_form(client, f"{BASE}/proposals/{proposal.id}/submit")
    assert response.status_code == 303
    assert status_of(session, proposal.id) == ProposalStatus.SUBMITTED
    page = text(client.get(response.headers["Location"]))
    assert "Submitted: the proposal is waiting for screening." in page
    assert "Start screening" in page and "Return the proposal" in page
    assert post_form(client, f"{BASE}/proposals/{proposal.id}/screening").status_code == 303
    assert status_of(session, proposal.id) == ProposalStatus.SCREENING
    page = text(client.get(f"{BASE}/proposals/{proposal.id}"))
    assert "Send to registries" in page and "Reject the proposal" in page
    assert "created as" in page and "Being screened by staff" in page  # the history


def test_a_second_click_is_refused_and_records_nothing(client, session, signed_in_staff):
    proposal = moved(session, signed_in_staff, draft(session, signed_in_staff), "submit", "screen")
    before = changes_of(session, proposal.id)
    response = post_form(client, f"{BASE}/proposals/{proposal.id}/screening")
    assert response.status_code == 409
    assert "already “being screened by staff”, so nothing was changed" in text(response)
    assert changes_of(session, proposal.id) == before


def test_only_the_proposer_submits(client, session, staff, make_user):
    proposal = draft(session, staff)
    other = make_user(Role.STAFF)
    sign_in(client, other)
    assert "Submit for screening" not in text(client.get(f"{BASE}/proposals/{proposal.id}"))
    response = post_form(client, f"{BASE}/proposals/{proposal.id}/submit")
    assert response.status_code == 403
    assert "Only the proposer can submit this proposal." in text(response)
    assert status_of(session, proposal.id) == ProposalStatus.DRAFT


@pytest.mark.parametrize("action", ["return", "reject"])
def test_return_and_reject_need_a_reason(client, session, signed_in_staff, action):
    proposal = moved(session, signed_in_staff, draft(session, signed_in_staff), "submit", "screen")
    before = changes_of(session, proposal.id)
    response = post_form(client, f"{BASE}/proposals/{proposal.id}/{action}", {"reason": "  "})
    assert response.status_code == 400
    page = text(response)
    assert "Give a reason." in page and f'id="{action}-reason"' in page
    assert f'aria-describedby="{action}-reason-error"' in page
    assert changes_of(session, proposal.id) == before
    response = post_form(
        client, f"{BASE}/proposals/{proposal.id}/{action}", {"reason": "Name the <cohort>."}
    )
    assert response.status_code == 303
    expected = ProposalStatus.RETURNED if action == "return" else ProposalStatus.REJECTED
    assert status_of(session, proposal.id) == expected
    page = text(client.get(response.headers["Location"]))
    assert "Reason: Name the &lt;cohort&gt;." in page


def test_a_returned_proposal_can_be_edited_again(client, session, signed_in_staff):
    proposal = moved(session, signed_in_staff, draft(session, signed_in_staff), "submit")
    post_form(client, f"{BASE}/proposals/{proposal.id}/return", {"reason": "Add the sponsor."})
    assert client.get(f"{BASE}/proposals/{proposal.id}/edit").status_code == 200


def test_rejecting_a_submitted_proposal_is_refused(client, session, signed_in_staff):
    proposal = moved(session, signed_in_staff, draft(session, signed_in_staff), "submit")
    response = post_form(client, f"{BASE}/proposals/{proposal.id}/reject", {"reason": "No."})
    assert response.status_code == 409
    assert "cannot become “not accepted”" in text(response)
    assert status_of(session, proposal.id) == ProposalStatus.SUBMITTED


# Dispatch ---------------------------------------------------------------------------------------
def test_dispatch_lists_active_registries_with_suppressed_cohorts(
    client, session, signed_in_staff, make_registry
):
    active = make_registry(code="SMSREG", name="Swedish MS registry")
    make_registry(code="OLDREG", name="Old registry", is_active=False)
    proposal = moved(session, signed_in_staff, draft(session, signed_in_staff), "submit", "screen")
    page = text(client.get(f"{BASE}/proposals/{proposal.id}"))
    assert "Swedish MS registry (SMSREG): fewer than 5 eligible" in page
    assert "Old registry" not in page
    assert f'value="{active.id}"' in page


def test_sending_creates_one_thread_per_chosen_registry(
    client, session, signed_in_staff, make_registry
):
    first, second = make_registry(name="Alpha"), make_registry(name="Beta")
    proposal = moved(session, signed_in_staff, draft(session, signed_in_staff), "submit", "screen")
    response = post_form(
        client,
        f"{BASE}/proposals/{proposal.id}/send",
        {"registry_ids": [str(first.id), str(second.id)]},
    )
    assert response.status_code == 303
    assert status_of(session, proposal.id) == ProposalStatus.SENT
    threads = session.scalars(
        sa.select(DecisionThread).where(DecisionThread.proposal_id == proposal.id)
    ).all()
    assert {t.registry_id for t in threads} == {first.id, second.id}
    page = text(client.get(response.headers["Location"]))
    assert "Sent to 2 registries." in page
    assert "<svg" in page and "Decisions by status: Waiting for review 2" in page
    assert "Alpha" in page and "Beta" in page and "Not yet" in page


@pytest.mark.parametrize("chosen", [[], ["999999"], ["abc"]])
def test_sending_to_no_or_unknown_registries_is_refused(
    client, session, signed_in_staff, make_registry, chosen
):
    make_registry()
    proposal = moved(session, signed_in_staff, draft(session, signed_in_staff), "submit", "screen")
    response = post_form(client, f"{BASE}/proposals/{proposal.id}/send", {"registry_ids": chosen})
    assert response.status_code == 400
    assert 'class="error-summary"' in text(response)
    assert status_of(session, proposal.id) == ProposalStatus.SCREENING
    assert session.scalar(sa.select(sa.func.count()).select_from(DecisionThread)) == 0


def test_sending_after_the_deadline_passed_is_refused(
    client, session, signed_in_staff, make_registry
):
    registry = make_registry()
    proposal = moved(session, signed_in_staff, draft(session, signed_in_staff), "submit", "screen")
    proposal.decision_deadline = utcnow() - timedelta(hours=1)
    session.commit()
    response = post_form(
        client, f"{BASE}/proposals/{proposal.id}/send", {"registry_ids": [str(registry.id)]}
    )
    assert response.status_code == 400
    assert "The decision deadline has passed" in text(response)
    assert status_of(session, proposal.id) == ProposalStatus.SCREENING


# Deadlines and the matrix -----------------------------------------------------------------------
def sent(session, staff, make_registry, n: int = 1) -> tuple[Proposal, list[DecisionThread]]:
    registries = [make_registry() for _ in range(n)]
    proposal = moved(
        session, staff, draft(session, staff), "submit", "screen", "send", registries=registries
    )
    threads = session.scalars(
        sa.select(DecisionThread)
        .where(DecisionThread.proposal_id == proposal.id)
        .order_by(DecisionThread.id)
    ).all()
    return proposal, list(threads)


def test_extending_one_registrys_deadline(client, session, signed_in_staff, make_registry):
    proposal, (thread, other) = sent(session, signed_in_staff, make_registry, 2)
    page = text(client.get(f"{BASE}/proposals/{proposal.id}"))
    assert f'id="thread-{thread.id}-deadline"' in page
    assert f'id="thread-{other.id}-deadline"' in page
    new = (thread.deadline + timedelta(days=7)).replace(second=0, microsecond=0)
    response = post_form(
        client,
        f"{BASE}/threads/{thread.id}/deadline",
        {"deadline": new.strftime("%Y-%m-%dT%H:%M"), "reason": "Their board meets later."},
    )
    assert response.status_code == 303
    session.expire_all()
    assert session.get(DecisionThread, thread.id).deadline == new
    assert session.get(DecisionThread, other.id).deadline == proposal.decision_deadline
    assert "The registry now has until" in text(client.get(response.headers["Location"]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"deadline": "", "reason": "x"}, "Give the new deadline"),
        ({"deadline": deadline_text(60), "reason": ""}, "Give a reason for the extension."),
        ({"deadline": deadline_text(1), "reason": "Earlier"}, "Choose a deadline later"),
    ],
)
def test_a_refused_extension_keeps_what_was_typed(
    client, session, signed_in_staff, make_registry, data, message
):
    proposal, (thread,) = sent(session, signed_in_staff, make_registry)
    events = session.scalar(sa.select(sa.func.count()).select_from(DecisionEvent))
    response = post_form(client, f"{BASE}/threads/{thread.id}/deadline", data)
    assert response.status_code == 400
    page = text(response)
    assert message in page
    if data["deadline"]:
        assert f'value="{data["deadline"]}"' in page
    session.expire_all()
    assert session.get(DecisionThread, thread.id).deadline == proposal.decision_deadline
    assert session.scalar(sa.select(sa.func.count()).select_from(DecisionEvent)) == events


def test_a_decided_registry_cannot_be_given_more_time(
    client, session, signed_in_staff, make_registry
):
    proposal, (thread,) = sent(session, signed_in_staff, make_registry)
    thread.status, thread.decided_at = ThreadStatus.DECLINED, utcnow()
    session.commit()
    page = text(client.get(f"{BASE}/proposals/{proposal.id}"))
    assert f'id="thread-{thread.id}-deadline"' not in page
    assert "Declined" in page and "Decisions by status: Declined 1" in page
    response = post_form(
        client,
        f"{BASE}/threads/{thread.id}/deadline",
        {"deadline": deadline_text(60), "reason": "More time"},
    )
    assert response.status_code == 409
    assert "already “declined”" in text(response)


def test_complete_and_close_an_active_project(client, session, signed_in_staff, make_registry):
    proposal, _ = sent(session, signed_in_staff, make_registry)
    moved(session, signed_in_staff, proposal, "decisions_closed", "active")
    page = text(client.get(f"{BASE}/proposals/{proposal.id}"))
    assert "Mark completed" in page and "Close the project" in page
    response = post_form(
        client, f"{BASE}/proposals/{proposal.id}/complete", {"reason": "Published."}
    )
    assert response.status_code == 303
    assert status_of(session, proposal.id) == ProposalStatus.COMPLETED
    response = post_form(client, f"{BASE}/proposals/{proposal.id}/close")
    assert response.status_code == 409
    assert status_of(session, proposal.id) == ProposalStatus.COMPLETED


def test_closing_an_active_project(client, session, signed_in_staff, make_registry):
    proposal, _ = sent(session, signed_in_staff, make_registry)
    moved(session, signed_in_staff, proposal, "decisions_closed", "active")
    assert post_form(client, f"{BASE}/proposals/{proposal.id}/close").status_code == 303
    assert status_of(session, proposal.id) == ProposalStatus.CLOSED


def test_completing_a_proposal_still_out_for_decisions_is_refused(
    client, session, signed_in_staff, make_registry
):
    proposal, _ = sent(session, signed_in_staff, make_registry)
    before = changes_of(session, proposal.id)
    response = post_form(client, f"{BASE}/proposals/{proposal.id}/complete", {"reason": "Done"})
    assert response.status_code == 409
    assert "cannot become “completed”" in text(response)
    assert changes_of(session, proposal.id) == before


def test_summaries_are_rendered_and_sanitised(client, session, signed_in_staff):
    proposal = draft(
        session, signed_in_staff, scientific_summary="**Bold** <script>alert(1)</script>"
    )
    page = text(client.get(f"{BASE}/proposals/{proposal.id}"))
    assert "<strong>Bold</strong>" in page
    assert "<script>alert(1)" not in page


@pytest.mark.parametrize(
    "action", ["submit", "screening", "return", "reject", "send", "complete", "close"]
)
def test_status_steps_answer_405_to_a_get(client, session, signed_in_staff, action):
    proposal = draft(session, signed_in_staff)
    assert client.get(f"{BASE}/proposals/{proposal.id}/{action}").status_code == 405


# Overdue ----------------------------------------------------------------------------------------
def test_the_overdue_list(client, session, signed_in_staff, make_registry):
    proposal, (late, soon, later) = sent(session, signed_in_staff, make_registry, 3)
    late.deadline = utcnow() - timedelta(hours=2)
    soon.deadline = utcnow() + timedelta(hours=5)
    session.commit()
    page = text(client.get(f"{BASE}/overdue"))
    assert page.count(f"/proposals/{proposal.id}#decisions") == 2
    assert "Past the deadline" in page and "Due within a day" in page


def test_the_overdue_list_when_nothing_is_due(client, signed_in_staff):
    assert "No decision is overdue" in text(client.get(f"{BASE}/overdue"))


# The catalogue ----------------------------------------------------------------------------------
def test_the_catalogue_lists_variables_by_domain(client, session, signed_in_staff):
    page = text(client.get(f"{BASE}/catalogue"))
    assert "<h2" in page and ">Disability</h2>" in page and ">Treatment</h2>" in page
    assert "EDSS score" in page and "Retire" in page


def test_adding_a_variable(client, session, signed_in_staff):
    assert client.get(f"{BASE}/catalogue/new").status_code == 200
    response = post_form(
        client,
        f"{BASE}/catalogue/new",
        {
            "code": "relapse_rate",
            "name": "Relapse rate",
            "domain": "Disease course",
            "description": "Relapses a year.",
        },
    )
    assert response.status_code == 303
    assert "RELAPSE_RATE is added." in text(client.get(response.headers["Location"]))
    assert variable_id(session, "RELAPSE_RATE") is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"code": "EDSS"}, "Another variable already has the code EDSS"),
        ({"code": "9X"}, "A code is 2 to 40 capital letters"),
        ({"name": ""}, "Write the variable&#39;s name."),
        ({"description": "x" * 2001}, "at most 2,000"),
    ],
)
def test_a_refused_variable_keeps_what_was_typed(client, session, signed_in_staff, data, message):
    fields = {
        "code": "NEW_ONE",
        "name": "Typed name",
        "domain": "Typed domain",
        "description": "Typed.",
    }
    fields.update(data)
    before = session.scalar(sa.select(sa.func.count()).select_from(CatalogueVariable))
    response = post_form(client, f"{BASE}/catalogue/new", fields)
    assert response.status_code == 400
    assert message in text(response) and "Typed domain" in text(response)
    assert session.scalar(sa.select(sa.func.count()).select_from(CatalogueVariable)) == before


def test_editing_a_variable(client, session, signed_in_staff):
    vid = variable_id(session, "EDSS")
    assert 'value="EDSS score"' in text(client.get(f"{BASE}/catalogue/{vid}/edit"))
    response = post_form(
        client,
        f"{BASE}/catalogue/{vid}/edit",
        {
            "code": "EDSS",
            "name": "Expanded Disability Status Scale",
            "domain": "Disability",
            "description": "Scores.",
        },
    )
    assert response.status_code == 303
    session.expire_all()
    assert session.get(CatalogueVariable, vid).name == "Expanded Disability Status Scale"


def test_a_requested_variables_code_cannot_change(client, session, signed_in_staff):
    draft(session, signed_in_staff)
    vid = variable_id(session, "EDSS")
    response = post_form(
        client,
        f"{BASE}/catalogue/{vid}/edit",
        {"code": "EDSS2", "name": "EDSS score", "domain": "Disability", "description": "x"},
    )
    assert response.status_code == 400
    assert "Proposals already request EDSS" in text(response)
    session.expire_all()
    assert session.get(CatalogueVariable, vid).code == "EDSS"


def test_retiring_and_reinstating_a_variable(client, session, signed_in_staff):
    vid = variable_id(session, "EDSS")
    response = post_form(client, f"{BASE}/catalogue/{vid}/retire", {"code": "EDSS"})
    assert response.status_code == 303
    assert "EDSS is retired" in text(client.get(response.headers["Location"]))
    session.expire_all()
    assert session.get(CatalogueVariable, vid).is_active is False
    assert "EDSS score (EDSS)" not in text(client.get(f"{BASE}/proposals/new"))
    response = post_form(client, f"{BASE}/catalogue/{vid}/retire", {"code": "EDSS"})
    assert response.status_code == 409
    assert "already retired, so nothing was changed" in text(response)
    assert (
        post_form(client, f"{BASE}/catalogue/{vid}/reinstate", {"code": "EDSS"}).status_code == 303
    )
    session.expire_all()
    assert session.get(CatalogueVariable, vid).is_active is True


def test_retiring_from_an_out_of_date_page_is_refused(client, session, signed_in_staff):
    vid = variable_id(session, "EDSS")
    response = post_form(client, f"{BASE}/catalogue/{vid}/retire", {"code": "OTHER"})
    assert response.status_code == 400
    assert "This page is out of date" in text(response)
    session.expire_all()
    assert session.get(CatalogueVariable, vid).is_active is True


def test_catalogue_actions_answer_405_to_a_get_and_404_for_missing(
    client, session, signed_in_staff
):
    vid = variable_id(session, "EDSS")
    assert client.get(f"{BASE}/catalogue/{vid}/retire").status_code == 405
    assert client.get(f"{BASE}/catalogue/{vid}/reinstate").status_code == 405
    assert client.get(f"{BASE}/catalogue/999999/edit").status_code == 404
    assert post_form(client, f"{BASE}/catalogue/999999/retire", {"code": "X"}).status_code == 404


def test_a_field_missing_from_a_post_does_not_fall_back_to_the_saved_value(
    client, session, signed_in_staff
):
    vid = variable_id(session, "EDSS")
    response = post_form(client, f"{BASE}/catalogue/{vid}/edit", {"code": "EDSS"})
    assert response.status_code == 400
    assert "Write the variable&#39;s name." in text(response)
