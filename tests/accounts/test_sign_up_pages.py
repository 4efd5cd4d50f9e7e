"""The sign-up, sign-in, two-step sign-in and password-reset pages as people use them: the role's
own questions, error summaries that follow the form and lead to its fields, and pages that fit a
narrow screen (320 CSS pixels: a phone, or a large zoom)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
import sqlalchemy as sa

from engage.accounts import services as account_services
from engage.accounts.models import Role, User
from engage.security import make_token
from tests.conftest import PASSWORD, post_form

SIGN_UP = "/sign-up"
SET_UP_PAGE = "/sign-in/two-factor/set-up"
CODE_PAGE = "/sign-in/two-factor"
RECOVERY_PAGE = "/sign-in/recovery-code"
NEW_PASSWORD = "a long enough passphrase"
EVERYONE = {
    "display_name": "Sam",
    "email": "sam@example.org",
    "password": NEW_PASSWORD,
    "password_confirm": NEW_PASSWORD,
    "country": "SE",
    "language": "sv",
}
# The groups of questions for some roles, and their fields, in the order the page shows them.
ROLE_GROUPS = {
    "clinician": ("If you are a healthcare professional", ["profession", "institution"]),
    "organisation": ("If you work or volunteer at an MS organisation", ["organisation_name"]),
    "custodian": ("If you are a data custodian", ["registry"]),
}
# Every field of the sign-up form in the order of the page (and of the form's definition).
FIELD_ORDER = [
    "role",
    "profession",
    "institution",
    "organisation_name",
    "registry",
    "display_name",
    "email",
    "password",
    "password_confirm",
    "country",
    "language",
]


@dataclass
class Group:
    """A fieldset of the page marked for one role."""

    legend: str = ""
    hidden: bool = False
    fields: list[str] = field(default_factory=list)


class Page(HTMLParser):
    """What a person (or assistive technology) finds on a page: ids, the form's fields in order,
    the groups marked for a role, and the error summary's links."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.fields: list[str] = []  # names of inputs and selects, first appearance
        self.first_input_id: dict[str, str] = {}
        self.groups: dict[str, Group] = {}
        self.summary_links: list[tuple[str, str]] = []  # (href, text)
        self._group: str | None = None
        self._in_legend = False
        self._in_summary = False
        self._link: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "fieldset" and a.get("data-for-role"):
            self._group = a["data-for-role"]
            self.groups[self._group] = Group(hidden="hidden" in a)
        elif tag == "legend" and self._group:
            self._in_legend = True
        elif tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            name = a.get("name") or ""
            if name not in self.fields:
                self.fields.append(name)
                self.first_input_id[name] = a.get("id") or ""
                if self._group:
                    self.groups[self._group].fields.append(name)
        elif tag == "div" and "error-summary" in (a.get("class") or "").split():
            self._in_summary = True
        elif tag == "a" and self._in_summary:
            self._link = [a.get("href") or ""]

    def handle_endtag(self, tag: str) -> None:
        if tag == "fieldset":
            self._group = None
        elif tag == "legend":
            self._in_legend = False
        elif tag == "a" and self._link is not None:
            href, *text = self._link
            self.summary_links.append((href, " ".join("".join(text).split())))
            self._link = None
        elif tag == "div" and self._in_summary and self._link is None:
            # The summary holds no nested divs: its closing tag ends it.
            self._in_summary = False

    def handle_data(self, data: str) -> None:
        if self._in_legend and self._group:
            self.groups[self._group].legend += data.strip()
        if self._link is not None:
            self._link.append(data)


def _page(response: Any) -> Page:
    return Page(response.get_data(as_text=True))


def _count_users(session) -> int:
    session.expire_all()
    return session.scalar(sa.select(sa.func.count(User.id)))


# The role's own questions -------------------------------------------------------------------------
def test_each_role_has_its_own_group_of_questions_shown_to_all_without_javascript(client):
    page = _page(client.get(SIGN_UP))

    assert {role: (group.legend, group.fields) for role, group in page.groups.items()} == (
        ROLE_GROUPS
    )
    # The server hides nothing: without JavaScript every group shows under its legend.
    assert [role for role, group in page.groups.items() if group.hidden] == []


