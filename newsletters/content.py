"""A newsletter's message: Markdown body to sanitised HTML and a text part, with placeholders
for what differs per recipient.

One send is rendered once, with placeholders; each recipient's name and links replace them
(SendGrid substitutions in a batch, :func:`personalise` for a preview or a test send). The name
has an HTML-escaped placeholder for the HTML part and a plain one for the text part, so a name
like ``<b>`` can never become markup. Staff write ``{name}`` in the body where the recipient's
name goes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from flask import render_template
from markupsafe import Markup, escape

from engage import mail
from engage.text import render_markdown

# Placeholders SendGrid replaces per personalization (and personalise() locally).
NAME_TEXT = "-name-"
NAME_HTML = "-name_html-"
UNSUBSCRIBE_URL = "-unsubscribe_url-"
PREFERENCES_URL = "-preferences_url-"
PERSONAL_FIELD = "{name}"

_TAGS = re.compile(r"<[^>]+>")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class RenderedNewsletter:
    """One send's message with placeholders in place of the per-recipient parts."""

    subject: str
    preheader: str
    html: str
    text: str


def markdown_to_text(source: str) -> str:
    """A readable text part from the Markdown body: the sanitised HTML without its tags, with
    links written out."""
    html = str(render_markdown(source))
    html = re.sub(r'<a [^>]*href="([^"]*)"[^>]*>(.*?)</a>', r"\2 (\1)", html)
    html = re.sub(r"</(p|li|ul|ol)>|<br\s*/?>", "\n", html)
    html = re.sub(r"<li>", "- ", html)
    text = _TAGS.sub("", html)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#39;", "'")):
        text = text.replace(entity, char)
    text = text.replace("&amp;", "&")
    return _BLANK_LINES.sub("\n\n", text).strip()


def render_newsletter(
    *, subject: str, preheader: str, body_markdown: str, kind_label: str, archive_url: str | None
) -> RenderedNewsletter:
    """Render one send (needs an app context for the email templates)."""
    body_html = str(render_markdown(body_markdown)).replace(PERSONAL_FIELD, NAME_HTML)
    body_text = markdown_to_text(body_markdown).replace(PERSONAL_FIELD, NAME_TEXT)
    context = {
        "subject": subject,
        "preheader": preheader,
        "kind_label": kind_label,
        "archive_url": archive_url,
        "body_html": Markup(body_html),  # noqa: S704 - sanitised by render_markdown
        "body_text": body_text,
        "name_html": NAME_HTML,
        "name_text": NAME_TEXT,
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "preferences_url": PREFERENCES_URL,
    }
    return RenderedNewsletter(
        subject=subject,
        preheader=preheader,
        html=render_template("newsletters/email/newsletter.html", **context),
        text=render_template("newsletters/email/newsletter.txt", **context),
    )


def unsubscribe_url(base_url: str, token: str) -> str:
    """The one-click unsubscribe page for ``token``."""
    return f"{base_url.rstrip('/')}/newsletters/unsubscribe/{quote(token, safe='.-_')}"


def preferences_url(base_url: str) -> str:
    """The subscription preferences page (sign-in for account holders)."""
    return f"{base_url.rstrip('/')}/newsletters/preferences"


def list_unsubscribe_headers(
    base_url: str, token: str, mailto: str | None, url: str | None = None
) -> dict[str, str]:
    """RFC 2369 / RFC 8058 headers: an https one-click link and, when configured, a mailto.

    :param url: the unsubscribe link, when the caller already made it.
    """
    links = [f"<{url or unsubscribe_url(base_url, token)}>"]
    if mailto:
        links.append(f"<mailto:{mailto}?subject=unsubscribe%20{quote(token, safe='.-_')}>")
    return {
        "List-Unsubscribe": ", ".join(links),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def substitutions(name: str, base_url: str, token: str, url: str | None = None) -> dict[str, str]:
    """What replaces the placeholders for one recipient (``url``: the unsubscribe link, when
    the caller already made it)."""
    return {
        NAME_TEXT: name,
        NAME_HTML: str(escape(name)),
        UNSUBSCRIBE_URL: url or unsubscribe_url(base_url, token),
        PREFERENCES_URL: preferences_url(base_url),
    }


def personalise(
    rendered: RenderedNewsletter,
    *,
    to: str,
    name: str,
    base_url: str,
    token: str,
    mailto: str | None = None,
) -> mail.Message:
    """One recipient's message (a preview or a test send), placeholders replaced."""
    batch = mail.Batch(
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        recipients=[
            mail.BatchRecipient(
                to=to,
                substitutions=substitutions(name, base_url, token),
                headers=list_unsubscribe_headers(base_url, token, mailto),
            )
        ],
    )
    return batch.message_for(batch.recipients[0])
