"""The governance pages for people with MS, custodians and staff with tremor, low vision or
little energy: no page is wider than a 320 px screen, jargon is explained where it appears,
a registry's decision is checked before it is sent (one mis-tap records nothing), focus comes
back to the decision afterwards, and messages after an action are announced."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from engage.accounts.models import Role, User
from engage.timeutil import utcnow
from governance import catalogue, tokens
from governance.models import (
    ConsentNotice,
    DecisionThread,
    ProposalStatus,
    ProposalVariable,
    ThreadStatus,
)
from tests.accessibility.checks import too_wide
from tests.browser_support import browser_sign_in
from tests.conftest import post_form, sign_in
from tests.consent_support import publish
from tests.governance.support import kinds_of, ledger_size, make_proposal, set_proposal_status
from tests.page_support import announced, by_id, elements, follow_to, text_of

# Long names, codes and addresses, as real registries and hospitals have them: they must wrap.
REGISTRY_NAME = "Registro Nazionale Sclerosi Multipla e Patologie Neuroimmunologiche Correlate"
REGISTRY_CODE = "RNSMPNC"
TITLE = (
    "Neurofilament-light-chain-concentrations and interferon-beta-1a/glatiramer-acetate "
    "exposure in relapsing-remitting multiple sclerosis"
)
ACTIVE_TITLE = "Vitamin D supplementation and relapse rates in Scandinavian registries"
LONG_CODE = "DISEASE_MODIFYING_THERAPY_EXPOSURE_DAYS"
PSEUDONYM = "3f2a9c1e-7b4d-4e8a-9c0f-1a2b3c4d5e6f"
CUSTODIAN_EMAIL = "registry.custodian.with.a.long.address@regional-hospital-network.example.org"
PROPOSER_EMAIL = "consultant.neurologist.long.address@university-hospital-network.example.org"


def thread_status(session, thread_id: int) -> ThreadStatus:
    session.expire_all()
    return session.get(DecisionThread, thread_id).status


@pytest.fixture
def world(session, make_user, make_registry) -> dict[str, Any]:
    """Staff, a published consent form, catalogue variables with long codes, a registry with a
    long name and its custodian, a proposer; a proposal sent to the registry, one in screening,
    one active project with a consent notice, and the custodian's API token."""
    staff = make_user(Role.STAFF, email="eli@centre.example")
    publish(session, staff)
    actor = session.get(User, staff.id)
    variables = [
        catalogue.add_variable(
            session,
            actor,
            catalogue.VariableDetails(code, name, domain, f"{name}, as the registry records it."),
            utcnow(),
        )
        for code, name, domain in (
            (LONG_CODE, "Days on disease-modifying therapy", "Treatment"),
            ("EDSS", "EDSS score", "Disability"),
        )
    ]
    session.commit()
    registry = make_registry(code=REGISTRY_CODE, name=REGISTRY_NAME)
    custodian = make_user(Role.CUSTODIAN, email=CUSTODIAN_EMAIL, registry=registry)
    proposer = make_user(Role.CLINICIAN, email=PROPOSER_EMAIL, clinician_verified=True)

    # Due within a day, so the staff's overdue list shows it.
    sent, (thread,) = make_proposal(
        session,
        proposer,
        [registry],
        scopes=["SHARE_RECORDS", "MS_RESEARCH"],
        title=TITLE,
        deadline=utcnow() + timedelta(hours=20),
    )
    session.add_all(ProposalVariable(proposal_id=sent.id, variable_id=v.id) for v in variables)
    screening, _ = make_proposal(session, proposer, [], title=f"Screening: {TITLE}")
    set_proposal_status(session, screening, ProposalStatus.SCREENING)
    active, (active_thread,) = make_proposal(
        session,
        proposer,
        [registry],
        scopes=["MS_RESEARCH"],
        title=ACTIVE_TITLE,
    )
    active_thread.status = ThreadStatus.APPROVED
    active.status = ProposalStatus.ACTIVE
    session.add(
        ConsentNotice(
            registry_id=registry.id,
            proposal_id=active.id,
            pseudonym=PSEUDONYM,
            scope_code="MS_RESEARCH",
            receipt_id="receipt-1",
            created_at=utcnow(),
        )
    )
    session.commit()
    tokens.create_token(
        session, session.get(User, custodian.id), "Registry synchronisation server", utcnow()
    )
    session.commit()
    return {
        "staff": staff,
        "custodian": custodian,
        "proposer": proposer,
        "registry": registry,
        "sent": sent,
        "thread": thread,
        "screening": screening,
        "active": active,
        "variables": variables,
    }


