"""Generated input to every form, API endpoint and query page: never a 500, and never stored
script that renders live.

The endpoints come from the app's URL map, so routes added later are covered without editing
this file (a test checks that every POST rule is covered or excluded with a reason). Who may use
an endpoint, and the rows its URL arguments point at, come from ``tests/test_permissions.py``:
its ``ACCESS`` table and its ``world``. When nobody in the table may use an endpoint (a
proposal's proposer, a topic's author, a custodian of the world's registry), the test finds the
world's own account that may, by trying each with an empty post.

Each form's fields are read from the page that shows it (the endpoint's own page, else the
nearest page above it in the URL, else any page of that part of the site), with the values the page
offers (hidden state, options); a form no page of the world shows (a button for another state,
a link from an email) is read from its view's code: the WTForms classes it names and the
``request.form`` names it reads. Every field is first tried with spaces only, NUL and -1, the
others filled plainly; then Hypothesis posts, with a valid CSRF token: one field hostile and the
others as a person would fill them; every field hostile; or unknown extra fields. Hostile values
are script and HTML carrying a marker, control characters, CR/LF, NUL, bidi overrides, very long
text, other scripts and emoji, numbers and dates as text, and emptiness. The JSON API gets
bodies built from its OpenAPI description, with a real token. Pages that take query arguments
(their GET forms, their page links, the ``request.args`` their view reads) get generated query
strings.

After every request: no 5xx (the unconfigured webhook's 503 aside); the answer, the page a
redirect leads to, and afterwards every page the poster and staff may open show no live element
carrying a marker (a ``<script>``, an event handler, a ``javascript:`` link…); escaped markers
are fine. Examples are derandomised (the same in CI every run); fewer run on PostgreSQL, which
re-reads only the pages the posts led to.

The run ends with a summary line (endpoints, requests, how many were taken or refused);
``PROPERTY_TEST_VERBOSE=1`` adds each endpoint's account and fields; ``PROPERTY_TEST_SCALE=5``
runs five times the examples (a deeper search by hand).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from flask_wtf import FlaskForm
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict
from werkzeug.routing import Rule
from wtforms.fields.core import UnboundField

from engage.accounts.models import CustodianStatus, Role, User
from engage.app import create_app
from engage.db import Database
from engage.timeutil import utcnow
from engage.topics.models import Topic
from governance import tokens as governance_tokens
from governance.models import Proposal
from tests import test_permissions as permissions
from tests.conftest import PASSWORD, csrf_token, sign_in
from tests.test_permissions import (
    ACCESS,
    ANONYMOUS,
    FORBIDDEN,
    NOT_ALLOWED,
    NOT_FOUND,
    OK,
    SIGN_IN,
    VIEWER_ACCOUNTS,
    World,
    _outcome,
    _url,
)

# The access table's rows (accounts, a registry, a topic, a proposal…): a fixture.
world = permissions.world

# Examples per endpoint (and per query page), by database: SQLite gets the long pass.
# PROPERTY_TEST_SCALE multiplies them for a deeper search by hand (CI keeps 1).
SCALE = max(1, int(os.environ.get("PROPERTY_TEST_SCALE") or 1))
EXAMPLES = {"sqlite": 20 * SCALE, "postgresql": 5 * SCALE}
QUERY_EXAMPLES = {"sqlite": 12 * SCALE, "postgresql": 3 * SCALE}
# Whether every page the poster and staff may open is re-read after an endpoint's examples.
# Escaping is the templates' and does not depend on the database: PostgreSQL re-reads only the
# pages the posts led to (its pass is for what the database refuses: NUL, lengths, overflows).
SWEEP_EVERY_PAGE = {"sqlite": True, "postgresql": False}

# POST endpoints not fuzzed, and why.
EXCLUDED = {
    "auth.sign_out": "takes no input and ends the session; tests/test_permissions.py checks it",
}
# Answers of 5xx that are the design, not a failure: the event webhook refuses everything
# while no verification key is configured.
DESIGNED_5XX = {"newsletters_hooks.sendgrid_events": {503}}
API_PREFIX = "governance_api."
API_BASE = "/api/v1"
# Answers that mean "not for you" (the empty-post probe of an account).
REFUSED = {FORBIDDEN, NOT_FOUND, NOT_ALLOWED, SIGN_IN, 401}
# Which account uses an endpoint when several may: the first of these the table allows.
POST_PREFERENCE = (ANONYMOUS, "participant", "clinician", "organisation", "custodian", "staff")
# Query pages are read by the account that sees most.
GET_PREFERENCE = ("staff", "participant", "clinician", "organisation", "custodian", ANONYMOUS)
# At most this many pages found through redirects (and the links under them) are re-read.
MAX_FOLLOWED_PAGES = 30

MARKER = "xssmk"

# What the request counts of the run are printed from.
STATS: Counter[str] = Counter()
ENDPOINTS: set[str] = set()
NOTES: dict[str, str] = {}
# Per endpoint: how many generated requests were taken (2xx, or a redirect elsewhere than to
# sign in) and how many refused (4xx).
ANSWERS: defaultdict[str, Counter[str]] = defaultdict(Counter)
# One entry per answer that showed generated markup (escaped, or the check failed).
MARKED_PAGES: list[int] = []


# The plan: every rule of the URL map ------------------------------------------------------
def _url_map_rules() -> list[Rule]:
    """The app's URL rules (static files aside), read from an app that never opens its
    database."""
    app = create_app({"ENGAGE_CONFIG": "testing", "DATABASE_URL": "sqlite://"})
    return [r for r in app.url_map.iter_rules() if r.endpoint != "static"]


RULES = _url_map_rules()
POST_ENDPOINTS = sorted(
    {r.endpoint for r in RULES if "POST" in (r.methods or ())} - EXCLUDED.keys()
)
API_GET_ENDPOINTS = sorted(
    {
        r.endpoint
        for r in RULES
        if r.endpoint.startswith(API_PREFIX) and "POST" not in (r.methods or ())
    }
)


def _get_viewer(endpoint: str) -> str | None:
    access = ACCESS.get(endpoint)
    if access is None:
        return None
    return next((v for v in GET_PREFERENCE if access.get.get(v) == OK), None)


QUERY_PAGE_VIEWERS = sorted(
    {
        viewer
        for r in RULES
        if not r.endpoint.startswith(API_PREFIX)
        and "GET" in (r.methods or ())
        and (viewer := _get_viewer(r.endpoint)) is not None
    }
)


# Reading pages ------------------------------------------------------------------------------
@dataclass
class FormField:
    """One named control of a form: its kind, the values the page offers, and what a browser
    sends when nobody touches it."""

    name: str
    kind: str
    offered: list[str] = field(default_factory=list)
    default: list[str] = field(default_factory=list)
    multiple: bool = False


@dataclass
class PageForm:
    """A form of a page: its method, where it goes (path and query) and its controls."""

    method: str
    action: str
    fields: dict[str, FormField] = field(default_factory=dict)

    def add(self, name: str, kind: str, value: str | None, chosen: bool) -> FormField:
        """Note a control (radio buttons and checkboxes of one name are one field)."""
        control = self.fields.setdefault(name, FormField(name, kind))
        if value is not None:
            control.offered.append(value)
            if chosen:
                control.default.append(value)
        if kind == "checkbox" and len(control.offered) > 1:
            control.multiple = True
        return control


class PageParser(HTMLParser):
    """The forms of a page and its links."""

    def __init__(self, url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.url = url
        self.forms: list[PageForm] = []
        self.links: list[str] = []
        self._form: PageForm | None = None
        self._select: FormField | None = None
        self._option: tuple[str | None, bool] | None = None
        self._option_text = ""
        self._textarea: FormField | None = None
        self._textarea_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "a" and a.get("href"):
            self.links.append(urljoin(self.url, a["href"]))
        if tag == "form":
            target = urlsplit(urljoin(self.url, a.get("action") or self.url))
            action = target.path + (f"?{target.query}" if target.query else "")
            self._form = PageForm((a.get("method") or "get").lower(), action)
            self.forms.append(self._form)
            return
        form, name = self._form, a.get("name")
        if form is None or not name:
            if tag == "option" and self._select is not None:
                self._option, self._option_text = (a.get("value"), "selected" in a), ""
            return
        if tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "image", "reset", "file"):
                if kind == "submit" and "value" in a:
                    form.add(name, "button", a["value"], False)
                return
            chosen = kind not in ("radio", "checkbox") or "checked" in a
            value = a.get("value", "on" if kind in ("radio", "checkbox") else "")
            form.add(name, kind, value, chosen)
        elif tag == "select":
            self._select = form.add(name, "select", None, False)
            self._select.multiple = "multiple" in a
        elif tag == "textarea":
            self._textarea, self._textarea_text = form.add(name, "textarea", None, False), ""
        elif tag == "button" and "value" in a:
            form.add(name, "button", a["value"], False)

    def handle_data(self, data: str) -> None:
        if self._option is not None:
            self._option_text += data
        if self._textarea is not None:
            self._textarea_text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "option" and self._option is not None and self._select is not None:
            value, chosen = self._option
            value = self._option_text.strip() if value is None else value
            self._select.offered.append(value)
            if chosen:
                self._select.default.append(value)
            self._option = None
        elif tag == "select" and self._select is not None:
            if not self._select.default and self._select.offered and not self._select.multiple:
                self._select.default.append(self._select.offered[0])
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            # A newline right after <textarea> is not part of its text.
            text = self._textarea_text.removeprefix("\r").removeprefix("\n")
            self._textarea.offered.append(text)
            self._textarea.default.append(text)
            self._textarea = None
        elif tag == "form":
            self._form = None


def read_page(url: str, html: str) -> PageParser:
    """The forms and links of ``html``, served at ``url``."""
    parser = PageParser(url)
    parser.feed(html)
    parser.close()
    return parser


# Elements that run or load something: a marker inside one means the input went live.
LIVE_TAGS = set(
    "script iframe frame frameset object embed applet style link meta base svg math".split()
) | {"template"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href", "data", "srcdoc", "poster"}
SCHEME_NOISE = re.compile(r"[\x00-\x20]")


class LiveMarkers(HTMLParser):
    """Elements of a page in which a marker is live: inside a script-like element, in an event
    handler, or in a ``javascript:``/``data:`` address. Escaped text never shows up here."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._raw: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if MARKER in tag:
            self.found.append(f"<{tag}> element")
        for name, value in attrs:
            value = value or ""
            if MARKER in name:
                self.found.append(f"<{tag} {name}> attribute")
            if MARKER not in value:
                continue
            scheme = SCHEME_NOISE.sub("", value).lower()
            if tag in LIVE_TAGS:
                self.found.append(f"<{tag} {name}={value[:80]!r}>")
            elif name.startswith("on"):
                self.found.append(f"<{tag} {name}={value[:80]!r}> (event handler)")
            elif name in URL_ATTRIBUTES and scheme.startswith(
                ("javascript:", "data:", "vbscript:")
            ):
                self.found.append(f"<{tag} {name}={value[:80]!r}> (script address)")
        if tag in ("script", "style", "template", "iframe", "noscript", "xmp"):
            self._raw.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._raw and self._raw[-1] == tag:
            self._raw.pop()

    def handle_data(self, data: str) -> None:
        if self._raw and self._raw[-1] in ("script", "style", "template") and MARKER in data:
            self.found.append(f"<{self._raw[-1]}> containing {data.strip()[:80]!r}")


