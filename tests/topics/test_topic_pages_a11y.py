"""Topic pages for people with tremor, low vision and fatigue: one label per box, no status
chosen by accident, filters folded away, focus back to what changed, text that keeps its size
and pages that fit a 320 px screen."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from engage.accounts.models import Role, User
from engage.timeutil import utcnow
from engage.topics import services
from engage.topics.models import (
    Topic,
    TopicCategory,
    TopicComment,
    TopicStatus,
    TopicStatusChange,
)
from tests.browser_support import browser_sign_in as _sign_in
from tests.conftest import post_form, sign_in
from tests.topics.conftest import tally_rows

ERROR_SUMMARY = "Please correct the following"


class PageParts(HTMLParser):
    """The ids, labels, form controls and elements of a page, as a browser would parse them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.labels: dict[str, list[str]] = {}  # for= -> texts of the labels naming it
        self.controls: list[dict[str, str]] = []  # attributes of inputs, selects, textareas
        self.elements: dict[str, tuple[str, dict[str, str]]] = {}  # id -> (tag, attributes)
        self.options: dict[str, list[tuple[str, str, bool]]] = {}  # select id -> options
        self._label_for: str | None = None
        self._label_text: list[str] = []
        self._select: str | None = None
        self._option: tuple[str, bool] | None = None
        self._option_text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Collect ids, controls and the start of labels and options."""
        attributes = {name: value or "" for name, value in attrs}
        if "id" in attributes:
            self.ids.append(attributes["id"])
            self.elements[attributes["id"]] = (tag, attributes)
        if tag == "label":
            self._label_for, self._label_text = attributes.get("for", ""), []
        if tag in ("input", "select", "textarea") and attributes.get("type") != "hidden":
            self.controls.append({"tag": tag, **attributes})
        if tag == "select":
            self._select = attributes.get("id", "")
            self.options[self._select] = []
        if tag == "option":
            self._option, self._option_text = (
                (attributes.get("value", ""), "selected" in attributes),
                [],
            )

    def handle_data(self, data: str) -> None:
        """Text inside a label or an option."""
        if self._label_for is not None:
            self._label_text.append(data)
        if self._option is not None:
            self._option_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        """Close labels and options."""
        if tag == "label" and self._label_for is not None:
            text = " ".join("".join(self._label_text).split())
            self.labels.setdefault(self._label_for, []).append(text)
            self._label_for = None
        if tag == "option" and self._option is not None and self._select is not None:
            value, selected = self._option
            self.options[self._select].append((value, "".join(self._option_text).strip(), selected))
            self._option = None
        if tag == "select":
            self._select = None


def _add_comment(session, topic: Topic, author: User, body: str = "I see this often.") -> int:
    comment = services.add_comment(session, session.get(User, author.id), topic, body, utcnow())
    session.commit()
    return comment.id


def _support(session, topic: Topic, *people: User) -> None:
    for person in people:
        services.support_topic(session, session.get(User, person.id), topic.id, utcnow())
    session.commit()


@pytest.fixture
def staff_client(app, make_user):
    """A client signed in as staff (two-step sign-in included)."""
    client = app.test_client()
    sign_in(client, make_user(Role.STAFF))
    return client


# One label per box ------------------------------------------------------------------------------
def test_staff_topic_page_has_unique_ids_and_each_box_its_own_label(
    staff_client, make_topic, make_user, session
):
    topic = make_topic(title="Does cooling help heat sensitivity in MS?")
    for n in range(2):
        _add_comment(session, topic, make_user(Role.PARTICIPANT), f"Comment number {n}")
    page = staff_client.get(f"/topics/{topic.id}").get_data(as_text=True)
    parts = PageParts(page)

    repeated = [name for name, count in Counter(parts.ids).items() if count > 1]
    assert repeated == []
    # Both forms are on the page, each with its own reason box.
    assert parts.labels["moderate-reason"] == [
        "Reason (required when returning or rejecting; the author reads it)"
    ]
    assert parts.labels["merge-reason"] == ["Reason (the author and supporters read it)"]
    assert parts.labels["merge-target"] == ["Number of the topic to merge into"]
    assert parts.labels["moderate-status"] == ["New status"]
    textareas = [c["id"] for c in parts.controls if c["tag"] == "textarea"]
    assert {"moderate-reason", "merge-reason", "body"} <= set(textareas)
    for control in parts.controls:
        assert len(parts.labels.get(control["id"], [])) == 1, control


# No status chosen by accident ---------------------------------------------------------------------
def test_the_new_status_menu_starts_empty_and_an_empty_choice_changes_nothing(
    staff_client, make_topic, session
):
    topic = make_topic(status=TopicStatus.SUBMITTED, title="Is fatigue worse in summer?")
    page = staff_client.get(f"/topics/{topic.id}").get_data(as_text=True)
    options = PageParts(page).options["moderate-status"]
    assert options[0] == ("", "Choose a new status", False)
    assert not any(selected for _, _, selected in options)  # the browser shows the first
    assert ("published", "Open for support", False) in options

    changes = session.scalar(sa.select(sa.func.count()).select_from(TopicStatusChange))
    response = post_form(
        staff_client, f"/topics/{topic.id}/moderate", {"status": "", "reason": "Looks fine."}
    )
    shown = response.get_data(as_text=True)
    assert response.status_code == 400
    assert ERROR_SUMMARY in shown
    assert '<a href="#moderate-status">New status: Choose the new status.</a>' in shown
    assert 'id="moderate-reason"' in shown and "Looks fine.</textarea>" in shown  # kept
    session.rollback()
    assert session.get(Topic, topic.id).status == TopicStatus.SUBMITTED
    assert session.scalar(sa.select(sa.func.count()).select_from(TopicStatusChange)) == changes


def test_a_merge_without_a_target_is_shown_again_at_its_own_fields(
    staff_client, make_topic, session
):
    topic = make_topic(title="Does heat make symptoms worse?")
    response = post_form(staff_client, f"/topics/{topic.id}/merge", {"reason": "Same question"})
    shown = response.get_data(as_text=True)
    assert response.status_code == 400
    assert (
        '<a href="#merge-target">Number of the topic to merge into: '
        "Enter the number of the topic to merge into.</a>" in shown
    )
    session.rollback()
    assert session.get(Topic, topic.id).status == TopicStatus.PUBLISHED


# Filters folded away ------------------------------------------------------------------------------
def _filters(page: str) -> tuple[bool, str]:
    """Whether the filters are open, and the text of their summary line."""
    start = page.index('<details class="topic-filters"')
    tag = page[start : page.index(">", start)]
    summary = page[page.index("<summary>", start) + 9 : page.index("</summary>", start)]
    return " open" in tag, " ".join(summary.split())


def test_filters_are_folded_until_one_is_on_and_the_summary_counts_them(client, make_topic):
    make_topic(title="Fatigue and sleep quality", category=TopicCategory.SYMPTOMS)
    assert _filters(client.get("/topics").get_data(as_text=True)) == (
        False,
        "Filter and sort topics",
    )
    assert _filters(client.get("/topics?category=symptoms").get_data(as_text=True)) == (
        True,
        "Filter and sort topics (1 filter on)",
    )
    both = client.get("/topics?q=sleep&status=published&sort=newest").get_data(as_text=True)
    assert _filters(both) == (True, "Filter and sort topics (2 filters on; sorted by newest)")
    assert "1 topic found." in both


# Focus back to what changed ---------------------------------------------------------------------
def _returns_focus_to(client, response) -> tuple[str, str]:
    """The page a redirect leads to and the element its fragment names, which must be there and
    take focus back (``data-return-focus``) with an accessible name; returns (page, tag)."""
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    location = urlsplit(response.headers["Location"])
    assert location.fragment, response.headers["Location"]
    page = client.get(f"{location.path}?{location.query}").get_data(as_text=True)
    tag, attributes = PageParts(page).elements[location.fragment]
    assert "data-return-focus" in attributes, (location.fragment, attributes)
    named = "aria-labelledby" in attributes or "aria-label" in attributes or tag == "h2"
    assert named, (location.fragment, attributes)
    return page, tag


def test_actions_lead_back_to_what_they_changed(
    app, client, as_role, make_topic, make_user, session
):
    topic = make_topic(title="Does cooling help heat sensitivity?")
    as_role(Role.PARTICIPANT)

    supported = post_form(client, f"/topics/{topic.id}/support", {"next": f"/topics/{topic.id}"})
    assert urlsplit(supported.headers["Location"]).fragment == "support"
    page, _ = _returns_focus_to(client, supported)
    assert "Thank you for your support." in page and "data-announce" in page
    assert 'aria-labelledby="support-heading"' in page

    from_list = post_form(
        client, f"/topics/{topic.id}/support/withdraw", {"next": "/topics?sort=newest"}
    )
    assert from_list.headers["Location"] == f"/topics?sort=newest#topic-{topic.id}"
    page, tag = _returns_focus_to(client, from_list)
    assert tag == "h2" and "Your support is withdrawn." in page

    commented = post_form(client, f"/topics/{topic.id}/comments", {"body": "Cold showers help."})
    comment_id = session.scalar(sa.select(TopicComment.id).where(TopicComment.topic_id == topic.id))
    assert urlsplit(commented.headers["Location"]).fragment == f"comment-{comment_id}"
    page, _ = _returns_focus_to(client, commented)
    assert "Your comment is posted." in page

    other = make_user(Role.CLINICIAN)
    other_comment = _add_comment(session, topic, other, "Buy my cooling vest!")
    reported = post_form(
        client, f"/topics/comments/{other_comment}/report", {"reason": "Advertising."}
    )
    assert urlsplit(reported.headers["Location"]).fragment == f"comment-{other_comment}"
    page, _ = _returns_focus_to(client, reported)
    assert "Thank you: staff will look at your report." in page

    reported_topic = post_form(client, f"/topics/{topic.id}/report", {"reason": "Off topic."})
    assert urlsplit(reported_topic.headers["Location"]).fragment == "report-topic"
    _returns_focus_to(client, reported_topic)


def test_a_staff_status_change_leads_back_to_the_status_history(staff_client, make_topic, session):
    topic = make_topic(status=TopicStatus.SUBMITTED, title="Is fatigue worse in summer?")
    response = post_form(staff_client, f"/topics/{topic.id}/moderate", {"status": "published"})
    assert urlsplit(response.headers["Location"]).fragment == "history"
    page, _ = _returns_focus_to(staff_client, response)
    assert "The topic is now “open for support”." in page


def test_empty_comments_and_reports_are_shown_again_with_the_error(
    client, as_role, make_topic, make_user, session
):
    topic = make_topic(title="Does cooling help heat sensitivity?")
    comment_id = _add_comment(session, topic, make_user(Role.CLINICIAN))
    as_role(Role.PARTICIPANT)

    empty = post_form(client, f"/topics/{topic.id}/comments", {"body": "  "})
    shown = empty.get_data(as_text=True)
    assert empty.status_code == 400 and ERROR_SUMMARY in shown
    assert '<a href="#body">Your comment: Write your comment.</a>' in shown

    report = post_form(client, f"/topics/comments/{comment_id}/report", {"reason": ""})
    shown = report.get_data(as_text=True)
    assert report.status_code == 400
    # The question is not repeated before its error; the link leads to this comment's box.
    assert f'<a href="#report-comment-{comment_id}">Tell staff what is wrong.</a>' in shown
    assert "<details open>" in shown
    assert f'aria-describedby="report-comment-{comment_id}-error"' in shown
    session.rollback()
    assert session.scalar(sa.select(sa.func.count()).select_from(TopicComment)) == 1


def test_topic_pages_say_who_the_coordination_centre_is(client, as_role):
    as_role(Role.PARTICIPANT)
    page = client.get("/topics/new").get_data(as_text=True)
    assert "coordination centre\n  (the team that runs Engage)" in page
    assert "Cancel and go back to the topics" in page


# In the browser ---------------------------------------------------------------------------------

@pytest.fixture
def busy_topic(make_topic, make_user, session) -> Topic:
    """An open topic with a long title, supports from every role and a comment."""
    topic = make_topic(
        title="Does a daily vitamin D supplement slow disability progression in relapsing MS?",
        category=TopicCategory.TREATMENTS,
    )
    _support(
        session,
        topic,
        make_user(Role.PARTICIPANT),
        make_user(Role.CLINICIAN, clinician_verified=True),
        make_user(Role.CLINICIAN),
        make_user(Role.ORGANISATION),
    )
    comment_id = _add_comment(
        session, topic, make_user(Role.CLINICIAN), "I see this *often* in clinic."
    )
    services.report_content(  # one report: staff see it in their queue, the comment stays
        session,
        session.get(User, make_user(Role.PARTICIPANT).id),
        session.get(Topic, topic.id),
        session.get(TopicComment, comment_id),
        "Advertising for a clinic, with a long address: https://example.org/" + "a" * 80,
        utcnow(),
        hide_threshold=100,
    )
    session.commit()
    return topic


WIDTH = "() => document.documentElement.scrollWidth"


@pytest.mark.browser
def test_topic_pages_fit_a_320_px_screen(page, busy_topic, make_user, make_topic, page_problems):
    participant = make_user(Role.PARTICIPANT)
    for status in (TopicStatus.SUBMITTED, TopicStatus.REJECTED):  # "My topics" lists both
        make_topic(
            status, title=f"Is fatigue worse in summer? ({status.label})", author=participant
        )
    page.set_viewport_size({"width": 320, "height": 720})
    _sign_in(page, participant.email)
    for path in ("/topics", f"/topics/{busy_topic.id}", "/topics/new", "/topics/mine"):
        page.goto(path)
        assert page.evaluate(WIDTH) <= 320, path
    page.context.clear_cookies()
    _sign_in(page, make_user(Role.STAFF).email)
    for path in (f"/topics/{busy_topic.id}", "/topics/moderation"):
        page.goto(path)
        assert page.evaluate(WIDTH) <= 320, path
    expect(page.get_by_text("Advertising for a clinic")).to_be_visible()  # the queue has a report
    page_problems.assert_none()


@pytest.mark.browser
def test_tally_labels_and_numbers_keep_the_text_size_at_320_px(page, busy_topic, page_problems):
    page.set_viewport_size({"width": 320, "height": 720})
    for path in (f"/topics/{busy_topic.id}", "/topics"):
        page.goto(path)
        sizes = page.evaluate(
            """() => [...document.querySelectorAll('.tally-label, .tally-count')].map(
                   (element) => parseFloat(getComputedStyle(element).fontSize))"""
        )
        assert sizes and min(sizes) >= 16, (path, sizes)
    # In the list, each table names the topic it counts.
    title = busy_topic.title
    assert (
        page.get_by_role("table", name=f"Supports by role for “{title}”", exact=True).count() == 1
    )
    page.goto(f"/topics/{busy_topic.id}")
    table = page.get_by_role("table", name="Supports by role")
    assert table.get_by_role("row", name="People with MS 1").count() == 1
    page_problems.assert_none()


@pytest.mark.browser
def test_the_first_topic_shows_above_the_fold_at_1280_by_900(page, make_topic, page_problems):
    for n in range(3):
        make_topic(title=f"Research question number {n} about MS fatigue")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/topics")
    first = page.locator(".topic-card h2").first
    box = first.bounding_box()
    assert box is not None and box["y"] + box["height"] < 900, box
    page.get_by_text("Filter and sort topics").click()
    page.get_by_label("Category").select_option(label="Symptoms and wellbeing")
    page.get_by_role("button", name="Show topics").click()
    assert page.locator("details.topic-filters").get_attribute("open") is not None
    page_problems.assert_none()


@pytest.mark.browser
def test_after_supporting_focus_is_on_the_support_section_and_the_result_is_announced(
    page, make_topic, make_user, page_problems
):
    topic = make_topic(title="Does cooling help heat sensitivity in MS?")
    _sign_in(page, make_user(Role.PARTICIPANT).email)
    page.goto(f"/topics/{topic.id}")
    page.get_by_role("button", name="Support this topic").click()
    page.wait_for_url(f"**/topics/{topic.id}#support")
    page.wait_for_function(
        "() => document.getElementById('announcements').textContent.includes("
        "'Thank you for your support.')"
    )
    assert page.evaluate("() => document.activeElement.id") == "support"
    assert page.evaluate("() => document.activeElement.getAttribute('aria-labelledby')") == (
        "support-heading"
    )
    page.get_by_role("button", name="Withdraw my support").click()
    page.wait_for_function(
        "() => document.getElementById('announcements').textContent.includes("
        "'Your support is withdrawn.')"
    )
    assert page.evaluate("() => document.activeElement.id") == "support"
    page_problems.assert_none()


def test_the_tally_table_counts_each_role(client, busy_topic):
    rows = tally_rows(client.get(f"/topics/{busy_topic.id}").get_data(as_text=True))
    assert rows == {
        "People with MS": 1,
        "Verified healthcare professionals": 1,
        "MS organisations": 1,
        "Healthcare professionals not yet verified": 1,
    }
