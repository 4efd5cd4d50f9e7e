"""One proposal's life end to end in headless Chromium, through the pages and their visible
labels and links: staff draft it, submit it, screen it and send it to a registry; the
registry's custodian opens it and approves; staff see the decision; the deadlines job closes
decisions and the project appears in the public register.

Fixtures (``page``, ``page_problems``, ``live_server``) are in ``tests/fixtures_browser.py``;
these tests run on SQLite only.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from engage.accounts.models import Role, User
from engage.timeutil import utcnow
from governance import catalogue
from governance.jobs import run_deadlines
from tests.conftest import PASSWORD, totp_code_for
from tests.consent_support import publish
from tests.fixtures_browser import PageProblems

pytestmark = pytest.mark.browser

TITLE = "Vitamin D levels and relapses in relapsing MS"
REGISTRY_NAME = "Swedish MS Registry"


def _nav(page: Page):
    """The site's main navigation."""
    return page.get_by_role("navigation", name="Main")


def _status(page: Page, text: str):
    """A flash message (announced as a status) containing ``text``."""
    return page.get_by_role("status").filter(has_text=text)


def _sign_in(page: Page, email: str) -> None:
    _nav(page).get_by_role("link", name="Sign in").click()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: urlsplit(url).path != "/sign-in")
    if urlsplit(page.url).path == "/sign-in/two-factor":  # two-step sign-in: the app's code
        page.get_by_label("Code from your authenticator app").fill(totp_code_for(email))
        page.get_by_role("button", name="Continue").click()
    expect(_nav(page).get_by_role("button", name="Sign out")).to_be_visible()


def _sign_out(page: Page) -> None:
    _nav(page).get_by_role("button", name="Sign out").click()
    expect(_nav(page).get_by_role("link", name="Sign in")).to_be_visible()


def _assert_labelled(page: Page) -> None:
    """Every form control on the page has a label, and the page one main heading."""
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type="hidden"]), select, textarea')]
                  .filter((element) => element.labels.length === 0)
                  .map((element) => element.outerHTML)"""
    )
    assert unlabelled == [], f"form controls without a label: {unlabelled}"
    expect(page.get_by_role("heading", level=1)).to_have_count(1)


@pytest.fixture
def world(session, make_user, make_registry) -> dict[str, User]:
    """A staff member, the published consent form, two catalogue variables, and an approved
    custodian of the Swedish MS Registry."""
    staff = make_user(Role.STAFF, email="eli@centre.example")
    publish(session, staff)
    actor = session.get(User, staff.id)
    for code, name, domain in (("EDSS", "EDSS score", "Disability"), ("MRI", "MRI", "Imaging")):
        catalogue.add_variable(
            session, actor, catalogue.VariableDetails(code, name, domain, f"{name}."), utcnow()
        )
    session.commit()
    registry = make_registry(code="SMSREG", name=REGISTRY_NAME)
    custodian = make_user(Role.CUSTODIAN, email="chris@smsreg.example", registry=registry)
    return {"staff": staff, "custodian": custodian}


def _draft_proposal(page: Page) -> None:
    """Fill the editor as staff would, and save."""
    page.get_by_label("Title", exact=True).fill(TITLE)
    page.get_by_label("Lead researcher").fill("Dr Ana Lind")
    page.get_by_label("Institution").fill("Karolinska Institutet")
    page.get_by_label("Sponsor").fill("MS Society")
    page.get_by_label("Ethics approval reference").fill("EPN 2027-0001")
    page.get_by_label("Plain-language summary", exact=True).fill(
        "Does vitamin D lower the number of relapses? We compare people with high and low levels."
    )
    page.get_by_label("Scientific summary").fill(
        "A retrospective cohort study of serum vitamin D and annualised relapse rates."
    )
    page.get_by_label("Federated (analysis runs at each registry)").check()
    deadline = utcnow() + timedelta(days=14)
    page.get_by_label("Decision deadline (UTC)").fill(deadline.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Share my registry records with the network").check()
    page.get_by_label("EDSS score (EDSS)").check()
    _assert_labelled(page)
    page.get_by_role("button", name="Save the draft").click()


def test_a_proposal_goes_from_draft_to_an_active_project(
    app, page: Page, page_problems: PageProblems, session, world
):
    # Staff draft the proposal, submit it, screen it and send it to the registry.
    page.goto("/")
    _sign_in(page, world["staff"].email)
    _nav(page).get_by_role("link", name="Governance").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Research project proposals")
    page.get_by_role("link", name="New proposal").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New proposal")
    _draft_proposal(page)
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(page.get_by_text("Draft", exact=True)).to_be_visible()

    page.get_by_role("button", name="Submit for screening").click()
    expect(_status(page, "Submitted")).to_be_visible()
    page.get_by_role("button", name="Start screening").click()
    expect(_status(page, "Screening started")).to_be_visible()
    _assert_labelled(page)
    page.get_by_label(f"{REGISTRY_NAME} (SMSREG)").check()
    page.get_by_role("button", name="Send the proposal").click()
    expect(_status(page, "Sent to 1 registry.")).to_be_visible()
    decisions = page.get_by_role("table", name="Each registry's decision")
    expect(decisions.get_by_role("row").filter(has_text="SMSREG")).to_contain_text(
        "Waiting for review"
    )
    _sign_out(page)

    # The registry's custodian finds it in their inbox, opens it for review and approves.
    _sign_in(page, world["custodian"].email)
    _nav(page).get_by_role("link", name="My registry").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"Research proposals for {REGISTRY_NAME}"
    )
    page.get_by_role("link", name=TITLE).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(TITLE)
    page.get_by_role("button", name="Open for review").click()
    expect(page.get_by_role("heading", name="Your registry's decision")).to_be_visible()
    page.get_by_role("group", name="What does your registry decide?").get_by_label(
        "Approve", exact=True
    ).check()
    page.get_by_role("button", name="Check our decision").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your registry's decision")
    page.get_by_role("button", name="Send our decision: approve").click()
    expect(_status(page, "Your registry's approval is recorded.")).to_be_visible()
    _sign_out(page)

    # Staff see the registry's decision in the decision matrix.
    _sign_in(page, world["staff"].email)
    _nav(page).get_by_role("link", name="Governance").click()
    page.get_by_role("link", name=TITLE).click()
    decisions = page.get_by_role("table", name="Each registry's decision")
    expect(decisions.get_by_role("row").filter(has_text="SMSREG")).to_contain_text("Approved")
    _sign_out(page)

    # The scheduler's deadlines job closes decisions: every registry has decided.
    summary = run_deadlines(session, utcnow(), app.config)
    session.commit()
    assert "closed decisions on 1 proposal(s) (1 active" in summary

    # Anyone sees the project in the public register.
    _nav(page).get_by_role("link", name="Research projects").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Research projects")
    project = page.get_by_role("article", name=TITLE)
    expect(project).to_contain_text("Running")
    expect(project).to_contain_text(f"Registries taking part: {REGISTRY_NAME}")
    page_problems.assert_none()
