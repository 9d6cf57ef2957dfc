"""Times said in a request, to timezone-aware datetimes and back to words (English, German).

The templates capture time words as separate slots (a day word, a weekday, an hour, "pm",
"halb"...); this module turns them into datetimes with its own rules rather than dateparser,
which misreads spoken forms such as "tomorrow at three" or "morgen um 17 Uhr".

Rules, from the issue:
- an hour without am/pm is read within waking hours: 1-6 are afternoon (13-18), 7-11 morning,
  12 noon; "pm", "abends", "nachmittags" make it afternoon, "am", "morgens", "früh" morning;
  0 and 13-23 (and "05:30" with a leading zero) are a 24-hour clock, as said;
- a time with no day is today if still ahead of now, else tomorrow;
- a weekday is the next such day, today only if the time is still ahead (or none was said);
- a date without a year is the next one (today included);
- a time in the past that names its day ("today at 8" at 10) stays in the past: the caller
  refuses it with a clear answer instead of moving it silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

#: Hours for a part of the day said without a time ("tomorrow morning", "heute Abend").
PART_HOURS = {"morning": 9, "noon": 12, "afternoon": 15, "evening": 19, "night": 22}
#: The hour of a reminder whose day was said without a time ("remind me tomorrow to ...").
DEFAULT_HOUR = 9

_WEEKDAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
}
_MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
           "September", "Oktober", "November", "Dezember"),
}


# --------------------------------------------------------------------------- resolving
def clock_hour(hour: int, meridiem: str | None, *, twenty_four: bool = False) -> int:
    """The hour on a 24-hour clock for an hour as said, with its am/pm or part of the day."""
    if meridiem in ("am", "morning"):
        return 0 if hour == 12 else hour
    if meridiem in ("pm", "afternoon", "evening"):
        return hour + 12 if hour < 12 else hour
    if meridiem == "noon":  # "um 1 mittags" is 13:00
        return hour + 12 if hour <= 5 else hour
    if meridiem == "night":  # "at 11 at night" is 23:00, "at 2 at night" stays 2:00
        if hour == 12:
            return 0
        return hour + 12 if 6 <= hour < 12 else hour
    if twenty_four or hour == 0 or hour > 12:
        return hour
    return hour + 12 if hour <= 6 else hour


def said_clock(slots: Mapping[str, Any], prefix: str = "",
               meridiem: str | None = None) -> time | None:
    """The time of day in ``slots`` (names with ``prefix``), or None when none was said.

    ``meridiem`` is the part of the day said elsewhere ("tomorrow morning at 7")."""
    named = slots.get(prefix + "named")
    if named is not None:
        return time(*divmod(int(named), 60))
    hour = slots.get(prefix + "hour")
    if hour is None:
        return None
    said = slots.get(prefix + "meridiem") or meridiem
    hour = clock_hour(int(hour), said, twenty_four=bool(slots.get(prefix + "hour24")))
    minutes = hour * 60 + int(slots.get(prefix + "minute") or 0)
    minutes += int(slots.get(prefix + "rel") or 0)
    minutes += int(slots.get(prefix + "minutes_past") or 0)
    minutes -= int(slots.get(prefix + "minutes_to") or 0)
    return time(*divmod(minutes % (24 * 60), 60))


def said_part(slots: Mapping[str, Any]) -> str | None:
    """The part of the day said with the day ("tonight", "tomorrow morning"), if any."""
    return slots.get("today_part") or slots.get("part")


def said_day(slots: Mapping[str, Any], now: datetime, clock: time | None = None,
             prefix: str = "") -> date | None:
    """The day in ``slots`` (names with ``prefix``), or None when no day was said.

    Raises ValueError for a day that does not exist ("February 30")."""
    today = now.date()
    offset = slots.get(prefix + "day_word")
    if offset is not None:
        return today + timedelta(days=int(offset))
    if prefix == "" and slots.get("today_part") is not None:
        return today
    weekday = slots.get(prefix + "weekday")
    if weekday is not None:
        ahead = (int(weekday) - today.weekday()) % 7
        if ahead == 0 and (slots.get(prefix + "week_mod") == "next" or (
                clock is not None and at(today, clock, now.tzinfo) <= now)):
            ahead = 7
        return today + timedelta(days=ahead)
    day_num = slots.get(prefix + "day_num")
    if day_num is None:
        return None
    month = slots.get(prefix + "month")
    if month is not None:
        return _next_date(today, int(month), int(day_num))
    return _next_day_of_month(today, int(day_num))


def _next_date(today: date, month: int, day: int) -> date:
    """The next ``month``/``day`` from today on (a February 29 waits for its leap year)."""
    for year in range(today.year, today.year + 9):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate >= today:
            return candidate
    raise ValueError(f"no such day: {month}/{day}")


def _next_day_of_month(today: date, day: int) -> date:
    """The next day of the month numbered ``day`` ("on the 12th"), this month if still to come."""
    year, month = today.year, today.month
    for _ in range(13):
        try:
            candidate = date(year, month, day)
        except ValueError:
            candidate = None
        if candidate is not None and candidate >= today:
            return candidate
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    raise ValueError(f"no such day of the month: {day}")


def at(day: date, clock: time, zone: tzinfo | None) -> datetime:
    """``day`` at ``clock`` in ``zone``; a wall time skipped by a DST change moves forward."""
    moment = datetime.combine(day, clock, tzinfo=zone)
    return moment.astimezone(UTC).astimezone(zone)


def later(now: datetime, minutes: int) -> datetime:
    """``minutes`` of real time after ``now`` (across a DST change too), in now's zone."""
    return (now.astimezone(UTC) + timedelta(minutes=minutes)).astimezone(now.tzinfo)


