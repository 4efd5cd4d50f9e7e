"""The tally of a round against a worked example, its refusals, and the ballot file.

The worked example (``EXAMPLE_*`` below), worked out by hand
============================================================
Five topics are on the shortlist (S = 5): A = 11, B = 12, C = 13, D = 14, E = 15. Each ballot
ranks up to N = 3 of them, so 1st = 3 points, 2nd = 2 points, 3rd = 1 point. Three groups of
unequal size: 6 people with MS, 2 healthcare professionals, 1 MS organisation.

People with MS (6 ballots)::

    p1: A B C   ->  A 3, B 2, C 1
    p2: A B D   ->  A 3, B 2, D 1
    p3: A C B   ->  A 3, C 2, B 1
    p4: B A E   ->  B 3, A 2, E 1
    p5: A D     ->  A 3, D 2
    p6: D A     ->  D 3, A 2
    points: A 16, B 8, D 6, C 3, E 1
    group ranking: A, B, D, C, E  -> re-scored (S - p + 1): A 5, B 4, D 3, C 2, E 1

Healthcare professionals (2 ballots)::

    q1: C D E   ->  C 3, D 2, E 1
    q2: B E     ->  B 3, E 2
    points: E 3 (ranked by 2 ballots), B 3 (1 ballot), C 3 (1 ballot), D 2
    E, B and C tie on 3 points: E first, as two ballots ranked it; B before C by topic id.
    group ranking: E, B, C, D  -> re-scored: E 5, B 4, C 3, D 2 (A unranked: 0)

MS organisations (1 ballot)::

    o1: C E D   ->  C 3, E 2, D 1
    group ranking: C, E, D  -> re-scored: C 5, E 4, D 3 (A, B unranked: 0)

Combined (sum of the re-scores; groups that ranked the topic)::

    A: 5 + 0 + 0 =  5  (1 group)
    B: 4 + 4 + 0 =  8  (2 groups)
    C: 2 + 3 + 5 = 10  (3 groups)
    D: 3 + 2 + 3 =  8  (3 groups)
    E: 1 + 5 + 4 = 10  (3 groups)
    order: 1 C (10, 3 groups), 2 E (10, 3 groups; C first by topic id),
           3 D (8, 3 groups), 4 B (8, 2 groups; D first as more groups ranked it), 5 A (5)
    Top 3: C, E, D

Every group weighs the same: the organisation's one ballot moves C as much as the six people
with MS move A. Pooling the nine ballots' points instead would give A 16, B 11, C 9, D 9, E 6,
with A (first for four of the six people with MS, unranked by the other two groups) on top.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from engage.rounds import tally as t
from engage.rounds.rules import DEFAULT_GROUPS

A, B, C, D, E = 11, 12, 13, 14, 15
EXAMPLE_SHORTLIST = (A, B, C, D, E)
EXAMPLE_MAX_RANKS = 3
EXAMPLE_BALLOTS = {
    "people_with_ms": [(A, B, C), (A, B, D), (A, C, B), (B, A, E), (A, D), (D, A)],
    "professionals": [(C, D, E), (B, E)],
    "organisations": [(C, E, D)],
}


def ballots_of(
    rankings: dict[str, list[tuple[int, ...]]], prefix: str = ""
) -> list[t.CountedBallot]:
    """Counted ballots with ids ``<prefix><group>-<n>``."""
    return [
        t.CountedBallot(ballot_uid=f"{prefix}{code}-{n}", group_code=code, ranking=ranking)
        for code, group_rankings in rankings.items()
        for n, ranking in enumerate(group_rankings)
    ]


def example_result(ballots: list[t.CountedBallot] | None = None, **overrides: Any) -> t.RoundResult:
    arguments: dict[str, Any] = {
        "max_ranks": EXAMPLE_MAX_RANKS,
        "groups": DEFAULT_GROUPS,
        "shortlist": EXAMPLE_SHORTLIST,
        "ballots": ballots_of(EXAMPLE_BALLOTS) if ballots is None else ballots,
    }
    return t.tally(**{**arguments, **overrides})


def combined_rows(result: t.RoundResult) -> list[tuple[int, int, int, int]]:
    return [(c.position, c.topic_id, c.score, c.groups_ranked) for c in result.combined]


# The worked example ----------------------------------------------------------------------------
def test_each_group_ranks_by_its_own_reverse_rank_points():
    people, professionals, organisations = example_result().groups

    assert (people.code, people.label, people.ballots) == ("people_with_ms", "People with MS", 6)
    assert people.points == {A: 16, B: 8, D: 6, C: 3, E: 1}
    assert people.ranking == (A, B, D, C, E)

    assert (professionals.code, professionals.ballots) == ("professionals", 2)
    assert professionals.points == {E: 3, B: 3, C: 3, D: 2}
    # Three-way tie on 3 points: E was ranked by two ballots; B before C by topic id.
    assert professionals.ranking == (E, B, C, D)

    assert (organisations.code, organisations.ballots) == ("organisations", 1)
    assert organisations.points == {C: 3, E: 2, D: 1}
    assert organisations.ranking == (C, E, D)


def test_the_combined_ranking_sums_equally_weighted_group_rescores():
    result = example_result()

    assert combined_rows(result) == [
        (1, C, 10, 3),  # 2 + 3 + 5; ties with E on score and groups: lower topic id first
        (2, E, 10, 3),  # 1 + 5 + 4
        (3, D, 8, 3),  # 3 + 2 + 3; ties with B on score: ranked by more groups
        (4, B, 8, 2),  # 4 + 4 + 0
        (5, A, 5, 1),  # 5 + 0 + 0: first for people with MS only
    ]
    assert [c.topic_id for c in result.top()] == [C, E, D]
    assert (result.max_ranks, result.shortlist) == (3, EXAMPLE_SHORTLIST)


def test_pooling_the_points_instead_would_let_the_largest_group_decide():
    """The contrast the docstring draws: without equal group weights, A would come first."""
    pooled: dict[int, int] = dict.fromkeys(EXAMPLE_SHORTLIST, 0)
    for ballot in ballots_of(EXAMPLE_BALLOTS):
        for rank, topic in enumerate(ballot.ranking):
            pooled[topic] += EXAMPLE_MAX_RANKS - rank
    assert pooled == {A: 16, B: 11, C: 9, D: 9, E: 6}
    assert example_result().combined[-1].topic_id == A


def test_a_group_weighs_the_same_whatever_its_size():
    """The organisation's single ballot counts as much as a hundred copies of it would."""
    hundred = {**EXAMPLE_BALLOTS, "organisations": EXAMPLE_BALLOTS["organisations"] * 100}

    result = example_result(ballots_of(hundred))

    assert combined_rows(result) == combined_rows(example_result())
    assert result.groups[2].ballots == 100
    assert result.groups[2].points == {C: 300, E: 200, D: 100}


