"""One base for the enums people read, and one column type for storing any enum.

A member is declared with its value and the wording people read::

    class Role(LabelledEnum):
        PARTICIPANT = "participant", "Person with MS"

``Role.PARTICIPANT == "participant"`` and ``Role.PARTICIPANT.label == "Person with MS"``.
"""

from __future__ import annotations

import enum
from typing import Any

import sqlalchemy as sa


class LabelledEnum(enum.StrEnum):
    """A string enum whose members carry a label in plain language."""

    _label: str

    def __new__(cls, value: str, label: str | None = None) -> Any:
        member = str.__new__(cls, value)
        member._value_ = value
        member._label = label if label is not None else value.replace("_", " ").capitalize()
        return member

    @property
    def label(self) -> str:
        """The member's name as people read it."""
        return self._label

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        """(value, label) pairs, in declaration order, for select fields."""
        return [(member.value, member.label) for member in cls]


def enum_column(enum_class: type[enum.Enum], length: int = 20) -> sa.Enum:
    """A portable enum column: a VARCHAR of ``length`` holding the members' values (with a
    CHECK constraint where the database supports one), the same on SQLite and PostgreSQL."""
    return sa.Enum(
        enum_class,
        native_enum=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
    )
