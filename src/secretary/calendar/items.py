"""Events and to-dos as the skills see them, and as iCalendar (RFC 5545) writes them: the
part of the calendar client that needs no server, kept apart from the CalDAV requests.

Every time handed out is aware and in the user's zone: an all-day date is its midnight,
a floating time (no zone) is read as local time.
"""

from __future__ import annotations

import copy
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import icalendar

from secretary.errors import SecretaryError

ARTICLES = frozenset({"the", "a", "an", "das", "den", "der", "die", "dem", "des", "ein",
                      "eine", "einen", "einem", "einer"})
MAX_TITLE_CHARS = 500
_UID = re.compile(r"[A-Za-z0-9@._-]{1,200}")
_DONE = ("COMPLETED", "CANCELLED")


@dataclass(frozen=True)
class Event:
    uid: str
    title: str
    start: datetime
    end: datetime
    all_day: bool
    href: str
    etag: str | None
    # One occurrence of a series: its original start (moves and cancels touch only it).
    recurrence_id: datetime | None = None


@dataclass(frozen=True)
class Todo:
    uid: str
    title: str
    due: datetime | None
    done: bool
    href: str
    etag: str | None


class CalendarError(SecretaryError):
    """Any failure of the calendar server; the three below say which."""


class CalendarUnavailable(CalendarError):
    """The calendar server cannot be reached, or did not answer in time."""

    status_code = 503
    code = "calendar_unavailable"
    error_type = "server_error"


class CalendarRefused(CalendarError):
    """The calendar server answered an error (to a write, a login, a query)."""

    status_code = 502
    code = "calendar_refused"
    error_type = "server_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class CalendarConflict(CalendarError):
    """The item changed (or went away) since it was read: nothing was overwritten."""

    status_code = 409
    code = "calendar_conflict"
    error_type = "invalid_request_error"


def clean_title(title: str) -> str:
    """A title fit to write: trimmed, not empty, not huge, no control characters."""
    title = title.strip()
    if not title:
        raise ValueError("the title is empty")
    if len(title) > MAX_TITLE_CHARS:
        raise ValueError(f"the title has {len(title)} characters, more than {MAX_TITLE_CHARS}")
    bad = [c for c in title if unicodedata.category(c) in ("Cc", "Cs")]
    if bad:
        raise ValueError(f"the title contains control characters ({ascii(bad[0])})")
    return title


def check_uid(uid: str | None) -> str:
    """The caller's UID (a retry's), or a new one; it names the item's file too."""
    if uid is None:
        return f"{uuid.uuid4()}@secretary"
    if not _UID.fullmatch(uid):
        raise ValueError("a UID is 1 to 200 letters, digits and @ . _ -")
    return uid


def title_matches(query: str, title: str) -> bool:
    """Every meaningful word of ``query`` is in ``title`` (case-insensitive, as a part of
    a word too: "dentist" finds "Dentists", "Zahnarzt" finds "Zahnarzttermin")."""
    words = [w for w in re.findall(r"\w+", query.casefold()) if w not in ARTICLES]
    folded = title.casefold()
    return bool(words) and all(w in folded for w in words)


