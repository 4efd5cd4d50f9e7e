"""The page tour: every page each kind of person reaches by following links, found by crawling
the app over the Flask test client from the demo data, then checked in headless Chromium.

A crawl starts at the home page (and a role's own starting points), follows every same-site
link of every HTML page it gets, and keeps at most :data:`URLS_PER_ENDPOINT` addresses of each
view, so a list of 50 topics costs two topic pages, not 50. The pages found are what the
accessibility tests check: when a new page is linked from anywhere, it joins the tour by
itself; :func:`unreached_endpoints` names the pages no crawl reached, and a test insists each is
either reached or listed in :data:`NOT_CRAWLED` with the reason.

Used by the tests in this folder and by ``make screenshots``
(``tests/accessibility/screenshots.py``).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.exceptions import HTTPException

from engage.accounts import services as account_services
from engage.accounts import two_factor as two_factor_service
from engage.accounts.models import Role, User
from engage.consent import versions as consent_versions
from engage.db import Database
from engage.demo import DEMO_ACCOUNTS, demo_seeders, seed_demo
from engage.rounds import ballots as round_ballots
from engage.rounds import closing as round_closing
from engage.rounds import setup as round_setup
from engage.rounds import workshop as round_workshop
from engage.rounds.models import EvidenceStatus
from engage.rounds.tally import RoundResult
from engage.timeutil import utcnow
from engage.topics import discussion
from engage.topics import services as topic_services
from engage.topics.models import Topic, TopicCategory, TopicStatus
from governance import demo as governance_demo
from governance import proposals
from governance.models import CatalogueVariable
from newsletters import campaigns
from newsletters.models import (
    CampaignKind,
    CampaignStatus,
    MailingList,
    Send,
    SendStatus,
    Subscription,
)
from newsletters.tokens import make_unsubscribe_token
from tests.accessibility.checks import REFLOW_WIDTH, WIDTHS

URLS_PER_ENDPOINT = 3
MAX_PAGES_PER_ROLE = 150

# GET pages no crawl reaches, and why; every other GET page must be reached by some role.
NOT_CRAWLED = {
    "pages.healthz": "JSON for load balancers, not a page",
    "static": "files, not pages",
    "topics.similar": "JSON asked for by topics.js while a title is typed",
    "newsletters_staff.campaign_progress": "JSON polled by newsletter-progress.js during a send",
    "governance_api.list_proposals": "the registries' JSON API (token sign-in), checked against "
    "its OpenAPI document in tests/governance/test_api.py",
    "governance_api.proposal_detail": "the registries' JSON API, as above",
    "governance_api.openapi_json": "the registries' API description (JSON)",
}

# Views whose addresses are not pages to check: downloads and JSON answers are recognised by
# their content type; these are never requested by the crawl at all.
NEVER_REQUEST = frozenset({"auth.sign_out"})

WALK_PASSWORD = "quiet river lantern"
ROLES = ("visitor", "participant", "clinician", "organisation", "custodian", "staff")
# People part-way through a journey, on pages reached from an emailed link or a sign-in step:
# "joining" has signed up, asked for a password reset, subscribed to a newsletter, and opens
# the links emailed to them; "signing-in" has typed a password and is asked for the code of
# two-step sign-in; "setting-up" is asked to set two-step sign-in up first.
JOURNEYS = ("joining", "signing-in", "setting-up")
# Pages each signed-in role reaches later, not by a link (a check of the password after a
# while, a consent review when a new form is out).
LATER_VISITS = {
    "participant": ("/account/confirm?next=/account/delete", "/consent/review"),
    # Linked only while no draft version exists (the tour's data has one, to reach its pages);
    # the people list filtered to people with MS, whose pages link to their consent record.
    "staff": ("/staff/consent/forms/new", "/staff/users?role=participant"),
}
DEMO_EMAILS = {role.value: email for role, email, _name, _country in DEMO_ACCOUNTS}


@dataclass(frozen=True)
class TourPage:
    """One address reached by one kind of person."""

    role: str
    url: str  # path and query, e.g. /topics?category=symptoms
    endpoint: str


@dataclass
class Crawl:
    """What one role's crawl found."""

    role: str
    pages: list[TourPage] = field(default_factory=list)
    # addresses answered with something other than 200 or a redirect: (url, status)
    broken: list[tuple[str, int]] = field(default_factory=list)
    # views reached that answered a download or JSON rather than a page
    downloads: set[str] = field(default_factory=set)


