"""A priority-setting round end to end in headless Chromium: staff create a round and its
shortlist through their pages; it opens; three people in two roles rank the topics with the
keyboard only (Tab, arrow keys, Enter); the closing job closes it; the results page shows the
chart and its table, and each group (too small to be shown on its own).

Fixtures (``page``, ``page_problems``, ``live_server``) are in ``tests/fixtures_browser.py``;
every page loaded is checked by axe-core. These tests run on SQLite only.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from engage.accounts.models import Role, User
from engage.rounds import closing
from engage.rounds.models import Ballot, PriorityRound
from engage.timeutil import utcnow
from tests.conftest import PASSWORD, totp_code_for
from tests.fixtures_browser import PageProblems
from tests.rounds.ballot_support import shortlisted_topics

pytestmark = pytest.mark.browser

TOPICS = (
    "Does cooling clothing ease heat sensitivity?",
    "Which exercise eases MS fatigue most?",
    "Can diet slow MS progression?",
)
ROUND_TITLE = "Treatment priorities 2027"


def _nav(page: Page):
    return page.get_by_role("navigation", name="Main")


def _sign_in(page: Page, email: str) -> None:
    page.goto("/")
    _nav(page).get_by_role("link", name="Sign in").click()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: urlsplit(url).path != "/sign-in")
    if urlsplit(page.url).path == "/sign-in/two-factor":
        page.get_by_label("Code from your authenticator app").fill(totp_code_for(email))
        page.get_by_role("button", name="Continue").click()
    expect(_nav(page).get_by_role("button", name="Sign out")).to_be_visible()


def _sign_out(page: Page) -> None:
    _nav(page).get_by_role("button", name="Sign out").click()
    expect(_nav(page).get_by_role("link", name="Sign in")).to_be_visible()


def _focused(page: Page) -> str:
    return page.evaluate("() => document.activeElement.id")


def _staff_create_round(page: Page, topic_ids: list[int]) -> int:
    """Staff create the round and put the three topics on its shortlist; its id."""
    _nav(page).get_by_role("link", name="Priority rounds").click()
    page.get_by_role("link", name="Create a round").click()
    page.get_by_label("Title", exact=True).fill(ROUND_TITLE)
    page.get_by_label("Question people answer by ranking").fill(
        "Which unanswered questions about MS treatment matter most to you?"
    )
    for label in ("People with MS", "Healthcare professionals"):
        page.get_by_label(label).check()
    page.get_by_label("MS organisations").uncheck()
    page.get_by_label("How many topics each person ranks at most").fill("3")
    opens = utcnow() + timedelta(hours=1)
    page.get_by_label("Opens (UTC)").fill(opens.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Closes (UTC)").fill((opens + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Create the round").click()
    page.wait_for_url(re.compile(r"/staff/rounds/\d+"))
    round_id = int(re.search(r"/staff/rounds/(\d+)", page.url).group(1))
    for title in TOPICS:
        page.get_by_label("Topic", exact=True).select_option(label=title)
        page.get_by_label("Unanswered: no good research answers it yet").check()
        page.get_by_role("button", name="Add to the shortlist").click()
        expect(page.locator("main")).to_contain_text(title)
    return round_id


def _rank_by_keyboard(page: Page, round_id: int, presses: list[int | None]) -> None:
    """Open the round from the menu and rank with the keyboard only: Tab to each topic's
    "Rank" choice, ArrowDown ``n`` times to choose rank ``n`` (None: leave it "Not ranked"),
    then Tab to the button and Enter."""
    _nav(page).get_by_role("link", name="Priority rounds").click()
    page.get_by_role("link", name=ROUND_TITLE).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(ROUND_TITLE)
    # Tab from the top of the page to the first topic's "Rank" choice.
    for _ in range(60):
        page.keyboard.press("Tab")
        if _focused(page) == "rank-1":
            break
    presses = presses + [None] * (len(TOPICS) - len(presses))
    for position, steps in enumerate(presses, start=1):
        if position > 1:
            page.keyboard.press("Tab")
        assert _focused(page) == f"rank-{position}"
        for _ in range(steps or 0):
            page.keyboard.press("ArrowDown")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Save my ranking")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/rounds/{round_id}#my-ranking$"))


def test_staff_open_a_round_three_people_rank_by_keyboard_and_the_results_appear(
    page: Page, page_problems: PageProblems, session, make_user
) -> None:
    staff = make_user(Role.STAFF, email="eli@centre.example")
    author = make_user(Role.PARTICIPANT)
    topic_ids = shortlisted_topics(
        session, session.get(User, staff.id), session.get(User, author.id), TOPICS
    )
    session.commit()
    alex = make_user(Role.PARTICIPANT, email="alex@example.org")
    sam = make_user(Role.PARTICIPANT, email="sam@example.org")
    berg = make_user(Role.CLINICIAN, email="berg@example.org", clinician_verified=True)

    _sign_in(page, staff.email)
    round_id = _staff_create_round(page, topic_ids)
    _sign_out(page)

    # An hour passes: the round opens.
    round_ = session.get(PriorityRound, round_id)
    round_.opens_at = utcnow() - timedelta(minutes=1)
    session.commit()

    # Alex: 1st the cooling topic, 2nd the exercise one. Sam: 1st exercise, 2nd diet.
    # Dr Berg: diet only.
    for person, presses, saved in (
        (alex, [1, 2], "2 topics"),
        (sam, [None, 1, 2], "2 topics"),
        (berg, [None, None, 1], "1 topic"),
    ):
        _sign_in(page, person.email)
        _rank_by_keyboard(page, round_id, presses)
        expect(page.locator("#announcements")).to_have_text(f"Your ranking is saved: {saved}.")
        expect(page.locator("#my-ranking")).to_be_focused()
        _sign_out(page)

    session.expire_all()
    rankings = {
        b.user_id: b.ranking for b in session.scalars(sa.select(Ballot)).all()
    }
    t1, t2, t3 = topic_ids
    assert rankings == {alex.id: [t1, t2], sam.id: [t2, t3], berg.id: [t3]}

    # The closing time comes, and the scheduler's job closes the round.
    round_ = session.get(PriorityRound, round_id)
    round_.closes_at = utcnow() - timedelta(seconds=1)
    session.commit()
    assert closing.close_due(session, utcnow()) == [round_id]
    session.commit()

    page.goto("/rounds")
    page.get_by_role("link", name=f"See the results of “{ROUND_TITLE}”").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Results: {ROUND_TITLE}")
    expect(page.locator("main")).to_contain_text("3 rankings counted.")
    chart = page.get_by_role("table", name="The survey's Top 3, with each topic's combined score")
    expect(chart).to_be_visible()
    # People with MS: exercise 5 points, cooling 3, diet 2 → scores 3, 2, 1;
    # professionals: diet → 3. Combined: diet 4, exercise 3, cooling 2.
    rows = chart.locator("tbody tr")
    expect(rows).to_have_count(3)
    for index, (title, score) in enumerate(((TOPICS[2], "4"), (TOPICS[1], "3"), (TOPICS[0], "2"))):
        expect(rows.nth(index).get_by_role("rowheader")).to_have_text(title)
        expect(rows.nth(index).locator(".tally-count")).to_have_text(score)
        expect(rows.nth(index).locator("svg rect")).to_have_count(1)
    groups = page.locator(".round-groups > li")
    expect(groups).to_have_count(2)
    for label in ("People with MS", "Healthcare professionals"):
        group = groups.filter(has=page.get_by_role("heading", name=label))
        expect(group).to_contain_text("Fewer than 5 rankings, so not shown.")
    page_problems.assert_none()
