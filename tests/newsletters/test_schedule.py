"""Time zones and recurrences of campaigns: local times to UTC across daylight-saving changes,
cron expressions read (or refused) in plain words, and the next occurrence of a recurrence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletters.schedule import (
    COMMON_TIMEZONES,
    InvalidSchedule,
    local_to_utc,
    next_occurrence,
    parse_cron,
    timezone_choices,
    timezone_names,
    utc_to_local,
)

STOCKHOLM = "Europe/Stockholm"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def wall(*parts: int) -> datetime:
    """A wall-clock time without a zone, as a datetime-local input gives it."""
    return datetime(*parts)  # noqa: DTZ001 - naive on purpose


# Local times -----------------------------------------------------------------------------------
def test_stockholm_nine_in_winter_is_eight_utc():
    assert local_to_utc(wall(2027, 1, 15, 9, 0), STOCKHOLM) == utc(2027, 1, 15, 8, 0)


def test_stockholm_nine_in_summer_is_seven_utc():
    assert local_to_utc(wall(2027, 7, 15, 9, 0), STOCKHOLM) == utc(2027, 7, 15, 7, 0)


def test_a_time_the_clocks_skip_is_refused_with_why():
    with pytest.raises(InvalidSchedule) as refused:
        local_to_utc(wall(2027, 3, 28, 2, 30), STOCKHOLM)
    assert refused.value.field == "send_at"
    assert "does not exist in Europe/Stockholm" in refused.value.message
    assert "clocks go forward" in refused.value.message


def test_a_time_the_clocks_pass_twice_means_the_first():
    # 31 October 2027: 02:30 happens at 00:30 UTC (summer time) and again at 01:30 UTC.
    assert local_to_utc(wall(2027, 10, 31, 2, 30), STOCKHOLM) == utc(2027, 10, 31, 0, 30)


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(InvalidSchedule) as refused:
        local_to_utc(wall(2027, 1, 15, 9, 0), "Mars/Olympus_Mons")
    assert refused.value.field == "timezone"


def test_utc_to_local_shows_the_wall_clock():
    assert utc_to_local(utc(2027, 1, 15, 8, 0), STOCKHOLM).strftime("%H:%M") == "09:00"


def test_time_zones_offer_common_ones_first_then_the_rest_sorted():
    names = timezone_names()
    assert names[:4] == ("Europe/London", "Europe/Paris", "Europe/Stockholm", "Europe/Berlin")
    assert "UTC" in names[:10]
    rest = names[len(COMMON_TIMEZONES) :]
    assert list(rest) == sorted(rest)
    assert "America/Sao_Paulo" in names and "localtime" not in names and "GB" not in names
    assert ("Europe/Stockholm", "Europe / Stockholm") in timezone_choices()


# Cron ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "expression", ["0 9 * * mon", "30 8 1 * *", "0 * * * *", "0 9 * * mon-fri"]
)
def test_valid_recurrences_are_read(expression):
    assert parse_cron(expression, STOCKHOLM) is not None


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("61 * * * *", "The minute must be 0–59; 61 is not."),
        ("0 24 * * *", "The hour must be 0–23; 24 is not."),
        ("0 9 32 * *", "The day of the month must be 1–31; 32 is not."),
        ("0 9 * 13 *", "The month must be 1–12; 13 is not."),
        ("0 9 * *", "Write five parts"),
        ("0 9 * * * *", "you wrote 6"),
        ("0 9 * * 1", "Write the days of the week as names"),
        ("0 9 * * funday", "This is not a schedule we can read"),
        ("", "Write when the campaign repeats"),
    ],
)
def test_invalid_recurrences_are_refused_in_plain_words(expression, says):
    with pytest.raises(InvalidSchedule) as refused:
        parse_cron(expression, STOCKHOLM)
    assert says in refused.value.message
    assert refused.value.field == "cron"


@pytest.mark.parametrize("expression", ["* * * * *", "*/5 * * * *", "0,30 9 * * *", "0-10 9 * * *"])
def test_recurrences_more_often_than_hourly_are_refused(expression):
    with pytest.raises(InvalidSchedule) as refused:
        parse_cron(expression, STOCKHOLM)
    assert "at most once an hour" in refused.value.message


# Next occurrence ---------------------------------------------------------------------------------
def test_next_monday_nine_in_stockholm():
    # Friday 15 January 2027 → Monday 18 January, 09:00 CET = 08:00 UTC.
    assert next_occurrence("0 9 * * mon", STOCKHOLM, utc(2027, 1, 15, 12)) == utc(2027, 1, 18, 8)


def test_next_occurrence_is_strictly_after():
    first = next_occurrence("0 9 * * *", STOCKHOLM, utc(2027, 1, 15, 12))
    assert next_occurrence("0 9 * * *", STOCKHOLM, first) == utc(2027, 1, 17, 8)


def test_the_wall_clock_is_kept_across_the_spring_change():
    # 09:00 every day: 08:00 UTC before 28 March 2027, 07:00 UTC after.
    saturday = next_occurrence("0 9 * * *", STOCKHOLM, utc(2027, 3, 26, 12))
    sunday = next_occurrence("0 9 * * *", STOCKHOLM, saturday)
    assert (saturday, sunday) == (utc(2027, 3, 27, 8), utc(2027, 3, 28, 7))


def test_a_skipped_time_fires_once_an_hour_later_by_the_clock():
    fire = next_occurrence("30 2 * * *", STOCKHOLM, utc(2027, 3, 27, 12))
    assert fire == utc(2027, 3, 28, 1, 30)  # 03:30 summer time
    assert next_occurrence("30 2 * * *", STOCKHOLM, fire) == utc(2027, 3, 29, 0, 30)


def test_a_time_passed_twice_in_autumn_fires_once():
    first = next_occurrence("30 2 * * *", STOCKHOLM, utc(2027, 10, 30, 12))
    assert first == utc(2027, 10, 31, 0, 30)
    # Not again at 02:30 winter time (01:30 UTC) the same night: the next day.
    assert next_occurrence("30 2 * * *", STOCKHOLM, first) == utc(2027, 11, 1, 1, 30)


def test_a_recurrence_that_never_comes_round_has_no_next_occurrence():
    assert next_occurrence("0 9 30 2 *", STOCKHOLM, utc(2027, 1, 1)) is None