class _Links(HTMLParser):
    """The href of every <a> on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def seed(app: Flask) -> dict[str, str]:
    """Seed the demo data into ``app``'s database, and what it lacks for a full tour (a topic
    waiting for review, a comment, a draft proposal, a draft newsletter); return each demo
    account's password."""
    known: dict[str, str] = {}
    with app.app_context():
        session = Database.new_session(app)
        try:
            _catalogue(session)
            seed_demo(session, app.config, known, utcnow(), demo_seeders(app))
            session.flush()
            _tour_extras(session)
            session.commit()
        finally:
            session.close()
    return known


def _catalogue(session: Any) -> None:
    """The variables the governance demo requests (the migration seeds them; tests empty every
    table)."""
    codes = sorted({*governance_demo.OUT_FOR_DECISIONS.variable_codes,
                    *governance_demo.ACTIVE_PROJECT.variable_codes})
    session.add_all(
        CatalogueVariable(
            code=code, name=code.replace("_", " ").capitalize(), domain="Clinical",
            description=f"{code.replace('_', ' ').capitalize()} as the registry records it.",
            created_at=utcnow(),
        )
        for code in codes
    )
    session.flush()


def _tour_extras(session: Any) -> None:
    now = utcnow()
    users = {
        role: session.scalar(sa.select(User).where(User.email == email))
        for role, email in DEMO_EMAILS.items()
    }
    topic = topic_services.propose_topic(
        session,
        users["participant"],
        topic_services.TopicDetails(
            "Does heat make MS symptoms worse for longer than we think?",
            "How long do symptoms made worse by heat last in people with relapsing MS?",
            "Summers are getting hotter, and many of us plan our days around the heat.",
            TopicCategory.SYMPTOMS,
        ),
        now,
        max_pending=5,
    )
    # Returned to its author, who can edit it and send it again.
    topic_services.change_status(
        session, users["staff"], topic, TopicStatus.RETURNED, now,
        reason="Please say which symptoms you mean, so others can find the topic.",
    )
    published = session.scalars(
        sa.select(Topic).where(Topic.status == TopicStatus.PUBLISHED).order_by(Topic.id)
    ).first()
    discussion.add_comment(
        session, users["participant"], published, "Vitamin D helped my energy levels, I think.", now
    )
    story = governance_demo.OUT_FOR_DECISIONS
    proposals.create_draft(
        session,
        users["clinician"],
        proposals.ProposalDetails(
            title="Fatigue after relapses: a registry study",
            lead_researcher="Dr Berg",
            institution="Rigshospitalet",
            sponsor="Danish MS Society",
            plain_summary=story.plain_summary,
            scientific_summary=story.scientific_summary,
            language="en",
            analysis_mode=story.analysis_mode,
            ethics_reference="H-2027-001",
            topic_id=None,
            decision_deadline=(now + timedelta(days=30)).replace(minute=0, second=0, microsecond=0),
            scope_codes=list(story.scope_codes),
            variable_ids=list(
                session.scalars(
                    sa.select(CatalogueVariable.id).where(
                        CatalogueVariable.code.in_(story.variable_codes)
                    )
                )
            ),
        ),
        now,
    )
    consent_versions.create_draft(
        session,
        users["staff"],
        consent_versions.VersionDetails(
            title="Your consent to MS research, second edition",
            body="We explain each choice in plain words. You can change any choice at any time.",
            summary="Clearer words for each choice.",
            ethics_reference="EPN 2027-00001",
            language="en",
        ),
        now,
    )
    lists = session.scalars(sa.select(MailingList).order_by(MailingList.id)).all()
    campaigns.create_campaign(
        session,
        users["staff"],
        campaigns.CampaignDetails(
            kind=CampaignKind.RESEARCH_UPDATE,
            subject="What we learned this autumn",
            preheader="Three studies, one new topic",
            body_markdown="## Three studies\n\nThank you to everyone who took part.",
            list_ids=[lists[0].id],
        ),
        now,
    )
    # A newsletter that went out last month, as the archive shows it.
    sent = campaigns.create_campaign(
        session,
        users["staff"],
        campaigns.CampaignDetails(
            kind=CampaignKind.PROGRESS_REPORT,
            subject="Progress report: the vitamin D study",
            preheader="Recruitment is complete",
            body_markdown="## Recruitment is complete\n\nThank you to the 412 people who joined.",
            list_ids=[lists[0].id],
        ),
        now - timedelta(days=30),
    )
    sent.status = CampaignStatus.SENT
    session.add(
        Send(
            campaign_id=sent.id,
            occurrence_at=now - timedelta(days=30),
            status=SendStatus.SENT,
            subject=sent.subject,
            preheader=sent.preheader,
            body_markdown=sent.body_markdown,
            audience_size=412,
            started_at=now - timedelta(days=30),
            finished_at=now - timedelta(days=30),
        )
    )
    _round_extras(session, users, now)


