"""The public rounds pages: the list, a round's ballot (ranking with a "Rank" choice per topic,
errors said exactly), the saved ranking, and a closed round's results and ballot file."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from markupsafe import escape

from engage.accounts.models import CustodianStatus, Role, User
from engage.rounds import workshop
from engage.rounds.models import Ballot, BallotEvent, PriorityRound, RoundAgreedItem
from engage.timeutil import utcnow
from tests.conftest import post_form, sign_in
from tests.governance.support import counting_statements
from tests.rounds.ballot_support import cast, close, make_round, staff_and_author


@pytest.fixture
def made(session, make_user):
    """An open round: 4 topics, up to 3 ranks; topics 2 and 4 are partly answered."""
    staff, author = staff_and_author(make_user)
    return make_round(session, staff.id, author.id)


@pytest.fixture
def person(client, make_user):
    """A person with MS, signed in."""
    user = make_user(Role.PARTICIPANT)
    sign_in(client, user)
    return user


def _stored(session):
    session.expire_all()
    return (
        session.scalar(sa.select(sa.func.count()).select_from(Ballot)),
        session.scalar(sa.select(sa.func.count()).select_from(BallotEvent)),
    )


def _text(response) -> str:
    return response.get_data(as_text=True)


# The list -----------------------------------------------------------------------------------
def test_the_list_shows_open_upcoming_and_closed_rounds(client, session, make_user, made):
    staff, author = staff_and_author(make_user)
    upcoming = make_round(session, staff.id, author.id, titles=["Is tai chi good for balance?"],
                          opens_in=timedelta(days=3), closes_in=timedelta(days=10))
    session.get(PriorityRound, upcoming.id).title = "Balance questions"
    session.commit()
    done = make_round(session, staff.id, author.id, titles=["Do cold baths help spasticity?"])
    session.get(PriorityRound, done.id).title = "Spasticity questions"
    session.commit()
    close(session, done.id)

    page = _text(client.get("/rounds"))
    open_part, rest = page.split('id="upcoming-heading"')
    upcoming_part, closed_part = rest.split('id="closed-heading"')
    assert f'href="/rounds/{made.id}"' in open_part and "4 topics to rank" in open_part
    assert "Balance questions" in upcoming_part and "Opens on" in upcoming_part
    assert "Spasticity questions" in closed_part
    assert f'href="/rounds/{done.id}/results"' in closed_part
    assert "to rank topics in an open round" in page  # a visitor is asked to sign in


def test_the_list_says_which_rounds_the_person_has_ranked_in(client, session, made, person):
    assert "You have saved a ranking" not in _text(client.get("/rounds"))
    cast(session, person.id, made.id, made.topic_ids[:1])
    assert "You have saved a ranking" in _text(client.get("/rounds"))


@pytest.mark.parametrize(
    ("role", "options", "linked"),
    [
        (Role.PARTICIPANT, {}, True),
        (Role.CLINICIAN, {"clinician_verified": True}, True),
        (Role.ORGANISATION, {}, True),
        (Role.CUSTODIAN, {"custodian_status": CustodianStatus.APPROVED}, False),
    ],
)
def test_people_who_can_take_part_find_rounds_in_the_menu(
    client, make_user, role, options, linked
):
    sign_in(client, make_user(role, **options))
    page = _text(client.get("/topics"))
    menu = page.split('aria-label="Main"')[1].split("</nav>")[0]
    assert ('href="/rounds">Priority rounds</a>' in menu) is linked
    # The topics list explains where shortlisted topics go, for everybody.
    assert 'href="/rounds">priority-setting rounds</a>' in page


# The ballot page ----------------------------------------------------------------------------
def test_the_ballot_offers_a_rank_choice_per_topic_with_its_evidence_check(client, made, person):
    page = _text(client.get(f"/rounds/{made.id}"))
    assert "Which unanswered questions about MS treatment matter most to you?" in page
    for position, topic_id in enumerate(made.topic_ids, start=1):
        title = str(escape(made.titles[topic_id]))
        label = (
            f'<label for="rank-{position}">Rank<span class="visually-hidden"> for “{title}”'
            "</span></label>"
        )
        assert label in page
        assert f'<select id="rank-{position}" name="rank-{position}">' in page
    options = re.findall(r"<option[^>]*>([^<]*)</option>", page.split('id="rank-1"')[1])[:4]
    assert options == ["Not ranked", "1 (most important)", "2", "3"]
    assert "no research has answered this question yet" in page
    assert "research has partly answered this question" in page
    assert "A small trial in 2019 looked at this." in page
    assert 'href="https://example.org/evidence" rel="nofollow noopener"' in page
    assert "Choose up to 3 topics that matter most to you." in page
    assert "Your ranking will count with the group “People with MS”." in page
    assert '<button type="submit" class="button">Save my ranking</button>' in page


def test_saving_a_ranking_shows_it_back_in_order_with_focus_on_it(client, session, made, person):
    t = made.topic_ids
    response = post_form(client, f"/rounds/{made.id}/ballot", {"rank-3": "1", "rank-1": "2"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/rounds/{made.id}#my-ranking")
    page = _text(client.get(response.headers["Location"]))
    assert re.search(r'notice-success" data-announce>\s*<p>Your ranking is saved: 2 topics.', page)
    saved = page.split('id="my-ranking"')[1].split("</section>")[0]
    assert "data-return-focus" in page.split('id="my-ranking"')[1].split(">")[0]
    assert re.findall(r"<li>([^<]*)</li>", saved) == [made.titles[t[2]], made.titles[t[0]]]
    assert "It counts with the group “People with MS”." in saved
    # The form starts from the saved ranking.
    assert '<option selected value="1">' in page.split('id="rank-3"')[1].split("</select>")[0]
    assert '<option selected value="2">' in page.split('id="rank-1"')[1].split("</select>")[0]
    assert _stored(session) == (1, 1)
    (ballot,) = session.scalars(sa.select(Ballot)).all()
    assert ballot.ranking == [t[2], t[0]] and ballot.user_id == person.id


def test_a_changed_ranking_replaces_the_saved_one(client, session, made, person):
    post_form(client, f"/rounds/{made.id}/ballot", {"rank-1": "1", "rank-2": "2"})
    response = post_form(client, f"/rounds/{made.id}/ballot", {"rank-4": "1"})
    page = _text(client.get(response.headers["Location"]))
    assert "Your ranking is saved: 1 topic." in page
    saved = page.split('id="my-ranking"')[1].split("</section>")[0]
    assert re.findall(r"<li>([^<]*)</li>", saved) == [made.titles[made.topic_ids[3]]]
    assert _stored(session) == (1, 2)


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        (
            {"rank-1": "1", "rank-2": "1"},
            [
                ("rank-1", "You also gave rank 1 to “Which diet helps people with MS?”. Give "
                 "each rank to one topic only."),
                ("rank-2", "You also gave rank 1 to “Does exercise ease MS fatigue?”. Give "
                 "each rank to one topic only."),
            ],
        ),
        (
            {"rank-1": "1", "rank-4": "3"},
            [("rank-4", "No topic has rank 2, so this one cannot be 3. Number your choices 1, "
              "2, 3 … with no gaps.")],
        ),
        (
            {"rank-2": "2"},
            [("rank-2", "No topic has rank 1, so this one cannot be 2.")],
        ),
        ({"rank-3": "4"}, [("rank-3", "Choose a rank from the list, or “Not ranked”.")]),
        ({"rank-3": "-1"}, [("rank-3", "Choose a rank from the list, or “Not ranked”.")]),
        ({}, [(None, "Give at least one topic a rank: choose 1 for the topic that matters most.")]),
    ],
    ids=["repeated", "gap", "no first", "beyond the limit", "negative", "nothing ranked"],
)
def test_a_ranking_with_mistakes_is_shown_again_saying_exactly_what_is_wrong(
    client, session, made, person, data, errors
):
    response = post_form(client, f"/rounds/{made.id}/ballot", data)
    assert response.status_code == 400
    page = _text(response)
    summary = page.split('class="error-summary"')[1].split("</div>")[0]
    for field_id, message in errors:
        escaped = str(escape(message))
        if field_id is None:
            assert f"<li>{escaped}</li>" in summary
        else:
            assert f'<a href="#{field_id}">' in summary and escaped in summary
            field = page.split(f'id="{field_id}-error"')[1].split("</p>")[0]
            assert escaped in field
            described = f'aria-describedby="{field_id}-error" aria-invalid="true"'
            assert f'{described} id="{field_id}"' in page
    assert "<title>Error: " in page
    # What was chosen is kept.
    for name, value in data.items():
        if value in ("1", "2", "3"):
            chosen = page.split(f'id="{name}"')[1].split("</select>")[0]
            assert f'<option selected value="{value}">' in chosen
    assert _stored(session) == (0, 0)


def test_a_closed_round_shows_its_shortlist_without_a_form_and_refuses_ballots(
    client, session, made, person
):
    close(session, made.id)
    page = _text(client.get(f"/rounds/{made.id}"))
    assert "<select" not in page and "rankings can no longer be saved or changed" in page
    assert f'href="/rounds/{made.id}/results"' in page
    response = post_form(client, f"/rounds/{made.id}/ballot", {"rank-1": "1"})
    assert response.status_code == 303
    page = _text(client.get(response.headers["Location"]))
    assert re.search(r'notice-error" data-announce>\s*<p>This round closed on', page)
    assert _stored(session) == (0, 0)


def test_an_unchecked_professional_sees_why_and_cannot_save(client, session, made, make_user):
    sign_in(client, make_user(Role.CLINICIAN, clinician_verified=False))
    page = _text(client.get(f"/rounds/{made.id}"))
    assert "<select" not in page
    assert "Staff have not yet checked your details as a healthcare professional." in page
    response = post_form(client, f"/rounds/{made.id}/ballot", {"rank-1": "1"})
    assert response.status_code == 303 and response.headers["Location"].endswith("#ballot")
    page = _text(client.get(response.headers["Location"]))
    assert "Staff have not yet checked your details" in page
    assert _stored(session) == (0, 0)


@pytest.mark.parametrize(
    ("role", "answer"), [(None, 302), (Role.STAFF, 403), (Role.CUSTODIAN, 403)]
)
def test_only_people_taking_part_may_send_a_ballot(client, session, made, as_role, role, answer):
    as_role(role)
    page = _text(client.get(f"/rounds/{made.id}"))
    assert "<select" not in page and "Does exercise ease MS fatigue?" in page
    response = post_form(client, f"/rounds/{made.id}/ballot", {"rank-1": "1"})
    assert response.status_code == answer
    assert _stored(session) == (0, 0)


def test_a_missing_round_is_not_found(client, person):
    assert client.get("/rounds/999999").status_code == 404
    assert post_form(client, "/rounds/999999/ballot", {"rank-1": "1"}).status_code == 404


def test_titles_with_html_are_shown_escaped(client, session, make_user, person):
    staff, author = staff_and_author(make_user)
    made = make_round(session, staff.id, author.id, titles=['<script>alert("x")</script> Fatigue?'])
    cast(session, person.id, made.id, made.topic_ids)
    close(session, made.id)
    for url in (f"/rounds/{made.id}", f"/rounds/{made.id}/results"):
        page = _text(client.get(url))
        assert "<script>alert" not in page and "&lt;script&gt;alert" in page


# Results ------------------------------------------------------------------------------------
@pytest.fixture
def closed(session, make_user, made):
    """The round closed with five people with MS and one professional ranking."""
    t = made.topic_ids
    rankings = [[t[0], t[1], t[2]]] * 3 + [[t[1], t[0]]] * 2
    for ranking in rankings:
        cast(session, make_user(Role.PARTICIPANT).id, made.id, ranking)
    cast(session, make_user(Role.CLINICIAN, clinician_verified=True).id, made.id, [t[3], t[2]])
    close(session, made.id)
    return made


def test_results_are_not_shown_before_the_round_is_tallied(client, session, made):
    for url in (f"/rounds/{made.id}/results", f"/rounds/{made.id}/ballots.json"):
        assert client.get(url).status_code == 404
    round_ = session.get(PriorityRound, made.id)
    round_.closes_at = utcnow() - timedelta(seconds=1)
    session.commit()
    # Past its closing time, the ballots are being counted.
    assert "The ballots are being counted" in _text(client.get(f"/rounds/{made.id}"))
    assert client.get(f"/rounds/{made.id}/results").status_code == 404


@pytest.mark.parametrize(
    "role", [None, Role.PARTICIPANT, Role.CLINICIAN, Role.CUSTODIAN, Role.ORGANISATION, Role.STAFF]
)
def test_everybody_may_read_a_closed_rounds_results_and_ballot_file(
    client, session, make_user, made, as_role, role
):
    t = made.topic_ids
    for ranking in [[t[0], t[1], t[2]]] * 3 + [[t[1], t[0]]] * 2:
        cast(session, make_user(Role.PARTICIPANT).id, made.id, ranking)
    close(session, made.id)  # one group of five: big enough to publish its rankings
    as_role(role)
    assert client.get(f"/rounds/{made.id}/results").status_code == 200
    download = client.get(f"/rounds/{made.id}/ballots.json")
    assert download.status_code == 200
    assert "Download the rankings without names" in _text(client.get(f"/rounds/{made.id}/results"))


@pytest.mark.parametrize("role", [None, Role.PARTICIPANT, Role.CLINICIAN, Role.STAFF])
def test_a_group_too_small_to_show_keeps_the_ballot_file_to_staff(client, closed, as_role, role):
    """One professional's ranking would be as good as named: the results still show, the
    ballot file is for staff only, and the page says why."""
    as_role(role)
    results = client.get(f"/rounds/{closed.id}/results")
    assert results.status_code == 200
    download = client.get(f"/rounds/{closed.id}/ballots.json")
    assert download.status_code == (200 if role == Role.STAFF else 404)
    assert "fewer than 5 rankings" in _text(results)
    link = "Download the rankings without names" in _text(results)
    assert link == (role == Role.STAFF)


def test_the_results_show_the_top_n_chart_each_group_and_suppress_small_groups(client, closed):
    t = closed.topic_ids
    page = _text(client.get(f"/rounds/{closed.id}/results"))
    assert "6 rankings counted." in page
    chart = page.split('class="tally round-chart"')[1].split("</figure>")[0]
    assert 'aria-labelledby="chart-caption" tabindex="0"' in chart
    assert "The survey's Top 3, with each topic's combined score" in chart
    rows = re.findall(
        r'<td class="round-place">(\d+)</td>\s*<th scope="row" class="tally-label">\s*'
        r'<a href="/topics/(\d+)">[^<]*</a>.*?<span class="tally-count">(\d+)</span>',
        chart,
        re.S,
    )
    # People with MS: t0 13 points, t1 12, t2 3 → 4, 3, 2; professionals: t3, t2 → 4, 3.
    assert rows == [("1", str(t[2]), "5"), ("2", str(t[0]), "4"), ("3", str(t[3]), "4")]
    assert 'aria-hidden="true" focusable="false"' in chart  # the bars are not read out
    groups = page.split('class="round-groups"')[1].split("</ul>")[0]
    people = groups.split('id="group-people_with_ms"')[1].split("</ol>")[0]
    assert "5 rankings" in people
    assert re.findall(r"<li>([^<]*) <span", people) == [
        closed.titles[t[0]],
        closed.titles[t[1]],
        closed.titles[t[2]],
    ]
    for code in ("professionals", "organisations"):
        part = groups.split(f'id="group-{code}"')[1].split("</li>")[0]
        assert "Fewer than 5 rankings, so not shown." in part
        assert closed.titles[t[3]] not in part
    # One professional ranked: the rankings are not published (see the test above).
    assert f'href="/rounds/{closed.id}/ballots.json"' not in page
    assert "agreed at the final workshop" not in page


def test_the_workshops_agreed_list_is_shown_beside_the_survey(client, session, make_user, closed):
    t = closed.topic_ids
    staff = session.get(User, make_user(Role.STAFF).id)
    workshop.record_workshop(
        session,
        staff,
        session.get(PriorityRound, closed.id),
        [
            (t[0], "Most urgent for people newly diagnosed."),
            (t[2], "Moved down: fewer people are affected."),
        ],
        "Agreed in Copenhagen.",
        utcnow(),
    )
    session.commit()
    assert session.scalar(sa.select(sa.func.count()).select_from(RoundAgreedItem)) == 2
    page = _text(client.get(f"/rounds/{closed.id}/results"))
    agreed = page.split('id="agreed-heading"')[1].split("</section>")[0]
    assert "The Top 2 agreed at the final workshop" in agreed
    assert "Agreed in Copenhagen." in agreed
    items = agreed.split("<li>")[1:]
    assert closed.titles[t[0]] in items[0] and "Place 2 in the survey" in items[0]
    assert "Most urgent for people newly diagnosed." in items[0]
    assert closed.titles[t[2]] in items[1] and "Place 1 in the survey" in items[1]


def test_the_ballot_file_is_a_download_that_names_nobody(
    client, session, closed, as_role
):
    as_role(Role.STAFF)  # a group of one professional: staff only (see above)
    response = client.get(f"/rounds/{closed.id}/ballots.json")
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="round-{closed.id}-ballots.json"'
    )
    data = json.loads(response.get_data(as_text=True))
    assert data["format"] == "engage-round-ballots/1" and len(data["ballots"]) == 6
    assert {tuple(sorted(b)) for b in data["ballots"]} == {("ballot", "group", "ranking")}
    emails = session.scalars(sa.select(User.email)).all()
    body = response.get_data(as_text=True)
    assert not any(email in body for email in emails)


def test_pages_run_the_same_statements_however_many_topics_and_ballots(
    client, session, make_user, person
):
    staff, author = staff_and_author(make_user)
    small = make_round(session, staff.id, author.id, titles=["Is yoga good for balance?"])
    titles = [f"Question number {n}?" for n in range(8)]
    big = make_round(session, staff.id, author.id, titles=titles)
    cast(session, person.id, small.id, small.topic_ids)
    cast(session, person.id, big.id, big.topic_ids[:3])
    for n in range(6):
        cast(session, make_user(Role.PARTICIPANT).id, big.id, big.topic_ids[n : n + 3])
    for made_round in (small, big):
        close(session, made_round.id)

    def statements(url: str) -> int:
        with counting_statements(session) as seen:
            assert client.get(url).status_code == 200
        return len(seen)

    for page in ("{}", "{}/results"):
        assert statements("/rounds/" + page.format(small.id)) == statements(
            "/rounds/" + page.format(big.id)
        )
    assert statements("/rounds") <= 8
