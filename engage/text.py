"""User-supplied rich text: Markdown rendered, then sanitised with bleach to a fixed allow-list."""

from __future__ import annotations

import bleach
import markdown as markdown_lib
from bleach.linkifier import Linker
from markupsafe import Markup

ALLOWED_TAGS = frozenset({"p", "br", "em", "strong", "ul", "ol", "li", "a"})
ALLOWED_ATTRIBUTES = {"a": ["href", "title", "rel"]}
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto"})


def _link_rel(attrs: dict, new: bool = False) -> dict:
    """Every link gets ``rel="nofollow noopener"`` (and only http(s) or mailto targets)."""
    attrs[(None, "rel")] = "nofollow noopener"
    return attrs


_linker = Linker(callbacks=[_link_rel], skip_tags={"code", "pre"})


def render_markdown(source: str) -> Markup:
    """Render ``source`` Markdown to safe HTML: paragraphs, emphasis, lists and links only.

    Raw HTML in the source is escaped or stripped; images, scripts, styles and event
    attributes never survive.
    """
    html = markdown_lib.markdown(source or "", extensions=[], output_format="html")
    cleaned = bleach.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        protocols=ALLOWED_PROTOCOLS,
        strip=True,
        strip_comments=True,
    )
    return Markup(_linker.linkify(cleaned))  # noqa: S704 - sanitised by bleach just above
