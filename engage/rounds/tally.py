"""The tally of a priority-setting round, the James Lind Alliance way, and its ballot file.

Within each group, a ballot gives the topic it ranks r-th (from 1) ``max_ranks - r + 1``
points; the group ranks the topics it gave points to by points, then by how many of its ballots
ranked them, then by topic id. Each group's ranking is then re-scored so that every group weighs
the same however many ballots it has: with S topics on the shortlist, the topic a group places
p-th gets ``S - p + 1``. The combined score of a topic is the sum over the groups; the combined
ranking orders by score, then by how many groups ranked the topic, then by topic id.

Everything here is a pure function of its arguments (no database), so the closing job, the
``engage rounds tally`` command and the tests compute the same result from the same ballots.
The ballot file is the anonymised record a closed round publishes: ballot ids, groups and
rankings, never a person, with the result, so anyone can recompute it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BALLOT_FILE_FORMAT = "engage-round-ballots/1"
# The most lines :func:`describe_differences` lists before summing up the rest.
MAX_DIFFERENCE_LINES = 25


class InvalidBallotFile(ValueError):
    """A ballot file (or a stored result) that is not what this module writes; the message
    says where and why."""


@dataclass(frozen=True)
class CountedBallot:
    """One ballot as the tally counts it: anonymous, in its frozen group."""

    ballot_uid: str
    group_code: str
    ranking: tuple[int, ...]  # topic ids, best first


@dataclass(frozen=True)
class GroupResult:
    """One group's own ranking."""

    code: str
    label: str
    ballots: int  # ballots counted in this group
    points: dict[int, int]  # topic id -> reverse-rank points within the group (ranked ones only)
    ranking: tuple[int, ...]  # topic ids with points > 0, best first


@dataclass(frozen=True)
class CombinedTopic:
    """A topic's place in the combined ranking."""

    topic_id: int
    score: int  # sum over groups of the re-scored group positions
    groups_ranked: int  # how many groups ranked it
    position: int  # 1-based


