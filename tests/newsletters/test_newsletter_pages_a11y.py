"""The newsletter pages for people with MS and for staff: no page is wider than a 320 px
screen, the result of signing up, confirming, choosing newsletters and unsubscribing is
announced and focus comes back to what changed, the unsubscribe page says exactly what its
button does and offers a way back, and a list's audience is chosen, never assumed."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from engage.accounts.models import Role, User
from engage.timeutil import utcnow
from newsletters import suppressions
from newsletters.models import (
    ListVisibility,
    MailingList,
    Subscription,
    SubscriptionStatus,
)
from newsletters.tokens import make_confirm_token, make_unsubscribe_token
from tests.accessibility.checks import too_wide
from tests.browser_support import browser_sign_in
from tests.conftest import post_form, sign_in
from tests.newsletters.support import make_campaign, make_list, subscribe_email, subscribe_user
from tests.newsletters.test_archive import past_send
from tests.newsletters.test_campaign_views import start_sending
from tests.page_support import announced, by_id, elements, follow_to, text_of

# The app's SECRET_KEY in the tests (tokens in links are signed with it).
SECRET = "testing-secret-key-not-for-production"
LIST_NAME = "Research updates from the Nordic neuroimmunology registries"
READER_EMAIL = "a.reader.with.a.rather.long.address@regional-hospital-network.example.org"
PARTICIPANT_EMAIL = "participant.with.a.long.address@university-hospital-network.example.org"
SUPPRESSED_EMAIL = "bounced.address.of.someone.who.moved@old-hospital-network.example.org"
SUBJECT = "Neurofilament-light-chain results from the interferon-beta-1a/glatiramer-acetate study"
LONG_LINK = "https://research.example.org/studies/neurofilament-light-chain/results-2027/summary"


def assert_no_live_roles_on_notices(response) -> None:
    """Notices have no status or alert role: results are announced through the live region."""
    notices = re.findall(r'<div class="notice[^"]*"[^>]*>', response.get_data(as_text=True))
    assert not [notice for notice in notices if "role=" in notice], notices


@pytest.fixture
def world(session, make_user) -> dict[str, Any]:
    """A public and an account-only list, a reader waiting to confirm, a confirmed reader, a
    participant on the public list, staff, a draft campaign, a sending one, a sent one in the
    archive, and a suppressed address."""
    participant = make_user(Role.PARTICIPANT, email=PARTICIPANT_EMAIL)
    staff = make_user(Role.STAFF, email="stina@centre.example", display_name="Stina Staff")
    research = make_list(session, LIST_NAME)
    members = make_list(session, "Progress reports", visibility=ListVisibility.ACCOUNTS)
    waiting = subscribe_email(
        session, "waiting@example.org", [research], status=SubscriptionStatus.PENDING
    )
    reader = subscribe_email(session, READER_EMAIL, [research, members], name="Sam Lind")
    subscribe_user(session, participant.id, [research])
    body = f"Dear {{name}},\n\n<u>Read</u> the [results]({LONG_LINK}): {LONG_LINK}"
    draft = make_campaign(session, [research], subject=SUBJECT, body=body, created_by_id=staff.id)
    sending = make_campaign(session, [research], subject=f"Sending: {SUBJECT}", body=body)
    session.commit()
    start_sending(session, sending)
    archived = past_send(session, [research], subject=SUBJECT, body=body)
    suppressions.suppress_by_staff(session, session.get(User, staff.id), SUPPRESSED_EMAIL, utcnow())
    session.commit()
    pending = session.scalar(
        sa.select(Subscription.id).where(Subscription.subscriber_id == waiting.id)
    )
    return {
        "research": research,
        "members": members,
        "participant": participant,
        "staff": staff,
        "draft": draft,
        "sending": sending,
        "archived": archived,
        "confirm_token": make_confirm_token(SECRET, pending),
        "unsubscribe_token": make_unsubscribe_token(SECRET, reader.id, research.id),
    }


# Results announced, focus back on what changed ----------------------------------------------
def test_saved_newsletter_choices_are_announced_and_focus_returns_to_the_choices(client, world):
    sign_in(client, world["participant"])
    client.get("/")  # the welcome message after signing in is shown there

    saved = post_form(
        client,
        "/newsletters/preferences",
        {"lists": [world["research"].id, world["members"].id]},
    )

    page = follow_to(client, saved, "lists")
    assert announced(page) == ["You are now subscribed to “Progress reports”."]
    assert "<legend>Your newsletters</legend>" in page.get_data(as_text=True)
    assert_no_live_roles_on_notices(page)


def test_signing_up_ends_on_a_page_that_announces_what_happens_next(client, world):
    signed_up = post_form(
        client,
        "/newsletters/subscribe",
        {
            "name": "Ana",
            "email": "ana@example.org",
            "language": "en",
            "lists": [world["research"].id],
        },
    )

    page = follow_to(client, signed_up, "check-email")
    (message,) = announced(page)
    assert message.startswith(
        "If the newsletters you chose need confirming, we have sent a message"
    )
    assert "Until you do, you receive nothing." in message
    assert_no_live_roles_on_notices(page)


def test_confirming_is_announced_and_focus_goes_to_the_confirmed_subscription(
    client, session, world
):
    token = world["confirm_token"]
    shown = text_of(client.get(f"/newsletters/confirm/{token}"))
    assert "Confirm my subscription" in shown
    assert "Go to the home page without confirming" in shown

    confirmed = post_form(client, f"/newsletters/confirm/{token}")

    page = follow_to(client, confirmed, "subscription")
    assert announced(page) == ["Thank you: your subscription is confirmed."]
    assert LIST_NAME in text_of(page)


def test_the_unsubscribe_page_says_what_its_button_does_and_offers_a_way_back(
    client, session, world
):
    token = world["unsubscribe_token"]
    page = client.get(f"/newsletters/unsubscribe/{token}")
    buttons = re.findall(r"<button[^>]*>([^<]+)</button>", page.get_data(as_text=True))
    assert f"Unsubscribe from “{LIST_NAME}”" in buttons
    assert "Unsubscribe from every newsletter" in buttons
    assert "Unsubscribe" not in buttons  # never a bare "Unsubscribe"
    way_back = [a for t, a in elements(page) if t == "a" and a.get("href") == "/"]
    assert way_back and "Stay subscribed and go to the home page" in text_of(page)

    done = post_form(client, f"/newsletters/unsubscribe/{token}/confirm")

    after = follow_to(client, done, "unsubscribed")
    assert announced(after) == [f"You are unsubscribed from “{LIST_NAME}”."]
    everything = post_form(client, f"/newsletters/unsubscribe/{token}/all")
    after = follow_to(client, everything, "unsubscribed")
    assert announced(after)[0].startswith("You are unsubscribed from every newsletter.")


# Staff pages -------------------------------------------------------------------------------
def test_a_new_list_starts_with_nobody_chosen_to_subscribe_and_must_be_chosen(
    client, session, world
):
    sign_in(client, world["staff"])
    form = client.get("/staff/newsletters/lists/new")
    options = re.findall(
        r"<option([^>]*)>([^<]*)</option>",
        form.get_data(as_text=True).split('id="visibility"')[1].split("</select>")[0],
    )
    assert options[0] == (' selected value=""', "Choose who may subscribe")
    assert [label for _attrs, label in options[1:]] == [v.label for v in ListVisibility]
    lists_before = session.scalar(sa.select(sa.func.count()).select_from(MailingList))

    refused = post_form(
        client,
        "/staff/newsletters/lists/new",
        {"name": "Trial news", "description": "", "visibility": "", "required_scope": ""},
    )

    assert refused.status_code == 400
    assert '<a href="#visibility">Who may subscribe: Choose who may subscribe.</a>' in (
        refused.get_data(as_text=True)
    )
    assert session.scalar(sa.select(sa.func.count()).select_from(MailingList)) == lists_before

    # An existing list's editor starts on what the list has.
    edit = client.get(f"/staff/newsletters/lists/{world['research'].id}/edit")
    select = edit.get_data(as_text=True).split('id="visibility"')[1].split("</select>")[0]
    assert '<option selected value="public">' in select
    assert "Choose who may subscribe" not in select


def test_a_campaign_button_brings_focus_back_to_the_campaign_status(client, world):
    sign_in(client, world["staff"])
    campaign = world["draft"].id

    sent = post_form(client, f"/staff/newsletters/campaigns/{campaign}/test-send")

    page = follow_to(client, sent, "campaign-status")
    assert by_id(page, "campaign-status")["aria-labelledby"] == "campaign-status-label"
    assert announced(page) == ["A test copy is on its way to your address."]


def test_suppressing_and_a_refused_lift_are_announced_without_a_live_role(client, world):
    sign_in(client, world["staff"])

    added = post_form(client, "/staff/newsletters/suppressions", {"email": "new@example.org"})
    page = follow_to(client, added, "suppressed")
    assert announced(page) == ["new@example.org is suppressed: it receives no newsletter."]

    refused = post_form(
        client, "/staff/newsletters/suppressions/remove", {"email": "nobody@example.org"}
    )
    assert refused.status_code == 404
    assert len(announced(refused)) == 1
    assert_no_live_roles_on_notices(refused)
    # Addresses are marked as such, so a long one breaks at the screen's edge.
    assert f'<td class="email">{SUPPRESSED_EMAIL}</td>' in refused.get_data(as_text=True)


@pytest.mark.parametrize(
    "path",
    [
        "/staff/newsletters/campaigns",
        "/staff/newsletters/lists",
        "/staff/newsletters/suppressions",
        "sending",
    ],
)
def test_tables_scroll_in_named_regions_that_take_keyboard_focus(client, world, path):
    sign_in(client, world["staff"])
    if path == "sending":
        path = f"/staff/newsletters/campaigns/{world['sending'].id}"
    found = elements(client.get(path))
    tables = [a for t, a in found if t == "table"]
    regions = [a for _t, a in found if "table-scroll" in a.get("class", "")]
    assert tables and len(regions) == len(tables)
    ids = {a.get("id") for _t, a in found}
    for region in regions:
        assert (region["role"], region["tabindex"]) == ("region", "0")
        assert region["aria-labelledby"] in ids


def test_the_plain_text_preview_wraps_and_its_notice_is_not_a_live_region(client, world):
    sign_in(client, world["staff"])
    preview = client.get(f"/staff/newsletters/campaigns/{world['draft'].id}/preview")
    plain = re.search(r'<pre class="plain-text">(.*?)</pre>', preview.get_data(as_text=True), re.S)
    assert plain and LONG_LINK in plain.group(1)
    assert "For safety, some of what you wrote is not kept" in text_of(preview)
    assert_no_live_roles_on_notices(preview)


# Reflow at 320 px ---------------------------------------------------------------------------
NARROW = {"width": 320, "height": 800}



@pytest.mark.browser
def test_no_newsletter_page_is_wider_than_a_320_pixel_screen(page, page_problems, world):
    page.set_viewport_size(NARROW)
    research, archived = world["research"].id, world["archived"].id
    wide = too_wide(
        page,
        [
            "/newsletters/subscribe",
            "/newsletters/subscribe/check-email",
            "/newsletters/archive",
            f"/newsletters/archive/{archived}",
            f"/newsletters/confirm/{world['confirm_token']}",
            f"/newsletters/unsubscribe/{world['unsubscribe_token']}",
        ],
    )
    page.get_by_role("button", name=f"Unsubscribe from “{LIST_NAME}”").click()
    expect(page.get_by_role("heading", level=1)).to_be_focused()
    wide |= too_wide(page, [""])

    browser_sign_in(page, PARTICIPANT_EMAIL)
    wide |= too_wide(page, ["/newsletters/preferences"])
    page.get_by_label("Progress reports").check()
    page.get_by_role("button", name="Save my newsletter choices").click()
    expect(page.get_by_role("group", name="Your newsletters")).to_be_focused()
    expect(page.locator("#announcements")).to_have_text(
        "You are now subscribed to “Progress reports”."
    )
    page.get_by_role("navigation", name="Main").get_by_role("button", name="Sign out").click()

    browser_sign_in(page, world["staff"].email)
    draft, sending = world["draft"].id, world["sending"].id
    campaigns = "/staff/newsletters/campaigns"
    wide |= too_wide(
        page,
        [
            campaigns,
            f"{campaigns}/new",
            f"{campaigns}/{draft}",
            f"{campaigns}/{draft}/edit",
            f"{campaigns}/{draft}/preview",
            f"{campaigns}/{draft}/schedule",
            f"{campaigns}/{sending}",
            "/staff/newsletters/lists",
            "/staff/newsletters/lists/new",
            f"/staff/newsletters/lists/{research}/edit",
            "/staff/newsletters/suppressions",
        ],
    )
    assert wide == {}
    page_problems.assert_none()