def test_the_page_shows_the_role_first_and_the_fields_in_the_order_of_the_form(client):
    page = _page(client.get(SIGN_UP))

    assert page.fields == FIELD_ORDER


def test_the_custodian_questions_are_explained_in_plain_words(client):
    text = " ".join(client.get(SIGN_UP).get_data(as_text=True).split())

    assert (
        "A data custodian is the person who looks after a registry and decides who may use its "
        "data. A registry is a collection of health data about people with MS, kept by a "
        "hospital network or a country." in text
    )
    assert "The coordination centre (the team that runs Engage) first checks" in text


@pytest.mark.parametrize(
    ("role", "given", "field_id", "error"),
    [
        (
            "clinician",
            {"institution": "Karolinska"},
            "profession",
            "Enter your profession.",
        ),
        (
            "clinician",
            {"profession": "MS nurse"},
            "institution",
            "Enter the hospital or practice where you work.",
        ),
        ("organisation", {}, "organisation_name", "Enter the name of your MS organisation."),
        ("custodian", {}, "registry", "Choose the registry you look after."),
    ],
)
def test_a_role_question_left_empty_is_refused_by_the_server(
    client, session, role, given, field_id, error
):
    response = post_form(client, SIGN_UP, {**EVERYONE, "role": role, **given})

    assert response.status_code == 400
    assert _count_users(session) == 0
    page = _page(response)
    label = {
        "profession": "Profession",
        "institution": "Institution",
        "organisation_name": "Name of your MS organisation",
        "registry": "Registry you look after",
    }[field_id]
    assert page.summary_links == [(f"#{field_id}", f"{label}: {error}")]
    assert field_id in page.ids


def test_an_empty_form_lists_its_problems_in_the_order_of_the_page(client, session):
    response = post_form(client, SIGN_UP, {})

    assert response.status_code == 400
    assert _count_users(session) == 0
    page = _page(response)
    hrefs = [href for href, _text in page.summary_links]
    assert hrefs == [
        "#role-0",
        "#display_name",
        "#email",
        "#password",
        "#password_confirm",
        "#country",
        "#language",
    ]
    # The same order as the fields on the page, and each link leads to a field that exists.
    on_page = [f"#{page.first_input_id[name]}" for name in page.fields]
    assert hrefs == [href for href in on_page if href in hrefs]
    assert all(href[1:] in page.ids for href in hrefs)


def test_the_role_error_reads_well_and_leads_to_the_first_choice(client):
    response = post_form(client, SIGN_UP, {**EVERYONE})

    page = _page(response)
    assert page.summary_links == [("#role-0", "Choose the description that fits you.")]
    assert page.first_input_id["role"] == "role-0"


# Errors on the other sign-in pages lead to real fields ------------------------------------------
def _reset_url(client, make_user) -> str:
    user = make_user(Role.PARTICIPANT)
    with client.application.app_context():
        token = make_token("reset-password", account_services.reset_payload(user))
    return f"/reset-password/{token}"


def _code_step(client, make_user, path: str) -> str:
    user = make_user(Role.STAFF, two_factor=True)
    post_form(client, "/sign-in", {"email": user.email, "password": PASSWORD})
    return path


def _set_up_step(client, make_user) -> str:
    user = make_user(Role.STAFF, two_factor=False)
    response = post_form(client, "/sign-in", {"email": user.email, "password": PASSWORD})
    assert response.headers["Location"].endswith(SET_UP_PAGE)
    return SET_UP_PAGE


