"""Reading pages the way the accessibility tests do: the text a person reads, elements by id,
what engage.js announces, and where focus goes after an action."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit


def text_of(response: Any) -> str:
    """The page's text as a person reads it: tags removed, spaces collapsed."""
    body = response.get_data(as_text=True)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


class _Elements(HTMLParser):
    """Every element's tag and attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {name: value or "" for name, value in attrs}))


def elements(response: Any) -> list[tuple[str, dict[str, str]]]:
    """Every element of the page: (tag, attributes), in document order."""
    parser = _Elements()
    parser.feed(response.get_data(as_text=True))
    return parser.found


def by_id(response: Any, element_id: str) -> dict[str, str]:
    """The attributes of the element with ``element_id`` (fails when there is none)."""
    matches = [attrs for _tag, attrs in elements(response) if attrs.get("id") == element_id]
    assert len(matches) == 1, f"{len(matches)} elements with id {element_id!r}"
    return matches[0]


def announced(response: Any) -> list[str]:
    """The texts the page has engage.js announce (elements marked data-announce)."""
    body = response.get_data(as_text=True)
    found = re.findall(r"<(div|p)[^>]*\sdata-announce[^>]*>(.*?)</\1>", body, re.S)
    return [
        html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", inner))).strip()
        for _, inner in found
    ]


def follow_to(client: Any, response: Any, element_id: str, *, named: bool = False) -> Any:
    """The page ``response`` redirects to, after checking that its address names
    ``element_id`` and that the element takes the focus there (data-return-focus) and, when
    ``named``, has an accessible name."""
    assert response.status_code in (302, 303)
    location = response.headers["Location"]
    assert urlsplit(location).fragment == element_id, location
    page = client.get(location)
    target = by_id(page, element_id)
    assert "data-return-focus" in target
    if named:
        assert target.get("aria-labelledby") or target.get("aria-label"), target
    return page
