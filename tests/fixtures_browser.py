"""Fixtures for end-to-end tests in headless Chromium; registered from conftest.

The app is served over real HTTP by werkzeug in a thread, and driven by Playwright through
Debian's Chromium (never a downloaded browser). Browser tests run on SQLite only: their
PostgreSQL variants are deselected at collection, so they are neither run nor reported.

Every page a journey test loads is checked by axe-core (WCAG 2.0–2.2 A and AA and best
practices) as soon as it has loaded: a serious or critical finding fails the test, naming rule,
elements and page. The page tour (``tests/accessibility``) checks every page at every width.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from flask import Flask
from werkzeug.serving import make_server

CHROMIUM = Path("/usr/bin/chromium")
# Without the networking flags Chromium stalls on a machine without internet access.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BROWSER_BACKEND = "sqlite"
AXE_RUN_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": [
            "wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"
        ],
    },
    "resultTypes": ["violations"],
}
# Runs axe once each page of the top frame has loaded and reports its serious and critical
# findings through a binding; window.__engageAxeRun lets teardown wait for the last page's run.
AXE_ON_LOAD = """
window.addEventListener("load", () => {
  if (window !== window.top || document.contentType !== "text/html" || !window.axe) { return; }
  window.__engageAxeRun = new Promise((resolve) => setTimeout(resolve, 0))
    .then(() => window.axe.run(document, AXE_OPTIONS))
    .then((results) => {
      const failing = results.violations
        .filter((v) => ["serious", "critical"].includes(v.impact))
        .map((v) => `[${v.impact}] ${v.id} on ${location.pathname}${location.search}: ${v.help}; `
          + `elements: ${v.nodes.map((n) => n.target.join(" ")).slice(0, 4).join("; ")}`);
      if (failing.length) { window.__engageAxeFinding(failing); }
    })
    .catch(() => null);
});
""".replace("AXE_OPTIONS", json.dumps(AXE_RUN_OPTIONS))
# Reports CSP violations to the test through a binding, whatever Chromium prints to the console.
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.__engageCspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline code"} `
    + `on ${event.documentURI} (${event.sourceFile || "?"}:${event.lineNumber})`
  );
});
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect browser tests on every database backend but SQLite, to keep runtime down."""
    kept, deselected = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("database_url") if callspec else None
        if item.get_closest_marker("browser") and backend not in (None, BROWSER_BACKEND):
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def _browser_required() -> bool:
    """True when a missing browser must fail the run (CI sets ENGAGE_REQUIRE_BROWSER=1)."""
    value = os.environ.get("ENGAGE_REQUIRE_BROWSER", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def _unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine; fail where the browser is required."""
    if _browser_required():
        pytest.fail(f"{reason}, and ENGAGE_REQUIRE_BROWSER is set", pytrace=False)
    pytest.skip(f"{reason} (set ENGAGE_REQUIRE_BROWSER=1 to make this a failure)")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium, started once for the session."""
    if not CHROMIUM.exists():
        _unavailable(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@dataclass
class LiveServer:
    """The app served over HTTP on 127.0.0.1."""

    url: str  # e.g. http://127.0.0.1:41234, without a trailing slash


@pytest.fixture
def live_server(app: Flask) -> Iterator[LiveServer]:
    """Serve ``app`` on a free port in a daemon thread; emailed links point at it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    live = LiveServer(f"http://127.0.0.1:{server.server_port}")
    app.config["BASE_URL"] = live.url
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="engage-live-server",
        daemon=True,
    )
    thread.start()
    try:
        yield live
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class PageProblems:
    """What the browser complained about while a test ran: console errors, page errors, CSP."""

    console_errors: list[tuple[str, str]] = field(default_factory=list)  # (text, url)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)
    # main-frame URL -> every status it answered with (one URL may answer 400, then 302)
    document_statuses: dict[str, set[int]] = field(default_factory=dict)
    # serious and critical axe-core findings on the pages loaded
    axe_findings: list[str] = field(default_factory=list)

    def assert_none(self, *, allow_document_statuses: frozenset[int] = frozenset()) -> None:
        """Fail on any problem so far.

        :param allow_document_statuses: HTTP statuses the test expects for whole pages (a form
            shown again with errors answers 400); Chromium logs those as console errors too.
        """
        errors = [
            f"{text} ({url})"
            for text, url in self.console_errors
            if not (
                text.startswith("Failed to load resource")
                and self.document_statuses.get(url, set()) & allow_document_statuses
            )
        ]
        assert not errors, f"console errors: {errors}"
        assert not self.page_errors, f"uncaught page errors: {self.page_errors}"
        assert not self.csp_violations, f"CSP violations: {self.csp_violations}"
        assert not self.axe_findings, "axe-core findings:\n" + "\n".join(self.axe_findings)


@pytest.fixture
def page_problems() -> PageProblems:
    """The console errors, page errors and CSP violations seen by this test's page."""
    return PageProblems()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, as shipped inside the axe-playwright-python wheel."""
    from axe_playwright_python.sync_playwright import Axe

    return Axe().axe_script


def _wait_for_axe(tab: Any) -> None:
    """Let the last page's axe run finish (a page closing mid-run is simply not checked)."""
    with contextlib.suppress(Exception):  # the page navigated or closed: nothing to wait for
        tab.evaluate("() => window.__engageAxeRun || null")


@pytest.fixture
def page(
    browser: Any, live_server: LiveServer, page_problems: PageProblems, axe_source: str
) -> Iterator[Any]:
    """A fresh browser tab (own cookies) on the live server, watched for problems; axe-core
    checks each page it loads, and a serious or critical finding fails the test."""
    context = browser.new_context(base_url=live_server.url)
    try:
        context.set_default_timeout(10_000)
        context.expose_binding(
            "__engageCspViolation",
            lambda _source, detail: page_problems.csp_violations.append(detail),
        )
        context.expose_binding(
            "__engageAxeFinding",
            lambda _source, findings: page_problems.axe_findings.extend(findings),
        )
        context.add_init_script(CSP_LISTENER)
        context.add_init_script(axe_source)
        context.add_init_script(AXE_ON_LOAD)
        tab = context.new_page()

        def on_console(message: Any) -> None:
            if message.type == "error":
                page_problems.console_errors.append((message.text, message.location.get("url", "")))

        def on_response(response: Any) -> None:
            if response.request.resource_type == "document" and response.frame == tab.main_frame:
                page_problems.document_statuses.setdefault(response.url, set()).add(response.status)

        tab.on("console", on_console)
        tab.on("pageerror", lambda error: page_problems.page_errors.append(str(error)))
        tab.on("response", on_response)
        yield tab
        _wait_for_axe(tab)
    finally:
        context.close()
    if page_problems.axe_findings:
        pytest.fail(
            "axe-core found serious or critical problems:\n"
            + "\n".join(dict.fromkeys(page_problems.axe_findings)),
            pytrace=False,
        )