def live_markers(html: str) -> list[str]:
    """Where a marker is live in ``html`` (empty when every marker is escaped text)."""
    if MARKER not in html:
        return []
    MARKED_PAGES.append(1)
    parser = LiveMarkers()
    parser.feed(html)
    parser.close()
    return parser.found


# Generated values -----------------------------------------------------------------------------
SCRIPT_PAYLOADS = (
    "<script>{m}()</script>",
    '"><script>{m}()</script>',
    "'><img src=x onerror={m}()>",
    '<svg onload="{m}()">',
    '<a href="javascript:{m}()">a link</a>',
    "[a link](javascript:{m}())",
    "[a link](JaVaScRiPt&#58;{m}())",
    "javascript:{m}()",
    '<iframe srcdoc="<script>{m}()</script>"></iframe>',
    "<scr<script>ipt>{m}()</script>",
    '<p onmouseover="{m}()">hover</p>',
    "<style>@import '{m}';</style>",
    '<img src="x" alt="{m}" onerror="{m}()">',
    "{{{{ {m} }}}}{{% {m} %}}",
    "<math><mtext><table><mglyph><style><img src=x onerror={m}()>",
    '<form action="javascript:{m}()"><button>go</button></form>',
)
ODD_CHARACTERS = (
    *"\x00\x01\x08\x1b\x7f\r\n\t\x0b\x0c\u0085\u2028\u2029\u202e\u202d\u2066\u2069",
    *"\u200b\u200d\ufeff\ufffd\u0301İßﬁ😀🧠%_\\'\"<&;",
    "\r\n",
    "👩🏽\u200d⚕️",
    "שלום",
    "سام",
    "中文",
    "--",
)


