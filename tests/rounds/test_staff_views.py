"""The rounds' staff pages: the list, creating and changing a round, its shortlist with
evidence checks, and the final workshop with the adoption step."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role
from engage.rounds.models import PriorityRound, RoundAgreedItem, ShortlistItem
from engage.timeutil import utcnow
from engage.topics.models import Topic, TopicStatus
from tests.conftest import post_form
from tests.rounds.staff_support import add_ballot, close_now, make_round, make_topic, open_now

ERROR_SUMMARY = "Please correct the following"


def _local(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def staff(client, make_user):
    """A staff member, signed in on ``client``."""
    from tests.conftest import sign_in

    user = make_user(Role.STAFF)
    sign_in(client, user)
    return user


@pytest.fixture
def author(make_user):
    return make_user(Role.PARTICIPANT)


def _page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def _flashed(client, response) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)
    return _page(client, response.headers["Location"])


def test_the_list_shows_each_round_with_where_it_stands(client, session, staff, author):
    topic = make_topic(session, author, staff, "Does vitamin D slow MS?")
    make_round(session, staff, title="Upcoming and empty")
    opened = make_round(session, staff, [topic.id], title="Open with one topic")
    open_now(session, opened)
    add_ballot(session, opened, None, "people_with_ms", [topic.id])
    page = _page(client, "/staff/rounds")
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)
    empty = next(row for row in rows if "Upcoming and empty" in row)
    assert "Upcoming" in empty and "No shortlist yet" in empty
    full = next(row for row in rows if "Open with one topic" in row)
    assert "Open for ranking" in full
    assert re.findall(r'<td class="num">(\d+)</td>', full) == ["1", "1"]
    assert 'href="/staff/rounds/new"' in page


@pytest.mark.parametrize("role", [Role.PARTICIPANT, Role.CLINICIAN, Role.ORGANISATION])
def test_people_taking_part_cannot_use_the_staff_pages(client, session, as_role, role):
    as_role(role, clinician_verified=True)
    assert client.get("/staff/rounds").status_code == 403
    assert client.get("/staff/rounds/new").status_code == 403
    opens = utcnow() + timedelta(days=2)
    data = {
        "title": "Not theirs to create",
        "question": "Which questions matter?",
        "roles": "participant",
        "max_ranks": "10",
        "opens_at": _local(opens),
        "closes_at": _local(opens + timedelta(days=3)),
    }
    assert post_form(client, "/staff/rounds/new", data).status_code == 403
    assert session.scalar(sa.select(sa.func.count()).select_from(PriorityRound)) == 0


def test_creating_a_round_in_utc_then_building_its_shortlist(client, session, staff, author):
    page = _page(client, "/staff/rounds/new")
    assert "Coordinated Universal Time" in page
    for role in ("participant", "clinician", "organisation"):
        assert re.search(rf'<input checked[^>]*value="{role}"', page), role
    opens = (utcnow() + timedelta(days=2)).replace(second=0, microsecond=0)
    data = {
        "title": "Treatment priorities 2027",
        "question": "Which unanswered questions about MS treatment matter most to you?",
        "roles": ["participant", "clinician"],
        "max_ranks": "10",
        "opens_at": _local(opens),
        "closes_at": _local(opens + timedelta(days=30)),
    }
    response = post_form(client, "/staff/rounds/new", data)
    round_ = session.scalar(sa.select(PriorityRound))
    assert response.headers["Location"] == f"/staff/rounds/{round_.id}#shortlist"
    assert round_.opens_at == opens and [g["code"] for g in round_.groups] == [
        "people_with_ms",
        "professionals",
    ]
    page = _flashed(client, response)
    assert "The round is created" in page
    assert "The shortlist is empty." in page
    assert 'id="shortlist" aria-labelledby="shortlist-heading" data-return-focus' in page

    topic = make_topic(session, author, staff, "Does vitamin D slow MS?")
    page = _page(client, f"/staff/rounds/{round_.id}")
    assert f'<option value="{topic.id}">Does vitamin D slow MS?</option>' in page
    refused = post_form(
        client,
        f"/staff/rounds/{round_.id}/shortlist",
        {"topic_id": str(topic.id), "evidence_status": "partly_answered"},
    )
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert ERROR_SUMMARY in text and "write a note or give a link" in text
    assert session.scalar(sa.select(sa.func.count()).select_from(ShortlistItem)) == 0

    added = post_form(
        client,
        f"/staff/rounds/{round_.id}/shortlist",
        {
            "topic_id": str(topic.id),
            "evidence_status": "partly_answered",
            "evidence_note": "One small trial.",
            "evidence_url": "https://example.org/review",
        },
    )
    assert added.headers["Location"] == f"/staff/rounds/{round_.id}#shortlist-{topic.id}"
    page = _flashed(client, added)
    assert f'id="shortlist-{topic.id}" data-return-focus' in page
    assert "Partly answered" in page and "One small trial." in page
    assert 'href="https://example.org/review"' in page

    removed = post_form(
        client, f"/staff/rounds/{round_.id}/shortlist/remove", {"topic_id": str(topic.id)}
    )
    assert "The topic is removed from the shortlist." in _flashed(client, removed)
    assert session.scalar(sa.select(sa.func.count()).select_from(ShortlistItem)) == 0


def test_a_round_opening_in_the_past_is_refused_with_the_reason(client, session, staff):
    data = {
        "title": "Late round",
        "question": "Which questions matter?",
        "roles": "participant",
        "max_ranks": "10",
        "opens_at": _local(utcnow() - timedelta(hours=1)),
        "closes_at": _local(utcnow() + timedelta(days=3)),
    }
    response = post_form(client, "/staff/rounds/new", data)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert ERROR_SUMMARY in page and "The opening time has passed" in page
    assert 'value="Late round"' in page
    assert session.scalar(sa.select(sa.func.count()).select_from(PriorityRound)) == 0


def test_details_change_while_upcoming_only(client, session, staff, author):
    topic = make_topic(session, author, staff, "Does vitamin D slow MS?")
    round_ = make_round(session, staff, [topic.id])
    page = _page(client, f"/staff/rounds/{round_.id}/edit")
    assert 'value="Priorities for MS treatment research"' in page
    data = {
        "title": "Renamed round",
        "question": round_.question,
        "roles": ["participant", "organisation"],
        "max_ranks": "5",
        "opens_at": _local(round_.opens_at),
        "closes_at": _local(round_.closes_at),
    }
    response = post_form(client, f"/staff/rounds/{round_.id}/edit", data)
    assert response.headers["Location"] == f"/staff/rounds/{round_.id}#round-details"
    assert "Renamed round" in _flashed(client, response)

    open_now(session, round_)
    response = client.get(f"/staff/rounds/{round_.id}/edit")
    assert "its details can no longer change" in _flashed(client, response)
    page = _page(client, f"/staff/rounds/{round_.id}")
    assert "Change the round&#39;s details" not in page and "Remove" not in page
    assert "Ballots so far" in page and "People with MS: 0" in page


def test_an_open_round_with_no_shortlist_warns_and_can_be_moved(client, session, staff):
    round_ = make_round(session, staff)
    open_now(session, round_)
    page = _page(client, f"/staff/rounds/{round_.id}")
    assert "opened with an empty shortlist, so nobody can rank" in page
    assert f'href="/staff/rounds/{round_.id}/edit"' in page


def _closed_round(session, staff, author, make_user):
    """A closed round of three topics (Top 2): the survey placed t2, then t1."""
    titles = ("Does vitamin D slow MS?", "Does fasting help fatigue?", "Is cooling useful?")
    topics = [make_topic(session, author, staff, title).id for title in titles]
    round_ = make_round(session, staff, topics, max_ranks=2)
    open_now(session, round_)
    add_ballot(session, round_, make_user(Role.PARTICIPANT).id, "people_with_ms", topics[1::-1])
    close_now(session, round_)
    return round_, topics


def test_the_workshop_records_the_agreed_top_and_adopts_its_topics(
    client, session, staff, author, make_user
):
    round_, (t1, t2, t3) = _closed_round(session, staff, author, make_user)
    page = _page(client, f"/staff/rounds/{round_.id}")
    assert f'href="/rounds/{round_.id}/results"' in page
    assert f'href="/staff/rounds/{round_.id}/workshop"' in page
    url = f"/staff/rounds/{round_.id}/workshop"
    page = _page(client, url)
    # The form starts from the survey's order.
    assert re.search(rf'<option selected value="{t2}">', page)
    assert "In the survey: Does fasting help fatigue?" in page
    assert "Adopt topics for research" not in page  # nothing agreed yet

    swapped = {"place_1": str(t1), "place_2": str(t3), "reason_2": "Cooling is cheap."}
    response = post_form(client, url, swapped)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert ERROR_SUMMARY in page
    assert re.search(r'id="reason_1-error">.*was 2nd in the survey', page, re.S)
    assert session.scalar(sa.select(sa.func.count()).select_from(RoundAgreedItem)) == 0

    gap = {"place_2": str(t1)}
    page = post_form(client, url, gap).get_data(as_text=True)
    assert "Fill the places in order: place 1 is empty but place 2 is not." in page

    response = post_form(client, url, {**swapped, "reason_1": "Most urgent for the workshop."})
    assert response.headers["Location"] == f"{url}#agreed"
    page = _flashed(client, response)
    assert "The workshop&#39;s Top 2 is saved" in page
    assert "Why: Most urgent for the workshop." in page
    assert 'id="adopt" aria-labelledby="adopt-heading" data-return-focus' in page

    adopt = f"/staff/rounds/{round_.id}/adopt"
    unconfirmed = post_form(client, adopt, {"topic_ids": [str(t1), str(t3)]})
    assert unconfirmed.status_code == 400
    assert "Tick the box to confirm." in unconfirmed.get_data(as_text=True)
    not_agreed = post_form(client, adopt, {"topic_ids": str(t2), "confirm": "y"})
    assert not_agreed.status_code == 400
    session.expire_all()
    assert session.get(Topic, t1).status == TopicStatus.SHORTLISTED

    response = post_form(client, adopt, {"topic_ids": [str(t1), str(t3)], "confirm": "y"})
    assert response.headers["Location"] == f"{url}#adopt"
    page = _flashed(client, response)
    assert "2 topic(s) marked adopted for research. 1 people who ranked will be emailed." in page
    session.expire_all()
    assert {session.get(Topic, t).status for t in (t1, t3)} == {TopicStatus.ADOPTED}
    assert "Every topic of the agreed list is adopted for research already" in page


def test_the_workshop_waits_for_the_round_to_close(client, session, staff, author):
    topic = make_topic(session, author, staff, "Does vitamin D slow MS?")
    round_ = make_round(session, staff, [topic.id])
    response = client.get(f"/staff/rounds/{round_.id}/workshop")
    assert "The round has not closed yet" in _flashed(client, response)


def test_pages_keep_the_accessibility_contract(client, session, staff, author, make_user):
    round_, _ = _closed_round(session, staff, author, make_user)
    for url in (
        "/staff/rounds",
        "/staff/rounds/new",
        f"/staff/rounds/{round_.id}",
        f"/staff/rounds/{round_.id}/workshop",
    ):
        page = _page(client, url)
        assert " style=" not in page and "<script>" not in page, url
        for region in re.findall(r'<div class="table-wrap table-scroll"[^>]*>', page):
            assert 'role="region"' in region and 'tabindex="0"' in region, url
