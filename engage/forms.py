"""Small helpers shared by the feature forms."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import request
from flask_wtf import FlaskForm
from wtforms.fields.choices import SelectChoice

NUL_MESSAGE = "Remove the invisible NUL character from this text; it cannot be saved."


class Form(FlaskForm):
    """Base of Engage's forms: they read the posted HTML form (or the data a view passes)."""

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            """Read ``request.form`` only, never uploaded files or a JSON body.

            Flask-WTF would read those too, letting files, lists, numbers and nested objects
            reach fields and services that expect text (a 500); Engage takes no uploads and no
            JSON forms. Data a view passes explicitly (a multidict such as ``request.args``) is
            used as given.
            """
            # Flask-WTF passes a sentinel (no ``getlist``) when the view gave no data.
            if formdata is not None and not hasattr(formdata, "getlist"):
                return (request.form or None) if form.is_submitted() else None
            return formdata


def choices(pairs: Iterable[tuple[Any, str]]) -> list[SelectChoice]:
    """Turn (value, label) pairs into WTForms select choices."""
    return [SelectChoice(value, label) for value, label in pairs]


def strip(value: object) -> object:
    """A WTForms filter that trims surrounding whitespace from text.

    It also refuses NUL characters, which no text column can hold (PostgreSQL raises): they
    become an error next to the field instead of a 500.
    """
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        raise ValueError(NUL_MESSAGE)
    return value.strip()
