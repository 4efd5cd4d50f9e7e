"""When campaigns go out: time zones, local times and cron recurrences.

Staff schedule in a time zone of their choosing; everything stored is UTC. A recurrence is a
five-field cron expression interpreted by APScheduler 3's ``CronTrigger.from_crontab`` in the
campaign's time zone, with two house rules on top:

- days of the week are written as names (``mon``–``sun``): APScheduler 3 counts numbers from
  Monday = 0, classic cron from Sunday = 0, and a newsletter on the wrong day is a quiet mistake;
- a campaign fires at most once an hour (one minute of the hour): newsletters every few minutes
  are a slip of the keyboard, not a plan.

Around daylight-saving changes a recurrence keeps wall-clock time: a time the clocks skip fires
once, an hour later by the clock; a time the clocks pass twice fires once, the first time.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from apscheduler.triggers.cron import CronTrigger

from newsletters.errors import NewsletterError

# Offered first in the time-zone select: where the network's staff mostly work.
COMMON_TIMEZONES = (
    "Europe/London",
    "Europe/Paris",
    "Europe/Stockholm",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Amsterdam",
    "America/New_York",
    "UTC",
)
# IANA regions offered (leaving out legacy aliases such as "GB" or "posix/…").
_REGIONS = (
    "Africa/",
    "America/",
    "Antarctica/",
    "Asia/",
    "Atlantic/",
    "Australia/",
    "Europe/",
    "Indian/",
    "Pacific/",
)
CRON_FIELDS = ("minute", "hour", "day of the month", "month", "day of the week")
_FIELD_RANGES = {"minute": "0–59", "hour": "0–23", "day of the month": "1–31", "month": "1–12"}
_MAX_CRON_LENGTH = 120
# How far ahead a one-off send may be scheduled (further is surely a typing slip).
MAX_AHEAD = timedelta(days=2 * 366)
# What a part may hold. APScheduler reads a day or month name from the start of a part and
# ignores what follows ("mon<x>" is Monday), and \d is any script's digit: neither is stored.
_CRON_PART = re.compile(r"[0-9A-Za-z*/,-]+")
_SINGLE_MINUTE = re.compile(r"^[0-5]?\d$")
_DIGIT = re.compile(r"\d")


class InvalidSchedule(NewsletterError):
    """A time, time zone or recurrence that cannot be used; ``field`` names the input at
    fault (``send_at``, ``timezone`` or ``cron``) so a form can show the message beside it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


# Time zones --------------------------------------------------------------------------------
@functools.cache
def timezone_names() -> tuple[str, ...]:
    """Every time zone staff may choose: the common ones first, then the rest by name."""
    rest = sorted(
        name
        for name in available_timezones()
        if name.startswith(_REGIONS) and name not in COMMON_TIMEZONES
    )
    return (*COMMON_TIMEZONES, *rest)


def timezone_choices() -> list[tuple[str, str]]:
    """(value, label) pairs for a time-zone select ("Europe/Stockholm" reads as
    "Europe / Stockholm")."""
    return [(name, name.replace("/", " / ").replace("_", " ")) for name in timezone_names()]