def decision_page(proposal_id: int, step: str = "") -> str:
    return f"/governance/registries/{REGISTRY_CODE}/proposals/{proposal_id}{step}"


# A registry's decision --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("choice", "data", "button", "sent_to", "consequence"),
    [
        ("approve", {}, "Send our decision: approve", "/approve", "takes part in the project"),
        (
            "conditions",
            {"conditions": "Federated analysis only.\nNo genomic data."},
            "Send our decision: approve with conditions",
            "/approve-with-conditions",
            "takes part only if they accept",
        ),
        (
            "decline",
            {"decline_reason": "Our ethics board says no."},
            "Send our decision: decline",
            "/decline",
            "does not take part in the project",
        ),
    ],
)
def test_a_chosen_decision_is_shown_back_and_nothing_is_recorded_until_it_is_sent(
    client, session, world, choice, data, button, sent_to, consequence
):
    proposal, thread = world["sent"], world["thread"]
    sign_in(client, world["custodian"])
    before = ledger_size(session)

    check = post_form(client, decision_page(proposal.id, "/decide"), {"decision": choice, **data})

    assert check.status_code == 200
    shown = text_of(check)
    assert "Check your registry's decision" in shown
    assert "Nothing is sent yet." in shown
    assert button in shown and consequence in shown
    assert "Cancel and go back to the proposal" in shown
    assert "Change the decision" in shown
    for written in data.values():
        assert written.split("\n")[0] in shown
    send_forms = [
        attrs["action"]
        for tag, attrs in elements(check)
        if tag == "form" and attrs.get("action", "").endswith(sent_to)
    ]
    assert send_forms == [decision_page(proposal.id, sent_to)]
    assert ledger_size(session) == before  # choosing records nothing
    assert thread_status(session, thread.id) == ThreadStatus.SENT

    sent = post_form(client, send_forms[0], data)

    follow_to(client, sent, "decision", named=True)
    assert thread_status(session, thread.id) != ThreadStatus.SENT
    assert len(kinds_of(session, thread)) == 2


def test_the_decision_page_offers_the_three_decisions_as_one_group_of_choices(client, world):
    sign_in(client, world["custodian"])
    response = client.get(decision_page(world["sent"].id))
    radios = [
        attrs
        for tag, attrs in elements(response)
        if tag == "input" and attrs.get("type") == "radio"
    ]
    assert [(r["id"], r["value"]) for r in radios] == [
        ("decision-0", "approve"),
        ("decision-1", "conditions"),
        ("decision-2", "decline"),
    ]
    assert not any("checked" in radio for radio in radios)  # no decision is chosen for them
    shown = text_of(response)
    assert "What does your registry decide?" in shown
    assert "Check our decision" in shown
    assert "Nothing is sent yet when you choose" in shown


def test_no_decision_chosen_is_explained_and_the_summary_links_to_the_first_choice(
    client, session, world
):
    sign_in(client, world["custodian"])
    before = ledger_size(session)

    response = post_form(client, decision_page(world["sent"].id, "/decide"), {})

    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert '<a href="#decision-0">Choose approve, approve with conditions or decline.</a>' in body
    assert by_id(response, "decision-error")
    assert ledger_size(session) == before