def span_minutes(slots: Mapping[str, Any], prefix: str) -> int | None:
    """A length said as "in ten minutes" / "for two hours" ("in_", "dur_"), in minutes."""
    fixed = slots.get(prefix + "fixed")
    if fixed is not None:
        return int(fixed)
    count, unit = slots.get(prefix + "count"), slots.get(prefix + "unit")
    if count is None or unit is None:
        return None
    return int(count) * int(unit)


def resolve_moment(slots: Mapping[str, Any], now: datetime,
                   default: time | None = None) -> datetime | None:
    """The moment a request names: "in 10 minutes", "tomorrow at 3 pm", "at 5", "Friday".

    A day without a time takes ``default`` (None: no moment). A time without a day is the
    next one to come."""
    minutes = span_minutes(slots, "in_")
    if minutes is not None:
        return later(now, minutes)
    part = said_part(slots)
    clock = said_clock(slots, meridiem=part)
    if clock is None and part is not None:
        clock = time(PART_HOURS[part])
    day = said_day(slots, now, clock or default)
    if day is None:
        if clock is None:
            return None
        moment = at(now.date(), clock, now.tzinfo)
        return moment if moment > now else at(now.date() + timedelta(days=1), clock, now.tzinfo)
    if clock is None:
        if default is None:
            return None
        clock = default
    return at(day, clock, now.tzinfo)


def resolve_end(slots: Mapping[str, Any], start: datetime) -> datetime | None:
    """The end of an event said with a length ("for two hours") or an end ("from 2 to 4")."""
    minutes = span_minutes(slots, "dur_")
    if minutes is not None:
        return later(start, minutes)
    end_clock = said_clock(slots, "end_")
    if end_clock is None:
        return None
    end = at(start.date(), end_clock, start.tzinfo)
    while end <= start:
        end = at(end.date() + timedelta(days=1), end_clock, start.tzinfo)
    return end


def with_end_meridiem(slots: dict[str, Any]) -> None:
    """"from 10 to 11 pm": a start said without am/pm takes the end's when that keeps it first."""
    said = slots.get("end_meridiem")
    if said is None or slots.get("meridiem") or slots.get("hour") is None:
        return
    start = said_clock({**slots, "meridiem": said})
    end = said_clock(slots, "end_")
    if start is not None and end is not None and start < end:
        slots["meridiem"] = said


def day_span(day: date, zone: tzinfo | None, days: int = 1) -> tuple[datetime, datetime]:
    """From the start of ``day`` to the start of the day ``days`` later, in ``zone``."""
    return at(day, time(0), zone), at(day + timedelta(days=days), time(0), zone)


def week_span(now: datetime, which: str) -> tuple[datetime, datetime]:
    """"this week": now to the end of Sunday; "next week": Monday to Monday."""
    monday = now.date() + timedelta(days=7 - now.weekday())
    if which == "next":
        return day_span(monday, now.tzinfo, 7)
    return now, at(monday, time(0), now.tzinfo)


# --------------------------------------------------------------------------- saying
def _lang(language: str | None) -> str:
    return "de" if (language or "").lower().startswith("de") else "en"


def say_clock(moment: datetime | time, language: str) -> str:
    """A time of day: "3:05 pm", "3 pm" / "15:05 Uhr", "15 Uhr"."""
    hour, minute = moment.hour, moment.minute
    if _lang(language) == "de":
        return f"{hour}:{minute:02d} Uhr" if minute else f"{hour} Uhr"
    twelve = hour % 12 or 12
    suffix = "am" if hour < 12 else "pm"
    return f"{twelve}:{minute:02d} {suffix}" if minute else f"{twelve} {suffix}"


def say_day(day: date, today: date, language: str) -> str:
    """A day relative to today: "today", "tomorrow", "on Friday", "on December 12" / "heute",
    "morgen", "am Freitag", "am 12. Dezember" (a weekday within the coming week)."""
    lang = _lang(language)
    ahead = (day - today).days
    words = {0: ("today", "heute"), 1: ("tomorrow", "morgen"), -1: ("yesterday", "gestern")}
    if ahead in words:
        return words[ahead][lang == "de"]
    on = "am" if lang == "de" else "on"
    if 2 <= ahead <= 6:
        return f"{on} {_WEEKDAYS[lang][day.weekday()]}"
    month = _MONTHS[lang][day.month - 1]
    said = f"{day.day}. {month}" if lang == "de" else f"{month} {day.day}"
    if day.year != today.year and (ahead < 0 or ahead > 300):
        said += f" {day.year}" if lang == "de" else f", {day.year}"
    return f"{on} {said}"


def say_when(moment: datetime, now: datetime, language: str, *, all_day: bool = False) -> str:
    """Words for a moment relative to now: "today at 3 pm", "tomorrow at 1:30 pm",
    "on Friday at 1 pm", "on December 12 at 9 am" / "heute um 15 Uhr", "morgen um 13:30 Uhr",
    "am Freitag um 13 Uhr", "am 12. Dezember um 9 Uhr". ``all_day``: the day only."""
    if moment.tzinfo is not None and now.tzinfo is not None:
        moment = moment.astimezone(now.tzinfo)
    day = say_day(moment.date(), now.date(), language)
    if all_day:
        return day
    word = "um" if _lang(language) == "de" else "at"
    return f"{day} {word} {say_clock(moment, language)}"