ROUND_TOPICS = (
    "Does cooling clothing help people with MS in hot weather?",
    "Which exercise eases MS fatigue the most?",
    "Can diet change how quickly MS progresses?",
    "How can bladder problems in MS be treated better?",
)


def _round_extras(session: Any, users: dict[str, User], now: Any) -> None:
    """An open priority-setting round the demo participant has ranked in, a closed one with
    its result (five more people with MS ranked, so their group's ranking shows) and the final
    workshop's agreed list, and an upcoming one."""
    topic_ids = []
    for title in ROUND_TOPICS:
        topic = topic_services.propose_topic(
            session,
            users["participant"],
            topic_services.TopicDetails(
                title, f"{title[:-1]}, and for whom?", "Many of us ask this.", TopicCategory.CARE
            ),
            now - timedelta(days=40),
            max_pending=10,
        )
        for status in (TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED):
            topic_services.change_status(session, users["staff"], topic, status, now)
        topic_ids.append(topic.id)

    def new_round(title: str, opens_at: Any, closes_at: Any) -> Any:
        before = opens_at - timedelta(days=1)
        round_ = round_setup.create_round(
            session,
            users["staff"],
            round_setup.RoundDetails(
                title=title,
                question="Which unanswered questions about MS treatment matter most to you?",
                roles=["participant", "clinician", "organisation"],
                opens_at=opens_at,
                closes_at=closes_at,
                max_ranks=3,
            ),
            before,
        )
        for index, topic_id in enumerate(topic_ids):
            partly = index % 2 == 1
            round_setup.add_to_shortlist(
                session, users["staff"], round_, topic_id,
                EvidenceStatus.PARTLY_ANSWERED if partly else EvidenceStatus.UNANSWERED,
                "A small study looked at this in 2019." if partly else "",
                "https://example.org/evidence" if partly else "",
                before,
            )
        return round_

    closed = new_round(
        "Treatment questions 2026", now - timedelta(days=30), now - timedelta(days=2)
    )
    voters = [users["participant"], users["clinician"], users["organisation"]] + [
        account_services.create_user_by_cli(
            session, email=f"ranker{n}@example.org", password=WALK_PASSWORD,
            role=Role.PARTICIPANT, display_name=f"Ranker {n}", country="SE", language="en",
            now=now - timedelta(days=40),
        )
        for n in range(1, 6)
    ]
    for n, voter in enumerate(voters):
        ranking = topic_ids[n % 4:] + topic_ids[: n % 4]
        round_ballots.cast_ballot(session, voter, closed.id, ranking[:3], now - timedelta(days=10))
    round_closing.close_round(session, closed.id, now)
    top = [item.topic_id for item in RoundResult.from_json(closed.result).top()]
    agreed = [
        (top[1], "The workshop judged it the most urgent."),
        (top[0], "Moved down one place."),
    ]
    round_workshop.record_workshop(
        session, users["staff"], closed, agreed, "Agreed at the workshop in Copenhagen.", now
    )
    open_round = new_round(
        "Treatment questions 2027", now - timedelta(hours=1), now + timedelta(days=14)
    )
    round_ballots.cast_ballot(session, users["participant"], open_round.id, topic_ids[:2], now)
    # Still being prepared: staff can change it, and the list shows it as coming up.
    new_round("Treatment questions 2028", now + timedelta(days=3), now + timedelta(days=20))


def demo_user(app: Flask, role: str) -> User:
    """The demo account of ``role`` (detached)."""
    session = Database.new_session(app)
    try:
        user = session.scalar(sa.select(User).where(User.email == DEMO_EMAILS[role]))
        assert user is not None, f"no demo account for {role}"
        session.expunge(user)
        return user
    finally:
        session.close()


