"""``engage rounds tally ROUND FILE``: recompute a closed round's result from its published
ballot file.

The closed round is made here from the models and the tally (as the closing job leaves it), with
the worked example of ``test_tally.py``: Top 3 = C (13), E (15), D (14).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engage.accounts.models import Role, User
from engage.rounds import tally as t
from engage.rounds.models import Ballot, EvidenceStatus, PriorityRound, ShortlistItem
from engage.rounds.rules import DEFAULT_GROUPS
from engage.timeutil import utcnow
from engage.topics.models import Topic, TopicCategory, TopicStatus
from tests.rounds.test_tally import EXAMPLE_BALLOTS, EXAMPLE_MAX_RANKS, ballots_of

MATCHES = "The recomputed result matches the published one."
DIFFERS = "The recomputed result does not match the published one."


def _topics(session: sa.orm.Session, author: User, n: int) -> list[int]:
    now = utcnow()
    topics = [
        Topic(
            title=f"Shortlisted question {k}",
            question=f"Does treatment {k} slow MS progression?",
            rationale="Because.",
            category=TopicCategory.TREATMENTS,
            status=TopicStatus.SHORTLISTED,
            reference_links=[],
            author_id=author.id,
            created_at=now,
            updated_at=now,
            published_at=now,
        )
        for k in range(n)
    ]
    session.add_all(topics)
    session.flush()
    return [topic.id for topic in topics]


def _new_round(session: sa.orm.Session, shortlist: list[int], *, closed: bool) -> PriorityRound:
    now = utcnow()
    round_ = PriorityRound(
        title="Treatment priorities",
        question="Which unanswered questions about MS treatment matter most to you?",
        max_ranks=EXAMPLE_MAX_RANKS,
        groups=DEFAULT_GROUPS,
        opens_at=now - timedelta(days=30),
        closes_at=now - timedelta(days=1) if closed else now + timedelta(days=1),
        created_at=now - timedelta(days=31),
    )
    session.add(round_)
    session.flush()
    session.add_all(
        ShortlistItem(
            round_id=round_.id,
            topic_id=topic,
            evidence_status=EvidenceStatus.UNANSWERED,
            added_at=now,
        )
        for topic in shortlist
    )
    return round_


@pytest.fixture
def closed_round(session, make_user, tmp_path) -> dict[str, Any]:
    """A round closed with the worked example's ballots; its ballot file written to a file.

    The example's topic letters A..E are mapped onto the five shortlisted topics' ids.
    """
    shortlist = _topics(session, session.get(User, make_user(Role.PARTICIPANT).id), 5)
    letters = dict(zip((11, 12, 13, 14, 15), shortlist, strict=True))
    rankings = {
        code: [tuple(letters[x] for x in ranking) for ranking in group]
        for code, group in EXAMPLE_BALLOTS.items()
    }
    ballots = ballots_of(rankings)
    round_ = _new_round(session, shortlist, closed=True)
    result = t.tally(
        max_ranks=round_.max_ranks, groups=round_.groups, shortlist=shortlist, ballots=ballots
    )
    round_.result = result.to_json()
    round_.ballot_file = t.ballot_file(
        round_id=round_.id,
        title=round_.title,
        max_ranks=round_.max_ranks,
        groups=round_.groups,
        shortlist=shortlist,
        ballots=ballots,
        result=result,
    )
    round_.closed_at = utcnow()
    session.commit()
    path = tmp_path / "ballots.json"
    path.write_text(json.dumps(round_.ballot_file, indent=2))
    return {"id": round_.id, "file": path, "topics": letters, "data": round_.ballot_file}


def _tally(runner, round_id: int, path: Path):
    return runner.invoke(args=["rounds", "tally", str(round_id), str(path)])


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_the_published_file_recomputes_to_the_published_result(runner, closed_round):
    c, e, d = (closed_round["topics"][x] for x in (13, 15, 14))

    answer = _tally(runner, closed_round["id"], closed_round["file"])

    assert answer.exit_code == 0, answer.output
    lines = answer.output.splitlines()
    assert lines[0] == (
        f"Round {closed_round['id']}: 9 ballot(s) in 3 group(s), 5 topic(s) on the shortlist."
    )
    assert lines[1] == "Recomputed Top 3:"
    assert lines[2].split() == ["position", "topic", "score", "groups", "ranked"]
    assert [line.split() for line in lines[3:6]] == [
        ["1", str(c), "10", "3"],
        ["2", str(e), "10", "3"],
        ["3", str(d), "8", "3"],
    ]
    assert lines[6:] == [MATCHES]


def test_a_file_with_one_ballot_changed_names_the_differences(runner, closed_round, tmp_path):
    c, e, d = (closed_round["topics"][x] for x in (13, 15, 14))
    data = json.loads(closed_round["file"].read_text())
    organisation = next(b for b in data["ballots"] if b["ballot"] == "organisations-0")
    organisation["ranking"] = [d, e, c]  # was C, E, D

    answer = _tally(runner, closed_round["id"], _write(tmp_path / "changed.json", data))

    assert answer.exit_code == 1, answer.output
    assert (
        f"ballot organisations-0: group organisations, ranking [{c}, {e}, {d}] published; "
        f"group organisations, ranking [{d}, {e}, {c}] in the file" in answer.output
    )
    # D now scores 3 + 2 + 5 = 10 with 3 groups and C 2 + 3 + 3 = 8: D first, C third.
    assert (
        f"combined position 1: topic {c} (score 10, 3 group(s)) published, "
        f"topic {d} (score 10, 3 group(s)) recomputed" in answer.output
    )
    assert (
        f"group organisations position 1: topic {c} (3 points) in the file, "
        f"topic {d} (3 points) recomputed" in answer.output
    )
    assert answer.output.rstrip().endswith(DIFFERS)
    assert MATCHES not in answer.output


def test_a_changed_file_with_a_result_to_match_still_differs_from_the_published_one(
    runner, closed_round, tmp_path
):
    """Recomputing the file's own result after changing a ballot does not hide the change."""
    data = json.loads(closed_round["file"].read_text())
    data["ballots"] = [b for b in data["ballots"] if b["group"] != "organisations"]
    read = t.read_ballot_file(data)
    data["result"] = read.recount().to_json()

    answer = _tally(runner, closed_round["id"], _write(tmp_path / "forged.json", data))

    assert answer.exit_code == 1, answer.output
    assert "ballot organisations-0: published, missing from the file" in answer.output
    assert "group organisations: 1 ballot(s) published, 0 recomputed" in answer.output
    assert DIFFERS in answer.output


