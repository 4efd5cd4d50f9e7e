"""Site-wide pages: the home page for each role, the footer's help, privacy and accessibility
pages, plain words on account and staff pages, and reflow at 320 px (WCAG 1.4.10)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from playwright.sync_api import Page

from engage.accounts.models import CustodianStatus, Role
from tests.conftest import PASSWORD, post_form, sign_in
from tests.fixtures_browser import PageProblems, _wait_for_axe
from tests.test_browser import _sign_in

FOOTER_PAGES = {
    "/help": "Help and contact",
    "/privacy": "Privacy notice",
    "/accessibility": "Accessibility statement",
}
GLOSSARY = (
    "Registry",
    "Data custodian",
    "Coordination centre",
    "De-identified",
    "Federated analysis",
    "FHIR",
    "JSON",
    "SHA-256 fingerprint",
    "Data controller",
)
LONG_EMAIL = "a.very.long.address.for.testing.reflow@example-hospital-network.org"
LONG_REGISTRY = (
    "Registre national de la sclérose en plaques de Bourgogne-Franche-Comté et "
    "d'Auvergne-Rhône-Alpes"
)


class Landmarks(HTMLParser):
    """The links (text, href) of a page's <main> and <footer>, the glossary's terms and
    definitions, and the scrolling table wrappers with their attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: dict[str, list[tuple[str, str]]] = {"main": [], "footer": []}
        self.glossary: dict[str, str] = {}
        self.scroll_regions: list[dict[str, str | None]] = []
        self.ids: set[str] = set()
        self._in: list[str] = []
        self._link: tuple[str, str] | None = None
        self._text: list[str] = []
        self._term: str | None = None
        self._part: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        if tag in ("main", "footer"):
            self._in.append(tag)
        if tag == "a" and self._in:
            self._link, self._text = (self._in[-1], attributes.get("href") or ""), []
        if tag == "dl" and "glossary" in (attributes.get("class") or ""):
            self._in.append("glossary")
        if tag in ("dt", "dd") and "glossary" in self._in:
            self._part, self._text = tag, []
        if tag == "div" and "table-scroll" in (attributes.get("class") or "").split():
            self.scroll_regions.append(attributes)

    def handle_endtag(self, tag):
        if tag == "a" and self._link:
            where, href = self._link
            self.links[where].append((" ".join("".join(self._text).split()), href))
            self._link = None
        if tag in ("dt", "dd") and self._part == tag:
            text = " ".join("".join(self._text).split())
            if tag == "dt":
                self._term = text
            elif self._term:
                self.glossary[self._term] = text
            self._part = None
        if tag == "dl" and self._in and self._in[-1] == "glossary":
            self._in.pop()
        if tag in ("main", "footer") and self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        if self._link or self._part:
            self._text.append(data)


def _page(client, path: str) -> Landmarks:
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return Landmarks(response.get_data(as_text=True))