def _endpoint(app: Flask, path: str) -> str | None:
    """The view answering GET ``path``, or None for an address the app has no view for."""
    adapter = app.url_map.bind("localhost")
    try:
        endpoint, _args = adapter.match(path, method="GET")
    except HTTPException:
        return None
    return endpoint


def _same_site(href: str, base: str) -> str | None:
    """``href`` as a path and query on this site, without its fragment; None for elsewhere."""
    if href.startswith(("mailto:", "tel:", "javascript:", "data:")):
        return None
    absolute = urljoin(f"http://localhost{base}", href)
    parts = urlsplit(absolute)
    if parts.hostname not in ("localhost", "engage.test", "127.0.0.1"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def crawl(app: Flask, client: FlaskClient, role: str, start: Iterable[str] = ("/",)) -> Crawl:
    """Follow same-site links from ``start`` as ``client`` (signed in as ``role`` or not)."""
    found = Crawl(role)
    queue = deque(start)
    seen: set[str] = set(queue)
    per_endpoint: dict[str, int] = {}
    while queue and len(found.pages) < MAX_PAGES_PER_ROLE:
        url = queue.popleft()
        endpoint = _endpoint(app, urlsplit(url).path)
        if endpoint is None or endpoint in NEVER_REQUEST or endpoint == "static":
            continue
        if per_endpoint.get(endpoint, 0) >= URLS_PER_ENDPOINT:
            continue
        response = client.get(url)
        if response.status_code in (301, 302, 303, 307, 308):
            target = _same_site(response.headers["Location"], url)
            if target and target not in seen:
                seen.add(target)
                queue.append(target)
            continue
        if response.status_code != 200:
            found.broken.append((url, response.status_code))
            continue
        if response.mimetype != "text/html":
            found.downloads.add(endpoint)
            continue
        per_endpoint[endpoint] = per_endpoint.get(endpoint, 0) + 1
        found.pages.append(TourPage(role, url, endpoint))
        links = _Links()
        links.feed(response.get_data(as_text=True))
        for href in links.hrefs:
            target = _same_site(href, url)
            if target and target not in seen:
                seen.add(target)
                queue.append(target)
    return found


def everyone(
    app: Flask, passwords: dict[str, str], mailbox: Any, sign_in: Callable
) -> list[Crawl]:
    """The crawl of every role and journey, in :data:`ROLES` then :data:`JOURNEYS` order."""
    crawls = []
    for role in ROLES:
        client = signed_in_client(app, role, passwords, sign_in)
        crawls.append(crawl(app, client, role, ["/", *LATER_VISITS.get(role, ())]))
    for journey in JOURNEYS:
        client, start = journey_client(app, journey, mailbox, passwords)
        crawls.append(crawl(app, client, journey, start))
    return crawls


def width_plan(crawls: Iterable[Crawl]) -> dict[tuple[str, str], tuple[str, ...]]:
    """The widths to check each (role, url) at: every width for the first address of each view
    in the first crawl that reaches it; a phone's width for the rest (the same template, with
    what differs by role or by item).
    """
    plan: dict[tuple[str, str], tuple[str, ...]] = {}
    owned: set[str] = set()
    for found in crawls:
        for visit in found.pages:
            if visit.endpoint in owned:
                plan[(found.role, visit.url)] = (REFLOW_WIDTH,)
            else:
                owned.add(visit.endpoint)
                plan[(found.role, visit.url)] = tuple(WIDTHS)
    return plan


def get_endpoints(app: Flask) -> set[str]:
    """Every view answering GET without needing data in the address beyond ids."""
    return {rule.endpoint for rule in app.url_map.iter_rules() if "GET" in (rule.methods or ())}


def unreached_endpoints(app: Flask, crawls: Iterable[Crawl]) -> set[str]:
    """GET views that answer HTML but no crawl reached and :data:`NOT_CRAWLED` doesn't list."""
    reached = {page.endpoint for crawl_ in crawls for page in crawl_.pages}
    reached |= {endpoint for crawl_ in crawls for endpoint in crawl_.downloads}
    return get_endpoints(app) - reached - set(NOT_CRAWLED)


def signed_in_client(
    app: Flask, role: str, passwords: dict[str, str], sign_in: Callable
) -> FlaskClient:
    """A test client signed in as the demo account of ``role`` (none for visitors)."""
    client = app.test_client()
    if role != "visitor":
        sign_in(client, demo_user(app, role), passwords[DEMO_EMAILS[role]])
    return client


def journey_client(
    app: Flask, journey: str, mailbox: Any, passwords: dict[str, str]
) -> tuple[FlaskClient, list[str]]:
    """A client part-way through ``journey`` (see :data:`JOURNEYS`) and where it starts."""
    client = app.test_client()
    if journey == "joining":
        return client, _joining(app, client, mailbox, passwords)
    if journey in ("signing-in", "setting-up"):
        return client, _signing_in(app, client, enrolled=journey == "signing-in")
    raise ValueError(journey)


def _post(client: FlaskClient, url: str, data: dict[str, Any]) -> Any:
    page = client.get(url).get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert token, f"no CSRF token on {url}"
    response = client.post(url, data={**data, "csrf_token": token.group(1)})
    assert response.status_code in (200, 302, 303), f"{url}: {response.status_code}"
    return response


def _path(link: str) -> str:
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _joining(
    app: Flask, client: FlaskClient, mailbox: Any, passwords: dict[str, str]
) -> list[str]:
    email = "new.member@example.org"
    _post(client, "/sign-up", {
        "role": "participant", "display_name": "Robin", "email": email,
        "password": "quiet river lantern", "password_confirm": "quiet river lantern",
        "country": "SE", "language": "en",
    })
    verify = _path(mailbox.last_to(email).link("/verify-email/"))
    _post(client, "/reset-password", {"email": email})
    reset = _path(mailbox.last_to(email).link("/reset-password/"))
    session = Database.new_session(app)
    try:
        research = session.scalar(
            sa.select(MailingList).where(MailingList.name == "Research updates")
        )
        assert research is not None
        research_id = research.id
    finally:
        session.close()
    _post(client, "/newsletters/subscribe", {
        "name": "Kim", "email": "kim@example.org", "language": "en", "lists": [research_id],
    })
    confirm = _path(mailbox.last_to("kim@example.org").link("/newsletters/confirm/"))
    # The unsubscribe link of a newsletter the demo participant received.
    session = Database.new_session(app)
    try:
        subscription = session.scalars(sa.select(Subscription).order_by(Subscription.id)).first()
        assert subscription is not None
        token = make_unsubscribe_token(
            app.config["SECRET_KEY"], subscription.subscriber_id, subscription.list_id
        )
    finally:
        session.close()
    unsubscribe = f"/newsletters/unsubscribe/{token}"
    # A member changing their address opens the link sent to the new one (not signed in here).
    member = app.test_client()
    organisation = DEMO_EMAILS["organisation"]
    _post(member, "/sign-in", {"email": organisation, "password": passwords[organisation]})
    _post(member, "/account/email", {"email": "dana.new@example.org"})
    new_address = _path(mailbox.last_to("dana.new@example.org").link("/confirm-new-email/"))
    return ["/sign-up/check-email", verify, reset, "/newsletters/subscribe/check-email", confirm,
            unsubscribe, new_address]


def _signing_in(app: Flask, client: FlaskClient, *, enrolled: bool) -> list[str]:
    """A new staff member types their password: with two-step sign-in set up they are asked for
    a code (or a recovery code), without it they are asked to set it up."""
    now = utcnow()
    email = "staff.code@example.org" if enrolled else "staff.new@example.org"
    with app.app_context():
        _new_staff(app, email, enrolled, now)
    _post(client, "/sign-in", {"email": email, "password": WALK_PASSWORD})
    return ["/sign-in/two-factor"] if enrolled else ["/sign-in/two-factor/set-up"]


def _new_staff(app: Flask, email: str, enrolled: bool, now: Any) -> None:
    session = Database.new_session(app)
    try:
        user = account_services.create_user_by_cli(
            session, email=email, password=WALK_PASSWORD, role=Role.STAFF,
            display_name="Sasha", country="BE", language="en", now=now,
        )
        if enrolled:
            secret = two_factor_service.begin_enrolment(user)
            counter = two_factor_service.current_counter(now) - two_factor_service.VALID_WINDOW
            two_factor_service.confirm_enrolment(
                session, user, two_factor_service.code_at(secret, counter), now
            )
        session.commit()
    finally:
        session.close()