# Short values that broke forms before: spaces only, NUL, a line break, a bidi override, signs.
CLASSIC_VALUES = (" ", "\x00", "\r\n", "\u202e", "-1", "0", "[]", "{}", "null")
CLASSICS = st.sampled_from(CLASSIC_VALUES)
# Tried in every field of every form in turn, the others filled plainly, before the generated
# examples: spaces only (a required check that lets them through), NUL, a negative number.
EVERY_FIELD_TRIES = (" ", "\x00", "-1")


def markers() -> st.SearchStrategy[str]:
    """A marker (the same prefix, a number to tell examples apart)."""
    return st.integers(0, 99_999).map(lambda n: f"{MARKER}{n}")


def hostile_text() -> st.SearchStrategy[str]:
    """Text a hostile or unlucky person might send in any field."""
    script = st.tuples(st.text(max_size=8), st.sampled_from(SCRIPT_PAYLOADS), markers()).map(
        lambda t: t[0] + t[1].format(m=t[2])
    )
    odd = st.lists(
        st.one_of(st.sampled_from(ODD_CHARACTERS), st.text(min_size=1, max_size=3)),
        max_size=12,
    ).map("".join)
    long = st.tuples(
        st.sampled_from((41, 81, 101, 151, 255, 256, 501, 1001, 5001, 10_001, 65_537)),
        st.sampled_from(("x", "é", "🧠", " ", "<")),
        markers(),
    ).map(lambda t: t[2] + t[1] * t[0])
    numbers = st.one_of(
        st.integers().map(str),
        st.floats().map(str),
        st.sampled_from(
            ("-1", "0", "2147483648", "9" * 40, "1e999", "NaN", "-0", "0x1f", "1_000", " 7 ", "٣")
        ),
    )
    dates = st.one_of(
        st.dates().map(str),
        st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M")),
        st.sampled_from(
            ("2026-02-30", "0000-00-00", "9999-12-31T23:59", "2026-13-01", "yesterday", "1/2/3")
        ),
    )
    blank = st.sampled_from(("", " ", "\t\n ", "\u00a0", "\u3000"))
    return st.one_of(script, odd, long, numbers, dates, blank, CLASSICS, st.text(max_size=40))


# What a person types into a control whose name says what it wants (the first hint that is
# part of the name wins).
NAME_HINTS = (
    ("email", "someone@example.org"),
    ("code", "NEWCODE1"),
    ("link", "https://example.org/"),
    ("url", "https://example.org/"),
    ("cron", "0 9 * * 1"),
    ("timezone", "Europe/Stockholm"),
    ("title", "Does swimming ease fatigue in people with MS?"),
)


def typical_value(control: FormField) -> str:
    """What a person would type into an empty control of this kind."""
    soon = utcnow() + timedelta(days=30)
    by_kind = {
        "email": "someone@example.org",
        "password": PASSWORD,
        "number": "1",
        "range": "1",
        "date": soon.date().isoformat(),
        "datetime-local": soon.strftime("%Y-%m-%dT%H:%M"),
        "time": "12:00",
        "url": "https://example.org/",
        "tel": "+46 8 123 456",
        "textarea": "A few plain words, written as a person would write them.",
    }
    if control.kind in ("text", "textarea", "search"):
        hint = next((value for part, value in NAME_HINTS if part in control.name), None)
        if hint is not None:
            return hint
    return by_kind.get(control.kind, "Plain words")


def plain_fill(control: FormField) -> list[str]:
    """What a browser sends for the control when a person fills the form in plainly: the
    page's values, the first choice where none is made, typical text in empty boxes."""
    first_choice = [v for v in control.offered if v][:1]
    if control.kind in ("hidden",):
        return list(control.default)
    if control.kind in ("checkbox", "radio", "select", "button"):
        chosen = [v for v in control.default if v]
        return chosen or first_choice
    if control.default and control.default[0]:
        return list(control.default)
    return [typical_value(control)]


