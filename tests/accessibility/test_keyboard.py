"""The main journeys by keyboard alone (Tab, Shift+Tab, Enter, Space and the arrow keys) in
headless Chromium: every stop of the focus is visible, error summaries take focus and each of
their links moves focus to its field, and after an action focus comes back to what changed.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Page, expect

from tests.accessibility import checks, tour
from tests.conftest import sign_in
from tests.fixtures_browser import LiveServer, PageProblems

pytestmark = pytest.mark.browser

FORM_SHOWN_AGAIN = frozenset({400})
MAX_TAB_STOPS = 80

FOCUSED = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) { return null; }
  const style = getComputedStyle(el);
  const ring = (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2)
    || (style.boxShadow && style.boxShadow !== "none");
  const box = el.getBoundingClientRect();
  return {
    tag: el.tagName.toLowerCase(),
    id: el.id,
    type: el.type || "",
    text: (el.getAttribute("aria-label") || el.innerText || el.value || "").trim().slice(0, 80),
    href: el.getAttribute("href") || "",
    ring: ring,
    onScreen: box.width > 0 && box.height > 0,
    returnFocus: el.hasAttribute("data-return-focus"),
    classes: typeof el.className === "string" ? el.className : "",
  };
}
"""


def focused(page: Page) -> dict[str, Any] | None:
    return page.evaluate(FOCUSED)


def press(page: Page, key: str) -> dict[str, Any]:
    """Press ``key`` and return the newly focused element, which must show a visible ring."""
    page.keyboard.press(key)
    now = focused(page)
    assert now is not None, f"after {key} nothing has focus on {page.url}"
    assert now["onScreen"] and now["ring"], f"after {key} focus is not visible: {now} on {page.url}"
    return now


def tab_to(page: Page, matches: Any, *, backwards: bool = False) -> dict[str, Any]:
    """Press Tab (or Shift+Tab) until the focused element ``matches``; every stop on the way
    must show visible focus."""
    key = "Shift+Tab" if backwards else "Tab"
    seen = []
    for _ in range(MAX_TAB_STOPS):
        now = press(page, key)
        if matches(now):
            return now
        seen.append(now["text"] or now["id"] or now["tag"])
    pytest.fail(f"{key} never reached the element on {page.url}; stops: {seen}")


def follow(page: Page, key: str = "Enter") -> None:
    """Press ``key`` on a link or a button that loads a new page, and wait for it."""
    with page.expect_navigation():
        page.keyboard.press(key)


def _signed_in_page(
    browser: Any, app: Flask, live_server: LiveServer, role: str
) -> tuple[Any, Page]:
    passwords = tour.seed(app)
    client = tour.signed_in_client(app, role, passwords, sign_in)
    context = checks.browser_context_for(browser, live_server.url, client)
    return context, context.new_page()


def test_joining_by_keyboard_alone(page: Page, page_problems: PageProblems, app: Flask) -> None:
    tour.seed(app)  # the registries a custodian chooses from
    page.goto("/sign-up")
    skip = press(page, "Tab")
    assert skip["text"] == "Skip to main content"
    page.keyboard.press("Enter")
    assert focused(page)["id"] == "main"

    # Sent empty: the error summary takes focus, and each of its links moves focus to its field.
    tab_to(page, lambda el: el["text"] == "Create my account")
    follow(page)
    summary = page.locator(".error-summary")
    expect(summary).to_be_focused()
    links = summary.get_by_role("link")
    hrefs = links.evaluate_all("links => links.map((link) => link.getAttribute('href'))")
    targets = [href.removeprefix("#") for href in hrefs]
    assert targets[0] == "role-0", targets  # the first question: the first of its choices
    for index, target in enumerate(targets):
        summary.focus()
        for _ in range(index + 1):
            stop = press(page, "Tab")
        assert stop["href"] == f"#{target}", stop
        page.keyboard.press("Enter")
        assert focused(page)["id"] == target, f"the link to #{target} left focus elsewhere"

    # Choose a role with the arrow keys: the healthcare professional's questions appear next.
    summary.focus()
    press(page, "Tab")
    page.keyboard.press("Enter")  # to the first role
    page.keyboard.press("Space")
    expect(page.get_by_label("I have MS")).to_be_checked()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("I am a healthcare professional")).to_be_checked()
    expect(page.get_by_role("textbox", name="Profession")).to_be_visible()
    expect(page.get_by_role("textbox", name="Name of your MS organisation")).to_be_hidden()
    stop = press(page, "Tab")
    assert stop["id"] == "profession", stop
    page.keyboard.type("MS nurse")
    press(page, "Tab")
    page.keyboard.type("Karolinska University Hospital")
    # Back with Shift+Tab: the profession field again, still holding what was typed.
    back = press(page, "Shift+Tab")
    assert back["id"] == "profession"
    expect(page.get_by_role("textbox", name="Profession")).to_have_value("MS nurse")
    page_problems.assert_none(allow_document_statuses=FORM_SHOWN_AGAIN)


def test_supporting_a_topic_by_keyboard(
    browser: Any, app: Flask, live_server: LiveServer
) -> None:
    context, page = _signed_in_page(browser, app, live_server, "organisation")
    try:
        page.goto("/topics")
        topic = tab_to(page, lambda el: el["text"] == "Does vitamin D slow MS progression?")
        follow(page)
        assert page.url.endswith(topic["href"])
        tab_to(page, lambda el: el["tag"] == "button" and "support" in el["text"].lower()
               and "withdraw" not in el["text"].lower())
        follow(page, "Space")
        expect(page.locator("#announcements")).to_contain_text("support", ignore_case=True)
        now = focused(page)
        assert now is not None and now["returnFocus"], f"focus after supporting: {now}"
        # The next Tab continues from what changed, not from the top of the page.
        after = press(page, "Tab")
        assert "skip to main content" not in after["text"].lower()
    finally:
        context.close()


def test_changing_a_consent_choice_by_keyboard(
    browser: Any, app: Flask, live_server: LiveServer
) -> None:
    context, page = _signed_in_page(browser, app, live_server, "participant")
    try:
        page.goto("/consent")
        button = tab_to(
            page,
            lambda el: el["tag"] == "button"
            and el["text"].lower().startswith(("withdraw", "allow", "do not allow"))
            and "everything" not in el["text"].lower(),
        )
        follow(page)
        expect(page.locator("#announcements")).not_to_be_empty()
        now = focused(page)
        assert now is not None and now["returnFocus"], f"focus after {button['text']}: {now}"
    finally:
        context.close()


def test_leaving_the_programme_by_keyboard_can_be_cancelled(
    browser: Any, app: Flask, live_server: LiveServer
) -> None:
    context, page = _signed_in_page(browser, app, live_server, "participant")
    try:
        page.goto("/consent")
        tab_to(page, lambda el: el["tag"] == "a" and "leav" in el["text"].lower())
        follow(page)
        assert "/consent/leave" in page.url
        first = tab_to(page, lambda el: el["type"] == "radio")
        page.keyboard.press("ArrowDown")
        chosen = focused(page)
        assert chosen["id"] != first["id"], "the arrow key did not move to the next option"
        tab_to(page, lambda el: el["tag"] == "button")
        follow(page)
        # Nothing has changed yet: a confirmation says what will happen, with a way back.
        cancel = tab_to(page, lambda el: el["tag"] == "a" and "cancel" in el["text"].lower())
        assert cancel["href"].startswith("/consent")
        follow(page)
        assert page.url.split("#")[0].endswith("/consent")
        expect(page.get_by_text("You take part in the programme")).to_be_visible()
    finally:
        context.close()