def zone(name: str) -> ZoneInfo:
    """The time zone called ``name``; :class:`InvalidSchedule` for a name we do not offer."""
    if name not in timezone_names():
        raise InvalidSchedule("Choose a time zone from the list.", "timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - offered names load
        raise InvalidSchedule("Choose a time zone from the list.", "timezone") from exc


def local_to_utc(local: datetime, timezone: str) -> datetime:
    """The UTC instant of wall-clock time ``local`` (naive) in ``timezone``.

    A time the clocks skip (spring forward) does not exist there: :class:`InvalidSchedule`
    says so. A time the clocks pass twice (autumn) means the first of the two.
    """
    tz = zone(timezone)
    if local.tzinfo is not None:
        raise ValueError("local_to_utc takes a naive wall-clock time")
    try:
        first = local.replace(tzinfo=tz, fold=0)
        instant = first.astimezone(UTC)
        round_trip = instant.astimezone(tz).replace(tzinfo=None, fold=0)
    except (OverflowError, ValueError) as exc:
        raise InvalidSchedule("Give a date between now and two years ahead.", "send_at") from exc
    if round_trip != local.replace(fold=0):
        raise InvalidSchedule(
            f"{local:%d %B %Y %H:%M} does not exist in {timezone}: the clocks go forward "
            "that night. Choose another time, e.g. an hour later.",
            "send_at",
        )
    return instant


def utc_to_local(instant: datetime, timezone: str) -> datetime:
    """``instant`` (aware) as a wall-clock time in ``timezone`` (aware); UTC for a zone name
    we do not know (an old row), so a page never fails on it."""
    try:
        tz = zone(timezone)
    except InvalidSchedule:
        tz = ZoneInfo("UTC")
    return instant.astimezone(tz)


# Cron ------------------------------------------------------------------------------------------
def _explain(message: str) -> str:
    """APScheduler's validation message in plain words."""
    high = re.search(r"last value \((\d+)\) is higher than the maximum value \((\d+)\)", message)
    if high:
        return f"{high.group(1)} is too high for its place (the highest is {high.group(2)})."
    low = re.search(r"first value \((\d+)\) is lower than the minimum value \((\d+)\)", message)
    if low:
        return f"{low.group(1)} is too low for its place (the lowest is {low.group(2)})."
    return "This is not a schedule we can read; e.g. “0 9 * * mon” means every Monday at 09:00."


def _range_problem(parts: list[str]) -> str | None:
    """Name the field whose plain numbers are out of range (clearer than APScheduler's)."""
    limits = {"minute": (0, 59), "hour": (0, 23), "day of the month": (1, 31), "month": (1, 12)}
    for name, part in zip(CRON_FIELDS, parts, strict=False):
        if name not in limits:
            continue
        low, high = limits[name]
        for number in re.findall(r"(?<![/\d])\d+", part):
            if not low <= int(number) <= high:
                return f"The {name} must be {_FIELD_RANGES[name]}; {number} is not."
    return None


def parse_cron(expression: str, timezone: str) -> CronTrigger:
    """The trigger for ``expression`` in ``timezone``, or :class:`InvalidSchedule` saying what
    is wrong with it in plain words (including the house rules above)."""
    tz = zone(timezone)
    text = " ".join((expression or "").split())
    if not text:
        raise InvalidSchedule("Write when the campaign repeats, e.g. “0 9 * * mon”.", "cron")
    if len(text) > _MAX_CRON_LENGTH:
        raise InvalidSchedule(f"Use at most {_MAX_CRON_LENGTH} characters.", "cron")
    parts = text.split(" ")
    if len(parts) != len(CRON_FIELDS):
        raise InvalidSchedule(
            "Write five parts separated by spaces (minute hour day month weekday), e.g. "
            f"“0 9 * * mon”; you wrote {len(parts)}.",
            "cron",
        )
    if not all(_CRON_PART.fullmatch(part) for part in parts):
        raise InvalidSchedule(
            "Use only digits, names of days and months (mon, jan) and * , - / in a schedule.",
            "cron",
        )
    problem = _range_problem(parts)
    if problem:
        raise InvalidSchedule(problem, "cron")
    if _DIGIT.search(parts[4]):
        raise InvalidSchedule(
            "Write the days of the week as names (mon, tue, wed, thu, fri, sat, sun; e.g. "
            "mon-fri): numbers mean different days in different programs.",
            "cron",
        )
    if not _SINGLE_MINUTE.match(parts[0]):
        raise InvalidSchedule(
            "Give one minute of the hour (e.g. 0 or 30): a campaign may go out at most once an "
            "hour, and newsletters more often than that would be a mistake.",
            "cron",
        )
    try:
        return CronTrigger.from_crontab(text, timezone=tz)
    except ValueError as exc:
        raise InvalidSchedule(_explain(str(exc)), "cron") from exc


def normalise_cron(expression: str) -> str:
    """``expression`` with single spaces, as stored."""
    return " ".join((expression or "").split())


def next_occurrence(cron: str, timezone: str, after: datetime) -> datetime | None:
    """The first time strictly after ``after`` (aware) that ``cron`` fires in ``timezone``, in
    UTC; None when it never fires again (e.g. “0 9 30 2 *”).

    A wall-clock time the autumn change passes twice fires only the first time: the second
    pass (same local time as ``after``, other offset) is skipped.
    """
    trigger = parse_cron(cron, timezone)
    tz = zone(timezone)
    after = after.astimezone(UTC)
    previous_local = after.astimezone(tz).replace(tzinfo=None, fold=0)
    start = after
    # Twice at most: the clocks pass a wall-clock time at most twice.
    for _attempt in range(2):
        # With the previous fire time given, APScheduler looks from a microsecond after it.
        fire = trigger.get_next_fire_time(start, start + timedelta(microseconds=1))
        if fire is None:
            return None
        fire = fire.astimezone(UTC)
        if fire.astimezone(tz).replace(tzinfo=None, fold=0) != previous_local:
            return fire
        start = fire
    return None  # pragma: no cover - unreachable: the second pass of a time is skipped once


def describe_cron(cron: str) -> str:
    """A short reading aid for staff pages (the expression with its fields named)."""
    parts = normalise_cron(cron).split(" ")
    if len(parts) != len(CRON_FIELDS):
        return cron
    return ", ".join(f"{name} {part}" for name, part in zip(CRON_FIELDS, parts, strict=True))