def test_a_group_without_ballots_contributes_nothing():
    groups = [*DEFAULT_GROUPS, {"code": "carers", "label": "Carers", "roles": []}]

    result = example_result(groups=groups)

    assert combined_rows(result) == combined_rows(example_result())
    assert result.groups[3] == t.GroupResult(
        code="carers", label="Carers", ballots=0, points={}, ranking=()
    )


def test_no_ballots_gives_an_empty_result_with_every_group():
    result = example_result([])

    assert result.combined == () and result.top() == ()
    assert [(g.code, g.ballots, g.ranking) for g in result.groups] == [
        ("people_with_ms", 0, ()),
        ("professionals", 0, ()),
        ("organisations", 0, ()),
    ]


def test_top_is_the_first_max_ranks_of_the_combined_ranking():
    result = example_result(
        max_ranks=2,
        ballots=[
            t.CountedBallot("b1", "people_with_ms", (A, B)),
            t.CountedBallot("b2", "professionals", (C, D)),
            t.CountedBallot("b3", "organisations", (E,)),
        ],
    )

    # A, C and E are each first in one group (5 each, one group each): by topic id.
    assert combined_rows(result) == [
        (1, A, 5, 1),
        (2, C, 5, 1),
        (3, E, 5, 1),
        (4, B, 4, 1),
        (5, D, 4, 1),
    ]
    assert [c.topic_id for c in result.top()] == [A, C]


