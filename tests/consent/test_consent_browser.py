"""Consent end to end in headless Chromium: a person with MS gives consent, changes a choice
with one click, withdraws everything optional after checking the list, and reads the receipt;
staff start a new version. Pages are checked for labels, ARIA states and CSP violations on the way.

Fixtures (``page``, ``page_problems``, ``live_server``) are in ``tests/fixtures_browser.py``;
these tests run on SQLite only.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, expect

from engage.accounts.models import Role
from tests.conftest import PASSWORD, totp_code_for
from tests.consent_support import publish
from tests.fixtures_browser import PageProblems

pytestmark = pytest.mark.browser


def _sign_in(page: Page, email: str) -> None:
    page.goto("/sign-in")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: urlsplit(url).path != "/sign-in")
    if urlsplit(page.url).path == "/sign-in/two-factor":  # two-step sign-in: the app's code
        page.get_by_label("Code from your authenticator app").fill(totp_code_for(email))
        page.get_by_role("button", name="Continue").click()


def _assert_labelled(page: Page) -> None:
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type="hidden"]), select, textarea')]
                  .filter((element) => element.labels.length === 0)
                  .map((element) => element.outerHTML)"""
    )
    assert unlabelled == [], f"form controls without a label: {unlabelled}"
    missing = page.evaluate(
        """() => [...document.querySelectorAll('[aria-describedby], [aria-labelledby]')].flatMap(
              (element) => [
                ...(element.getAttribute('aria-describedby') || '').split(/\\s+/),
                ...(element.getAttribute('aria-labelledby') || '').split(/\\s+/),
              ].filter((id) => id && !document.getElementById(id)))"""
    )
    assert missing == [], f"ARIA references to missing ids: {missing}"
    expect(page.locator("h1")).to_have_count(1)


def test_a_person_gives_consent_changes_a_choice_and_withdraws_optional_ones(
    page: Page, page_problems: PageProblems, session, make_user
):
    publish(session, make_user(Role.STAFF))
    person = make_user(Role.PARTICIPANT, email="alex@example.org")
    _sign_in(page, person.email)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My consent").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("My consent")
    _assert_labelled(page)

    page.get_by_role("link", name="Read the form and make my choices").click()
    _assert_labelled(page)
    for group in page.locator("fieldset").all():
        legend = group.locator("legend").inner_text()
        answer = "Yes, I allow this" if "required" in legend or "genomic" in legend else None
        group.get_by_label(answer or "No, I do not allow this").check()
    page.get_by_role("button", name="Save my choices").click()
    expect(page.get_by_role("status").filter(has_text="your choices are saved")).to_be_visible()
    expect(page.get_by_text("You take part in the programme.")).to_be_visible()

    # One click allows a scope; one click withdraws it again.
    page.get_by_role("button", name="Allow: Include my imaging data").click()
    expect(page.get_by_role("button", name="Withdraw: Include my imaging data")).to_be_visible()
    page.get_by_role("link", name="Withdraw everything optional").click()
    expect(page.get_by_role("heading", level=2)).to_have_text("These 2 choices will be withdrawn")
    page.get_by_role("button", name="Withdraw these 2 choices").click()
    expect(page.get_by_role("status").filter(has_text="no longer allow anything")).to_be_visible()
    expect(page.get_by_role("button", name="Allow: Include my imaging data")).to_be_visible()
    expect(page.get_by_role("button", name="Allow: Include my genomic data")).to_be_visible()
    _assert_labelled(page)

    page.get_by_role("link", name="Your consent history", exact=True).click()
    _assert_labelled(page)
    page.get_by_role("link", name="Receipt").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Consent receipt")
    expect(page.get_by_role("table")).to_contain_text("Include my genomic data")
    page_problems.assert_none()


def test_staff_start_a_new_version_and_see_its_reading_level(
    page: Page, page_problems: PageProblems, session, make_user
):
    staff = make_user(Role.STAFF)
    publish(session, staff)
    _sign_in(page, staff.email)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Consent").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Consent forms")
    _assert_labelled(page)
    page.get_by_role("link", name="Start a new version").click()
    _assert_labelled(page)
    page.get_by_label("Ethics approval reference").fill("EC-2027-003")
    page.get_by_role("button", name="Create the draft").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Version 2")
    expect(page.get_by_text("Flesch-Kincaid grade")).to_be_visible()
    _assert_labelled(page)
    page.get_by_label("Scope code").fill("BIOBANK_SAMPLES")
    page.get_by_label("Title", exact=True).fill("Use my stored blood samples")
    page.get_by_label("Plain-language explanation").fill("Samples may be tested.")
    page.get_by_label("Kind").select_option(label="Which data is included")
    page.get_by_role("button", name="Add the scope").click()
    expect(page.get_by_text("Added: BIOBANK_SAMPLES")).to_be_visible()
    page.get_by_label("I have checked the text and the scopes").check()
    page.get_by_role("button", name="Publish version 2").click()
    expect(page.get_by_role("status").filter(has_text="Version 2 is published")).to_be_visible()
    page_problems.assert_none()