@dataclass(frozen=True)
class RoundResult:
    """The outcome of a round: the combined ranking and each group's ranking."""

    max_ranks: int
    shortlist: tuple[int, ...]
    combined: tuple[CombinedTopic, ...]  # every topic with score > 0, best first
    groups: tuple[GroupResult, ...]  # in the round's group order

    def top(self) -> tuple[CombinedTopic, ...]:
        """The combined Top N (N = the round's ``max_ranks``)."""
        return self.combined[: self.max_ranks]

    def to_json(self) -> dict[str, Any]:
        """The result as plain JSON values (what a closed round stores and publishes)."""
        return {
            "max_ranks": self.max_ranks,
            "shortlist": list(self.shortlist),
            "combined": [
                {
                    "position": item.position,
                    "topic": item.topic_id,
                    "score": item.score,
                    "groups_ranked": item.groups_ranked,
                }
                for item in self.combined
            ],
            "groups": [
                {
                    "code": group.code,
                    "label": group.label,
                    "ballots": group.ballots,
                    "ranking": [
                        {"topic": topic, "points": group.points[topic]} for topic in group.ranking
                    ],
                }
                for group in self.groups
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RoundResult:
        """Read back what :meth:`to_json` wrote; anything else raises :class:`InvalidBallotFile`."""
        _keys(data, {"max_ranks", "shortlist", "combined", "groups"}, "result")
        combined = []
        for n, item in enumerate(_list(data["combined"], "result.combined")):
            where = f"result.combined[{n}]"
            _keys(item, {"position", "topic", "score", "groups_ranked"}, where)
            combined.append(
                CombinedTopic(
                    topic_id=_int(item["topic"], f"{where}.topic"),
                    score=_int(item["score"], f"{where}.score"),
                    groups_ranked=_int(item["groups_ranked"], f"{where}.groups_ranked"),
                    position=_int(item["position"], f"{where}.position"),
                )
            )
        groups = []
        for n, group in enumerate(_list(data["groups"], "result.groups")):
            where = f"result.groups[{n}]"
            _keys(group, {"code", "label", "ballots", "ranking"}, where)
            points: dict[int, int] = {}
            for m, entry in enumerate(_list(group["ranking"], f"{where}.ranking")):
                _keys(entry, {"topic", "points"}, f"{where}.ranking[{m}]")
                topic = _int(entry["topic"], f"{where}.ranking[{m}].topic")
                if topic in points:
                    raise InvalidBallotFile(f"{where}.ranking: topic {topic} appears twice")
                points[topic] = _int(entry["points"], f"{where}.ranking[{m}].points")
            groups.append(
                GroupResult(
                    code=_str(group["code"], f"{where}.code"),
                    label=_str(group["label"], f"{where}.label"),
                    ballots=_int(group["ballots"], f"{where}.ballots"),
                    points=points,
                    ranking=tuple(points),
                )
            )
        return cls(
            max_ranks=_int(data["max_ranks"], "result.max_ranks"),
            shortlist=tuple(
                _int(t, f"result.shortlist[{n}]")
                for n, t in enumerate(_list(data["shortlist"], "result.shortlist"))
            ),
            combined=tuple(combined),
            groups=tuple(groups),
        )


@dataclass(frozen=True)
class BallotFile:
    """A ballot file read back and checked by :func:`read_ballot_file`."""

    round_id: int
    title: str
    max_ranks: int
    groups: tuple[dict[str, Any], ...]  # {"code", "label", "roles"}, in the round's order
    shortlist: tuple[int, ...]
    ballots: tuple[CountedBallot, ...]  # sorted by ballot id
    result: RoundResult  # the result the file publishes

    def recount(self) -> RoundResult:
        """The result recomputed from the file's own ballots."""
        return tally(
            max_ranks=self.max_ranks,
            groups=self.groups,
            shortlist=self.shortlist,
            ballots=self.ballots,
        )


def tally(
    *,
    max_ranks: int,
    groups: Sequence[Mapping[str, Any]],
    shortlist: Sequence[int],
    ballots: Iterable[CountedBallot],
) -> RoundResult:
    """The round's result from its ballots (see the module's docstring for the rules).

    The result depends neither on the order of ``ballots`` nor on how many ballots a group has
    beyond their proportions: a group's weight is one group's.

    :param groups: the round's groups in order, each a mapping with ``code`` and ``label``.
    :param shortlist: the topic ids on the round's shortlist.
    :raises ValueError: on a ballot that ranks nothing, a topic off the shortlist, a topic twice
        or more than ``max_ranks`` topics, on a ballot of an unknown group, on a ballot id seen
        twice, and on inconsistent parameters.
    """
    codes = _check_parameters(max_ranks, groups, shortlist)
    on_shortlist = frozenset(shortlist)
    # Per group, how many ballots put each topic at each rank (counted in C by Counter).
    placed: dict[str, Counter[tuple[int, int]]] = {code: Counter() for code in codes}
    counted: Counter[str] = Counter()
    seen: set[str] = set()
    ranks = range(max_ranks)
    for ballot in ballots:
        _check_ballot(ballot, max_ranks, on_shortlist, placed)
        if ballot.ballot_uid in seen:
            raise ValueError(f"ballot {ballot.ballot_uid} is counted twice")
        seen.add(ballot.ballot_uid)
        placed[ballot.group_code].update(zip(ballot.ranking, ranks, strict=False))
        counted[ballot.group_code] += 1
    points: dict[str, Counter[int]] = {code: Counter() for code in codes}
    mentions: dict[str, Counter[int]] = {code: Counter() for code in codes}
    for code, group_placed in placed.items():
        for (topic, rank), ballots_there in group_placed.items():
            points[code][topic] += ballots_there * (max_ranks - rank)
            mentions[code][topic] += ballots_there

    size = len(shortlist)
    scores: Counter[int] = Counter()
    groups_ranked: Counter[int] = Counter()
    group_results = []
    for group in groups:
        code = group["code"]
        group_points, group_mentions = points[code], mentions[code]
        ranking = tuple(
            sorted(group_points, key=lambda t: (-group_points[t], -group_mentions[t], t))
        )
        for position, topic in enumerate(ranking, start=1):
            scores[topic] += size - position + 1
            groups_ranked[topic] += 1
        group_results.append(
            GroupResult(
                code=code,
                label=str(group["label"]),
                ballots=counted[code],
                points={topic: group_points[topic] for topic in ranking},
                ranking=ranking,
            )
        )
    order = sorted(scores, key=lambda t: (-scores[t], -groups_ranked[t], t))
    return RoundResult(
        max_ranks=max_ranks,
        shortlist=tuple(shortlist),
        combined=tuple(
            CombinedTopic(
                topic_id=topic,
                score=scores[topic],
                groups_ranked=groups_ranked[topic],
                position=position,
            )
            for position, topic in enumerate(order, start=1)
        ),
        groups=tuple(group_results),
    )


def _check_parameters(
    max_ranks: int, groups: Sequence[Mapping[str, Any]], shortlist: Sequence[int]
) -> list[str]:
    """The group codes, in order, once the round's parameters are found consistent."""
    if not _is_int(max_ranks) or max_ranks < 1:
        raise ValueError(f"max_ranks must be a whole number from 1, not {max_ranks!r}")
    if not all(_is_int(topic) for topic in shortlist):
        raise ValueError("the shortlist must hold topic ids")
    if len(set(shortlist)) != len(shortlist):
        raise ValueError("the shortlist names a topic twice")
    codes = [group["code"] for group in groups]
    if len(set(codes)) != len(codes):
        raise ValueError("two groups have the same code")
    return codes


def _check_ballot(
    ballot: CountedBallot,
    max_ranks: int,
    on_shortlist: frozenset[int],
    groups: Mapping[str, Any],
) -> None:
    """Refuse a ballot the services would never have stored."""
    ranking = ballot.ranking
    # One quick test for the usual, valid ballot; the slow path finds what is wrong.
    if (
        ballot.group_code in groups
        and 0 < len(ranking) <= max_ranks
        and len(set(ranking)) == len(ranking)
        and on_shortlist.issuperset(ranking)
        and {*map(type, ranking)} == {int}
    ):
        return
    if ballot.group_code not in groups:
        raise ValueError(f"ballot {ballot.ballot_uid}: unknown group {ballot.group_code!r}")
    if not ranking:
        raise ValueError(f"ballot {ballot.ballot_uid} ranks no topic")
    if len(ranking) > max_ranks:
        raise ValueError(
            f"ballot {ballot.ballot_uid} ranks {len(ranking)} topics, more than {max_ranks}"
        )
    if len(set(ranking)) != len(ranking):
        raise ValueError(f"ballot {ballot.ballot_uid} ranks a topic twice")
    off = next(topic for topic in ranking if topic not in on_shortlist or not _is_int(topic))
    raise ValueError(f"ballot {ballot.ballot_uid} ranks topic {off!r}, not on the shortlist")


# The ballot file ----------------------------------------------------------------------------
def ballot_file(
    *,
    round_id: int,
    title: str,
    max_ranks: int,
    groups: Sequence[Mapping[str, Any]],
    shortlist: Sequence[int],
    ballots: Sequence[CountedBallot],
    result: RoundResult,
) -> dict[str, Any]:
    """The anonymised ballot file a closed round publishes (JSON values, ballots sorted by id).

    It names no person: each ballot is its random id, its group and its ranking.
    """
    return {
        "format": BALLOT_FILE_FORMAT,
        "round": round_id,
        "title": title,
        "max_ranks": max_ranks,
        "groups": [
            {
                "code": group["code"],
                "label": group["label"],
                "roles": list(group.get("roles", [])),
            }
            for group in groups
        ],
        "shortlist": list(shortlist),
        "ballots": [
            {"ballot": b.ballot_uid, "group": b.group_code, "ranking": list(b.ranking)}
            for b in sorted(ballots, key=lambda b: b.ballot_uid)
        ],
        "result": result.to_json(),
    }


_FILE_KEYS = {"format", "round", "title", "max_ranks", "groups", "shortlist", "ballots", "result"}


def read_ballot_file(data: Mapping[str, Any]) -> BallotFile:
    """Check a ballot file strictly (what :func:`ballot_file` writes and nothing else) and read
    it.

    :param data: the file's parsed JSON.
    :raises InvalidBallotFile: naming the first problem found: a missing or unknown key, a value
        of the wrong type, a group or topic named twice, a ballot id twice or out of order, a
        ballot of an unknown group or ranking nothing, a topic off the shortlist, a topic twice
        or more than ``max_ranks`` topics.
    """
    _keys(data, _FILE_KEYS, "the file")
    if data["format"] != BALLOT_FILE_FORMAT:
        raise InvalidBallotFile(f"format is {data['format']!r}, not {BALLOT_FILE_FORMAT!r}")
    round_id = _int(data["round"], "round")
    max_ranks = _int(data["max_ranks"], "max_ranks")
    if max_ranks < 1:
        raise InvalidBallotFile(f"max_ranks is {max_ranks}, less than 1")
    groups = []
    for n, group in enumerate(_list(data["groups"], "groups")):
        where = f"groups[{n}]"
        _keys(group, {"code", "label", "roles"}, where)
        roles = [
            _str(role, f"{where}.roles[{m}]")
            for m, role in enumerate(_list(group["roles"], f"{where}.roles"))
        ]
        groups.append(
            {
                "code": _str(group["code"], f"{where}.code"),
                "label": _str(group["label"], f"{where}.label"),
                "roles": roles,
            }
        )
    if not groups:
        raise InvalidBallotFile("groups is empty")
    codes = [group["code"] for group in groups]
    if len(set(codes)) != len(codes):
        raise InvalidBallotFile("groups: two groups have the same code")
    shortlist = tuple(
        _int(topic, f"shortlist[{n}]")
        for n, topic in enumerate(_list(data["shortlist"], "shortlist"))
    )
    if len(set(shortlist)) != len(shortlist):
        raise InvalidBallotFile("shortlist: a topic appears twice")
    ballots = tuple(
        _read_ballot(n, entry, max_ranks, frozenset(codes), frozenset(shortlist))
        for n, entry in enumerate(_list(data["ballots"], "ballots"))
    )
    for n, (before, after) in enumerate(zip(ballots, ballots[1:], strict=False), start=1):
        if before.ballot_uid == after.ballot_uid:
            raise InvalidBallotFile(f"ballots[{n}]: ballot {after.ballot_uid} appears twice")
        if before.ballot_uid > after.ballot_uid:
            raise InvalidBallotFile(f"ballots[{n}]: ballots are not sorted by ballot id")
    result = data["result"]
    if not isinstance(result, Mapping):
        raise InvalidBallotFile("result must be an object")
    return BallotFile(
        round_id=round_id,
        title=_str(data["title"], "title"),
        max_ranks=max_ranks,
        groups=tuple(groups),
        shortlist=shortlist,
        ballots=ballots,
        result=RoundResult.from_json(result),
    )


_BALLOT_KEYS = {"ballot", "group", "ranking"}


def _read_ballot(
    n: int, entry: Any, max_ranks: int, codes: frozenset[str], shortlist: frozenset[int]
) -> CountedBallot:
    # One quick test for the usual, valid entry; the slow path below says what is wrong.
    if type(entry) is dict and entry.keys() == _BALLOT_KEYS:
        uid, group, ranking = entry["ballot"], entry["group"], entry["ranking"]
        if (
            type(uid) is str
            and uid
            and type(group) is str
            and group in codes
            and type(ranking) is list
            and 0 < len(ranking) <= max_ranks
            and {*map(type, ranking)} == {int}
            and len(set(ranking)) == len(ranking)
            and shortlist.issuperset(ranking)
        ):
            return CountedBallot(ballot_uid=uid, group_code=group, ranking=tuple(ranking))
    where = f"ballots[{n}]"
    _keys(entry, _BALLOT_KEYS, where)
    uid = _str(entry["ballot"], f"{where}.ballot")
    if not uid:
        raise InvalidBallotFile(f"{where}.ballot is empty")
    group = _str(entry["group"], f"{where}.group")
    if group not in codes:
        raise InvalidBallotFile(f"{where}: ballot {uid} names unknown group {group!r}")
    ranking = tuple(
        _int(topic, f"{where}.ranking[{m}]")
        for m, topic in enumerate(_list(entry["ranking"], f"{where}.ranking"))
    )
    if not ranking:
        raise InvalidBallotFile(f"{where}: ballot {uid} ranks no topic")
    if len(ranking) > max_ranks:
        raise InvalidBallotFile(
            f"{where}: ballot {uid} ranks {len(ranking)} topics, more than {max_ranks}"
        )
    if len(set(ranking)) != len(ranking):
        raise InvalidBallotFile(f"{where}: ballot {uid} ranks a topic twice")
    for topic in ranking:
        if topic not in shortlist:
            raise InvalidBallotFile(
                f"{where}: ballot {uid} ranks topic {topic}, not on the shortlist"
            )
    return CountedBallot(ballot_uid=uid, group_code=group, ranking=ranking)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any, where: str) -> int:
    if not _is_int(value):
        raise InvalidBallotFile(f"{where} must be a whole number, not {_shown(value)}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidBallotFile(f"{where} must be text, not {_shown(value)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidBallotFile(f"{where} must be a list, not {_shown(value)}")
    return value


def _keys(value: Any, expected: set[str], where: str) -> None:
    if not isinstance(value, Mapping):
        raise InvalidBallotFile(f"{where} must be an object, not {_shown(value)}")
    missing, unknown = expected - set(value), set(value) - expected
    if missing:
        raise InvalidBallotFile(f"{where} lacks {', '.join(sorted(missing))}")
    if unknown:
        raise InvalidBallotFile(
            f"{where} has unknown key(s) {', '.join(sorted(map(str, unknown)))}"
        )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# Comparing results ---------------------------------------------------------------------------
def describe_differences(
    expected: RoundResult, actual: RoundResult, *, expected_name: str, actual_name: str
) -> list[str]:
    """Where two results differ, one line each (empty when they are the same), at most
    :data:`MAX_DIFFERENCE_LINES` lines and a count of the rest.

    :param expected_name: how the lines name ``expected`` (``"published"``…).
    """
    lines: list[str] = []
    if expected.max_ranks != actual.max_ranks:
        lines.append(
            f"ranks per ballot: {expected.max_ranks} {expected_name}, "
            f"{actual.max_ranks} {actual_name}"
        )
    if expected.shortlist != actual.shortlist:
        lines.append(
            f"shortlist: {list(expected.shortlist)} {expected_name}, "
            f"{list(actual.shortlist)} {actual_name}"
        )
    for n in range(max(len(expected.combined), len(actual.combined))):
        left = _combined_text(expected.combined, n)
        right = _combined_text(actual.combined, n)
        if left != right:
            lines.append(
                f"combined position {n + 1}: {left} {expected_name}, {right} {actual_name}"
            )
    expected_groups = {group.code: group for group in expected.groups}
    actual_groups = {group.code: group for group in actual.groups}
    if list(expected_groups) != list(actual_groups):
        lines.append(
            f"groups: {', '.join(expected_groups)} {expected_name}, "
            f"{', '.join(actual_groups)} {actual_name}"
        )
    for code, left_group in expected_groups.items():
        right_group = actual_groups.get(code)
        if right_group is None:
            continue
        if left_group.label != right_group.label:
            lines.append(
                f"group {code}: label {left_group.label!r} {expected_name}, "
                f"{right_group.label!r} {actual_name}"
            )
        if left_group.ballots != right_group.ballots:
            lines.append(
                f"group {code}: {left_group.ballots} ballot(s) {expected_name}, "
                f"{right_group.ballots} {actual_name}"
            )
        for n in range(max(len(left_group.ranking), len(right_group.ranking))):
            left = _group_text(left_group, n)
            right = _group_text(right_group, n)
            if left != right:
                lines.append(
                    f"group {code} position {n + 1}: {left} {expected_name}, {right} {actual_name}"
                )
    if len(lines) > MAX_DIFFERENCE_LINES:
        rest = len(lines) - MAX_DIFFERENCE_LINES
        lines = [*lines[:MAX_DIFFERENCE_LINES], f"... and {rest} more difference(s)"]
    return lines


def _combined_text(combined: Sequence[CombinedTopic], n: int) -> str:
    if n >= len(combined):
        return "nothing"
    item = combined[n]
    return f"topic {item.topic_id} (score {item.score}, {item.groups_ranked} group(s))"


def _group_text(group: GroupResult, n: int) -> str:
    if n >= len(group.ranking):
        return "nothing"
    topic = group.ranking[n]
    return f"topic {topic} ({group.points[topic]} points)"