def _visible_text(client, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


# Footer pages --------------------------------------------------------------------------------
def test_help_privacy_and_accessibility_pages_are_linked_from_the_footer(client):
    footer = dict(_page(client, "/").links["footer"])
    for path, name in FOOTER_PAGES.items():
        assert footer.get(name) == path, f"footer has no link {name!r} to {path}: {footer}"
        page = client.get(path)
        assert page.status_code == 200
        assert f"<h1>{name}</h1>" in page.get_data(as_text=True)
    # The links the footer had before stay.
    assert footer.get("Past newsletters") and footer.get("Get our newsletters by email")


def test_glossary_explains_each_word_in_one_plain_sentence(client):
    glossary = _page(client, "/help").glossary
    assert list(glossary) == list(GLOSSARY)
    for term, meaning in glossary.items():
        assert meaning.endswith(".") and meaning.count(". ") == 0, (term, meaning)
    assert glossary["Registry"] == (
        "A collection of health data about people with MS, kept by a hospital network or a country."
    )
    assert "only the results are shared" in glossary["Federated analysis"]


def test_help_and_privacy_give_the_configured_address_and_data_controller(app, client):
    app.config["SUPPORT_EMAIL"] = "help@ms-centre.example"
    app.config["CONSENT_CONTROLLER"] = "Nordic MS Network coordination centre"
    help_page = _page(client, "/help")
    assert ("help@ms-centre.example", "mailto:help@ms-centre.example") in help_page.links["main"]
    privacy = _visible_text(client, "/privacy")
    assert "The data controller is the Nordic MS Network coordination centre." in privacy
    assert "help@ms-centre.example" in privacy
    statement = _visible_text(client, "/accessibility")
    assert "help@ms-centre.example" in statement


def test_privacy_notice_links_to_where_each_right_is_used(client):
    links = dict(_page(client, "/privacy").links["main"])
    assert links["download a copy of everything Engage holds about you"] == "/account/data"
    assert links["delete my account"] == "/account/delete"
    assert links["My consent"] == "/consent"
    assert links["My newsletters"] == "/newsletters/preferences"
    text = _visible_text(client, "/privacy")
    for heading in (
        "Who is responsible for your data",
        "How long we keep your data",
        "How to complain",
    ):
        assert heading in text
    # Retention as the README's "What deleting an account keeps, and why" says.
    assert 'shown as written by "Deleted account"' in text
    assert "Your consent record stays, because the law asks us to prove what you allowed" in text
    assert "Accounts whose email address was never confirmed are removed after 30 days." in text


def test_accessibility_statement_names_the_standard_and_how_it_is_tested(client):
    text = _visible_text(client, "/accessibility")
    assert "WCAG) 2.2 at level AA" in text
    assert "screen widths of 320, 375, 768 and 1280 pixels, and at 200% zoom" in text
    assert "keyboard-only tests" in text
    for heading in ("Known limitations", "Report a problem"):
        assert f"{heading}" in text


# Home page -----------------------------------------------------------------------------------
def test_signed_in_participant_is_led_to_their_consent_topics_and_account(client, make_user):
    sign_in(client, make_user(Role.PARTICIPANT))
    main = dict(_page(client, "/").links["main"])
    assert main["My consent"] == "/consent"
    assert main["Research topics"] == "/topics"
    assert main["My account"] == "/account"


@pytest.mark.parametrize(
    ("role", "expected", "absent"),
    [
        (Role.CLINICIAN, {"Research topics": "/topics"}, ("My consent", "Moderation")),
        (Role.ORGANISATION, {"Research topics": "/topics"}, ("My consent", "Moderation")),
        (
            Role.STAFF,
            {"Moderation": "/topics/moderation", "Governance": "/staff/governance"},
            ("My consent",),
        ),
    ],
)
def test_other_roles_see_the_links_of_their_role(client, make_user, role, expected, absent):
    sign_in(client, make_user(role))
    main = dict(_page(client, "/").links["main"])
    for name, href in expected.items():
        assert main.get(name) == href, (name, main)
    for name in absent:
        assert name not in main


def test_custodian_sees_their_registry_once_approved(client, app, make_user, make_registry):
    registry = make_registry(code="SMSREG", name="Swedish MS registry")
    approved = make_user(Role.CUSTODIAN, registry=registry)
    sign_in(client, approved)
    main = dict(_page(client, "/").links["main"])
    assert main["My registry's research projects"] == "/governance/registries/SMSREG"

    waiting = app.test_client()
    sign_in(
        waiting,
        make_user(Role.CUSTODIAN, registry=registry, custodian_status=CustodianStatus.PENDING),
    )
    page = _page(waiting, "/")
    assert "My registry's research projects" not in dict(page.links["main"])
    text = _visible_text(waiting, "/")
    assert "is checking that you look after Swedish MS registry" in text


def test_home_page_says_how_custodians_join_and_never_says_vote(client, make_user):
    pages = [_visible_text(client, "/")]
    for role in (Role.PARTICIPANT, Role.CLINICIAN):
        other = client.application.test_client()
        sign_in(other, make_user(role))
        pages.append(_visible_text(other, "/"))
    for text in pages:
        assert "invitation" not in text.lower()
        assert not re.search(r"\bvot(e|es|ed|ing)\b", text, re.IGNORECASE)
    anonymous = pages[0]
    assert "Suggest research topics and support the ones that matter to you." in anonymous
    assert "To join, choose your registry on the sign-up page." in anonymous
    # The words a newcomer may not know are explained where they first appear.
    assert "A registry is a collection of health data about people with MS" in anonymous
    assert "coordination centre (the team that runs Engage)" in anonymous


# Account and staff pages ---------------------------------------------------------------------
def test_account_and_staff_tables_scroll_in_a_named_focusable_region(
    client, make_user, make_registry
):
    make_registry(name=LONG_REGISTRY)
    user = make_user(Role.STAFF)
    sign_in(client, user)
    for path in (
        "/staff/registries",
        "/staff/users",
        "/staff/audit",
        "/staff/data-requests",
        "/account/sessions",
    ):
        if path == "/staff/data-requests":
            # A data request, so that its table is shown.
            post_form(client, "/account/data", {})
        page = _page(client, path)
        assert page.scroll_regions, f"no scrolling table region on {path}"
        for region in page.scroll_regions:
            assert region.get("role") == "region" and region.get("tabindex") == "0", path
            assert region.get("aria-labelledby") in page.ids, path


def test_download_page_explains_json(client, make_user):
    sign_in(client, make_user(Role.PARTICIPANT))
    assert "The file is in JSON, a file format computers read." in _visible_text(
        client, "/account/data"
    )


def test_staff_search_count_is_announced_not_present_at_load_as_a_status(client, make_user):
    sign_in(client, make_user(Role.STAFF))
    html = client.get("/staff/users").get_data(as_text=True)
    assert "<p data-announce>1 account found.</p>" in html
    assert 'role="status">1 account' not in html


# Reflow --------------------------------------------------------------------------------------
def _width_at_320(page: Page, path: str) -> tuple[int, list[str]]:
    """The page's scroll width at 320 px CSS width, and what sticks out past the screen (axe-core
    checks the page too, before the next one loads)."""
    page.goto(path)
    _wait_for_axe(page)
    return page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const out = [];
          for (const element of document.body.querySelectorAll('*')) {
            const box = element.getBoundingClientRect();
            if (box.right > width + 0.5 && !element.closest('.table-scroll, .table-wrap')) {
              out.push(element.tagName + ': ' + element.textContent.trim().slice(0, 60));
            }
          }
          return [document.documentElement.scrollWidth, out.slice(0, 5)];
        }"""
    )


@pytest.mark.browser
def test_site_pages_fit_a_320_px_screen(
    page: Page, make_user, make_registry, page_problems: PageProblems
):
    page.set_viewport_size({"width": 320, "height": 640})
    make_registry(name=LONG_REGISTRY, code="BFC-ARA-SEP")
    participant = make_user(Role.PARTICIPANT, email=LONG_EMAIL)
    staff = make_user(Role.STAFF, email="staff." + LONG_EMAIL)
    too_wide = {}
    for path in ("/", "/help", "/privacy", "/accessibility"):
        too_wide[path] = _width_at_320(page, path)
    page.goto("/")
    _sign_in(page, participant.email, PASSWORD)
    for path in ("/", "/account", "/account/email", "/account/registries", "/account/sessions"):
        too_wide["participant " + path] = _width_at_320(page, path)
    page.context.clear_cookies()
    page.goto("/")
    _sign_in(page, staff.email, PASSWORD)
    for path in ("/staff/registries", "/staff/users", "/staff/audit", "/account"):
        too_wide["staff " + path] = _width_at_320(page, path)
    assert {k: v for k, v in too_wide.items() if v[0] > 320} == {}
    page_problems.assert_none()
