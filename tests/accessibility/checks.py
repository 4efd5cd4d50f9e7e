"""What the accessibility tests check on a page in headless Chromium: axe-core's findings and
whether the page fits the width of the screen, at the widths of :data:`WIDTHS`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask.testing import FlaskClient

from tests.fixtures_browser import AXE_RUN_OPTIONS

# The widths every page is checked at: a small phone (320 px is WCAG 1.4.10's reflow width), a
# common phone, a tablet, a laptop, and a 1280 px window zoomed to 200% (zooming halves the
# CSS pixels of the layout viewport: 640 × 450).
WIDTHS = {
    "320px": {"width": 320, "height": 640},
    "375px": {"width": 375, "height": 740},
    "768px": {"width": 768, "height": 1024},
    "1280px": {"width": 1280, "height": 900},
    "200% zoom": {"width": 640, "height": 450},
}
REFLOW_WIDTH = "320px"

FAILING_IMPACTS = ("serious", "critical")
IMPACTS = ("critical", "serious", "moderate", "minor")


REFLOW_SCRIPT = """
() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  for (const element of document.querySelectorAll("body *")) {
    const box = element.getBoundingClientRect();
    if (box.width && box.right > width + 1) {
      const name = element.tagName.toLowerCase()
        + (element.id ? "#" + element.id : "")
        + (element.className && typeof element.className === "string"
           ? "." + element.className.trim().split(/\\s+/).join(".") : "");
      wide.push(`${name} (right edge ${Math.round(box.right)} px)`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, wide: wide.slice(0, 5)};
}
"""


def reflow_problem(page: Any) -> str | None:
    """Why the page is wider than its viewport, or None when it fits."""
    result = page.evaluate(REFLOW_SCRIPT)
    if result["scrollWidth"] <= result["width"]:
        return None
    return (
        f"{result['scrollWidth']} px wide in a {result['width']} px viewport; "
        f"sticking out: {', '.join(result['wide']) or '(no element found)'}"
    )


@dataclass
class AxeFinding:
    """One axe rule failed on one page at one width."""

    role: str
    url: str
    width: str
    rule: str
    impact: str
    help: str
    targets: list[str]

    def describe(self) -> str:
        return (
            f"[{self.impact}] {self.rule} on {self.url} as {self.role} at {self.width}: "
            f"{self.help}; elements: {'; '.join(self.targets[:4])}"
        )


@dataclass
class AxeTotals:
    """Findings by impact, and the number of (page, width) checks made."""

    checks: int = 0
    findings: list[AxeFinding] = field(default_factory=list)

    def by_impact(self) -> dict[str, int]:
        counts = dict.fromkeys(IMPACTS, 0)
        for finding in self.findings:
            counts[finding.impact] = counts.get(finding.impact, 0) + 1
        return counts

    def failing(self) -> list[AxeFinding]:
        return [f for f in self.findings if f.impact in FAILING_IMPACTS]

    def save(self, path: Path, pages: int) -> None:
        """Write the totals and every finding as JSON (for the accessibility note)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "pages": pages,
                    "checks": self.checks,
                    "by_impact": self.by_impact(),
                    "findings": [vars(f) for f in self.findings],
                },
                indent=2,
            )
        )


class Axe:
    """axe-core, as shipped inside the axe-playwright-python wheel (nothing downloaded)."""

    def __init__(self) -> None:
        from axe_playwright_python.sync_playwright import Axe as _Axe

        self._script = _Axe().axe_script

    def run(self, page: Any, role: str, url: str, width: str) -> list[AxeFinding]:
        """Run axe on the page as it is now."""
        if not page.evaluate("() => typeof window.axe !== 'undefined'"):
            page.evaluate(self._script)
        results = page.evaluate("(options) => axe.run(document, options)", AXE_RUN_OPTIONS)
        return [
            AxeFinding(
                role=role,
                url=url,
                width=width,
                rule=violation["id"],
                impact=violation.get("impact") or "minor",
                help=violation["help"],
                targets=[", ".join(map(str, node["target"])) for node in violation["nodes"]],
            )
            for violation in results["violations"]
        ]


def browser_context_for(browser: Any, base_url: str, client: FlaskClient | None) -> Any:
    """A browser context carrying ``client``'s sign-in (its session cookie), if any."""
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(15_000)
    if client is not None:
        cookie = client.get_cookie("session")
        if cookie is not None:
            context.add_cookies([{"name": "session", "value": cookie.value, "url": base_url}])
    return context


def each_width(page: Any, widths: Iterable[str] = WIDTHS) -> Iterator[str]:
    """Resize ``page`` to each of ``widths`` in turn (no reload: the layout reflows)."""
    for name in widths:
        page.set_viewport_size(WIDTHS[name])
        yield name


def too_wide(page: Any, paths: Iterable[str]) -> dict[str, str]:
    """Each of ``paths`` (or, for "", the page already open) that is wider than its viewport,
    with why (see :func:`reflow_problem`); waits for each page's axe-core check, when the page
    fixture runs one, before the next page loads."""
    found = {}
    for path in paths:
        if path:
            page.goto(path)
        problem = reflow_problem(page)
        page.evaluate("() => window.__engageAxeRun || null")
        if problem:
            found[path or urlsplit(page.url).path] = problem
    return found
