"""Time slots to datetimes (waking hours, next days, DST) and datetimes back to words."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from secretary.skills.when import (
    at,
    clock_hour,
    day_span,
    later,
    resolve_end,
    resolve_moment,
    said_clock,
    said_day,
    say_clock,
    say_day,
    say_when,
    week_span,
    with_end_meridiem,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SUNDAY = datetime(2026, 12, 6, 18, 0, tzinfo=BERLIN)
WEDNESDAY = datetime(2026, 12, 9, 8, 30, tzinfo=NEW_YORK)


def b(day: int, hour: int = 0, minute: int = 0, month: int = 12, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


@pytest.mark.parametrize(("hour", "meridiem", "expected"), [
    (1, None, 13), (3, None, 15), (6, None, 18), (7, None, 7), (9, None, 9), (11, None, 11),
    (12, None, 12), (0, None, 0), (13, None, 13), (15, None, 15), (23, None, 23),
    (3, "pm", 15), (12, "pm", 12), (9, "am", 9), (5, "am", 5), (12, "am", 0),
    (8, "evening", 20), (3, "afternoon", 15), (7, "morning", 7), (1, "noon", 13),
    (12, "noon", 12), (11, "night", 23), (2, "night", 2), (12, "night", 0), (15, "pm", 15),
])
def test_waking_hours(hour: int, meridiem: str | None, expected: int) -> None:
    assert clock_hour(hour, meridiem) == expected


def test_a_leading_zero_is_a_24_hour_clock() -> None:
    assert clock_hour(5, None, twenty_four=True) == 5
    assert said_clock({"hour": 5, "minute": 30, "hour24": True}) == time(5, 30)


@pytest.mark.parametrize(("slots", "expected"), [
    ({"hour": 4, "rel": -30}, time(15, 30)),  # halb vier
    ({"hour": 8, "rel": -30}, time(7, 30)),  # halb acht
    ({"hour": 1, "rel": -30}, time(12, 30)),  # halb eins
    ({"hour": 3, "rel": 15}, time(15, 15)),  # Viertel nach drei, quarter past three
    ({"hour": 4, "rel": -15}, time(15, 45)),  # Viertel vor vier, quarter to four
    ({"hour": 3, "rel": 30}, time(15, 30)),  # half past three
    ({"hour": 4, "minutes_past": 20}, time(16, 20)),
    ({"hour": 12, "minutes_to": 5}, time(11, 55)),
    ({"hour": 3.0, "minute": 30.0, "meridiem": "am"}, time(3, 30)),  # digits come as floats
    ({"hour": 15, "minute": 30}, time(15, 30)),
    ({"named": 720}, time(12, 0)),
    ({"named": 0}, time(0, 0)),
    ({}, None),
])
def test_said_clock(slots: dict[str, Any], expected: time | None) -> None:
    assert said_clock(slots) == expected


def test_said_clock_takes_the_part_of_the_day_said_with_the_day() -> None:
    assert said_clock({"hour": 8}, meridiem="evening") == time(20, 0)
    assert said_clock({"hour": 8, "meridiem": "am"}, meridiem="evening") == time(8, 0)


def test_weekdays() -> None:
    wednesday = WEDNESDAY.date()
    assert said_day({"weekday": 4}, WEDNESDAY) == date(2026, 12, 11)
    assert said_day({"weekday": 2}, WEDNESDAY) == wednesday  # no time: today counts
    assert said_day({"weekday": 2}, WEDNESDAY, time(9)) == wednesday  # still ahead
    assert said_day({"weekday": 2}, WEDNESDAY, time(8)) == date(2026, 12, 16)  # gone by
    assert said_day({"weekday": 2, "week_mod": "next"}, WEDNESDAY) == date(2026, 12, 16)
    assert said_day({"weekday": 1}, WEDNESDAY) == date(2026, 12, 15)


def test_dates_without_a_year_are_the_next_one() -> None:
    assert said_day({"month": 12, "day_num": 12}, SUNDAY) == date(2026, 12, 12)
    assert said_day({"month": 12, "day_num": 6}, SUNDAY) == date(2026, 12, 6)  # today
    assert said_day({"month": 12, "day_num": 1}, SUNDAY) == date(2027, 12, 1)
    assert said_day({"month": 1, "day_num": 3}, SUNDAY) == date(2027, 1, 3)
    assert said_day({"month": 2, "day_num": 29}, SUNDAY) == date(2028, 2, 29)
    assert said_day({"day_num": 12}, SUNDAY) == date(2026, 12, 12)
    assert said_day({"day_num": 1}, SUNDAY) == date(2027, 1, 1)
    november = datetime(2026, 11, 6, 12, tzinfo=BERLIN)
    assert said_day({"day_num": 31}, november) == date(2026, 12, 31)  # November has 30


def test_a_day_that_does_not_exist() -> None:
    with pytest.raises(ValueError):
        said_day({"month": 2, "day_num": 30}, SUNDAY)


def test_day_words_and_prefixes() -> None:
    assert said_day({"day_word": 0}, SUNDAY) == date(2026, 12, 6)
    assert said_day({"day_word": 2}, SUNDAY) == date(2026, 12, 8)
    assert said_day({"day_word": -1}, SUNDAY) == date(2026, 12, 5)
    assert said_day({"today_part": "evening"}, SUNDAY) == date(2026, 12, 6)
    assert said_day({"old_weekday": 4, "weekday": 0}, SUNDAY, prefix="old_") == date(2026, 12, 11)
    assert said_day({}, SUNDAY) is None


@pytest.mark.parametrize(("slots", "expected"), [
    ({"hour": 9}, b(7, 9)),  # 9:00 has gone by: tomorrow
    ({"hour": 8, "meridiem": "pm"}, b(6, 20)),  # still ahead: today
    ({"hour": 3, "rel": -30, "day_word": 0}, b(6, 14, 30)),  # said today, stays in the past
    ({"day_word": 1, "part": "morning"}, b(7, 9)),
    ({"today_part": "evening"}, b(6, 19)),
    ({"today_part": "evening", "hour": 8}, b(6, 20)),
    ({"weekday": 4, "hour": 1}, b(11, 13)),
    ({"in_count": 10, "in_unit": 1}, b(6, 18, 10)),
    ({"in_fixed": 30}, b(6, 18, 30)),
    ({"in_count": 2, "in_unit": 1440}, b(8, 18)),
    ({"day_word": 1}, None),  # a day without a time and no default
    ({}, None),
])
def test_resolve_moment(slots: dict[str, Any], expected: datetime | None) -> None:
    assert resolve_moment(slots, SUNDAY) == expected


def test_resolve_moment_default_time_for_a_day() -> None:
    assert resolve_moment({"day_word": 1}, SUNDAY, default=time(9)) == b(7, 9)
    assert resolve_moment({"weekday": 6}, SUNDAY, default=time(9)) == b(13, 9)


def test_later_counts_real_time_across_a_dst_change() -> None:
    before = datetime(2026, 11, 1, 0, 30, tzinfo=NEW_YORK)  # EDT; clocks go back at 2:00
    after = later(before, 120)
    assert after.astimezone(UTC) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert (after.hour, after.minute, after.utcoffset()) == (1, 30, timedelta(hours=-5))


def test_at_moves_a_skipped_wall_time_forward() -> None:
    moment = at(date(2026, 3, 29), time(2, 30), BERLIN)  # 2:00-3:00 does not exist
    assert (moment.hour, moment.minute, moment.utcoffset()) == (3, 30, timedelta(hours=2))


def test_day_span_on_a_short_day() -> None:
    start, end = day_span(date(2026, 3, 29), BERLIN)
    assert (start, end) == (b(29, month=3), b(30, month=3))
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)


def test_week_span() -> None:
    assert week_span(SUNDAY, "this") == (SUNDAY, b(7))
    assert week_span(SUNDAY, "next") == (b(7), b(14))
    ny = NEW_YORK
    assert week_span(WEDNESDAY, "this") == (WEDNESDAY, datetime(2026, 12, 14, tzinfo=ny))
    assert week_span(WEDNESDAY, "next") == (datetime(2026, 12, 14, tzinfo=ny),
                                            datetime(2026, 12, 21, tzinfo=ny))


def test_resolve_end() -> None:
    start = b(11, 14)
    assert resolve_end({"dur_count": 2, "dur_unit": 60}, start) == b(11, 16)
    assert resolve_end({"dur_fixed": 90}, start) == b(11, 15, 30)
    assert resolve_end({"end_hour": 4}, start) == b(11, 16)
    assert resolve_end({"end_named": 0}, b(11, 20)) == b(12, 0)  # to midnight
    assert resolve_end({"end_hour": 1, "end_meridiem": "am"}, b(11, 22)) == b(12, 1)
    assert resolve_end({}, start) is None


def test_a_start_takes_the_end_meridiem_when_that_keeps_it_first() -> None:
    slots: dict[str, Any] = {"hour": 10, "end_hour": 11, "end_meridiem": "pm"}
    with_end_meridiem(slots)
    assert said_clock(slots) == time(22, 0)
    slots = {"hour": 11, "end_hour": 1, "end_meridiem": "pm"}
    with_end_meridiem(slots)
    assert said_clock(slots) == time(11, 0)


@pytest.mark.parametrize(("moment", "language", "expected"), [
    (b(6, 15), "en", "today at 3 pm"),
    (b(7, 13, 30), "en", "tomorrow at 1:30 pm"),
    (b(11, 13), "en", "on Friday at 1 pm"),
    (b(20, 9), "en", "on December 20 at 9 am"),
    (b(5, 9), "en", "yesterday at 9 am"),
    (b(3, 9, month=1, year=2027), "en", "on January 3 at 9 am"),
    (b(1, 9, year=2025), "en", "on December 1, 2025 at 9 am"),
    (b(7, 0, 5), "en", "tomorrow at 12:05 am"),
    (b(7, 12), "en", "tomorrow at 12 pm"),
    (b(6, 15), "de", "heute um 15 Uhr"),
    (b(7, 13, 30), "de", "morgen um 13:30 Uhr"),
    (b(11, 13), "de", "am Freitag um 13 Uhr"),
    (b(20, 9), "de", "am 20. Dezember um 9 Uhr"),
    (b(5, 9), "de", "gestern um 9 Uhr"),
    (b(1, 9, year=2025), "de", "am 1. Dezember 2025 um 9 Uhr"),
])
def test_say_when(moment: datetime, language: str, expected: str) -> None:
    assert say_when(moment, SUNDAY, language) == expected


def test_say_when_all_day_and_other_zones() -> None:
    assert say_when(b(11), SUNDAY, "en", all_day=True) == "on Friday"
    assert say_when(b(11), SUNDAY, "de", all_day=True) == "am Freitag"
    assert say_when(datetime(2026, 12, 6, 14, tzinfo=UTC), SUNDAY, "en") == "today at 3 pm"
    assert say_when(b(6, 15), SUNDAY, "fr") == "today at 3 pm"  # other languages: English


@pytest.mark.parametrize(("day", "language", "expected"), [
    (date(2026, 12, 6), "en", "today"),
    (date(2026, 12, 7), "en", "tomorrow"),
    (date(2026, 12, 8), "en", "on Tuesday"),
    (date(2026, 12, 12), "en", "on Saturday"),
    (date(2026, 12, 13), "en", "on December 13"),
    (date(2026, 12, 6), "de", "heute"),
    (date(2026, 12, 7), "de", "morgen"),
    (date(2026, 12, 11), "de", "am Freitag"),
    (date(2026, 12, 24), "de", "am 24. Dezember"),
    (date(2027, 3, 1), "de", "am 1. März"),
])
def test_say_day(day: date, language: str, expected: str) -> None:
    assert say_day(day, SUNDAY.date(), language) == expected


@pytest.mark.parametrize(("moment", "language", "expected"), [
    (b(6, 15, 5), "en", "3:05 pm"),
    (b(6, 15), "en", "3 pm"),
    (b(6, 0, 0), "en", "12 am"),
    (b(6, 9, 30), "en", "9:30 am"),
    (b(6, 15, 5), "de", "15:05 Uhr"),
    (b(6, 15), "de", "15 Uhr"),
    (b(6, 0, 5), "de", "0:05 Uhr"),
])
def test_say_clock(moment: datetime, language: str, expected: str) -> None:
    assert say_clock(moment, language) == expected