def test_a_larger_shortlist_rescores_from_its_size():
    """With S = 7 the first place in a group is worth 7, the second 6."""
    result = example_result(
        shortlist=(*EXAMPLE_SHORTLIST, 16, 17),
        ballots=[t.CountedBallot("b1", "organisations", (17, A))],
    )

    assert combined_rows(result) == [(1, 17, 7, 1), (2, A, 6, 1)]


# Refused ballots -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ballot", "message"),
    [
        (t.CountedBallot("x", "people_with_ms", (A, 99)), "ranks topic 99, not on the shortlist"),
        (t.CountedBallot("x", "people_with_ms", (A, B, A)), "ranks a topic twice"),
        (t.CountedBallot("x", "people_with_ms", (A, B, C, D)), "ranks 4 topics, more than 3"),
        (t.CountedBallot("x", "people_with_ms", ()), "ranks no topic"),
        (t.CountedBallot("x", "carers", (A,)), "unknown group 'carers'"),
        (t.CountedBallot("x", "people_with_ms", (True,)), "not on the shortlist"),
    ],
)
def test_a_ballot_the_services_would_refuse_is_refused(ballot, message):
    with pytest.raises(ValueError, match=message):
        example_result([*ballots_of(EXAMPLE_BALLOTS), ballot])


def test_a_ballot_counted_twice_is_refused():
    ballots = ballots_of(EXAMPLE_BALLOTS)
    with pytest.raises(ValueError, match="ballot organisations-0 is counted twice"):
        example_result([*ballots, ballots[-1]])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_ranks": 0}, "max_ranks must be a whole number from 1"),
        ({"shortlist": (A, B, A)}, "the shortlist names a topic twice"),
        ({"groups": [*DEFAULT_GROUPS, DEFAULT_GROUPS[0]]}, "two groups have the same code"),
    ],
)
def test_inconsistent_parameters_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        example_result(**overrides)


# The result as JSON ----------------------------------------------------------------------------
def test_the_result_survives_json():
    result = example_result()

    stored = json.loads(json.dumps(result.to_json()))

    assert t.RoundResult.from_json(stored) == result
    assert stored["combined"][0] == {"position": 1, "topic": C, "score": 10, "groups_ranked": 3}
    assert stored["groups"][1]["ranking"] == [
        {"topic": E, "points": 3},
        {"topic": B, "points": 3},
        {"topic": C, "points": 3},
        {"topic": D, "points": 2},
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(extra=1), "result has unknown key"),
        (
            lambda r: r["combined"][0].update(score="10"),
            r"result.combined\[0\].score must be a whole",
        ),
        (lambda r: r["groups"][0].pop("label"), r"result.groups\[0\] lacks label"),
        (lambda r: r["groups"][0]["ranking"].append({"topic": A, "points": 1}), "appears twice"),
    ],
)
def test_a_malformed_result_is_refused(change, message):
    data = json.loads(json.dumps(example_result().to_json()))
    change(data)
    with pytest.raises(t.InvalidBallotFile, match=message):
        t.RoundResult.from_json(data)


def test_describe_differences_names_each_changed_place():
    published = example_result()
    ballots = ballots_of(EXAMPLE_BALLOTS)
    # The organisation now puts D first: C and D swap places there.
    changed = example_result(
        [*ballots[:-1], t.CountedBallot("organisations-0", "organisations", (D, E, C))]
    )

    lines = t.describe_differences(
        published, changed, expected_name="published", actual_name="recomputed"
    )

    assert t.describe_differences(published, published, expected_name="a", actual_name="b") == []
    assert (
        "combined position 1: topic 13 (score 10, 3 group(s)) published, topic 14 (score 10, "
        "3 group(s)) recomputed" in lines
    )
    assert (
        "group organisations position 1: topic 13 (3 points) published, topic 14 (3 points) "
        "recomputed" in lines
    )


# The ballot file -------------------------------------------------------------------------------
def example_file() -> dict[str, Any]:
    ballots = ballots_of(EXAMPLE_BALLOTS)
    return t.ballot_file(
        round_id=7,
        title="Which unanswered questions about MS treatment matter most to you?",
        max_ranks=EXAMPLE_MAX_RANKS,
        groups=DEFAULT_GROUPS,
        shortlist=EXAMPLE_SHORTLIST,
        ballots=ballots,
        result=example_result(ballots),
    )