def aware(value: date | datetime, tz: tzinfo) -> datetime:
    """A time in the user's zone: a date is its midnight, a floating time local."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), tz)
    if value.tzinfo is None:
        return value.replace(tzinfo=tz)
    return value.astimezone(tz)


def is_series(ical: icalendar.Calendar) -> bool:
    return any(k in c for c in ical.walk("VEVENT") for k in ("RRULE", "RDATE", "RECURRENCE-ID"))


def event_of(component: Any, href: str, etag: str | None, tz: ZoneInfo,
             series: bool = False) -> Event:
    raw_start = component["DTSTART"].dt
    start = aware(raw_start, tz)
    try:
        end = aware(component.end, tz)
    except (icalendar.error.IncompleteComponent, KeyError):
        end = start
    rid = component.get("RECURRENCE-ID")
    recurrence_id = aware(rid.dt, tz) if series and rid is not None else None
    return Event(str(component.get("UID", "")), str(component.get("SUMMARY", "")), start, end,
                 not isinstance(raw_start, datetime), href, etag, recurrence_id)


def todo_of(component: Any, href: str, etag: str | None, tz: ZoneInfo) -> Todo:
    due = component.get("DUE")
    done = str(component.get("STATUS", "")).upper() in _DONE or "COMPLETED" in component
    return Todo(str(component.get("UID", "")), str(component.get("SUMMARY", "")),
                aware(due.dt, tz) if due is not None else None, done, href, etag)


def alarms(component: Any, tz: ZoneInfo) -> list[tuple[Any, datetime]]:
    """Each VALARM of the item with the moment it goes off. A relative trigger counts
    from DTSTART, or with RELATED=END from DUE (DTEND)."""
    found = []
    for alarm in component.walk("VALARM"):
        trigger = alarm.get("TRIGGER")
        if trigger is None:
            continue
        if isinstance(trigger.dt, timedelta):
            related = str(trigger.params.get("RELATED", "START")).upper()
            ends = ("DUE", "DTEND") if related == "END" else ("DTSTART",)
            anchor = next((component[k] for k in (*ends, "DTSTART", "DUE") if k in component),
                          None)
            if anchor is not None:
                found.append((alarm, aware(anchor.dt, tz) + trigger.dt))
        else:
            found.append((alarm, aware(trigger.dt, tz)))
    return found


def pending(alarm: Any, moment: datetime) -> bool:
    """Not acknowledged since it went off (RFC 9074): an alarm acknowledged before its
    item was moved later goes off again."""
    acknowledged = alarm.get("ACKNOWLEDGED")
    return acknowledged is None or aware(acknowledged.dt, UTC) < moment


def acknowledge(component: Any, tz: ZoneInfo) -> bool:
    """Mark the item's pending alarms that went off (at least its next one) as
    acknowledged; False when none was pending."""
    waiting = [(a, t) for a, t in alarms(component, tz) if pending(a, t)]
    if not waiting:
        return False
    now = datetime.now(UTC).replace(microsecond=0)
    cutoff = max(now, min(t for _, t in waiting))
    for alarm, moment in waiting:
        if moment <= cutoff:
            alarm.pop("ACKNOWLEDGED", None)
            alarm.add("acknowledged", max(now, moment.astimezone(UTC)))
    return True


def new_event(uid: str, title: str, start: datetime, end: datetime, all_day: bool,
              tz: ZoneInfo) -> icalendar.Event:
    component = icalendar.Event()
    component.add("uid", uid)
    component.add("summary", title)
    set_times(component, start, end, all_day, tz)
    stamp(component, created=True)
    return component


def new_todo(uid: str, title: str, due: datetime | None, tz: ZoneInfo) -> icalendar.Todo:
    """A to-do; with a due time, a display alarm at that time (TRIGGER;RELATED=END)."""
    component = icalendar.Todo()
    component.add("uid", uid)
    component.add("summary", title)
    component.add("status", "NEEDS-ACTION")
    if due is not None:
        component.add("due", aware(due, tz).replace(microsecond=0))
        alarm = icalendar.Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", title)
        alarm.add("trigger", timedelta(0), parameters={"RELATED": "END"})
        component.add_component(alarm)
    stamp(component, created=True)
    return component


def set_times(component: Any, start: datetime, end: datetime, all_day: bool,
              tz: ZoneInfo) -> None:
    """DTSTART and DTEND, in the user's zone (all day: dates, the end exclusive)."""
    start = aware(start, tz).replace(microsecond=0)
    end = aware(end, tz).replace(microsecond=0)
    if end < start:
        raise ValueError("the event would end before it starts")
    for key in ("DTSTART", "DTEND", "DURATION"):
        component.pop(key, None)
    if all_day:
        component.add("dtstart", start.date())
        component.add("dtend", max(end.date(), start.date() + timedelta(days=1)))
    else:
        component.add("dtstart", start)
        component.add("dtend", end)