def field_values(control: FormField) -> st.SearchStrategy[list[str] | None]:
    """Values to send for one control (None: leave it out)."""
    offered = sorted({v for v in control.offered if v})
    hostile = hostile_text().map(lambda v: [v])
    options: list[st.SearchStrategy[Any]] = [hostile, hostile, st.none()]
    if offered:
        options.append(st.sampled_from(offered).map(lambda v: [v]))
        options.append(st.lists(st.sampled_from(offered), min_size=2, max_size=4))
    options.append(st.just([typical_value(control)]))
    options.append(st.lists(hostile_text(), min_size=2, max_size=3))  # a field sent twice
    return st.one_of(options)


EXTRA_NAMES = ("id", "user_id", "role", "is_active", "next", "email", "status", "page", "_method")


@st.composite
def form_inputs(draw: Any, fields: dict[str, FormField]) -> list[tuple[str, str]]:
    """The name/value pairs of one post: one control hostile and the others filled plainly,
    every control generated, or unknown extra fields on a plain fill."""
    names = sorted(fields)
    values: dict[str, list[str] | None] = {n: plain_fill(fields[n]) for n in names}
    mode = draw(st.sampled_from(("one", "every", "extra") if names else ("extra",)))
    if mode == "one":
        name = draw(st.sampled_from(names))
        values[name] = draw(field_values(fields[name]))
    elif mode == "every":
        for name in names:
            values[name] = draw(field_values(fields[name]))
    else:
        extra = draw(
            st.dictionaries(
                st.one_of(st.sampled_from(EXTRA_NAMES), st.text(min_size=1, max_size=12)),
                hostile_text(),
                min_size=1,
                max_size=3,
            )
        )
        values.update({k: [v] for k, v in extra.items() if k != "csrf_token"})
    return [(name, value) for name, vs in values.items() if vs is not None for value in vs]


def json_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for a JSON property: what its schema allows, and anything else."""
    anything = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), hostile_text()),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=6,
    )
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), st.sampled_from(schema["enum"]), anything)
    return anything


@st.composite
def json_bodies(draw: Any, properties: dict[str, dict[str, Any]]) -> bytes:
    """A request body: a JSON object built from the schema's properties (some generated, some
    left out, some unknown), now and then something that is no JSON object at all."""
    shape = draw(st.sampled_from(("object", "object", "object", "other")))
    if shape == "other":
        return draw(
            st.one_of(
                st.binary(max_size=64),
                st.sampled_from((b"", b"[]", b"null", b'"text"', b"{", b'{"a": NaN}', b"[" * 5000)),
                hostile_text().map(lambda t: t.encode("utf-8", "surrogatepass")),
            )
        )
    body = {}
    for name, schema in properties.items():
        if draw(st.booleans()) or "enum" in schema:
            body[name] = draw(json_values(schema))
    if draw(st.integers(0, 4)) == 0:
        body[draw(st.text(max_size=10))] = draw(json_values({}))
    return json.dumps(body, allow_nan=True).encode()


def query_values(fields: dict[str, FormField]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Query strings for a page: its own arguments, generated, and a page number."""
    pages = st.one_of(
        st.integers(-5, 10**12).map(str), hostile_text(), st.sampled_from(("1", "2", "0"))
    )
    with_page = {**fields, "page": FormField("page", "number")} if "page" not in fields else fields
    return st.tuples(form_inputs(with_page), st.lists(pages, max_size=1)).map(
        lambda t: t[0] + [("page", p) for p in t[1]]
    )


# Requests and checks -------------------------------------------------------------------------
class ErrorLog(logging.Handler):
    """The tracebacks the app logged (its 500 page logs the exception, never the body)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> str:
        """The last logged traceback, shortened to its innermost frames, and forget them."""
        if not self.records:
            return ""
        record = self.records[-1]
        self.records.clear()
        if not record.exc_info:
            return record.getMessage()
        lines = traceback.format_exception(*record.exc_info)
        return "".join(lines[-6:])


@pytest.fixture
def error_log() -> Iterator[ErrorLog]:
    """Collect what the app logs as errors while the test runs."""
    handler = ErrorLog()
    logger = logging.getLogger("engage")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _local(location: str) -> str | None:
    parts = urlsplit(location)
    if parts.netloc not in ("", "localhost"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


@dataclass
class Browser:
    """A signed-in (or anonymous) browser: its client, its CSRF token, and the pages to re-read
    afterwards."""

    label: str
    client: FlaskClient
    errors: ErrorLog
    endpoint: str
    allowed_5xx: set[int] = field(default_factory=set)
    followed: list[str] = field(default_factory=list)
    token: str | None = None

    def csrf(self, renew: bool = False) -> str:
        """The session's CSRF token (read once; again after the session changed)."""
        if self.token is None or renew:
            self.token = csrf_token(self.client)
            STATS["other GET requests"] += 1
        return self.token

    def check(self, response: Any, what: str) -> None:
        """No 5xx and no live marker in the answer; a local redirect is followed once."""
        status = response.status_code
        assert status < 500 or status in self.allowed_5xx, (
            f"{what} as {self.label}: {status}\n{self.errors.take()}"
        )
        self._no_live_markers(response, what)
        location = response.headers.get("Location")
        target = _local(location) if 300 <= status < 400 and location else None
        taken = status < 300 or (target is not None and not target.startswith("/sign-in"))
        ANSWERS[self.endpoint][("taken" if taken else "refused")] += 1
        if target:
            page = self.client.get(target)
            STATS["pages read after a redirect"] += 1
            assert page.status_code < 500, (
                f"{what} as {self.label} → GET {target}: {page.status_code}\n{self.errors.take()}"
            )
            self._no_live_markers(page, f"{what} → GET {target}")
            if page.status_code == 200 and target not in self.followed:
                # The page and the pages under it (a new campaign's preview, its edit page).
                self.followed.append(target)
                under = urlsplit(target).path.rstrip("/") + "/"
                links = read_page(target, page.get_data(as_text=True)).links
                self.followed += [
                    path
                    for link in links
                    if (path := _local(link)) and path.startswith(under) and path != target
                ]

    def _no_live_markers(self, response: Any, what: str) -> None:
        if response.mimetype != "text/html":
            return
        found = live_markers(response.get_data(as_text=True))
        assert not found, f"{what} as {self.label}: live input in the page: {found}"

    def post_form(self, url: str, pairs: list[tuple[str, str]]) -> Any:
        """Post ``pairs`` with the session's CSRF token, as a browser form would."""
        response = self.client.post(url, data=MultiDict([("csrf_token", self.csrf()), *pairs]))
        if response.status_code == 400 and b"form expired" in response.data:
            response = self.client.post(
                url, data=MultiDict([("csrf_token", self.csrf(renew=True)), *pairs])
            )
        STATS["form posts"] += 1
        return response

    def sweep(self, urls: list[str]) -> list[str]:
        """Read ``urls``; the problems found (5xx, live markers)."""
        problems = []
        for url in dict.fromkeys(urls):
            response = self.client.get(url)
            STATS["pages re-read for stored input"] += 1
            if response.status_code >= 500:
                problems.append(f"GET {url} as {self.label}: {response.status_code}")
                problems.append(self.errors.take())
            elif response.mimetype == "text/html":
                found = live_markers(response.get_data(as_text=True))
                if found:
                    problems.append(f"GET {url} as {self.label}: live input {found}")
        return problems