@pytest.mark.parametrize(
    ("choice", "field", "message"),
    [
        ("conditions", "conditions", "Write the conditions of your approval."),
        ("decline", "decline_reason", "Write a reason for declining."),
    ],
)
def test_the_text_a_decision_needs_is_asked_for_next_to_its_choice(
    client, session, world, choice, field, message
):
    sign_in(client, world["custodian"])
    before = ledger_size(session)

    response = post_form(
        client, decision_page(world["sent"].id, "/decide"), {"decision": choice, field: "  "}
    )

    assert response.status_code == 400
    assert f'href="#{field}"' in response.get_data(as_text=True)
    assert message in text_of(response)
    assert by_id(response, field).get("aria-invalid") == "true"
    chosen = [a for t, a in elements(response) if t == "input" and a.get("value") == choice]
    assert "checked" in chosen[0]
    assert ledger_size(session) == before


def test_changing_the_decision_brings_back_the_form_as_it_was_filled_in(client, session, world):
    sign_in(client, world["custodian"])

    response = post_form(
        client,
        decision_page(world["sent"].id, "/decide"),
        {"change": "1", "decision": "conditions", "conditions": "Federated analysis only."},
    )

    assert response.status_code == 200
    chosen = [a for t, a in elements(response) if t == "input" and a.get("value") == "conditions"]
    assert "checked" in chosen[0]
    assert re.search(r">\s*Federated analysis only.</textarea>", response.get_data(as_text=True))
    assert "data-return-focus" in by_id(response, "choose-decision")
    assert thread_status(session, world["thread"].id) == ThreadStatus.SENT


def test_a_decision_that_can_no_longer_be_made_is_refused_before_the_check(client, session, world):
    sign_in(client, world["custodian"])
    post_form(client, decision_page(world["sent"].id, "/approve"))

    response = post_form(
        client,
        decision_page(world["sent"].id, "/decide"),
        {"decision": "decline", "decline_reason": "Changed our mind"},
    )

    assert urlsplit(response.headers["Location"]).fragment == "decision"
    assert "can no longer decide on this proposal" in " ".join(
        announced(client.get(response.headers["Location"]))
    )
    assert thread_status(session, world["thread"].id) == ThreadStatus.APPROVED


def test_a_recorded_decision_is_announced_as_a_message_without_a_role(client, world):
    sign_in(client, world["custodian"])
    sent = post_form(client, decision_page(world["sent"].id, "/approve"))
    page = client.get(sent.headers["Location"])
    assert announced(page) == ["Your registry's approval is recorded."]
    body = page.get_data(as_text=True)
    notices = re.findall(r'<div class="notice[^"]*"[^>]*>', body)
    assert notices and not [n for n in notices if "role=" in n]


# Plain words ---------------------------------------------------------------------------------
def test_the_public_projects_page_explains_registries_and_data_custodians(client, world):
    shown = text_of(client.get("/governance/projects"))
    assert ACTIVE_TITLE in shown
    assert "A registry is a collection of health data about people with MS" in shown
    assert "data custodians of each registry (the people who look after its data" in shown


def test_a_proposal_explains_its_analysis_and_keeps_codes_in_technical_details(client, world):
    sign_in(client, world["custodian"])
    response = client.get(decision_page(world["sent"].id))
    shown = text_of(response)
    assert "The data stay at each registry and only the results are shared." in shown
    assert "De-identified means that names and contact details are removed." in shown
    body = response.get_data(as_text=True)
    technical = body[body.index("<summary>Technical details</summary>") :]
    technical = technical[: technical.index("</details>")]
    for code in ("MS_RESEARCH", "SHARE_RECORDS", LONG_CODE):
        assert f"<code>{code}</code>" in technical
        assert body.count(code) == technical.count(code)  # nowhere else on the page


def test_the_proposal_form_explains_pooled_and_federated_analysis(client, world):
    sign_in(client, world["proposer"])
    response = client.get("/governance/proposals/new")
    help_text = by_id(response, "analysis_mode-help")
    assert help_text is not None
    shown = text_of(response)
    assert "Federated: the data stay at each registry and only the results are shared." in shown
    assert "coordination centre (the team that runs Engage)" in shown
    assert f"<code>{LONG_CODE}</code>" in response.get_data(as_text=True)