@pytest.mark.parametrize(
    ("prepare", "expected"),
    [
        (lambda client, make_user: "/sign-in", ["#email", "#password"]),
        (lambda client, make_user: "/reset-password", ["#email"]),
        (_reset_url, ["#password", "#password_confirm"]),
        (lambda client, make_user: _code_step(client, make_user, CODE_PAGE), ["#code"]),
        (
            lambda client, make_user: _code_step(client, make_user, RECOVERY_PAGE),
            ["#recovery_code"],
        ),
        (_set_up_step, ["#code"]),
    ],
    ids=["sign-in", "reset request", "new password", "code", "recovery code", "set-up"],
)
def test_error_summaries_of_the_sign_in_pages_link_to_their_fields(
    client, make_user, prepare, expected
):
    url = prepare(client, make_user)

    response = post_form(client, url, {})

    assert response.status_code == 400
    page = _page(response)
    assert [href for href, _text in page.summary_links] == expected
    assert all(href[1:] in page.ids for href in expected)


# In the browser ---------------------------------------------------------------------------------
FORM_SHOWN_AGAIN = frozenset({400})  # a form with errors is answered with 400 Bad Request
FOCUSED_ID = "() => document.activeElement && document.activeElement.id"


def _tab_order(page, start: str, stop: str) -> list[str]:
    """The ids keyboard focus visits with Tab from ``#start`` until ``#stop`` (or 40 presses)."""
    page.focus(f"#{start}")
    visited = [start]
    for _ in range(40):
        page.keyboard.press("Tab")
        visited.append(page.evaluate(FOCUSED_ID) or "")
        if visited[-1] == stop:
            break
    return visited


@pytest.mark.browser
def test_choosing_a_role_shows_only_its_questions(page, page_problems):
    from playwright.sync_api import expect

    page.goto(SIGN_UP)
    groups = {role: page.locator(f"[data-for-role='{role}']") for role in ROLE_GROUPS}
    for group in groups.values():  # no role chosen yet: no role's questions
        expect(group).to_be_hidden()

    page.get_by_label("I am a healthcare professional").check()

    expect(groups["clinician"]).to_be_visible()
    expect(page.get_by_role("group", name="If you are a healthcare professional")).to_be_visible()
    expect(groups["organisation"]).to_be_hidden()
    expect(groups["custodian"]).to_be_hidden()
    order = _tab_order(page, "role-1", "display_name")
    assert order[:4] == ["role-1", "profession", "institution", "display_name"], order
    assert "organisation_name" not in order and "registry" not in order

    page.get_by_label("I am a data custodian").check()

    expect(groups["custodian"]).to_be_visible()
    expect(groups["clinician"]).to_be_hidden()
    assert _tab_order(page, "role-2", "display_name") == ["role-2", "registry", "display_name"]

    page.get_by_label("I have MS").check()

    for group in groups.values():
        expect(group).to_be_hidden()
    assert _tab_order(page, "role-0", "display_name") == ["role-0", "display_name"]
    page_problems.assert_none()


@pytest.mark.browser
def test_without_javascript_every_role_group_shows_with_its_legend(browser, live_server):
    from playwright.sync_api import expect

    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(SIGN_UP)
        for legend, _fields in ROLE_GROUPS.values():
            expect(page.get_by_role("group", name=legend)).to_be_visible()
    finally:
        context.close()


@pytest.mark.browser
def test_a_form_shown_again_shows_the_chosen_roles_questions(page, page_problems):
    from playwright.sync_api import expect

    page.goto(SIGN_UP)
    page.get_by_label("I work or volunteer at an MS organisation").check()
    page.get_by_role("button", name="Create my account").click()

    expect(page.locator(".error-summary")).to_contain_text(
        "Name of your MS organisation: Enter the name of your MS organisation."
    )
    expect(page.get_by_label("I work or volunteer at an MS organisation")).to_be_checked()
    expect(page.get_by_label("Name of your MS organisation")).to_be_visible()
    expect(page.locator("[data-for-role='clinician']")).to_be_hidden()
    expect(page.locator("[data-for-role='custodian']")).to_be_hidden()
    page_problems.assert_none(allow_document_statuses=FORM_SHOWN_AGAIN)