def wrap(component: Any) -> icalendar.Calendar:
    ical = icalendar.Calendar()
    ical.add("prodid", "-//Secretary//secretary//EN")
    ical.add("version", "2.0")
    ical.add_component(component)
    return ical


def to_text(ical: icalendar.Calendar) -> str:
    """The item as it is sent, with the VTIMEZONE each TZID needs (RFC 5545), covering a
    few years around the item rather than 1970 to 2038 (a few lines, not a hundred)."""
    moments = [v.dt for c in ical.subcomponents for k in ("DTSTART", "DTEND", "DUE")
               if (v := c.get(k)) is not None and isinstance(v.dt, datetime)
               and v.dt.tzinfo is not None]
    if moments:
        first = min(m.date() for m in moments) - timedelta(days=366)
        ical.add_missing_timezones(first_date=first, last_date=first + timedelta(days=6 * 366))
    return ical.to_ical().decode()


def main_component(ical: icalendar.Calendar, name: str) -> Any:
    """The item's VEVENT or VTODO that is not an override of one occurrence."""
    for component in ical.walk(name):
        if "RECURRENCE-ID" not in component:
            return component
    raise CalendarConflict(f"it changed meanwhile: the item holds no {name} any more")


def occurrence(ical: icalendar.Calendar, event: Event, tz: ZoneInfo, create: bool) -> Any:
    """The VEVENT of ``event`` in its resource: the master, or the override of its
    occurrence (made from the master when there is none yet and ``create``)."""
    components = [c for c in ical.subcomponents if c.name == "VEVENT"]
    master = next((c for c in components if "RECURRENCE-ID" not in c), None)
    found = master
    if event.recurrence_id is not None:
        found = next((c for c in overrides(ical, event.recurrence_id, tz)), None)
        if found is None and create and master is not None:
            found = icalendar.Event()
            for key, value in master.items():
                if key not in ("RRULE", "RDATE", "EXDATE", "SEQUENCE"):
                    found[key] = copy.deepcopy(value)
            found.subcomponents = copy.deepcopy(master.subcomponents)  # its alarms
            found.add("recurrence-id", like(aware(event.recurrence_id, tz),
                                            master["DTSTART"].dt))
            ical.add_component(found)
    if found is None:
        raise CalendarConflict(f"it changed meanwhile: the event {event.title!r} is not "
                               "there any more")
    return found


def overrides(ical: icalendar.Calendar, recurrence_id: datetime, tz: ZoneInfo) -> list[Any]:
    """The VEVENTs that replace the occurrence of a series that began at
    ``recurrence_id``."""
    return [c for c in ical.subcomponents if c.name == "VEVENT" and "RECURRENCE-ID" in c
            and aware(c["RECURRENCE-ID"].dt, tz) == aware(recurrence_id, tz)]


def like(value: datetime, model: date | datetime) -> date | datetime:
    """``value`` in the form of ``model`` (a date, a floating time or one in its zone),
    as a RECURRENCE-ID or EXDATE must be."""
    if not isinstance(model, datetime):
        return value.date()
    if model.tzinfo is None:
        return value.replace(tzinfo=None)
    return value.astimezone(model.tzinfo)


def stamp(component: Any, *, created: bool = False, bump: bool = False) -> None:
    """DTSTAMP and LAST-MODIFIED now; CREATED for a new item; SEQUENCE up for a change
    (clients take the higher one as the newer)."""
    now = datetime.now(UTC).replace(microsecond=0)
    for key in ("DTSTAMP", "LAST-MODIFIED"):
        component.pop(key, None)
        component.add(key, now)
    if created:
        component.add("created", now)
    if bump:
        sequence = int(component.pop("SEQUENCE", 0)) + 1
        component.add("sequence", sequence)