def test_consent_notices_explain_the_pseudonym_and_keep_the_scope_code_technical(client, world):
    sign_in(client, world["custodian"])
    response = client.get(f"/governance/registries/{REGISTRY_CODE}/notices")
    shown = text_of(response)
    assert "a code that stands for the person instead of their name" in shown
    assert PSEUDONYM in shown
    assert "Technical details Consent scope code: MS_RESEARCH" in shown
    assert "Mark as dealt with" in shown

    (notice_id,) = re.findall(r'id="notice-(\d+)"', response.get_data(as_text=True))
    done = post_form(
        client, f"/governance/registries/{REGISTRY_CODE}/notices/{notice_id}/acknowledge"
    )
    follow_to(client, done, "notices", named=True)


def test_the_token_page_explains_tokens_and_announces_a_new_one_without_reading_it_out(
    client, world
):
    sign_in(client, world["custodian"])
    shown = text_of(client.get("/governance/tokens"))
    assert "An API token is like a password for a computer program" in shown
    assert "Technical details The program sends the token in the Authorization: Bearer" in shown
    assert "a file format computers read" in shown

    created = post_form(client, "/governance/tokens", {"name": "Nightly sync"})

    assert created.status_code == 201
    body = created.get_data(as_text=True)
    secret = re.search(r'<textarea id="new-token-value"[^>]*>(eng_[\w-]+)</textarea>', body)
    assert secret, "the new token is shown whole, in a box that wraps"
    assert announced(created) == [
        "Your new token “Nightly sync” is created. Copy it now: this is the only time it is shown."
    ]
    assert "data-return-focus" in by_id(created, "new-token")
    assert "a code made from the token that cannot be turned back" in text_of(created)
    (token_id,) = re.findall(r"/governance/tokens/(\d+)/revoke", body)[-1:]
    revoked = post_form(client, f"/governance/tokens/{token_id}/revoke")
    follow_to(client, revoked, "tokens", named=True)


# Notices, tables and focus -------------------------------------------------------------------
def test_information_notices_have_no_live_role(client, session, world):
    sign_in(client, world["custodian"])
    client.get("/")  # the welcome message after signing in is shown (and announced) there
    inbox = client.get(f"/governance/registries/{REGISTRY_CODE}")
    assert "1 consent notice needs your attention" in text_of(inbox)
    body = inbox.get_data(as_text=True)
    assert not re.findall(r'<div class="notice[^>]*role=', body)
    # The page's own message to the custodian is not an action's result: nothing is announced.
    assert announced(inbox) == []


@pytest.mark.parametrize(
    ("who", "path"),
    [
        ("custodian", f"/governance/registries/{REGISTRY_CODE}"),
        ("custodian", "/governance/tokens"),
        ("proposer", "/governance/proposals"),
        ("staff", "/staff/governance"),
        ("staff", "/staff/governance/overdue"),
        ("staff", "/staff/governance/catalogue"),
        ("staff", "sent"),
    ],
)
def test_tables_scroll_in_a_named_region_that_takes_keyboard_focus(client, world, who, path):
    sign_in(client, world[who])
    if path == "sent":
        path = f"/staff/governance/proposals/{world['sent'].id}"
    response = client.get(path)
    found = elements(response)
    tables = [
        attrs for tag, attrs in found if tag == "table" and "data-table" in attrs.get("class", "")
    ]
    regions = [attrs for tag, attrs in found if "table-scroll" in attrs.get("class", "")]
    assert tables and len(regions) == len(tables)
    ids = {attrs.get("id") for _tag, attrs in found}
    for region in regions:
        assert (region["role"], region["tabindex"]) == ("region", "0")
        assert region["aria-labelledby"] in ids


def test_after_a_proposer_or_staff_step_focus_returns_to_the_proposal_status(
    client, session, world, make_user
):
    draft, _ = make_proposal(session, world["proposer"], [], title="A draft to submit")
    set_proposal_status(session, draft, ProposalStatus.DRAFT)
    sign_in(client, world["proposer"])
    submitted = post_form(client, f"/governance/proposals/{draft.id}/submit")
    follow_to(client, submitted, "proposal-status", named=True)

    staff_client = client.application.test_client()
    sign_in(staff_client, world["staff"])
    screening = post_form(staff_client, f"/staff/governance/proposals/{draft.id}/screening")
    follow_to(staff_client, screening, "proposal-status", named=True)


