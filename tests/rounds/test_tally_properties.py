"""Properties of the tally over generated rounds: it depends on what the ballots say, not on
their order, and a group weighs the same however many ballots say it.

Examples are derandomised (the same every run) and few enough to take a few seconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engage.rounds import tally as t

SETTINGS = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
GROUP_CODES = ("people_with_ms", "professionals", "organisations")


@dataclass(frozen=True)
class Round:
    """A generated round and its ballots."""

    max_ranks: int
    groups: tuple[dict[str, str], ...]
    shortlist: tuple[int, ...]
    ballots: tuple[t.CountedBallot, ...]

    def result(self, ballots: list[t.CountedBallot] | tuple[t.CountedBallot, ...]):
        return t.tally(
            max_ranks=self.max_ranks, groups=self.groups, shortlist=self.shortlist, ballots=ballots
        )


@st.composite
def rounds(draw: st.DrawFn) -> Round:
    """Up to 3 groups, up to 8 shortlisted topics (ids that need not be consecutive), and up to
    25 ballots of 1..max_ranks distinct topics each; small, so ties are frequent."""
    shortlist = tuple(draw(st.lists(st.integers(1, 500), min_size=1, max_size=8, unique=True)))
    max_ranks = draw(st.integers(1, 6))
    groups = tuple(
        {"code": code, "label": code.replace("_", " ")}
        for code in GROUP_CODES[: draw(st.integers(1, len(GROUP_CODES)))]
    )
    longest = min(max_ranks, len(shortlist))
    ballot = st.tuples(
        st.sampled_from([g["code"] for g in groups]),
        st.lists(st.sampled_from(shortlist), min_size=1, max_size=longest, unique=True),
    )
    drawn = draw(st.lists(ballot, max_size=25))
    return Round(
        max_ranks=max_ranks,
        groups=groups,
        shortlist=shortlist,
        ballots=tuple(
            t.CountedBallot(ballot_uid=f"b{n:03d}", group_code=code, ranking=tuple(ranking))
            for n, (code, ranking) in enumerate(drawn)
        ),
    )


def copies(ballots, code: str, k: int) -> list[t.CountedBallot]:
    """Every ballot, with those of group ``code`` there ``k`` times (each copy its own id)."""
    result = []
    for ballot in ballots:
        times = k if ballot.group_code == code else 1
        result += [
            t.CountedBallot(f"{ballot.ballot_uid}-{i}", ballot.group_code, ballot.ranking)
            for i in range(times)
        ]
    return result


@SETTINGS
@given(round_=rounds(), seed=st.integers(0, 2**32 - 1))
def test_the_result_does_not_depend_on_the_order_of_the_ballots(round_, seed):
    shuffled = list(round_.ballots)
    random.Random(seed).shuffle(shuffled)

    assert round_.result(shuffled) == round_.result(round_.ballots)


@SETTINGS
@given(round_=rounds(), group=st.integers(0, 2), k=st.integers(2, 4))
def test_repeating_every_ballot_of_one_group_changes_no_ranking(round_, group, k):
    """Duplicating (k = 2) or repeating k times every ballot of one group leaves the combined
    result and every group's ranking as they were; only that group's counts scale by k."""
    code = round_.groups[group % len(round_.groups)]["code"]
    before = round_.result(round_.ballots)

    after = round_.result(copies(round_.ballots, code, k))

    assert after.combined == before.combined
    assert after.top() == before.top()
    for old, new in zip(before.groups, after.groups, strict=True):
        factor = k if old.code == code else 1
        assert new.ranking == old.ranking
        assert new.ballots == old.ballots * factor
        assert new.points == {topic: points * factor for topic, points in old.points.items()}


@SETTINGS
@given(round_=rounds())
def test_the_result_is_what_the_rules_say(round_):
    """Re-derive every number from the rules, one by one, in the plainest way."""
    result = round_.result(round_.ballots)
    size = len(round_.shortlist)
    scores: dict[int, int] = {}
    ranked_by: dict[int, int] = {}
    for group in result.groups:
        own = [b for b in round_.ballots if b.group_code == group.code]
        assert group.ballots == len(own)
        for topic in round_.shortlist:
            points = sum(
                round_.max_ranks - b.ranking.index(topic) for b in own if topic in b.ranking
            )
            assert group.points.get(topic, 0) == points
        # Each place is at least as good as the next, by points then by ballots ranking it.
        mentions = {topic: sum(topic in b.ranking for b in own) for topic in group.ranking}
        keys = [(-group.points[x], -mentions[x], x) for x in group.ranking]
        assert keys == sorted(keys) and all(group.points[x] > 0 for x in group.ranking)
        for position, topic in enumerate(group.ranking, start=1):
            scores[topic] = scores.get(topic, 0) + size - position + 1
            ranked_by[topic] = ranked_by.get(topic, 0) + 1
    assert {c.topic_id: c.score for c in result.combined} == scores
    assert {c.topic_id: c.groups_ranked for c in result.combined} == ranked_by
    assert [c.position for c in result.combined] == list(range(1, len(result.combined) + 1))
    keys = [(-c.score, -c.groups_ranked, c.topic_id) for c in result.combined]
    assert keys == sorted(keys)
    assert result.top() == result.combined[: round_.max_ranks]


@SETTINGS
@given(round_=rounds())
def test_the_ballot_file_recounts_to_its_result(round_):
    result = round_.result(round_.ballots)
    data = t.ballot_file(
        round_id=1,
        title="Round",
        max_ranks=round_.max_ranks,
        groups=round_.groups,
        shortlist=round_.shortlist,
        ballots=round_.ballots,
        result=result,
    )

    read = t.read_ballot_file(data)

    assert read.result == result
    assert read.recount() == result
    assert t.RoundResult.from_json(result.to_json()) == result