def test_a_changed_stored_result_differs_from_the_recomputed_one(runner, session, closed_round):
    round_ = session.get(PriorityRound, closed_round["id"])
    result = json.loads(json.dumps(round_.result))
    result["combined"][0]["score"] = 11
    round_.result = result
    session.commit()

    answer = _tally(runner, closed_round["id"], closed_round["file"])

    assert answer.exit_code == 1, answer.output
    c = closed_round["topics"][13]
    assert (
        f"combined position 1: topic {c} (score 11, 3 group(s)) published, "
        f"topic {c} (score 10, 3 group(s)) recomputed" in answer.output
    )


def test_a_file_for_another_shortlist_differs_from_the_round(runner, closed_round, tmp_path):
    data = json.loads(closed_round["file"].read_text())
    data["max_ranks"] = 4
    data["result"]["max_ranks"] = 4

    answer = _tally(runner, closed_round["id"], _write(tmp_path / "other.json", data))

    assert answer.exit_code == 1, answer.output
    assert "ranks per ballot: 3 in the round, 4 in the file" in answer.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("this is not JSON", "not a valid ballot file: it is not JSON"),
        (b"\xff\xfe", "not a valid ballot file: it is not UTF-8 text"),
        ('{"format": 1, "format": 2}', "key 'format' appears twice in one object"),
        ("[]", "not a valid ballot file: the file must be an object"),
        ('{"round": NaN}', "NaN is not a number JSON allows"),
    ],
)
def test_a_file_that_is_not_json_is_refused(runner, closed_round, tmp_path, content, message):
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)

    answer = _tally(runner, closed_round["id"], path)

    assert answer.exit_code == 2
    assert message in answer.stderr
    assert MATCHES not in answer.output and DIFFERS not in answer.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(voters=["someone@example.org"]), "the file has unknown key(s) voters"),
        (lambda d: d["ballots"][0].update(ranking=[0]), "ranks topic 0, not on the shortlist"),
        (lambda d: d["ballots"].append(dict(d["ballots"][-1])), "appears twice"),
        (lambda d: d["ballots"][0].update(group=["organisations"]), "group must be text"),
    ],
)
def test_a_malformed_ballot_file_is_refused(runner, closed_round, tmp_path, change, message):
    data = json.loads(closed_round["file"].read_text())
    change(data)

    answer = _tally(runner, closed_round["id"], _write(tmp_path / "bad.json", data))

    assert answer.exit_code == 2
    assert "not a valid ballot file" in answer.stderr and message in answer.stderr


