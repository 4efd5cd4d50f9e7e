"""Names people choose for themselves (display names, newsletter subscriber names).

A name is shown to other people and greets its owner in emails, so it may hold letters of any
script, digits, punctuation, symbols and emoji, but nothing that changes how the text around it
is laid out or read: no line breaks or other control characters (which could start a new email
header or log line), no invisible formatting characters (right-to-left overrides that reverse
the text after them, zero-width spaces that make two names look alike), and no surrogates or
private-use characters (which have no meaning of their own).

One exception keeps real names and emoji whole: the zero-width joiner and non-joiner (U+200D,
U+200C) are allowed *between* two visible characters, where emoji sequences such as 👩🏽‍⚕️ and
scripts such as Persian and the Indic ones need them.
"""

from __future__ import annotations

import unicodedata

from wtforms.validators import ValidationError

# Categories refused: control, format, line and paragraph separators, surrogate, private use.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})
JOINERS = frozenset({"\u200c", "\u200d"})
NAME_PROBLEM = (
    "Use letters, numbers, spaces and punctuation only: remove line breaks, tabs and "
    "invisible formatting characters."
)


def name_problem(value: str) -> str | None:
    """Why ``value`` cannot be a name, or None when it can (spaces are not judged here)."""
    for index, char in enumerate(value):
        if unicodedata.category(char) not in REFUSED_CATEGORIES:
            continue
        if char in JOINERS and _between_visible(value, index):
            continue
        return NAME_PROBLEM
    return None


def _between_visible(value: str, index: int) -> bool:
    """Whether the character at ``index`` has a visible (non-space, non-joiner) character on
    each side."""
    if index == 0 or index == len(value) - 1:
        return False
    return _visible(value[index - 1]) and _visible(value[index + 1])


def _visible(char: str) -> bool:
    category = unicodedata.category(char)
    return not (category in REFUSED_CATEGORIES or category.startswith("Z"))


def tidy_name(value: str) -> str:
    """``value`` trimmed, with every run of spaces inside it made one ordinary space."""
    return " ".join(value.split())


def clean_name(value: str) -> str:
    """``value`` tidied, or ``ValueError`` (its message safe to show) when it cannot be a name."""
    problem = name_problem(value)
    if problem:
        raise ValueError(problem)
    return tidy_name(value)


class PersonName:
    """A WTForms validator refusing what :func:`name_problem` refuses (pair it with the
    :func:`tidy_name` filter, which runs first but removes only spaces)."""

    def __call__(self, form: object, field: object) -> None:
        """Raise ``ValidationError`` with the reason when the field's text cannot be a name."""
        data = getattr(field, "data", None)
        problem = name_problem(data) if isinstance(data, str) else None
        if problem:
            raise ValidationError(problem)


def tidy_name_filter(value: object) -> object:
    """A WTForms filter: text tidied by :func:`tidy_name`, anything else as given.

    Line breaks and other control characters are kept for the validator to refuse: ``str.split``
    would otherwise quietly turn them into spaces.
    """
    if not isinstance(value, str) or name_problem(value):
        return value
    return tidy_name(value)