def _signed_in(app: Flask, user: User | None) -> FlaskClient:
    client = app.test_client()
    if user is not None:
        sign_in(client, user)
    return client


def _backend(app: Flask) -> str:
    return "postgresql" if app.config["DATABASE_URL"].startswith("postgresql") else "sqlite"


def _settings(app: Flask, examples: dict[str, int], *, shrink: bool = True) -> settings:
    return settings(
        max_examples=examples[_backend(app)],
        phases=[Phase.explicit, Phase.reuse, Phase.generate, *([Phase.shrink] if shrink else [])],
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


@dataclass
class Accounts:
    """The accounts the tests act as: one per role of the table, and the world's own ones that
    may use what the table's accounts may not."""

    app: Flask
    world: World
    make_user: Any
    made: dict[str, User] = field(default_factory=dict)

    def of(self, viewer: str) -> User | None:
        """The account of a table column (None for the anonymous visitor)."""
        if viewer == ANONYMOUS:
            return None
        if viewer not in self.made:
            role, options = VIEWER_ACCOUNTS[viewer]
            self.made[viewer] = self.make_user(role, **options)
        return self.made[viewer]

    def owners(self) -> list[tuple[str, User]]:
        """The world's accounts that own its rows: a custodian of its registry, the author of
        its topic, the proposer of its proposal."""
        if "world custodian" not in self.made:
            self.made["world custodian"] = self.make_user(
                Role.CUSTODIAN,
                registry=self.world.registry,
                custodian_status=CustodianStatus.APPROVED,
            )
        session = Database.new_session(self.app)
        try:
            author = session.get(User, session.get(Topic, self.world.topic_id).author_id)
            proposer_id = session.get(Proposal, self.world.governance["proposal_id"]).proposer_id
            proposer = session.get(User, proposer_id)
            session.expunge_all()
        finally:
            session.close()
        return [
            ("custodian of the world's registry", self.made["world custodian"]),
            ("author of the world's topic", author),
            ("proposer of the world's proposal", proposer),
        ]

    def staff_client(self) -> FlaskClient:
        """A client signed in as staff (who see the most stored text)."""
        return _signed_in(self.app, self.of("staff"))


def _viewable_urls(app: Flask, world: World, viewer: str) -> list[str]:
    """Every page the table says ``viewer`` may open (a 200), with the world's ids."""
    urls = []
    for rule in RULES:
        access = ACCESS.get(rule.endpoint)
        if rule.endpoint.startswith(API_PREFIX) or access is None or "GET" not in rule.methods:
            continue
        if access.get.get(viewer) == OK:
            urls.append(_url(app, rule, world))
    return urls


def _rule_of(endpoint: str) -> Rule:
    return next(r for r in RULES if r.endpoint == endpoint)


def _choose_account(
    app: Flask, world: World, accounts: Accounts, endpoint: str, url: str
) -> tuple[str, FlaskClient]:
    """Who posts to ``endpoint`` (and a client signed in as them): the first account the
    table allows, else the first of the world's owners whose empty post is not refused, else
    a participant (refusals only)."""
    access = ACCESS.get(endpoint)
    assert access is not None, f"{endpoint}: add it to ACCESS in tests/test_permissions.py"
    expectation = access.post or access.get
    for viewer in POST_PREFERENCE:
        if expectation.get(viewer) not in REFUSED:
            return viewer, _signed_in(app, accounts.of(viewer))
    for label, user in accounts.owners():
        # Each account signs in once: staff's authenticator codes work once each.
        client = _signed_in(app, user)
        response = client.post(url, data={"csrf_token": csrf_token(client)})
        STATS["other GET requests"] += 1
        STATS["form posts"] += 1
        if _outcome(response, url) not in REFUSED:
            NOTES[endpoint] = f"used as the {label}"
            return label, client
    NOTES[endpoint] = "nobody in the world may use it: only refusals were exercised"
    return "participant", _signed_in(app, accounts.of("participant"))


def _find_form(
    client: FlaskClient, url: str, candidates: list[str]
) -> tuple[PageForm | None, list[str]]:
    """The post form that goes to ``url``, read from the first of ``candidates`` that shows it
    (forms of one page going there are merged), and the pages that show it."""
    path = urlsplit(url).path
    for page_url in dict.fromkeys(candidates):
        response = client.get(page_url)
        STATS["other GET requests"] += 1
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        page = read_page(page_url, response.get_data(as_text=True))
        matching = [f for f in page.forms if f.method == "post" and urlsplit(f.action).path == path]
        if not matching:
            continue
        merged = PageForm("post", matching[0].action)
        for form in matching:
            for name, control in form.fields.items():
                if name == "csrf_token":
                    continue
                known = merged.fields.setdefault(name, FormField(name, control.kind))
                known.offered += [v for v in control.offered if v not in known.offered]
                known.default = known.default or control.default
                known.multiple = known.multiple or control.multiple
        return merged, [page_url]
    return None, []


def _area(url: str) -> tuple[str, ...]:
    """The part of the site a URL belongs to: its first path segment (two under /staff)."""
    segments = urlsplit(url).path.strip("/").split("/")
    return tuple(segments[: 2 if segments[0] == "staff" else 1])


def _ancestors(url: str) -> list[str]:
    """``url``, then the paths above it (``/topics/5/comment`` → ``/topics/5``, ``/topics``)."""
    path = urlsplit(url).path.rstrip("/")
    found = [url]
    while "/" in path.strip("/"):
        path = path.rsplit("/", 1)[0]
        found.append(path)
    return found


# Fields named in a view's code, for forms no page of the world shows ---------------------------
# A form class a view names (for the query: one it fills from ``request.args``).
FORM_CLASS_NAME = {
    "form": re.compile(r"\b([A-Z]\w*Form)\b"),
    "args": re.compile(r"\b([A-Z]\w*Form)\(\s*request\.args\b"),
}
REQUEST_NAMES = {
    where: re.compile(rf"request\.{where}(?:\.get|\.getlist)?[(\[]\s*[\"'](\w+)[\"']")
    for where in ("form", "args")
}
FIELD_KINDS = {
    "BooleanField": "checkbox",
    "IntegerField": "number",
    "DecimalField": "number",
    "FloatField": "number",
    "DateField": "date",
    "DateTimeLocalField": "datetime-local",
    "DateTimeField": "datetime-local",
    "TextAreaField": "textarea",
    "HiddenField": "hidden",
    "PasswordField": "password",
    "EmailField": "email",
    "SelectField": "select",
    "SelectMultipleField": "select",
    "RadioField": "radio",
    "MultiCheckboxField": "checkbox",
}


def _form_class_fields(form_class: type) -> dict[str, FormField]:
    """The fields a WTForms class declares, with the choices it lists."""
    fields = {}
    for name in dir(form_class):
        unbound = getattr(form_class, name, None)
        if not isinstance(unbound, UnboundField) or name == "csrf_token":
            continue
        kind = FIELD_KINDS.get(unbound.field_class.__name__, "text")
        control = FormField(name, kind, multiple="Multi" in unbound.field_class.__name__)
        listed = unbound.kwargs.get("choices")
        if isinstance(listed, list | tuple):
            control.offered = [str(c.value if hasattr(c, "value") else c[0]) for c in listed]
        elif kind == "checkbox":
            control.offered = ["y"]
        fields[name] = control
    return fields


def source_fields(app: Flask, endpoint: str, where: str) -> dict[str, FormField]:
    """The fields an endpoint's view reads from ``request.<where>`` ("form" or "args"): the
    fields of the WTForms classes it names, and the names it reads directly."""
    view = inspect.unwrap(app.view_functions[endpoint])
    try:
        source = inspect.getsource(view)
    except (OSError, TypeError):
        return {}
    fields: dict[str, FormField] = {}
    scopes = [
        view.__globals__,
        *(vars(m) for m in view.__globals__.values() if inspect.ismodule(m)),
    ]
    for name in dict.fromkeys(FORM_CLASS_NAME[where].findall(source)):
        form_class = next((scope[name] for scope in scopes if name in scope), None)
        if isinstance(form_class, type) and issubclass(form_class, FlaskForm):
            fields.update(_form_class_fields(form_class))
    for name in REQUEST_NAMES[where].findall(source):
        fields.setdefault(name, FormField(name, "text"))
    if where == "args" and "page_arg(" in source:
        fields.setdefault("page", FormField("page", "number"))
    return fields


# The tests ------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print how much the property tests exercised (the closing note quotes it)."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not ENDPOINTS:
        return
    requests = sum(STATS.values())
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(
            f"property tests: {len(ENDPOINTS)} endpoints and query pages exercised with "
            f"{requests} requests ("
            + ", ".join(f"{count} {what}" for what, count in sorted(STATS.items()))
            + ")"
        )
        taken = sum(1 for answers in ANSWERS.values() if answers["taken"])
        reporter.write_line(
            f"  {taken} of {len(ANSWERS)} endpoints took some generated input; "
            f"{sum(a['taken'] for a in ANSWERS.values())} requests taken, "
            f"{sum(a['refused'] for a in ANSWERS.values())} refused; "
            f"{len(MARKED_PAGES)} answers showed generated markup, escaped"
        )
        for endpoint, note in sorted(NOTES.items()):
            answers = ANSWERS.get(endpoint, Counter())
            reporter.write_line(
                f"  {endpoint}: {note} ({answers['taken']} taken, {answers['refused']} refused)"
            )


def test_every_post_rule_is_fuzzed_or_excluded_with_a_reason(app):
    posts = {r.endpoint for r in app.url_map.iter_rules() if "POST" in (r.methods or ())}
    assert posts, "the URL map has no POST rule"
    assert sorted(posts - set(POST_ENDPOINTS) - EXCLUDED.keys()) == []
    assert sorted(EXCLUDED.keys() - posts) == [], "EXCLUDED names endpoints that are gone"
    assert all(reason.strip() for reason in EXCLUDED.values())
    api = {r.endpoint for r in app.url_map.iter_rules() if r.endpoint.startswith(API_PREFIX)}
    assert api and api <= set(POST_ENDPOINTS) | set(API_GET_ENDPOINTS)


def test_the_live_marker_check_finds_live_script_and_passes_escaped_text():
    for live in (
        "<p><script>xssmk1()</script></p>",
        '<img src="x" onerror="xssmk2()">',
        '<a href=" jav&#x09;ascript:xssmk3()">x</a>',
        '<iframe srcdoc="&lt;script&gt;xssmk4()&lt;/script&gt;"></iframe>',
        "<xssmk5>",
    ):
        assert live_markers(live), live
    for escaped in (
        "<p>&lt;script&gt;xssmk1()&lt;/script&gt;</p>",
        '<input value="&quot;&gt;&lt;script&gt;xssmk2()">',
        '<a href="https://example.org/?q=javascript:xssmk3">x</a>',
        "<textarea>&lt;img src=x onerror=xssmk4()&gt;</textarea>",
        '<p title="onerror=xssmk6">x</p>',
    ):
        assert live_markers(escaped) == [], escaped


def test_forms_are_read_with_their_offered_values():
    page = read_page(
        "/topics/5",
        '<form method="post" action="comment?next=/x"><input type="hidden" name="csrf_token"'
        ' value="t"><input type="hidden" name="state" value="abc"><textarea name="body">\nhi'
        '</textarea><select name="kind"><option value="">Any</option><option value="a" selected'
        '>A</option></select><input type="checkbox" name="ids" value="1" checked><input '
        'type="checkbox" name="ids" value="2"><button name="decision" value="approve">Go'
        "</button></form>",
    )
    (form,) = page.forms
    assert form.action == "/topics/comment?next=/x" and form.method == "post"
    assert plain_fill(form.fields["state"]) == ["abc"]
    assert plain_fill(form.fields["body"]) == ["hi"]
    assert plain_fill(form.fields["kind"]) == ["a"]
    assert form.fields["ids"].multiple and plain_fill(form.fields["ids"]) == ["1"]
    assert form.fields["decision"].offered == ["approve"]


def test_the_property_finds_a_planted_500_and_planted_live_html(app, error_log):
    # Two routes with the bugs the property looks for; the same machinery must catch both.
    @app.post("/planted/echo")
    def planted_echo() -> str:
        return f"<p>{request.form.get('body', '')}</p>"  # unescaped, as a careless view would

    @app.post("/planted/crash")
    def planted_crash() -> str:
        if MARKER in request.form.get("body", ""):
            raise RuntimeError("planted")
        return "<p>fine</p>"

    fields = {"body": FormField("body", "textarea", ["hello"], ["hello"])}
    found = {}
    for path in ("/planted/echo", "/planted/crash"):
        browser = Browser("anonymous", app.test_client(), error_log, path)
        with pytest.raises(AssertionError) as failure:
            fuzz_form(app, browser, PageForm("post", path, fields), shrink=False)
        found[path] = str(failure.value)
    assert 'live input in the page: ["<script> containing' in found["/planted/echo"]
    assert "as anonymous: 500" in found["/planted/crash"]
    assert "RuntimeError: planted" in found["/planted/crash"]  # the traceback's summary


def _api_token(app: Flask, user: User) -> str:
    session = Database.new_session(app)
    try:
        issued = governance_tokens.create_token(
            session, session.get(User, user.id), "Property test", utcnow()
        )
        session.commit()
        return issued.secret
    finally:
        session.close()


def _api_properties(client: FlaskClient, rule: Rule) -> dict[str, dict[str, Any]]:
    """The JSON properties the OpenAPI description gives the rule's request body."""
    document = client.get(f"{API_BASE}/openapi.json").get_json()
    STATS["other GET requests"] += 1
    path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix(API_BASE))
    operation = document["paths"].get(path, {}).get("post", {})
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = schema.get("schema", {})
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema.get("properties", {})


