"""``make screenshots``: PNGs of the main pages at a phone's, a tablet's and a laptop's width, in
``build/screenshots/`` (ignored by git), to look at before calling page work done.

Not part of the test suite (the file name doesn't start with ``test_``); ``make screenshots``
runs it with pytest, on the demo data, in headless Debian Chromium. Each file is named
``<role>-<page>-<width>.png``; ``index.txt`` lists them with the address each shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.accessibility import checks, tour
from tests.conftest import sign_in
from tests.fixtures_browser import LiveServer

pytestmark = pytest.mark.browser

FOLDER = Path(__file__).resolve().parents[2] / "build" / "screenshots"
WIDTHS = {"phone": 320, "tablet": 768, "laptop": 1280}
# (role, short name, address); an address may name a view to find on the role's crawl instead.
MAIN_PAGES = [
    ("visitor", "home", "/"),
    ("visitor", "join", "/sign-up"),
    ("visitor", "topics", "/topics"),
    ("visitor", "help", "/help"),
    ("participant", "home", "/"),
    ("participant", "topic", "topics.detail"),
    ("participant", "consent", "/consent"),
    ("participant", "leave", "consent.leave"),
    ("participant", "receipt", "consent.receipt"),
    ("participant", "account", "/account"),
    ("participant", "round", "rounds.round_page"),
    ("participant", "round-results", "rounds.results"),
    ("custodian", "registry", "governance.registry_inbox"),
    ("custodian", "decision", "governance.registry_proposal"),
    ("staff", "topic", "topics.detail"),
    ("staff", "governance", "/staff/governance"),
    ("staff", "consent-version", "consent_staff.version"),
    ("staff", "newsletter", "newsletters_staff.campaign"),
    ("staff", "round", "rounds_staff.round_page"),
]


def _address(found: tour.Crawl, wanted: str) -> str | None:
    if wanted.startswith("/"):
        return wanted
    return next((visit.url for visit in found.pages if visit.endpoint == wanted), None)


def test_screenshots_of_the_main_pages(
    app: Flask, live_server: LiveServer, browser: Any, mailbox: Any
) -> None:
    passwords = tour.seed(app)
    FOLDER.mkdir(parents=True, exist_ok=True)
    index, missing = [], []
    for role in dict.fromkeys(role for role, _name, _wanted in MAIN_PAGES):
        client = tour.signed_in_client(app, role, passwords, sign_in)
        found = tour.crawl(app, client, role, ["/", *tour.LATER_VISITS.get(role, ())])
        context = checks.browser_context_for(browser, live_server.url, client)
        try:
            page = context.new_page()
            for _role, name, wanted in (item for item in MAIN_PAGES if item[0] == role):
                address = _address(found, wanted)
                if address is None:
                    missing.append(f"{role}: {wanted}")
                    continue
                page.goto(address)
                for label, width in WIDTHS.items():
                    page.set_viewport_size({"width": width, "height": 900})
                    path = FOLDER / f"{role}-{name}-{label}.png"
                    page.screenshot(path=str(path), full_page=True)
                    index.append(f"{path.name}\t{address}")
        finally:
            context.close()
    (FOLDER / "index.txt").write_text("\n".join(index) + "\n")
    print(f"\n{len(index)} screenshots in {FOLDER}")
    assert not missing, f"pages not found on the crawl: {missing}"
