"""Governance pages through the browser's eyes: a registry's custodians review and decide (blind
to the other registries until they have decided), proposers draft, submit, answer and withdraw,
and anyone reads the public register. Refusals explain themselves and record nothing."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import CustodianStatus, Role, User
from engage.timeutil import utcnow
from engage.topics import services as topic_services
from engage.topics.models import Topic, TopicCategory, TopicStatus
from governance import catalogue, chain, decisions, queries
from governance.models import (
    ConsentNotice,
    DecisionEventKind,
    DecisionThread,
    Proposal,
    ProposalStatus,
    ProposalVariable,
    ThreadStatus,
)
from tests.conftest import post_form, sign_in
from tests.consent_support import publish
from tests.governance.support import kinds_of, ledger_size, make_proposal, set_proposal_status

K = DecisionEventKind


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
def consent_form(session, staff):
    """The seed consent form, published (its scopes are what proposals may need)."""
    return publish(session, staff, now=utcnow() - timedelta(days=30))


@pytest.fixture
def north(make_registry):
    return make_registry(code="NORTH", name="Northern MS Registry")


@pytest.fixture
def south(make_registry):
    return make_registry(code="SOUTH", name="Southern MS Registry")


@pytest.fixture
def custodian(make_user, north):
    return make_user(Role.CUSTODIAN, registry=north)


@pytest.fixture
def south_custodian(make_user, south):
    return make_user(Role.CUSTODIAN, registry=south)


@pytest.fixture
def proposer(make_user):
    return make_user(Role.CLINICIAN, clinician_verified=True)


@pytest.fixture
def sent(session, consent_form, proposer, north, south):
    """A proposal by ``proposer`` sent to both registries: (proposal, north's, south's thread)."""
    proposal, (north_thread, south_thread) = make_proposal(
        session, proposer, [north, south], scopes=["MS_RESEARCH"]
    )
    proposal.plain_summary = "Does **vitamin D** lower the number of relapses?"
    session.commit()
    return proposal, north_thread, south_thread


def page(response) -> str:
    return response.get_data(as_text=True)


def thread_row(session, thread_id: int) -> DecisionThread:
    session.expire_all()
    return session.get(DecisionThread, thread_id)


def north_url(proposal, action: str = "") -> str:
    return f"/governance/registries/NORTH/proposals/{proposal.id}{action}"


def flashed(response) -> str:
    """The text of the page a redirect led to (follow_redirects=True), tags removed."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page(response))))


# Custodians: the inbox ------------------------------------------------------------------------
def test_inbox_lists_open_proposals_first_with_the_time_left(
    client, session, custodian, proposer, north, sent
):
    proposal, _north_thread, _ = sent
    decided, (decided_thread,) = make_proposal(
        session, proposer, [north], title="Sleep and fatigue", deadline=utcnow() + timedelta(days=3)
    )
    decisions.approve(session, session.get(User, custodian.id), decided_thread, utcnow())
    session.commit()
    sign_in(client, custodian)

    response = client.get("/governance/registries/NORTH")

    text = page(response)
    assert response.status_code == 200
    assert text.index(proposal.title) < text.index("Sleep and fatigue")
    assert "13 days and 23 hours left" in text or "14 days left" in text
    assert "Decided on" in text
    assert 'href="/governance/registries/NORTH"' in text  # "My registry" in the navigation


def test_a_long_inbox_is_read_page_by_page(
    client, session, custodian, proposer, north, sent, monkeypatch
):
    monkeypatch.setattr(queries, "INBOX_PAGE_SIZE", 2)
    proposal, _north_thread, _ = sent
    for n, days in enumerate((20, 30)):
        make_proposal(
            session,
            proposer,
            [north],
            title=f"Later proposal {n}",
            deadline=utcnow() + timedelta(days=days),
        )
    sign_in(client, custodian)

    first = page(client.get("/governance/registries/NORTH"))
    second = page(client.get("/governance/registries/NORTH?page=2"))
    beyond = client.get("/governance/registries/NORTH?page=9")

    assert proposal.title in first and "Later proposal 0" in first
    assert "Later proposal 1" not in first and "Later in the list" in first
    assert "Later proposal 1" in second and "Earlier in the list" in second
    assert proposal.title not in second
    assert beyond.status_code == 200 and "There are no more proposals" in page(beyond)


