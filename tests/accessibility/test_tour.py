"""Every page each kind of person reaches, checked in headless Chromium: axe-core (WCAG 2.0, 2.1
and 2.2 A and AA, and best practices) at 320, 375, 768 and 1280 px and at 200% zoom with no
serious or critical finding, and no page wider than the screen at 320 px (WCAG 1.4.10 reflow).

The pages come from crawling the demo data as each role (see ``tour.py``), so a page joins the
tour as soon as anything links to it. Every finding of every impact is written to
``build/accessibility/axe-<role>.json``; a failure prints rule, element, page, role and width.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from engage.db import Database
from tests.accessibility import checks, tour
from tests.conftest import _empty_tables, _tables_children_first, sign_in
from tests.fixtures_browser import LiveServer

REPORTS = Path(__file__).resolve().parents[2] / "build" / "accessibility"


@pytest.fixture(scope="session")
def axe() -> checks.Axe:
    return checks.Axe()


# The widths each (role, address) is checked at, worked out once from every crawl (each test
# seeds the same demo data, so the plan holds for all of them).
_PLAN: dict[tuple[str, str], tuple[str, ...]] = {}


def _crawled(app: Flask, role: str, mailbox: Any) -> tuple[Any, tour.Crawl]:
    """Seed the demo, then crawl as ``role`` (a role or a journey part-way through)."""
    passwords = tour.seed(app)
    if not _PLAN:
        _PLAN.update(tour.width_plan(tour.everyone(app, passwords, mailbox, sign_in)))
        engine = Database.engine(app)  # the journeys changed things: start again
        _empty_tables(engine, _tables_children_first(engine))
        for sent in Path(app.config["MAIL_OUTBOX_DIR"]).glob("*.eml"):
            sent.unlink()
        passwords = tour.seed(app)
    if role in tour.JOURNEYS:
        client, start = tour.journey_client(app, role, mailbox, passwords)
    else:
        client = tour.signed_in_client(app, role, passwords, sign_in)
        start = ["/", *tour.LATER_VISITS.get(role, ())]
    found = tour.crawl(app, client, role, start)  # broken links: see the test below
    assert found.pages, f"the crawl as {role} found no page"
    return client, found


def test_every_page_that_answers_get_is_reached_by_some_role(app: Flask, mailbox: Any) -> None:
    """No page escapes the tour: each GET view is reached by a crawl or says why it is not."""
    crawls = tour.everyone(app, tour.seed(app), mailbox, sign_in)
    unreached = tour.unreached_endpoints(app, crawls)
    broken = {found.role: found.broken for found in crawls if found.broken}
    assert not unreached, (
        "pages no crawl reaches (link them from a page, give the demo data what they show, or "
        f"list them in tour.NOT_CRAWLED with the reason): {sorted(unreached)}"
    )
    assert not broken, f"links that lead to error pages, by role: {broken}"


@pytest.mark.browser
@pytest.mark.parametrize("role", tour.ROLES + tour.JOURNEYS)
def test_axe_finds_nothing_serious_on_any_page_at_any_width(
    role: str, app: Flask, live_server: LiveServer, browser: Any, axe: checks.Axe, mailbox: Any
) -> None:
    """Each view at every width once, and at a phone's width for every other role and item."""
    client, found = _crawled(app, role, mailbox)
    context = checks.browser_context_for(browser, live_server.url, client)
    totals = checks.AxeTotals()
    try:
        page = context.new_page()
        for visit in found.pages:
            response = page.goto(visit.url)
            assert response is not None and response.status == 200, f"{visit.url} as {role}"
            widths = _PLAN.get((role, visit.url), tuple(checks.WIDTHS))
            for width in checks.each_width(page, widths):
                totals.checks += 1
                totals.findings += axe.run(page, role, visit.url, width)
    finally:
        context.close()
    totals.save(REPORTS / f"axe-{role}.json", pages=len(found.pages))
    print(f"\naxe as {role}: {len(found.pages)} pages, {totals.checks} page x width checks, "
          f"findings by impact {totals.by_impact()}")
    failing = totals.failing()
    assert not failing, f"{len(failing)} serious or critical axe findings:\n" + "\n".join(
        finding.describe() for finding in failing
    )


@pytest.mark.browser
@pytest.mark.parametrize("role", tour.ROLES + tour.JOURNEYS)
def test_no_page_is_wider_than_a_320_px_screen(
    role: str, app: Flask, live_server: LiveServer, browser: Any, mailbox: Any
) -> None:
    client, found = _crawled(app, role, mailbox)
    context = checks.browser_context_for(browser, live_server.url, client)
    problems = []
    try:
        page = context.new_page()
        page.set_viewport_size(checks.WIDTHS[checks.REFLOW_WIDTH])
        for visit in found.pages:
            page.goto(visit.url)
            problem = checks.reflow_problem(page)
            if problem:
                problems.append(f"{visit.url}: {problem}")
    finally:
        context.close()
    assert not problems, (
        f"{len(problems)} of {len(found.pages)} pages as {role} don't reflow at 320 px:\n"
        + "\n".join(problems)
    )