def test_the_ballot_file_names_no_person_and_reads_back():
    data = json.loads(json.dumps(example_file()))

    assert set(data) == {
        "format",
        "round",
        "title",
        "max_ranks",
        "groups",
        "shortlist",
        "ballots",
        "result",
    }
    assert data["format"] == "engage-round-ballots/1"
    assert data["ballots"][0] == {
        "ballot": "organisations-0",
        "group": "organisations",
        "ranking": [C, E, D],
    }
    uids = [b["ballot"] for b in data["ballots"]]
    assert uids == sorted(uids) and len(uids) == 9
    assert all(set(b) == {"ballot", "group", "ranking"} for b in data["ballots"])

    read = t.read_ballot_file(data)

    assert (read.round_id, read.max_ranks, read.shortlist) == (7, 3, EXAMPLE_SHORTLIST)
    assert [g["code"] for g in read.groups] == ["people_with_ms", "professionals", "organisations"]
    assert sorted(read.ballots, key=lambda b: b.ballot_uid) == list(read.ballots)
    assert set(read.ballots) == set(ballots_of(EXAMPLE_BALLOTS))
    assert read.result == example_result()
    assert read.recount() == read.result


def _ballot(data: dict[str, Any], n: int) -> dict[str, Any]:
    return data["ballots"][n]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(person="someone@example.org"), "the file has unknown key"),
        (lambda d: d.pop("shortlist"), "the file lacks shortlist"),
        (lambda d: d.update(format="engage-round-ballots/2"), "format is"),
        (lambda d: d.update(round="7"), "round must be a whole number"),
        (lambda d: d.update(max_ranks=3.0), "max_ranks must be a whole number"),
        (lambda d: d.update(max_ranks=True), "max_ranks must be a whole number"),
        (lambda d: d.update(max_ranks=0), "max_ranks is 0"),
        (lambda d: d.update(title=None), "title must be text"),
        (lambda d: d.update(groups={}), "groups must be a list"),
        (lambda d: d.update(groups=[]), "groups is empty"),
        (lambda d: d["groups"][0].update(weight=2), r"groups\[0\] has unknown key"),
        (lambda d: d["groups"].append(dict(d["groups"][0])), "two groups have the same code"),
        (lambda d: d["shortlist"].append(A), "shortlist: a topic appears twice"),
        (lambda d: d["shortlist"].append("16"), r"shortlist\[5\] must be a whole number"),
        (lambda d: _ballot(d, 0).update(person=3), r"ballots\[0\] has unknown key"),
        (lambda d: _ballot(d, 0).update(ballot=5), r"ballots\[0\].ballot must be text"),
        (lambda d: _ballot(d, 0).update(ballot=""), r"ballots\[0\].ballot is empty"),
        (lambda d: _ballot(d, 0).update(ranking="13,15"), r"ranking must be a list"),
        (lambda d: _ballot(d, 0).update(ranking=[C, "15"]), r"ranking\[1\] must be a whole"),
        (lambda d: _ballot(d, 0).update(ranking=[C, 99]), "ranks topic 99, not on the shortlist"),
        (lambda d: _ballot(d, 0).update(ranking=[C, C]), "ranks a topic twice"),
        (lambda d: _ballot(d, 0).update(ranking=[A, B, C, D]), "ranks 4 topics, more than 3"),
        (lambda d: _ballot(d, 0).update(ranking=[]), "ranks no topic"),
        (lambda d: _ballot(d, 0).update(group="carers"), "unknown group 'carers'"),
        (lambda d: d["ballots"].insert(1, dict(_ballot(d, 0))), "appears twice"),
        (lambda d: d["ballots"].reverse(), "not sorted by ballot id"),
        (lambda d: d.update(result=[]), "result must be an object"),
        (lambda d: d["result"].pop("groups"), "result lacks groups"),
    ],
)
def test_a_malformed_ballot_file_is_refused(change, message):
    data = json.loads(json.dumps(example_file()))
    change(data)
    with pytest.raises(t.InvalidBallotFile, match=message):
        t.read_ballot_file(data)


def test_a_ballot_file_that_is_not_an_object_is_refused():
    with pytest.raises(t.InvalidBallotFile, match="the file must be an object"):
        t.read_ballot_file([])  # type: ignore[arg-type]