def _fuzz_api(
    app: Flask, world: World, accounts: Accounts, browser: Browser, rule: Rule, url: str
) -> None:
    owner = dict(accounts.owners())["custodian of the world's registry"]
    headers = {"Authorization": f"Bearer {_api_token(app, owner)}"}
    browser.label = "the custodian of the world's registry (API token)"
    if "POST" in rule.methods:
        properties = _api_properties(browser.client, rule)
        assert properties, f"{rule.rule}: no request body in the OpenAPI description"

        @_settings(app, EXAMPLES)
        @given(
            body=json_bodies(properties),
            mimetype=st.sampled_from(
                ["application/json"] * 5 + ["text/plain", "application/x-www-form-urlencoded"]
            ),
        )
        def post(body: bytes, mimetype: str) -> None:
            response = browser.client.post(url, data=body, content_type=mimetype, headers=headers)
            STATS["API requests"] += 1
            browser.check(response, f"POST {url}")

        post()
    else:

        @_settings(app, QUERY_EXAMPLES)
        @given(query=query_values({}))
        def get(query: list[tuple[str, str]]) -> None:
            response = browser.client.get(url, query_string=MultiDict(query), headers=headers)
            STATS["API requests"] += 1
            browser.check(response, f"GET {url}")

        get()


def fuzz_form(app: Flask, browser: Browser, form: PageForm, *, shrink: bool = True) -> None:
    """Post generated values of ``form``'s fields to its action; each answer is checked.

    :param shrink: look for the simplest failing input (slower) before failing.
    """

    @_settings(app, EXAMPLES, shrink=shrink)
    @given(pairs=form_inputs(form.fields))
    def post(pairs: list[tuple[str, str]]) -> None:
        response = browser.post_form(form.action, pairs)
        browser.check(response, f"POST {form.action} {pairs!r:.300}")

    for pairs in every_field_tries(form.fields):
        post = example(pairs=pairs)(post)
    post()


