"""Topic test fixtures: topics in any status, and reading a topic page's tally."""

from __future__ import annotations

import html
import re

import pytest

from engage.accounts.models import Role, User
from engage.db import Database
from engage.timeutil import utcnow
from engage.topics import services
from engage.topics.models import Topic, TopicCategory, TopicStatus

TALLY_ROW = re.compile(
    r'<th scope="row" class="tally-label">([^<]+)</th>.*?<span class="tally-count">(\d+)</span>',
    re.DOTALL,
)


def tally_rows(page: str) -> dict[str, int]:
    """The first tally table on ``page``: each role's label and its number of supports."""
    start = page.index('<table class="tally-table">')
    table = page[start : page.index("</table>", start)]
    return {html.unescape(label): int(count) for label, count in TALLY_ROW.findall(table)}


@pytest.fixture
def make_topic(app, make_user):
    """Create a topic in a status: ``make_topic(status=TopicStatus.PUBLISHED, title=...)``."""
    staff_holder: list[User] = []

    def make(
        status: TopicStatus = TopicStatus.PUBLISHED,
        title: str | None = None,
        author: User | None = None,
        category: TopicCategory = TopicCategory.LIFESTYLE,
    ) -> Topic:
        if not staff_holder:
            staff_holder.append(make_user(Role.STAFF))
        author = author or make_user(Role.PARTICIPANT)
        session = Database.new_session(app)
        try:
            topic = services.propose_topic(
                session,
                session.get(User, author.id),
                services.TopicDetails(
                    title=title or f"Topic about question {utcnow().timestamp()}",
                    question="A research question?",
                    rationale="Because.",
                    category=category,
                ),
                utcnow(),
                100,
            )
            staff = session.get(User, staff_holder[0].id)
            path = {
                TopicStatus.SUBMITTED: [],
                TopicStatus.PUBLISHED: [TopicStatus.PUBLISHED],
                TopicStatus.SHORTLISTED: [TopicStatus.PUBLISHED, TopicStatus.SHORTLISTED],
                TopicStatus.ADOPTED: [
                    TopicStatus.PUBLISHED,
                    TopicStatus.SHORTLISTED,
                    TopicStatus.ADOPTED,
                ],
                TopicStatus.REJECTED: [TopicStatus.REJECTED],
            }[status]
            for step in path:
                services.change_status(session, staff, topic, step, utcnow(), reason="r")
            session.commit()
            return topic
        finally:
            session.close()

    return make
