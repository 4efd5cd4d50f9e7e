"""Read-only questions about campaigns: the staff list, a campaign's lists, sends and history,
progress and provider-event counts per send, the public archive, and how a campaign reads
(preview).

Counts are one grouped statement per list of sends, whatever its length (no query per row).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import markdown as markdown_lib
import sqlalchemy as sa
from markupsafe import Markup, escape
from sqlalchemy.orm import Session

from engage.accounts import queries as account_queries
from engage.text import ALLOWED_TAGS, render_markdown
from engage.topics import queries as topic_queries
from engage.topics.models import TopicStatus
from newsletters import content
from newsletters.audience import ACCOUNT_FILTERS
from newsletters.models import (
    Campaign,
    CampaignKind,
    CampaignList,
    CampaignStatus,
    CampaignStatusChange,
    Delivery,
    DeliveryStatus,
    ListVisibility,
    MailingList,
    ProviderEvent,
    ProviderEventKind,
    Send,
    SendStatus,
)

CAMPAIGNS_PER_PAGE = 25
ARCHIVE_PER_PAGE = 20
# Topics staff may aim a campaign at: adopted ones (progress reports) and open ones.
AUDIENCE_TOPIC_STATUSES = (TopicStatus.ADOPTED, TopicStatus.SHORTLISTED, TopicStatus.PUBLISHED)
MAX_AUDIENCE_TOPICS = 500
# What the preview calls its reader, and the archive every reader.
PREVIEW_NAME = "Alex"
ARCHIVE_NAME = "reader"
_TAG_NAME = re.compile(r"<\s*([a-zA-Z][a-zA-Z0-9]*)")


def _pages(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


# The staff list ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CampaignRow:
    """One line of the campaign list."""

    campaign: Campaign
    list_names: list[str]


@dataclass(frozen=True)
class CampaignPage:
    """One page of campaigns, most recently changed first."""

    rows: list[CampaignRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages there are (at least one)."""
        return _pages(self.total, self.per_page)


def campaign_lists(session: Session, campaign_ids: Iterable[int]) -> dict[int, list[MailingList]]:
    """Each campaign's lists, by name (one statement)."""
    ids = sorted(set(campaign_ids))
    found: dict[int, list[MailingList]] = {campaign_id: [] for campaign_id in ids}
    if not ids:
        return found
    rows = session.execute(
        sa.select(CampaignList.campaign_id, MailingList)
        .join(MailingList, MailingList.id == CampaignList.list_id)
        .where(CampaignList.campaign_id.in_(ids))
        .order_by(MailingList.name)
    ).all()
    for campaign_id, mailing_list in rows:
        found[campaign_id].append(mailing_list)
    return found