def test_a_missing_file_is_refused(runner, closed_round, tmp_path):
    answer = _tally(runner, closed_round["id"], tmp_path / "nowhere.json")

    assert answer.exit_code == 2
    assert "nowhere.json: cannot be read" in answer.stderr


def test_the_file_of_another_round_is_refused(runner, closed_round, tmp_path):
    data = json.loads(closed_round["file"].read_text())
    data["round"] = closed_round["id"] + 1

    answer = _tally(runner, closed_round["id"], _write(tmp_path / "other.json", data))

    assert answer.exit_code == 2
    assert (
        f"is the ballot file of round {closed_round['id'] + 1}, not of round {closed_round['id']}"
        in answer.stderr
    )


def test_a_round_not_closed_yet_is_refused(runner, session, make_user, tmp_path):
    shortlist = _topics(session, session.get(User, make_user(Role.PARTICIPANT).id), 2)
    round_ = _new_round(session, shortlist, closed=False)
    session.commit()

    answer = _tally(runner, round_.id, _write(tmp_path / "ballots.json", {}))

    assert answer.exit_code == 2
    assert f"Round {round_.id} is not closed yet" in answer.stderr


def test_an_unknown_round_is_refused(runner, tmp_path):
    answer = _tally(runner, 987654, _write(tmp_path / "ballots.json", {}))

    assert answer.exit_code == 2
    assert "There is no round 987654." in answer.stderr


def test_the_closing_job_publishes_a_file_the_command_confirms(
    runner, session, make_user, tmp_path
):
    """The staff side's closing (``close_round``) and this command agree on the same ballots."""
    closing = pytest.importorskip("engage.rounds.closing")
    people = [make_user(Role.PARTICIPANT) for _ in range(3)]
    shortlist = _topics(session, session.get(User, people[0].id), 4)
    round_ = _new_round(session, shortlist, closed=True)
    now = utcnow()
    for n, (person, ranking) in enumerate(zip(people, ([1, 0], [2, 3, 1], [0]), strict=True)):
        session.add(
            Ballot(
                round_id=round_.id,
                user_id=person.id,
                ballot_uid=f"uid-{n}",
                group_code="people_with_ms",
                ranking=[shortlist[k] for k in ranking],
                cast_at=now - timedelta(days=2),
                updated_at=now - timedelta(days=2),
            )
        )
    session.flush()
    assert closing.close_round(session, round_.id, now)
    session.commit()
    path = _write(tmp_path / "ballots.json", session.get(PriorityRound, round_.id).ballot_file)

    answer = _tally(runner, round_.id, path)

    assert answer.exit_code == 0, answer.output
    assert answer.output.rstrip().endswith(MATCHES)
    assert "3 ballot(s) in 3 group(s), 4 topic(s)" in answer.output