@pytest.mark.browser
def test_an_error_in_another_roles_questions_stays_in_view_until_the_role_changes(
    page, page_problems
):
    from playwright.sync_api import expect

    page.goto(SIGN_UP)
    page.get_by_label("I am a healthcare professional").check()
    # The field's maxlength stops typing more; a browser that ignores it sends all of it.
    page.locator("#profession").evaluate("(input) => input.removeAttribute('maxlength')")
    page.locator("#profession").fill("n" * 121)
    page.get_by_label("I have MS").check()  # the over-long answer stays in the hidden field
    page.get_by_role("button", name="Create my account").click()

    link = page.locator(".error-summary a[href='#profession']")
    expect(link).to_have_text("Profession: Use at most 120 characters.")
    expect(page.locator("[data-for-role='clinician']")).to_be_visible()
    link.click()
    expect(page.locator("#profession")).to_be_focused()

    page.get_by_label("I am a data custodian").check()

    expect(page.locator("[data-for-role='clinician']")).to_be_hidden()
    expect(page.locator("[data-for-role='custodian']")).to_be_visible()
    page_problems.assert_none(allow_document_statuses=FORM_SHOWN_AGAIN)


@pytest.mark.browser
def test_an_empty_form_focuses_the_summary_and_each_link_moves_focus_to_its_field(
    page, page_problems
):
    from playwright.sync_api import expect

    page.goto(SIGN_UP)
    page.get_by_role("button", name="Create my account").click()

    expect(page.locator(".error-summary")).to_be_visible()
    assert page.evaluate("() => document.activeElement.classList.contains('error-summary')")
    links = page.locator(".error-summary a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    # The language has a default, so a browser always sends one.
    assert hrefs == [
        "#role-0",
        "#display_name",
        "#email",
        "#password",
        "#password_confirm",
        "#country",
    ]
    for i, href in enumerate(hrefs):  # with the keyboard
        links.nth(i).focus()
        page.keyboard.press("Enter")
        assert page.evaluate(FOCUSED_ID) == href[1:], f"Enter on {href}"
    links.first.click()  # and with the mouse
    assert page.evaluate(FOCUSED_ID) == "role-0"
    expect(page.locator("#role-0")).to_be_focused()
    page_problems.assert_none(allow_document_statuses=FORM_SHOWN_AGAIN)


def _sign_in_to(page, make_user, path: str) -> None:
    """Give the password of a staff account (whose role needs two-step sign-in) and go on to
    ``path``, a page of the code step (with a long address, shown on the set-up page)."""
    user = make_user(
        Role.STAFF,
        two_factor=path != SET_UP_PAGE,
        email="a.rather.long.address.for.staff@example-hospital.org",
    )
    page.goto("/sign-in")
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{SET_UP_PAGE if path == SET_UP_PAGE else CODE_PAGE}")
    page.goto(path)


@pytest.mark.browser
@pytest.mark.parametrize(
    ("path", "with_errors"),
    [
        (SIGN_UP, False),
        (SIGN_UP, True),
        ("/sign-in", False),
        ("/sign-in", True),
        ("/reset-password", True),
        (SET_UP_PAGE, False),
        (SET_UP_PAGE, True),
        (CODE_PAGE, True),
        (RECOVERY_PAGE, True),
    ],
    ids=[
        "sign-up",
        "sign-up with errors",
        "sign-in",
        "sign-in with errors",
        "reset request with errors",
        "two-step set-up",
        "two-step set-up with errors",
        "two-step code with errors",
        "recovery code with errors",
    ],
)
def test_the_pages_fit_a_320_pixel_wide_screen(page, make_user, path, with_errors):
    page.set_viewport_size({"width": 320, "height": 640})
    if path.startswith("/sign-in/"):
        _sign_in_to(page, make_user, path)
    else:
        page.goto(path)
    if with_errors:
        page.locator("main form[method='post'] button[type='submit']").click()
        page.wait_for_selector(".error-summary")

    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 320, f"{path} is {width} CSS pixels wide at 320"
    if path == SET_UP_PAGE:  # the key wraps rather than widening the page
        box = page.locator("#setup-key").bounding_box()
        assert box is not None and box["x"] + box["width"] <= 320