def every_field_tries(fields: dict[str, FormField]) -> list[list[tuple[str, str]]]:
    """Plain fills with one field replaced by one of ``EVERY_FIELD_TRIES``, for every field."""
    plain = {name: plain_fill(control) for name, control in fields.items()}
    return [
        [(n, v) for n, vs in {**plain, name: [value]}.items() for v in vs]
        for name in sorted(fields)
        for value in EVERY_FIELD_TRIES
    ]


@pytest.mark.parametrize("endpoint", [*POST_ENDPOINTS, *API_GET_ENDPOINTS])
def test_generated_input_never_fails_or_renders_live(app, world, make_user, error_log, endpoint):
    rule = _rule_of(endpoint)
    url = _url(app, rule, world)
    accounts = Accounts(app, world, make_user)
    ENDPOINTS.add(endpoint)
    if endpoint.startswith(API_PREFIX):
        browser = Browser("", app.test_client(), error_log, endpoint)
        _fuzz_api(app, world, accounts, browser, rule, url)
        staff = Browser("staff", accounts.staff_client(), error_log, endpoint)
        every_page = SWEEP_EVERY_PAGE[_backend(app)]
        problems = staff.sweep(_viewable_urls(app, world, "staff") if every_page else [])
        assert problems == [], "\n".join(problems)
        return

    viewer, client = _choose_account(app, world, accounts, endpoint, url)
    browser = Browser(viewer, client, error_log, endpoint, DESIGNED_5XX.get(endpoint, set()))
    candidates = _ancestors(url) if "GET" in rule.methods else _ancestors(url)[1:]
    form, hosts = _find_form(browser.client, url, candidates)
    if form is None:
        nearby = [u for u in _viewable_urls(app, world, viewer) if _area(u) == _area(url)]
        form, hosts = _find_form(browser.client, url, nearby)
    if form is None:
        # No page of the world shows the form now (a button for another state, a link from an
        # email): its fields are read from the view's code.
        form = PageForm("post", url, source_fields(app, endpoint, "form"))
        if not form.fields:
            NOTES.setdefault(endpoint, "takes no fields: only unknown fields were sent")
    if os.environ.get("PROPERTY_TEST_VERBOSE"):
        NOTES[endpoint] = f"{NOTES.get(endpoint, viewer)}; {form.action} {sorted(form.fields)}"
    fuzz_form(app, browser, form)

    # Stored input must stay escaped wherever it is shown: to the poster and to staff.
    followed = browser.followed[:MAX_FOLLOWED_PAGES]
    every_page = SWEEP_EVERY_PAGE[_backend(app)]
    problems = browser.sweep(
        [*hosts, *followed, *(_viewable_urls(app, world, viewer) if every_page else [])]
    )
    if viewer != "staff" and every_page:
        staff = Browser("staff", accounts.staff_client(), error_log, endpoint)
        problems += staff.sweep([*followed, *_viewable_urls(app, world, "staff")])
    assert problems == [], "\n".join(problems)


