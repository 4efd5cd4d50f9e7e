"""``engage rounds ...`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import click
import sqlalchemy as sa
from flask.cli import with_appcontext

from engage.db import get_session
from engage.rounds import tally as rounds_tally
from engage.rounds.models import PriorityRound, ShortlistItem

# Exit codes of ``engage rounds tally``: 1 when the results differ, 2 when nothing could be
# compared (no such round, not closed yet, a file that is not a ballot file).
RESULT_DIFFERS = 1
CANNOT_COMPARE = 2


@click.group("rounds")
def rounds_group() -> None:
    """Priority-setting rounds."""


@rounds_group.command("tally")
@click.argument("round_id", metavar="ROUND", type=int)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def tally_command(round_id: int, file: Path) -> None:
    """Recompute round ROUND's result from its published ballot file FILE and compare it with
    the result the round published and the one the file holds.

    Exit 0 when all three agree, 1 when they differ (each difference listed), 2 when the round
    is not closed yet or FILE is not a readable ballot file.
    """
    session = get_session()
    round_ = session.get(PriorityRound, round_id)
    if round_ is None:
        _stop(f"There is no round {round_id}.")
    if round_.closed_at is None or round_.result is None:
        _stop(f"Round {round_id} is not closed yet: it has no published result to check.")
    try:
        published = rounds_tally.RoundResult.from_json(round_.result)
    except rounds_tally.InvalidBallotFile as exc:
        _stop(f"Round {round_id}'s stored result cannot be read: {exc}.")
    try:
        document = _load_json(file)
        ballots = rounds_tally.read_ballot_file(document)
    except OSError as exc:
        _stop(f"{file}: cannot be read ({exc.strerror or exc}).")
    except ValueError as exc:  # InvalidBallotFile and JSON syntax errors
        _stop(f"{file}: not a valid ballot file: {exc}.")
    if ballots.round_id != round_id:
        _stop(f"{file} is the ballot file of round {ballots.round_id}, not of round {round_id}.")
    try:
        recomputed = ballots.recount()
    except ValueError as exc:
        _stop(f"{file}: its ballots cannot be counted: {exc}.")

    differences = _setup_differences(session, round_, ballots)
    differences += _ballot_differences(round_.ballot_file, ballots)
    differences += rounds_tally.describe_differences(
        published, recomputed, expected_name="published", actual_name="recomputed"
    )
    differences += rounds_tally.describe_differences(
        ballots.result, recomputed, expected_name="in the file", actual_name="recomputed"
    )

    click.echo(
        f"Round {round_id}: {len(ballots.ballots)} ballot(s) in {len(ballots.groups)} group(s), "
        f"{len(ballots.shortlist)} topic(s) on the shortlist."
    )
    click.echo(f"Recomputed Top {recomputed.max_ranks}:")
    click.echo(f"{'position':>8}  {'topic':>7}  {'score':>7}  {'groups ranked':>13}")
    for item in recomputed.top():
        click.echo(
            f"{item.position:>8}  {item.topic_id:>7}  {item.score:>7}  {item.groups_ranked:>13}"
        )
    if differences:
        click.echo(f"{len(differences)} difference(s):")
        for line in differences:
            click.echo(f"  {line}")
        click.echo("The recomputed result does not match the published one.")
        raise click.exceptions.Exit(RESULT_DIFFERS)
    click.echo("The recomputed result matches the published one.")


def _stop(message: str) -> NoReturn:
    """End the command with ``message`` on standard error and exit code 2."""
    click.echo(f"Error: {message}", err=True)
    raise click.exceptions.Exit(CANNOT_COMPARE)


def _load_json(file: Path) -> Any:
    """The file's JSON, refusing what a strict reader should: duplicate keys, NaN, Infinity."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"key {repeated[0]!r} appears twice in one object")
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8 text") from None
    try:
        return json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"it is not JSON ({exc})") from None


def _setup_differences(
    session: sa.orm.Session, round_: PriorityRound, ballots: rounds_tally.BallotFile
) -> list[str]:
    """Where the file's round setup (ranks per ballot, groups, shortlist) differs from the
    round's."""
    lines = []
    if ballots.max_ranks != round_.max_ranks:
        lines.append(
            f"ranks per ballot: {round_.max_ranks} in the round, {ballots.max_ranks} in the file"
        )
    round_groups = [(group["code"], group["label"]) for group in round_.groups]
    file_groups = [(group["code"], group["label"]) for group in ballots.groups]
    if round_groups != file_groups:
        lines.append(f"groups: {round_groups} in the round, {file_groups} in the file")
    shortlist = set(
        session.scalars(
            sa.select(ShortlistItem.topic_id).where(ShortlistItem.round_id == round_.id)
        )
    )
    if shortlist != set(ballots.shortlist):
        lines.append(
            f"shortlist: topics {sorted(shortlist)} in the round, "
            f"{sorted(ballots.shortlist)} in the file"
        )
    return lines


def _ballot_differences(
    stored: dict[str, Any] | None, ballots: rounds_tally.BallotFile
) -> list[str]:
    """Which ballots of the file differ from the ballot file the round published."""
    if stored is None:
        return ["the round has no published ballot file to compare the ballots with"]
    try:
        published = {b.ballot_uid: b for b in rounds_tally.read_ballot_file(stored).ballots}
    except rounds_tally.InvalidBallotFile as exc:
        return [f"the round's published ballot file cannot be read: {exc}"]
    in_file = {b.ballot_uid: b for b in ballots.ballots}
    lines = []
    for uid in sorted(published.keys() | in_file.keys()):
        before, after = published.get(uid), in_file.get(uid)
        if before == after:
            continue
        if after is None:
            lines.append(f"ballot {uid}: published, missing from the file")
        elif before is None:
            lines.append(f"ballot {uid}: in the file, never published")
        else:
            lines.append(
                f"ballot {uid}: group {before.group_code}, ranking {list(before.ranking)} "
                f"published; group {after.group_code}, ranking {list(after.ranking)} in the file"
            )
    if len(lines) > rounds_tally.MAX_DIFFERENCE_LINES:
        rest = len(lines) - rounds_tally.MAX_DIFFERENCE_LINES
        lines = [*lines[: rounds_tally.MAX_DIFFERENCE_LINES], f"... and {rest} more ballot(s)"]
    return lines