def campaign_rows(
    session: Session, page: int = 1, per_page: int = CAMPAIGNS_PER_PAGE
) -> CampaignPage:
    """One page of campaigns with their lists' names (three statements)."""
    total = session.scalar(sa.select(sa.func.count()).select_from(Campaign)) or 0
    page = max(1, page)
    campaigns = list(
        session.scalars(
            sa.select(Campaign)
            .order_by(Campaign.updated_at.desc(), Campaign.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    lists = campaign_lists(session, [c.id for c in campaigns])
    rows = [CampaignRow(c, [m.name for m in lists[c.id]]) for c in campaigns]
    return CampaignPage(rows=rows, total=total, page=page, per_page=per_page)


def offered_lists(session: Session, keep: Iterable[int] = ()) -> list[MailingList]:
    """Lists a campaign may go to: those in use, plus ``keep`` (a campaign's own archived ones)."""
    kept = list(keep)
    condition = MailingList.is_archived.is_(False)
    if kept:
        condition = sa.or_(condition, MailingList.id.in_(kept))
    return list(session.scalars(sa.select(MailingList).where(condition).order_by(MailingList.name)))


def audience_topics(session: Session) -> list[tuple[int, str]]:
    """(id, title) of the research topics a campaign may aim at: adopted ones first (their
    progress reports), then those open for support."""
    listed = topic_queries.list_topics(
        session, sort=topic_queries.TopicSort.NEWEST, per_page=MAX_AUDIENCE_TOPICS
    )
    order = {status: rank for rank, status in enumerate(AUDIENCE_TOPIC_STATUSES)}
    topics = [row.topic for row in listed.rows if row.topic.status in order]
    topics.sort(key=lambda topic: (order[topic.status], topic.title.lower(), topic.id))
    return [(topic.id, f"{topic.title} ({topic.status.label.lower()})") for topic in topics]


# One campaign ------------------------------------------------------------------------------
def sends_of(session: Session, campaign_id: int, limit: int | None = None) -> list[Send]:
    """A campaign's sends (one per occurrence), newest first; the newest ``limit`` if given."""
    query = sa.select(Send).where(Send.campaign_id == campaign_id).order_by(Send.id.desc())
    return list(session.scalars(query.limit(limit) if limit else query))


def count_sends(session: Session, campaign_id: int) -> int:
    """How many sends a campaign has had."""
    return (
        session.scalar(
            sa.select(sa.func.count()).select_from(Send).where(Send.campaign_id == campaign_id)
        )
        or 0
    )


def describe_status(value: str | None) -> str:
    """A logged status (a campaign's, or "send:…" for an occurrence's) in words."""
    if value is None:
        return "new"
    try:
        if value.startswith("send:"):
            return f"occurrence {SendStatus(value[5:]).label.lower()}"
        return CampaignStatus(value).label.lower()
    except ValueError:
        return value


@dataclass(frozen=True)
class HistoryRow:
    """One logged status change, with who made it (None: the scheduler or the breaker)."""

    change: CampaignStatusChange
    actor_name: str | None

    @property
    def from_label(self) -> str:
        """The status before, in words."""
        return describe_status(self.change.from_status)

    @property
    def to_label(self) -> str:
        """The status after, in words."""
        return describe_status(self.change.to_status)


def status_history(session: Session, campaign_id: int) -> list[HistoryRow]:
    """A campaign's logged status changes, oldest first, with actors' names (two statements)."""
    changes = list(
        session.scalars(
            sa.select(CampaignStatusChange)
            .where(CampaignStatusChange.campaign_id == campaign_id)
            .order_by(CampaignStatusChange.created_at, CampaignStatusChange.id)
        )
    )
    names = account_queries.display_names(session, (c.actor_id for c in changes))
    return [
        HistoryRow(c, names.get(c.actor_id, "a removed account") if c.actor_id else None)
        for c in changes
    ]


# Progress and provider events ------------------------------------------------------------------
@dataclass
class Progress:
    """Where one send's deliveries stand."""

    queued: int = 0
    in_flight: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    skipped: int = 0
    unknown: int = 0

    @property
    def total(self) -> int:
        """Every delivery of the send."""
        return (
            self.queued
            + self.in_flight
            + self.sent
            + self.failed
            + self.suppressed
            + self.skipped
            + self.unknown
        )

    @property
    def handled(self) -> int:
        """Deliveries no longer waiting or being sent."""
        return self.total - self.queued - self.in_flight

    @property
    def summary(self) -> str:
        """The counts in one sentence (the page's live text)."""
        return (
            f"{self.handled:,} of {self.total:,} handled: {self.sent:,} sent, "
            f"{self.queued + self.in_flight:,} queued, {self.failed:,} failed, "
            f"{self.suppressed:,} suppressed, {self.skipped:,} skipped, "
            f"{self.unknown:,} outcome unknown."
        )

    def as_dict(self) -> dict[str, Any]:
        """The counts for the progress endpoint."""
        return {
            "queued": self.queued + self.in_flight,
            "sent": self.sent,
            "failed": self.failed,
            "suppressed": self.suppressed,
            "skipped": self.skipped,
            "unknown": self.unknown,
            "handled": self.handled,
            "total": self.total,
            "summary": self.summary,
        }


_PROGRESS_FIELDS = {
    DeliveryStatus.PENDING: "queued",
    DeliveryStatus.CLAIMED: "in_flight",
    DeliveryStatus.ACCEPTED: "sent",
    DeliveryStatus.FAILED: "failed",
    DeliveryStatus.SUPPRESSED: "suppressed",
    DeliveryStatus.SKIPPED: "skipped",
    DeliveryStatus.UNKNOWN: "unknown",
}


def send_progress(session: Session, send_ids: Iterable[int]) -> dict[int, Progress]:
    """Delivery counts of each send in ``send_ids`` (one grouped statement)."""
    ids = sorted(set(send_ids))
    found = {send_id: Progress() for send_id in ids}
    if not ids:
        return found
    rows = session.execute(
        sa.select(Delivery.send_id, Delivery.status, sa.func.count())
        .where(Delivery.send_id.in_(ids))
        .group_by(Delivery.send_id, Delivery.status)
    )
    for send_id, status, count in rows:
        name = _PROGRESS_FIELDS[status]
        setattr(found[send_id], name, getattr(found[send_id], name) + count)
    return found


@dataclass
class EventCounts:
    """What the provider reported about one send's deliveries (each delivery counted once per
    kind of event, however often SendGrid reported it)."""

    delivered: int = 0
    bounced: int = 0
    dropped: int = 0
    spam_reports: int = 0
    unsubscribed: int = 0

    def rows(self) -> list[tuple[str, int]]:
        """(label, count) pairs for a table."""
        return [
            ("Delivered", self.delivered),
            ("Bounced", self.bounced),
            ("Dropped", self.dropped),
            ("Reported as spam", self.spam_reports),
            ("Unsubscribed", self.unsubscribed),
        ]


_EVENT_FIELDS = {
    ProviderEventKind.DELIVERED: "delivered",
    ProviderEventKind.BOUNCE: "bounced",
    ProviderEventKind.DROPPED: "dropped",
    ProviderEventKind.SPAM_REPORT: "spam_reports",
    ProviderEventKind.UNSUBSCRIBE: "unsubscribed",
    ProviderEventKind.GROUP_UNSUBSCRIBE: "unsubscribed",
}


def event_counts(session: Session, send_ids: Iterable[int]) -> dict[int, EventCounts]:
    """Provider event counts of each send in ``send_ids`` (one grouped statement)."""
    ids = sorted(set(send_ids))
    found = {send_id: EventCounts() for send_id in ids}
    if not ids:
        return found
    rows = session.execute(
        sa.select(
            ProviderEvent.send_id,
            ProviderEvent.kind,
            sa.func.count(sa.distinct(ProviderEvent.delivery_id)),
        )
        .where(ProviderEvent.send_id.in_(ids), ProviderEvent.kind.in_(list(_EVENT_FIELDS)))
        .group_by(ProviderEvent.send_id, ProviderEvent.kind)
    )
    for send_id, kind, count in rows:
        name = _EVENT_FIELDS[kind]
        setattr(found[send_id], name, getattr(found[send_id], name) + count)
    return found


# The archive -----------------------------------------------------------------------------------
def _public_send() -> sa.ColumnElement[bool]:
    """A send anyone may read: every list of its campaign is public, and its audience filter
    does not single out account holders (by role, country, registry or topic)."""
    private_list = (
        sa.select(CampaignList.list_id)
        .join(MailingList, MailingList.id == CampaignList.list_id)
        .where(
            CampaignList.campaign_id == Send.campaign_id,
            MailingList.visibility != ListVisibility.PUBLIC,
        )
        .exists()
    )
    filtered = [Campaign.audience[key].as_string().is_not(None) for key in ACCOUNT_FILTERS]
    return sa.and_(~private_list, ~sa.or_(*filtered))


def _archived(signed_in: bool) -> list[sa.ColumnElement[bool]]:
    conditions = [Send.status == SendStatus.SENT, Send.audience_size > 0]
    if not signed_in:
        conditions.append(_public_send())
    return conditions


@dataclass(frozen=True)
class ArchiveEntry:
    """A past newsletter as the archive shows it."""

    send_id: int
    subject: str
    preheader: str
    kind: CampaignKind
    sent_at: Any
    is_public: bool
    body_markdown: str = ""


@dataclass(frozen=True)
class ArchivePage:
    """One page of past newsletters, newest first."""

    entries: list[ArchiveEntry]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        """How many pages there are (at least one)."""
        return _pages(self.total, self.per_page)


def archive_page(
    session: Session, *, signed_in: bool, page: int = 1, per_page: int = ARCHIVE_PER_PAGE
) -> ArchivePage:
    """Past newsletters the reader may see: public lists' sends for everyone, account-only
    lists' sends too for signed-in account holders (two statements)."""
    conditions = _archived(signed_in)
    base = sa.select(Send.id).join(Campaign, Campaign.id == Send.campaign_id).where(*conditions)
    total = session.scalar(sa.select(sa.func.count()).select_from(base.subquery())) or 0
    page = max(1, page)
    rows = session.execute(
        sa.select(
            Send.id, Send.subject, Send.preheader, Campaign.kind, Send.started_at, _public_send()
        )
        .join(Campaign, Campaign.id == Send.campaign_id)
        .where(*conditions)
        .order_by(Send.started_at.desc(), Send.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    entries = [ArchiveEntry(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]
    return ArchivePage(entries=entries, total=total, page=page, per_page=per_page)


def archived_send(session: Session, send_id: int, *, signed_in: bool) -> ArchiveEntry | None:
    """One past newsletter, or None when it does not exist or the reader may not see it."""
    row = session.execute(
        sa.select(
            Send.id,
            Send.subject,
            Send.preheader,
            Campaign.kind,
            Send.started_at,
            _public_send(),
            Send.body_markdown,
        )
        .join(Campaign, Campaign.id == Send.campaign_id)
        .where(Send.id == send_id, *_archived(signed_in))
    ).first()
    if row is None:
        return None
    return ArchiveEntry(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])


def archive_body(body_markdown: str) -> Markup:
    """A past newsletter's sanitised body, addressed to no one in particular."""
    html = str(render_markdown(body_markdown)).replace(content.PERSONAL_FIELD, ARCHIVE_NAME)
    return Markup(html)  # noqa: S704 - sanitised by render_markdown


# How a campaign reads ----------------------------------------------------------------------------
def rendered(campaign: Campaign, *, archive_url: str | None = None) -> content.RenderedNewsletter:
    """``campaign`` as its email, with the per-recipient placeholders (needs an app context)."""
    return content.render_newsletter(
        subject=campaign.subject,
        preheader=campaign.preheader,
        body_markdown=campaign.body_markdown,
        kind_label=campaign.kind.label,
        archive_url=archive_url,
    )


@dataclass(frozen=True)
class Preview:
    """The newsletter as a recipient called :data:`PREVIEW_NAME` would read it."""

    subject: str
    preheader: str
    kind_label: str
    # The sanitised body, the name filled in.
    body_html: Markup
    text: str
    # Tags the sanitiser removed (e.g. "script", "h2", "img"): what recipients get differs
    # from what staff wrote.
    removed_tags: list[str] = field(default_factory=list)


def removed_tags(body_markdown: str) -> list[str]:
    """The HTML tags the Markdown body would produce that the sanitiser removes, by name."""
    raw = markdown_lib.markdown(body_markdown or "", output_format="html")
    return sorted({name.lower() for name in _TAG_NAME.findall(raw)} - ALLOWED_TAGS)


def render_preview(campaign: Campaign, *, base_url: str, name: str = PREVIEW_NAME) -> Preview:
    """The preview of ``campaign`` (needs an app context): its sanitised body and its text
    part, personalised for ``name``; the unsubscribe link is a placeholder, not a link."""
    body = str(render_markdown(campaign.body_markdown)).replace(
        content.PERSONAL_FIELD, str(escape(name))
    )
    text = rendered(campaign).text
    for placeholder, value in (
        (content.NAME_TEXT, name),
        (content.UNSUBSCRIBE_URL, "(each recipient's own unsubscribe link)"),
        (content.PREFERENCES_URL, content.preferences_url(base_url)),
    ):
        text = text.replace(placeholder, value)
    return Preview(
        subject=campaign.subject,
        preheader=campaign.preheader,
        kind_label=campaign.kind.label,
        body_html=Markup(body),  # noqa: S704 - sanitised by render_markdown, the name escaped
        text=text,
        removed_tags=removed_tags(campaign.body_markdown),
    )