@pytest.mark.parametrize(
    ("who", "expected"),
    [("south", 403), ("pending", 403), ("clinician", 403), ("staff", 403), ("anonymous", 302)],
)
def test_only_approved_custodians_of_the_registry_open_its_pages(
    client, make_user, sent, south, north, who, expected
):
    proposal, _, _ = sent
    accounts = {
        "south": lambda: make_user(Role.CUSTODIAN, registry=south),
        "pending": lambda: make_user(
            Role.CUSTODIAN, registry=north, custodian_status=CustodianStatus.PENDING
        ),
        "clinician": lambda: make_user(Role.CLINICIAN, clinician_verified=True),
        "staff": lambda: make_user(Role.STAFF),
    }
    if who != "anonymous":
        sign_in(client, accounts[who]())
    for url in (
        "/governance/registries/NORTH",
        north_url(proposal),
        "/governance/registries/NORTH/notices",
    ):
        assert client.get(url).status_code == expected, url


def test_unknown_registry_or_a_proposal_not_sent_there_is_not_found(
    client, session, custodian, proposer, south, sent
):
    elsewhere, _ = make_proposal(session, proposer, [south], title="Only in the south")
    sign_in(client, custodian)
    assert client.get("/governance/registries/NOPE").status_code == 404
    assert client.get(north_url(elsewhere)).status_code == 404
    assert client.get("/governance/registries/NORTH/proposals/999999").status_code == 404


# Custodians: a proposal and its decision forms ---------------------------------------------
def test_proposal_page_shows_summaries_scopes_cohort_and_thread(
    client, session, staff, custodian, sent
):
    proposal, _, _ = sent
    variable = catalogue.add_variable(
        session,
        session.get(User, staff.id),
        catalogue.VariableDetails("EDSS", "EDSS score", "Disability", "Expanded scale"),
        utcnow(),
    )
    session.add(ProposalVariable(proposal_id=proposal.id, variable_id=variable.id))
    session.commit()
    sign_in(client, custodian)

    text = page(client.get(north_url(proposal)))

    assert "<strong>vitamin D</strong>" in text  # Markdown rendered
    assert "MS_RESEARCH" in text
    assert "EDSS score" in text
    assert "Fewer than 5" in text  # small-cell suppression, no participants yet
    assert K.SENT.label in text
    for button in ("Open for review", "Send the question", "Check our decision"):
        assert button in text
    for choice in ("Approve", "Approve with conditions", "Decline"):
        assert f">{choice}</label>" in text
    assert "Withdraw the approval" not in text


def test_blind_review_hides_other_registries_until_this_one_decides(
    client, session, custodian, south_custodian, sent
):
    proposal, north_thread, south_thread = sent
    decisions.decline(
        session,
        session.get(User, south_custodian.id),
        south_thread,
        "Our ethics board says no.",
        utcnow(),
    )
    session.commit()
    sign_in(client, custodian)

    before = page(client.get(north_url(proposal)))
    assert "Southern MS Registry" not in before
    assert "Declined" not in before
    assert "once your registry has decided" in before

    post_form(client, north_url(proposal, "/approve"))
    after = page(client.get(north_url(proposal)))
    assert "Southern MS Registry: Declined" in after
    assert "Our ethics board says no." not in after  # never the others' reasons
    assert thread_row(session, north_thread.id).status == ThreadStatus.APPROVED


def test_custodian_opens_asks_and_decides_each_step_recorded(client, session, custodian, sent):
    proposal, thread, _ = sent
    sign_in(client, custodian)

    response = post_form(client, north_url(proposal, "/open"), follow_redirects=True)
    assert "You are reviewing this proposal" in flashed(response)
    response = post_form(
        client,
        north_url(proposal, "/ask"),
        {"question": "Which vitamin D assay?"},
        follow_redirects=True,
    )
    assert "Your deadline is paused" in flashed(response)
    assert thread_row(session, thread.id).status == ThreadStatus.INFO_REQUESTED
    assert "Which vitamin D assay?" in page(response)

    response = post_form(
        client,
        north_url(proposal, "/approve-with-conditions"),
        {"conditions": "Federated analysis only."},
        follow_redirects=True,
    )
    assert "approval with conditions is recorded" in flashed(response)
    assert thread_row(session, thread.id).status == ThreadStatus.CONDITIONS_SET
    assert kinds_of(session, thread) == [K.SENT, K.OPENED, K.INFO_REQUESTED, K.CONDITIONS_SET]


