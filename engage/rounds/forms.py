"""The ballot form: one "Rank" choice per shortlist topic ("Not ranked", 1, 2 …), so ranking
needs no dragging: a keyboard, a switch or speech control picks each number from a list.

The fields are named by the topic's place on the shortlist (``rank-1``, ``rank-2`` …); a
shortlist is fixed once a round opens, so a place names the same topic from the page's loading
to its sending. The form checks the ranks run 1, 2, 3 … with no gap and no repeat, and says
exactly which topic breaks that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wtforms import SelectField

from engage.forms import Form, choices
from engage.rounds.queries import ShortlistEntry

NOT_RANKED = ""


def rank_field_name(position: int) -> str:
    """The form field of the shortlist's topic at ``position``."""
    return f"rank-{position}"


def _rank_label(rank: int) -> str:
    return f"{rank} (most important)" if rank == 1 else str(rank)


class BallotForm(Form):
    """The ranks a person gives the shortlist's topics (fields are added per round by
    :func:`ballot_form`)."""

    entries: list[ShortlistEntry]
    allowed_ranks: frozenset[str]

    def rank_fields(self) -> list[tuple[ShortlistEntry, Any]]:
        """Each shortlist entry with its rank field, in shortlist order."""
        return [(entry, self[rank_field_name(entry.position)]) for entry in self.entries]

    def ranks(self) -> dict[int, int]:
        """The rank given to each ranked topic (topic id -> rank), from valid input."""
        given = {}
        for entry, rank_field in self.rank_fields():
            value = rank_field.data
            if isinstance(value, str) and value.isdigit():
                given[entry.topic_id] = int(value)
        return given

    def ranking(self) -> list[int]:
        """The ranked topic ids, best first (after :meth:`validate`)."""
        return [topic_id for topic_id, _rank in sorted(self.ranks().items(), key=lambda p: p[1])]

    def validate(self, extra_validators: Any = None) -> bool:
        """Each rank is one of the choices; together they run 1, 2, 3 … with no repeat and no
        gap, and at least one topic is ranked."""
        valid = super().validate(extra_validators)
        if not valid and self.csrf_token.errors:
            return False
        chosen: list[tuple[ShortlistEntry, Any, int]] = []
        for entry, rank_field in self.rank_fields():
            value = rank_field.data
            if value in (None, NOT_RANKED):
                continue
            if not isinstance(value, str) or value not in self.allowed_ranks:
                rank_field.errors.append("Choose a rank from the list, or “Not ranked”.")
                valid = False
                continue
            chosen.append((entry, rank_field, int(value)))
        if not valid:
            return False
        if not chosen:
            self.form_errors.append(
                "Give at least one topic a rank: choose 1 for the topic that matters most."
            )
            return False
        by_rank: dict[int, list[ShortlistEntry]] = {}
        for entry, _field, rank in chosen:
            by_rank.setdefault(rank, []).append(entry)
        for entry, rank_field, rank in chosen:
            others = [o for o in by_rank[rank] if o.topic_id != entry.topic_id]
            if others:
                names = " and ".join(f"“{o.title}”" for o in others)
                rank_field.errors.append(
                    f"You also gave rank {rank} to {names}. Give each rank to one topic only."
                )
                valid = False
        if not valid:
            return False
        for _entry, rank_field, rank in sorted(chosen, key=lambda c: c[2]):
            missing = next((r for r in range(1, rank) if r not in by_rank), None)
            if missing is not None:
                rank_field.errors.append(
                    f"No topic has rank {missing}, so this one cannot be {rank}. Number your "
                    "choices 1, 2, 3 … with no gaps."
                )
                return False
        return True


def ballot_form(
    entries: Sequence[ShortlistEntry],
    rank_choices: int,
    saved: Sequence[int] = (),
    **kwargs: Any,
) -> BallotForm:
    """The ballot form of a round's shortlist.

    :param rank_choices: how many ranks may be given (the round's limit, at most the
        shortlist's size).
    :param saved: the person's saved ranking (topic ids, best first), shown as the start.
    """
    options = choices(
        [(NOT_RANKED, "Not ranked")]
        + [(str(rank), _rank_label(rank)) for rank in range(1, rank_choices + 1)]
    )

    class RoundBallotForm(BallotForm):
        pass

    for entry in entries:
        setattr(
            RoundBallotForm,
            rank_field_name(entry.position),
            SelectField(
                f"Rank for “{entry.title}”",
                choices=options,
                default=NOT_RANKED,
                validate_choice=False,  # checked by validate(), with a plain message
            ),
        )
    saved_ranks = {topic_id: rank for rank, topic_id in enumerate(saved, start=1)}
    data = {
        rank_field_name(entry.position): str(saved_ranks[entry.topic_id])
        for entry in entries
        if entry.topic_id in saved_ranks
    }
    form = RoundBallotForm(data=data, **kwargs)
    form.entries = list(entries)
    form.allowed_ranks = frozenset(str(rank) for rank in range(1, rank_choices + 1))
    return form
