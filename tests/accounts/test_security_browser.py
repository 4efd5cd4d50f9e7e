"""The security pages in a real browser, used through their visible labels and links:
setting up two-step sign-in at a staff member's first sign-in, the signed-in devices page,
downloading one's data and deleting one's account."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import urlsplit

import pyotp
import pytest
from playwright.sync_api import Page, expect

from engage.accounts.models import Role
from tests.conftest import PASSWORD
from tests.fixtures_browser import PageProblems

pytestmark = pytest.mark.browser


def _nav(page: Page):
    return page.get_by_role("navigation", name="Main")


def _status(page: Page, text: str):
    return page.get_by_role("status").filter(has_text=text)


def _password_step(page: Page, email: str, *, leaves: bool = True) -> None:
    _nav(page).get_by_role("link", name="Sign in").click()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    if leaves:
        page.wait_for_url(lambda url: urlsplit(url).path != "/sign-in")


def test_staff_set_up_two_step_sign_in_before_they_are_signed_in_and_manage_devices(
    page: Page, browser, live_server, make_user, page_problems: PageProblems
):
    staff = make_user(Role.STAFF, two_factor=False)
    page.goto("/")
    _password_step(page, staff.email)

    expect(page.get_by_role("heading", level=1)).to_have_text("Set up two-step sign-in")
    expect(page.get_by_role("img", name="QR code", exact=False).first).to_be_visible()
    expect(_nav(page).get_by_role("link", name="Sign in")).to_be_visible()  # not signed in yet
    key = page.locator("#setup-key").inner_text().replace(" ", "")
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(key).now())
    page.get_by_role("button", name="Turn on two-step sign-in").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery codes")
    page.get_by_role("link", name="I have saved these codes").click()
    expect(_nav(page).get_by_role("link", name="My account")).to_be_visible()

    # A second browser signs in with the password and a later code.
    other = browser.new_context(base_url=live_server.url)
    try:
        other_page = other.new_page()
        other_page.goto("/")
        _password_step(other_page, staff.email)
        expect(other_page.get_by_role("heading", level=1)).to_have_text("Enter your code")
        # The code just used is never accepted again: the app's next one is (one step ahead is
        # allowed for clocks that run fast).
        totp = pyotp.TOTP(key)
        other_page.get_by_label("Code from your authenticator app").fill(
            totp.at(time.time() + totp.interval)
        )
        other_page.get_by_role("button", name="Continue").click()
        expect(_nav(other_page).get_by_role("link", name="My account")).to_be_visible()

        # The first browser sees both devices and signs the other one out.
        _nav(page).get_by_role("link", name="My account").click()
        page.get_by_role("link", name="Signed-in devices").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Signed-in devices")
        devices = page.get_by_role("table", name="Where you are signed in, this device first")
        expect(devices.get_by_role("row")).to_have_count(3)  # the header and two browsers
        expect(devices.get_by_text("This device", exact=True)).to_have_count(1)
        page.get_by_role("button", name="Sign out all other devices").click()
        expect(_status(page, "signed out")).to_be_visible()

        other_page.reload()
        expect(_nav(other_page).get_by_role("link", name="Sign in")).to_be_visible()
        expect(_nav(other_page).get_by_role("link", name="My account")).to_have_count(0)
    finally:
        other.close()
    page_problems.assert_none()


def test_a_person_downloads_their_data_then_deletes_their_account(
    page: Page, live_server, make_user, page_problems: PageProblems
):
    person = make_user(Role.PARTICIPANT)
    page.goto("/")
    _password_step(page, person.email)
    _nav(page).get_by_role("link", name="My account").click()

    page.get_by_role("link", name="Download my data").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Download my data")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download my data").click()
    download = download_info.value
    assert download.suggested_filename.startswith("engage-my-data-")
    archive = json.loads(Path(download.path()).read_text(encoding="utf-8"))
    assert person.email in json.dumps(archive)

    page.goto("/account")
    page.get_by_role("link", name="Delete my account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete my account")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_text("Tick the box to confirm that you understand.").first).to_be_visible()
    page.get_by_label("I understand that my account will be deleted").check()
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account is deleted")
    expect(_nav(page).get_by_role("link", name="Sign in")).to_be_visible()

    _password_step(page, person.email, leaves=False)
    expect(page.get_by_text("The email address or password is wrong.").first).to_be_visible()
    # The unticked box and the refused sign-in show their forms again with 400.
    page_problems.assert_none(allow_document_statuses=frozenset({400}))