@pytest.mark.parametrize(
    ("action", "data", "message"),
    [
        ("/decline", {"decline_reason": "   "}, "Write a reason for declining."),
        ("/ask", {}, "Write your question to the proposer."),
        ("/approve-with-conditions", {"conditions": ""}, "Write the conditions of your approval."),
        ("/decline", {"decline_reason": "x" * 5001}, "Use at most 5,000 characters."),
    ],
)
def test_missing_or_overlong_text_is_explained_next_to_the_field_and_nothing_recorded(
    client, session, custodian, sent, action, data, message
):
    proposal, thread, _ = sent
    sign_in(client, custodian)
    before = ledger_size(session)

    response = post_form(client, north_url(proposal, action), data)

    assert response.status_code == 400
    assert message in page(response)
    assert 'aria-invalid="true"' in page(response)
    assert "error-summary" in page(response)
    assert ledger_size(session) == before
    assert thread_row(session, thread.id).status == ThreadStatus.SENT


def test_deciding_twice_is_refused_with_a_message_and_recorded_once(
    client, session, custodian, sent
):
    proposal, thread, _ = sent
    sign_in(client, custodian)
    post_form(client, north_url(proposal, "/approve"))
    before = ledger_size(session)

    response = post_form(
        client,
        north_url(proposal, "/decline"),
        {"decline_reason": "Changed our mind"},
        follow_redirects=True,
    )

    assert "This registry has already decided" in flashed(response)
    assert "nothing was changed" in flashed(response)
    assert ledger_size(session) == before
    assert thread_row(session, thread.id).status == ThreadStatus.APPROVED


def test_a_custodian_of_another_registry_cannot_decide(client, session, south_custodian, sent):
    proposal, thread, _ = sent
    sign_in(client, south_custodian)
    before = ledger_size(session)
    for action, data in (
        ("/open", {}),
        ("/approve", {}),
        ("/decline", {"decline_reason": "No"}),
        ("/ask", {"question": "Why?"}),
        ("/withdraw-approval", {"withdraw_reason": "No"}),
    ):
        assert post_form(client, north_url(proposal, action), data).status_code == 403
    assert ledger_size(session) == before
    assert thread_row(session, thread.id).status == ThreadStatus.SENT


def test_deadline_passed_closes_the_forms_and_refuses_decisions(
    client, session, custodian, proposer, north
):
    past = utcnow() - timedelta(days=20)
    proposal, (thread,) = make_proposal(session, proposer, [north], now=past)
    proposal.decision_deadline = thread.deadline = utcnow() - timedelta(hours=1)
    session.commit()
    sign_in(client, custodian)

    text = page(client.get(north_url(proposal)))
    assert "Record a decision" not in text
    response = post_form(client, north_url(proposal, "/approve"), follow_redirects=True)
    assert "deadline passed" in flashed(response)
    assert thread_row(session, thread.id).status == ThreadStatus.SENT


def test_withdrawing_an_approval_needs_a_reason(client, session, custodian, sent):
    proposal, thread, _ = sent
    sign_in(client, custodian)
    post_form(client, north_url(proposal, "/approve"))
    assert "Withdraw the approval" in page(client.get(north_url(proposal)))

    empty = post_form(client, north_url(proposal, "/withdraw-approval"), {"withdraw_reason": ""})
    assert empty.status_code == 400
    assert "Write a reason for withdrawing the approval." in page(empty)

    post_form(client, north_url(proposal, "/withdraw-approval"), {"withdraw_reason": "Data issue"})
    assert thread_row(session, thread.id).status == ThreadStatus.APPROVAL_WITHDRAWN


# Custodians: consent notices ----------------------------------------------------------------
def _notice(session, registry, proposal, receipt="r-1") -> ConsentNotice:
    notice = ConsentNotice(
        registry_id=registry.id,
        proposal_id=proposal.id,
        pseudonym="3f2a9c1e-0000-4000-8000-000000000001",
        scope_code="MS_RESEARCH",
        receipt_id=receipt,
        created_at=utcnow(),
    )
    session.add(notice)
    session.commit()
    return notice


def test_custodian_acknowledges_a_consent_notice_once(client, session, custodian, north, sent):
    proposal, _, _ = sent
    notice = _notice(session, north, proposal)
    sign_in(client, custodian)

    text = page(client.get("/governance/registries/NORTH/notices"))
    assert proposal.title in text and notice.pseudonym in text and "Mark as dealt with" in text
    assert "1 consent notice needs your attention" in page(
        client.get("/governance/registries/NORTH")
    )

    url = f"/governance/registries/NORTH/notices/{notice.id}/acknowledge"
    response = post_form(client, url, follow_redirects=True)
    assert "marked as dealt with" in flashed(response)
    assert "There are no consent notices to deal with." in page(response)
    session.expire_all()
    assert session.get(ConsentNotice, notice.id).acknowledged_by_id == custodian.id

    again = post_form(client, url, follow_redirects=True)
    assert "already marked as dealt with" in flashed(again)