def _query_fields(url: str, html: str) -> dict[str, FormField]:
    """The query arguments a page takes: its GET forms' controls that come back to it, and the
    arguments of its links to itself (page numbers, sorting)."""
    page = read_page(url, html)
    path = urlsplit(url).path
    fields: dict[str, FormField] = {}
    for form in page.forms:
        if form.method == "get" and urlsplit(form.action).path == path:
            fields.update(form.fields)
    for link in page.links:
        parts = urlsplit(link)
        if parts.path != path or not parts.query:
            continue
        for name, _, value in (p.partition("=") for p in parts.query.split("&")):
            fields.setdefault(name, FormField(name, "text")).offered.append(value)
    return fields


def _fuzz_query(app: Flask, browser: Browser, url: str, fields: dict[str, FormField]) -> None:
    @_settings(app, QUERY_EXAMPLES)
    @given(query=query_values(fields))
    def get(query: list[tuple[str, str]]) -> None:
        response = browser.client.get(url, query_string=MultiDict(query))
        STATS["query page requests"] += 1
        browser.check(response, f"GET {url} {query!r:.300}")

    for query in every_field_tries(fields):
        get = example(query=query)(get)
    get()


@pytest.mark.parametrize("viewer", QUERY_PAGE_VIEWERS)
def test_generated_query_arguments_never_fail_or_render_live(
    app, world, make_user, error_log, viewer
):
    accounts = Accounts(app, world, make_user)
    browser = Browser(viewer, _signed_in(app, accounts.of(viewer)), error_log, "query pages")
    failures = []
    for rule in RULES:
        if rule.endpoint.startswith(API_PREFIX) or "GET" not in rule.methods:
            continue
        if _get_viewer(rule.endpoint) != viewer:
            continue
        url = _url(app, rule, world)
        response = browser.client.get(url)
        STATS["other GET requests"] += 1
        if response.status_code != 200:
            continue
        fields = {
            **source_fields(app, rule.endpoint, "args"),
            **_query_fields(url, response.get_data(as_text=True)),
        }
        if not fields:
            continue
        ENDPOINTS.add(rule.endpoint)
        browser.endpoint = rule.endpoint
        if os.environ.get("PROPERTY_TEST_VERBOSE"):
            NOTES[rule.endpoint] = f"query page as {viewer}: {sorted(fields)}"
        try:
            _fuzz_query(app, browser, url, fields)
        except Exception as failure:  # noqa: BLE001 - every page is tried; all failures shown
            failures.append(f"{rule.endpoint}: {failure}")
    assert failures == [], "\n\n".join(failures)