# Reflow at 320 px ---------------------------------------------------------------------------
NARROW = {"width": 320, "height": 800}



def browser_sign_out(page) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()
    page.wait_for_url(lambda url: urlsplit(url).path == "/")


@pytest.mark.browser
def test_no_governance_page_is_wider_than_a_320_pixel_screen(page, page_problems, world):
    page.set_viewport_size(NARROW)
    sent, screening = world["sent"].id, world["screening"].id
    registry = f"/governance/registries/{REGISTRY_CODE}"
    wide = too_wide(page, ["/governance/projects"])

    browser_sign_in(page, PROPOSER_EMAIL)
    wide |= too_wide(
        page,
        ["/governance/proposals", "/governance/proposals/new", f"/governance/proposals/{sent}"],
    )
    browser_sign_out(page)

    browser_sign_in(page, CUSTODIAN_EMAIL)
    wide |= too_wide(
        page,
        [registry, f"{registry}/proposals/{sent}", f"{registry}/notices", "/governance/tokens"],
    )
    page.get_by_label("Name").fill("Nightly synchronisation of the registry's research database")
    page.get_by_role("button", name="Create token").click()
    page.get_by_role("heading", name=re.compile("Your new token")).wait_for()
    wide |= too_wide(page, [""])
    browser_sign_out(page)

    browser_sign_in(page, world["staff"].email)
    variable = world["variables"][0].id
    wide |= too_wide(
        page,
        [
            "/staff/governance",
            "/staff/governance/proposals/new",
            f"/staff/governance/proposals/{sent}",
            f"/staff/governance/proposals/{screening}",
            "/staff/governance/overdue",
            "/staff/governance/catalogue",
            "/staff/governance/catalogue/new",
            f"/staff/governance/catalogue/{variable}/edit",
        ],
    )
    assert wide == {}
    page_problems.assert_none()


@pytest.mark.browser
def test_a_custodian_checks_the_decision_then_focus_returns_to_it_and_it_is_announced(
    page, page_problems, session, world
):
    page.set_viewport_size(NARROW)
    browser_sign_in(page, CUSTODIAN_EMAIL)
    page.goto(decision_page(world["sent"].id))

    # Nothing chosen: the summary takes the focus, and its link moves it to the first choice.
    page.get_by_role("button", name="Check our decision").click()
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    summary.get_by_role("link", name="Choose approve, approve with conditions or decline.").click()
    expect(page.get_by_label("Approve", exact=True)).to_be_focused()

    page.get_by_label("Approve with conditions").check()
    page.get_by_label("Your conditions").fill("Federated analysis only.")
    page.get_by_role("button", name="Check our decision").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your registry's decision")
    assert too_wide(page, [""]) == {}
    assert thread_status(session, world["thread"].id) == ThreadStatus.SENT

    # Changing it brings back the choice as it was, with the focus on it.
    page.get_by_role("button", name="Change the decision").click()
    expect(page.get_by_role("region", name=f"Decide for {REGISTRY_NAME}")).to_be_focused()
    expect(page.get_by_label("Approve with conditions")).to_be_checked()
    expect(page.get_by_label("Your conditions")).to_have_value("Federated analysis only.")
    page.get_by_role("button", name="Check our decision").click()

    page.get_by_role("button", name="Send our decision: approve with conditions").click()
    decision = page.get_by_role("region", name="Your registry's decision")
    expect(decision).to_be_focused()
    expect(decision).to_contain_text("Approved with conditions")
    expect(page.locator("#announcements")).to_have_text(
        "Your approval with conditions is recorded. The proposer will accept or refuse them."
    )
    assert too_wide(page, [""]) == {}
    page_problems.assert_none(allow_document_statuses=frozenset({400}))
