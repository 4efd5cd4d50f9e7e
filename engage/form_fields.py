"""Form fields the features share: checkbox lists, and date-and-time inputs read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wtforms import SelectMultipleField
from wtforms.fields import DateTimeLocalField
from wtforms.validators import Length
from wtforms.widgets import CheckboxInput, ListWidget

from engage.timeutil import utcnow

# The one format of <input type="datetime-local"> without seconds.
DATETIME_LOCAL_FORMAT = "%Y-%m-%dT%H:%M"
# A time further away than this is a typing mistake (a year 20260), not a plan.
MAX_YEARS_AHEAD = 10


def max_length(limit: int) -> Length:
    """At most ``limit`` characters, said plainly."""
    return Length(max=limit, message=f"Use at most {limit:,} characters.")


class MultiCheckboxField(SelectMultipleField):
    """A list of checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class Checkboxes(MultiCheckboxField):
    """Checkboxes whose every refusal (a value not offered, or not even a number) reads as
    ``invalid_choice_message``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The form macros render a "MultiCheckboxField" as a fieldset of checkboxes.
        self.type = "MultiCheckboxField"

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Coerce the ticked values; one that cannot be is a choice not offered."""
        try:
            super().process_formdata(valuelist)
        except ValueError:
            raise ValueError(self.invalid_choice_message) from None


class UtcDateTime(DateTimeLocalField):
    """A ``datetime-local`` input read as UTC (the page says so): an aware datetime."""

    def __init__(self, label: str, **kwargs: Any) -> None:
        kwargs.setdefault("format", DATETIME_LOCAL_FORMAT)
        super().__init__(label, **kwargs)

    def process_formdata(self, valuelist: list[Any]) -> None:
        """Parse the value as UTC; a blank one is left to the required check, a far-off year
        is refused."""
        self.data = None
        text = " ".join(str(value) for value in valuelist).strip()
        if not any(valuelist):  # nothing typed: the required check (spaces are refused below)
            return
        for fmt in self.strptime_format:
            try:
                parsed = datetime.strptime(text, fmt)  # noqa: DTZ007 - UTC is attached below
            except ValueError:
                continue
            break
        else:
            raise ValueError("Give a date and time, e.g. 2030-05-01 14:00.")
        if parsed.year > utcnow().year + MAX_YEARS_AHEAD:
            raise ValueError(f"Choose a date within the next {MAX_YEARS_AHEAD} years.")
        self.data = parsed.replace(tzinfo=UTC)

    def _value(self) -> str:
        if self.raw_data:
            return " ".join(self.raw_data)
        if isinstance(self.data, datetime):
            return self.data.astimezone(UTC).strftime(DATETIME_LOCAL_FORMAT)
        return ""