def test_notices_of_another_registry_are_out_of_reach(
    client, session, custodian, south_custodian, south, north, sent
):
    proposal, _, _ = sent
    south_notice = _notice(session, south, proposal)
    north_notice = _notice(session, north, proposal, receipt="r-2")
    sign_in(client, custodian)
    # Through one's own registry's address, another registry's notice does not exist.
    url = f"/governance/registries/NORTH/notices/{south_notice.id}/acknowledge"
    assert post_form(client, url).status_code == 404

    other = client.application.test_client()
    sign_in(other, south_custodian)
    url = f"/governance/registries/NORTH/notices/{north_notice.id}/acknowledge"
    assert post_form(other, url).status_code == 403
    session.expire_all()
    assert session.get(ConsentNotice, north_notice.id).acknowledged_at is None
    assert session.get(ConsentNotice, south_notice.id).acknowledged_at is None


# Proposers ----------------------------------------------------------------------------------
@pytest.fixture
def variables(session, staff):
    staff_row = session.get(User, staff.id)
    made = [
        catalogue.add_variable(
            session, staff_row, catalogue.VariableDetails(code, name, domain, "…"), utcnow()
        )
        for code, name, domain in (
            ("EDSS", "EDSS score", "Disability"),
            ("RELAPSES", "Relapse count", "Disease course"),
        )
    ]
    session.commit()
    return made


def proposal_data(variables, **changes) -> dict:
    deadline = (utcnow() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    data = {
        "title": "Vitamin D and relapses",
        "lead_researcher": "Dr Ana Lind",
        "institution": "Karolinska Institutet",
        "sponsor": "MS Society",
        "plain_summary": "Does vitamin D help?",
        "scientific_summary": "A cohort study.",
        "language": "en",
        "analysis_mode": "federated",
        "ethics_reference": "EPN 2026-1",
        "topic_id": "",
        "decision_deadline": deadline,
        "scope_codes": ["MS_RESEARCH"],
        "variable_ids": [str(variables[0].id)],
    }
    data.update(changes)
    return data


def proposals_in(session) -> list[Proposal]:
    session.expire_all()
    return list(session.scalars(sa.select(Proposal).order_by(Proposal.id)))


def test_verified_professional_drafts_edits_and_submits_a_proposal(
    client, session, consent_form, variables, proposer
):
    sign_in(client, proposer)
    form = page(client.get("/governance/proposals/new"))
    assert "<legend>Disability</legend>" in form and "<legend>Disease course</legend>" in form
    assert 'type="datetime-local"' in form and "UTC" in form
    assert 'value="MS_RESEARCH"' in form

    response = post_form(client, "/governance/proposals/new", proposal_data(variables))
    assert response.status_code == 302
    (proposal,) = proposals_in(session)
    assert proposal.status == ProposalStatus.DRAFT and proposal.proposer_id == proposer.id
    assert response.headers["Location"].endswith(f"/governance/proposals/{proposal.id}")

    edit = f"/governance/proposals/{proposal.id}/edit"
    assert "Vitamin D and relapses" in page(client.get(edit))
    post_form(client, edit, proposal_data(variables, title="Vitamin D and relapse rates"))
    assert proposals_in(session)[0].title == "Vitamin D and relapse rates"

    response = post_form(
        client, f"/governance/proposals/{proposal.id}/submit", follow_redirects=True
    )
    assert "Your proposal is submitted" in flashed(response)
    assert proposals_in(session)[0].status == ProposalStatus.SUBMITTED
    again = post_form(client, f"/governance/proposals/{proposal.id}/submit", follow_redirects=True)
    assert "already" in flashed(again) and "nothing was changed" in flashed(again)

    # A submitted proposal can no longer be edited.
    response = client.get(edit, follow_redirects=True)
    assert "only a draft or a proposal returned to you can be changed" in flashed(response)
    assert "Vitamin D and relapse rates" in page(client.get("/governance/proposals"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"title": ""}, "Give the project a title."),
        ({"scope_codes": []}, "Choose at least one consent scope"),
        ({"variable_ids": []}, "Choose at least one variable"),
        ({"variable_ids": ["abc"]}, "variable"),
        ({"scope_codes": ["NOT_A_SCOPE"]}, "Consent the project needs"),
        ({"decision_deadline": "tomorrow-ish"}, "Give the date and time as on a calendar"),
        ({"decision_deadline": "99999-01-01T10:00"}, "Give the date and time"),
        ({"decision_deadline": "9999-12-31T23:59"}, "within the next five years"),
        ({"topic_id": "abc"}, "Research topic"),
        ({"topic_id": "424242"}, "Research topic"),
        ({"analysis_mode": "both"}, "How the data is analysed"),
        ({"plain_summary": "a\x00b"}, "NUL"),
    ],
)
def test_bad_proposal_input_is_a_form_error_and_nothing_is_saved(
    client, session, consent_form, variables, proposer, changes, message
):
    sign_in(client, proposer)
    response = post_form(client, "/governance/proposals/new", proposal_data(variables, **changes))
    assert response.status_code == 400
    assert message in page(response)
    assert proposals_in(session) == []


