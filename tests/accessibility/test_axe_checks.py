"""The accessibility checks themselves can fail: a page with known problems is caught by the
tour's axe run, by the check every journey test gets on each page load, and by the reflow check.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.accessibility import checks
from tests.fixtures_browser import LiveServer, PageProblems, _wait_for_axe

pytestmark = pytest.mark.browser

# An image without a text alternative (critical), a field without a label (critical), and a
# table of 40 checkboxes in a row, which cannot fit a phone.
BROKEN_PAGE = """<!doctype html>
<html lang="en"><head><title>Broken on purpose</title>
<link rel="stylesheet" href="/static/engage.css"></head>
<body><main><h1>Broken on purpose</h1>
<img src="/static/none.png">
<input type="text" name="unlabelled">
<table id="wide-table"><tr>{cells}</tr></table>
</main></body></html>
""".replace("{cells}", '<td><input type="checkbox" aria-label="Pick"></td>' * 40)


@pytest.fixture
def broken_page(app: Flask) -> str:
    @app.route("/test-only/broken")
    def broken() -> str:
        return BROKEN_PAGE

    return "/test-only/broken"


def test_the_tour_reports_what_axe_and_the_reflow_check_find(
    app: Flask, live_server: LiveServer, browser: Any, broken_page: str
) -> None:
    context = checks.browser_context_for(browser, live_server.url, None)
    try:
        page = context.new_page()
        page.goto(broken_page)
        page.set_viewport_size(checks.WIDTHS[checks.REFLOW_WIDTH])
        findings = checks.Axe().run(page, "visitor", broken_page, checks.REFLOW_WIDTH)
        reflow = checks.reflow_problem(page)
    finally:
        context.close()
    rules = {finding.rule: finding.impact for finding in findings}
    assert rules.get("image-alt") == "critical"
    assert rules.get("label") == "critical"
    assert "table#wide-table" in (reflow or ""), reflow


def test_every_page_a_journey_loads_is_checked_by_axe(
    page: Any, page_problems: PageProblems, broken_page: str
) -> None:
    page.goto(broken_page)
    _wait_for_axe(page)
    found = "\n".join(page_problems.axe_findings)
    assert "image-alt" in found and "label" in found, found
    page_problems.axe_findings.clear()  # seen: the page fixture would fail the test otherwise