def test_the_services_rules_are_explained_on_the_form(
    client, session, consent_form, variables, proposer
):
    sign_in(client, proposer)
    soon = (utcnow() + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    response = post_form(
        client, "/governance/proposals/new", proposal_data(variables, decision_deadline=soon)
    )
    assert response.status_code == 400
    assert "at least a day to decide" in page(response)
    assert proposals_in(session) == []


def test_an_unverified_professional_is_told_why_and_cannot_draft(
    client, session, consent_form, variables, make_user
):
    sign_in(client, make_user(Role.CLINICIAN, clinician_verified=False))
    text = page(client.get("/governance/proposals/new"))
    assert "Once staff have confirmed yours" in text
    assert "Save draft" not in text

    response = post_form(client, "/governance/proposals/new", proposal_data(variables))
    assert response.status_code == 403
    assert "Staff must confirm your professional details" in page(response)
    assert proposals_in(session) == []


def test_people_who_do_not_propose_get_403(client, make_user):
    sign_in(client, make_user(Role.PARTICIPANT))
    assert client.get("/governance/proposals").status_code == 403
    assert client.get("/governance/proposals/new").status_code == 403


def test_status_page_shows_each_registry_thread_with_its_events(
    client, session, custodian, proposer, staff, make_user, sent
):
    proposal, north_thread, _ = sent
    decisions.ask_for_information(
        session, session.get(User, custodian.id), north_thread, "Which assay?", utcnow()
    )
    session.commit()
    url = f"/governance/proposals/{proposal.id}"

    sign_in(client, proposer)
    text = page(client.get(url))
    assert "Northern MS Registry" in text and "Southern MS Registry" in text
    assert "Which assay?" in text
    assert "Send your answer to Northern MS Registry" in text
    assert "Withdraw the proposal" in text

    staff_client = client.application.test_client()
    sign_in(staff_client, staff)
    staff_view = staff_client.get(url)
    assert staff_view.status_code == 200
    assert "Send your answer" not in page(staff_view)  # staff read; the proposer acts

    stranger = client.application.test_client()
    sign_in(stranger, make_user(Role.CLINICIAN, clinician_verified=True))
    assert stranger.get(url).status_code == 403
    assert post_form(stranger, f"{url}/withdraw", {"reason": "Mine now"}).status_code == 403
    assert stranger.get("/governance/proposals/999999").status_code == 404


def test_proposer_answers_a_question_and_the_registry_clock_resumes(
    client, session, custodian, proposer, sent
):
    proposal, thread, _ = sent
    decisions.ask_for_information(
        session, session.get(User, custodian.id), thread, "Which assay?", utcnow()
    )
    session.commit()
    sign_in(client, proposer)
    url = f"/governance/proposals/{proposal.id}/threads/{thread.id}/answer"
    field = f"thread-{thread.id}-answer"

    empty = post_form(client, url, {field: ""})
    assert empty.status_code == 400
    assert "Write your answer." in page(empty)
    assert thread_row(session, thread.id).status == ThreadStatus.INFO_REQUESTED

    response = post_form(client, url, {field: "LC-MS/MS"}, follow_redirects=True)
    assert "Your answer is sent" in flashed(response)
    assert thread_row(session, thread.id).status == ThreadStatus.IN_REVIEW
    assert thread_row(session, thread.id).paused_since is None

    again = post_form(client, url, {field: "Again"}, follow_redirects=True)
    assert "No question from this registry is waiting" in flashed(again)


def test_proposer_accepts_or_refuses_conditions(
    client, session, custodian, south_custodian, proposer, sent
):
    proposal, north_thread, south_thread = sent
    for who, thread in ((custodian, north_thread), (south_custodian, south_thread)):
        decisions.approve_with_conditions(
            session, session.get(User, who.id), thread, "Only aggregated results.", utcnow()
        )
    session.commit()
    sign_in(client, proposer)
    base = f"/governance/proposals/{proposal.id}/threads"
    assert "Accept the conditions" in page(client.get(f"/governance/proposals/{proposal.id}"))

    accepted = post_form(
        client, f"{base}/{north_thread.id}/accept-conditions", follow_redirects=True
    )
    assert "You accepted the registry's conditions" in flashed(accepted)
    post_form(client, f"{base}/{south_thread.id}/refuse-conditions")

    assert thread_row(session, north_thread.id).status == ThreadStatus.CONDITIONS_ACCEPTED
    assert thread_row(session, south_thread.id).status == ThreadStatus.CONDITIONS_REFUSED
    again = post_form(client, f"{base}/{north_thread.id}/refuse-conditions", follow_redirects=True)
    assert "This registry has set no conditions to answer" in flashed(again)
    # A thread of another proposal is not found under this one.
    assert (
        post_form(
            client, f"/governance/proposals/999999/threads/{north_thread.id}/accept-conditions"
        ).status_code
        == 404
    )


def test_the_custodian_cannot_answer_for_the_proposer(client, session, custodian, sent):
    proposal, thread, _ = sent
    sign_in(client, custodian)
    url = f"/governance/proposals/{proposal.id}/threads/{thread.id}/accept-conditions"
    assert post_form(client, url).status_code == 403
    assert client.get(f"/governance/proposals/{proposal.id}").status_code == 403


def test_withdrawing_a_proposal_needs_a_reason(client, session, proposer, sent):
    proposal, _, _ = sent
    sign_in(client, proposer)
    url = f"/governance/proposals/{proposal.id}/withdraw"

    empty = post_form(client, url, {"reason": " "})
    assert empty.status_code == 400
    assert "Give a reason for withdrawing." in page(empty)
    assert proposals_in(session)[0].status == ProposalStatus.SENT

    response = post_form(client, url, {"reason": "Funding ended."}, follow_redirects=True)
    assert "Your proposal is withdrawn." in flashed(response)
    assert proposals_in(session)[0].status == ProposalStatus.WITHDRAWN
    again = post_form(client, url, {"reason": "Again"}, follow_redirects=True)
    assert "nothing was changed" in flashed(again)


# Everyone -----------------------------------------------------------------------------------
def _adopted_topic(app, session, make_user, reference: str | None) -> Topic:
    author = make_user(Role.PARTICIPANT)
    topic = topic_services.propose_topic(
        session,
        session.get(User, author.id),
        topic_services.TopicDetails(
            title="Does vitamin D slow MS?",
            question="Does it?",
            rationale="It may.",
            category=TopicCategory.LIFESTYLE,
        ),
        utcnow(),
        3,
    )
    topic.status = TopicStatus.ADOPTED
    topic.published_at = utcnow()
    topic.proposal_reference = reference
    session.commit()
    return topic


def test_public_register_lists_active_and_completed_projects_only(
    app, client, session, custodian, south_custodian, proposer, make_user, north, sent
):
    proposal, north_thread, south_thread = sent
    topic = _adopted_topic(app, session, make_user, None)
    proposal.topic_id = topic.id
    decisions.approve(session, session.get(User, custodian.id), north_thread, utcnow())
    decisions.decline(session, session.get(User, south_custodian.id), south_thread, "No", utcnow())
    session.commit()
    set_proposal_status(session, proposal, ProposalStatus.ACTIVE)
    make_proposal(session, proposer, [north], title="Still being decided")

    response = client.get("/governance/projects")

    text = page(response)
    assert response.status_code == 200
    assert proposal.title in text and "<strong>vitamin D</strong>" in text
    assert "Northern MS Registry" in text and "Southern MS Registry" not in text
    assert f'href="/topics/{topic.id}"' in text
    assert "Still being decided" not in text
    assert "Dr Ana Lind" not in text and proposer.email not in text
    assert 'href="/governance/projects"' in page(client.get("/"))


def test_an_adopted_topic_names_the_project_it_became(app, client, session, make_user):
    topic = _adopted_topic(app, session, make_user, "Project 7: Vitamin D and relapses")
    text = page(client.get(f"/topics/{topic.id}"))
    assert "Became research project:" in text
    assert "Project 7: Vitamin D and relapses" in text
