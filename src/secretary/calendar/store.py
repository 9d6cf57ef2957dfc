"""The CalDAV client the skills use: events and to-dos on the user's calendar server, so
the phone's calendar shows what the secretary wrote, and the secretary sees the rest.

Blocking (callers use ``asyncio.to_thread``); one lock serialises the calls of a store, as
its HTTP session is not shared safely between threads. Nothing is lost quietly: a server
that cannot be reached raises ``CalendarUnavailable``, an error answer to a write
``CalendarRefused``, and a change to an item that someone else changed since it was read
``CalendarConflict`` (every update carries the ETag it was read with, ``If-Match``). New
items go to an href made from their UID with ``If-None-Match: *``, so a create retried
with the same UID after a failure never makes a second copy.

Reads cover every calendar of the user (events the phone wrote in "Work" show too);
writes go to the secretary's own calendar, found by its name or made once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from secretary.calendar.dav import Collection, DavAuthError, DavClient, DavError, Item
from secretary.calendar.items import (
    CalendarConflict,
    CalendarError,
    CalendarRefused,
    CalendarUnavailable,
    Event,
    Todo,
    acknowledge,
    alarms,
    aware,
    check_uid,
    clean_title,
    event_of,
    is_series,
    like,
    main_component,
    new_event,
    new_todo,
    occurrence,
    overrides,
    pending,
    set_times,
    stamp,
    title_matches,
    to_text,
    todo_of,
    wrap,
)
from secretary.calendar.settings import OWNER
from secretary.errors import SecretaryError, redact_url, scrub

if TYPE_CHECKING:
    from secretary.calendar.dav import Response
    from secretary.config import Settings

__all__ = ["CalendarConflict", "CalendarError", "CalendarRefused", "CalendarStore",
           "CalendarUnavailable", "Event", "Todo"]

log = logging.getLogger(__name__)

_ICS = {"Content-Type": "text/calendar; charset=utf-8"}


class CalendarStore:
    def __init__(self, url: str, username: str | None, password: str | None, name: str,
                 timeout: float, tz: ZoneInfo) -> None:
        self.name = name
        self.tz = tz
        self.timeout = timeout
        self.shown_url = redact_url(url)
        self._secrets = tuple(s for s in (password,) if s)
        self._client = DavClient(url, username, password, timeout)
        self._lock = threading.RLock()
        self._own: Collection | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CalendarStore:
        """The store for ``settings``: the configured server, else this machine's calendar
        service as its owner (with an API key where the services want one)."""
        group = settings.calendar
        username = group.username
        password = group.password.get_secret_value() if group.password else None
        if group.url is None:
            username = username or OWNER
            if password is None and settings.api_keys:
                password = settings.api_keys[0]
        return cls(settings.calendar_url(), username, password, group.name, group.timeout,
                   settings.zone)

    # ------------------------------------------------------------------ events
    def add_event(self, title: str, start: datetime, end: datetime, all_day: bool = False,
                  uid: str | None = None) -> Event:
        """A new event in the secretary's calendar; retried with the same ``uid`` after a
        failure, it is made once."""
        uid = check_uid(uid)
        component = new_event(uid, clean_title(title), start, end, all_day, self.tz)
        component, href, etag = self._add(uid, component, "VEVENT", f"event {title!r}")
        return event_of(component, href, etag, self.tz)

    def events(self, start: datetime, end: datetime) -> list[Event]:
        """Events of every calendar that overlap [start, end), series expanded."""
        lo, hi = aware(start, self.tz), aware(end, self.tz)
        found: list[Event] = []
        with self._lock:
            for calendar in self._calendars():
                with self._talking("reading events"):
                    items = self._client.query(calendar.url, "VEVENT", lo, hi)
                for item in items:
                    with _skipped_if_unreadable(item):
                        found += self._occurrences(item, lo, hi)
        return sorted(found, key=lambda e: (e.start, e.title))

    def _occurrences(self, item: Item, lo: datetime, hi: datetime) -> list[Event]:
        ical = icalendar.Calendar.from_ical(item.data)
        series = is_series(ical)
        found = []
        for component in recurring_ical_events.of(ical).between(lo, hi):
            event = event_of(component, item.url, item.etag, self.tz, series)
            if event.start < hi and (event.end > lo or event.start >= lo):
                found.append(event)
        return found

    def find_events(self, title: str, day: date | None, start: datetime,
                    end: datetime) -> list[Event]:
        """Events in [start, end) (and on ``day`` when given) whose title holds every
        meaningful word of ``title``."""
        lo, hi = aware(start, self.tz), aware(end, self.tz)
        if day is not None:
            day_start = datetime.combine(day, time(), self.tz)
            lo, hi = max(lo, day_start), min(hi, day_start + timedelta(days=1))
            if lo >= hi:
                return []
        return [e for e in self.events(lo, hi) if title_matches(title, e.title)]

    def move_event(self, event: Event, start: datetime, end: datetime) -> Event:
        """Move ``event`` (one occurrence of a series: only it), unless it changed since
        it was read."""
        with self._lock:
            ical, etag = self._current(event.href, event.etag, "event")
            target = occurrence(ical, event, self.tz, create=True)
            set_times(target, start, end, event.all_day, self.tz)
            stamp(target, bump=True)
            new_etag = self._put(event.href, ical, etag)
        moved = event_of(target, event.href, new_etag, self.tz)
        return replace(moved, recurrence_id=event.recurrence_id)

    def cancel_event(self, event: Event) -> None:
        """Delete ``event`` (one occurrence of a series: only it), unless it changed since
        it was read. One that is gone already is fine: that was asked for."""
        with self._lock:
            ical, etag = self._current(event.href, event.etag, "event", missing_ok=True)
            if ical is None:
                return
            if event.recurrence_id is None:
                self._request("DELETE", event.href, headers={"If-Match": etag} if etag else {},
                              doing="deleting the event", missing_ok=True)
                return
            master = main_component(ical, "VEVENT")
            for override in overrides(ical, event.recurrence_id, self.tz):
                ical.subcomponents.remove(override)
            master.add("exdate", like(aware(event.recurrence_id, self.tz),
                                      master["DTSTART"].dt))
            stamp(master, bump=True)
            self._put(event.href, ical, etag)

    # ------------------------------------------------------------------ to-dos
    def add_todo(self, title: str, due: datetime | None, uid: str | None = None) -> Todo:
        """A new to-do; with a due time it carries an alarm then. Retried with the same
        ``uid`` after a failure, it is made once."""
        uid = check_uid(uid)
        component = new_todo(uid, clean_title(title), due, self.tz)
        component, href, etag = self._add(uid, component, "VTODO", f"to-do {title!r}")
        return todo_of(component, href, etag, self.tz)

    def todos(self, include_done: bool = False) -> list[Todo]:
        """To-dos of every calendar, the soonest due first (none due last)."""
        found = [todo for todo, _ in self._todo_items() if include_done or not todo.done]
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(found, key=lambda t: (t.due is None, t.due or far, t.title))

    def find_todos(self, title: str) -> list[Todo]:
        """Open to-dos whose title holds every meaningful word of ``title``."""
        return [t for t in self.todos() if title_matches(title, t.title)]

    def complete_todo(self, todo: Todo) -> Todo:
        """Mark ``todo`` done. Applied to the version stored now (with its ETag): marking
        done takes nothing away from a change made meanwhile (an acknowledged alarm)."""
        with self._lock:
            ical, etag = self._current(todo.href, None, "to-do")
            component = main_component(ical, "VTODO")
            for key in ("STATUS", "COMPLETED", "PERCENT-COMPLETE"):
                component.pop(key, None)
            component.add("status", "COMPLETED")
            component.add("completed", datetime.now(UTC).replace(microsecond=0))
            component.add("percent-complete", 100)
            stamp(component, bump=True)
            new_etag = self._put(todo.href, ical, etag)
        return replace(todo, done=True, etag=new_etag)

    def due_reminders(self, until: datetime) -> list[Todo]:
        """Open to-dos with an alarm at or before ``until`` that nobody acknowledged yet,
        the earliest first (to-dos without an alarm never remind)."""
        limit = aware(until, self.tz)
        due = []
        for todo, component in self._todo_items():
            times = [t for a, t in alarms(component, self.tz) if pending(a, t) and t <= limit]
            if not todo.done and times:
                due.append((min(times), todo))
        return [todo for _, todo in sorted(due, key=lambda pair: (pair[0], pair[1].title))]

    def acknowledge(self, todo: Todo) -> bool:
        """Mark the to-do's alarm ACKNOWLEDGED (RFC 9074). True when this call did it;
        False when someone did first, so each reminder is announced once, whichever of
        several processes sees it."""
        for _ in range(3):
            with self._lock:
                current = self._read(todo.href)
                if current is None:
                    return False
                ical, etag = current
                if not acknowledge(main_component(ical, "VTODO"), self.tz):
                    return False
                try:
                    self._put(todo.href, ical, etag)
                except CalendarConflict:
                    continue  # changed meanwhile: read again, maybe it is acknowledged now
            return True
        raise CalendarConflict(f"it changed meanwhile: the to-do {todo.title!r} keeps "
                               "changing; try again")

    def _todo_items(self) -> list[tuple[Todo, Any]]:
        found = []
        with self._lock:
            for calendar in self._calendars():
                with self._talking("reading to-dos"):
                    items = self._client.query(calendar.url, "VTODO")
                for item in items:
                    with _skipped_if_unreadable(item):
                        ical = icalendar.Calendar.from_ical(item.data)
                        component = main_component(ical, "VTODO")
                        found.append((todo_of(component, item.url, item.etag, self.tz),
                                      component))
        return found

    # ------------------------------------------------------------------ the server
    @contextmanager
    def _talking(self, doing: str) -> Iterator[None]:
        """Turn the HTTP and CalDAV libraries' failures into the calendar's errors."""
        where = f"the calendar server at {self.shown_url}"
        try:
            yield
        except SecretaryError:
            raise
        except DavAuthError as exc:
            raise CalendarRefused(f"{where} refused the login ({doing}); check "
                                  "SECRETARY_CALENDAR_USERNAME and _PASSWORD",
                                  status=exc.status) from exc
        except DavError as exc:
            reason = (str(exc.reason).strip().splitlines() or ["no reason"])[0][:200]
            raise CalendarRefused(f"{where} answered an error ({doing}): {exc.status} "
                                  f"{scrub(reason, self._secrets)}", status=exc.status) from exc
        except OSError as exc:  # the HTTP library's connection errors and timeouts
            if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
                problem = f"did not answer within {self.timeout:g} s"
            else:
                problem = "cannot be reached"
            raise CalendarUnavailable(f"{where} {problem} ({doing})") from exc

    def _request(self, method: str, url: str, body: str = "",
                 headers: dict[str, str] | None = None, *, doing: str,
                 missing_ok: bool = False) -> Response | None:
        """One request; an error answer raises (412: ``CalendarConflict``)."""
        with self._talking(doing):
            response = self._client.request(method, url, body, headers)
        if response.status == 404 and missing_ok:
            return None
        if response.status == 412:
            raise CalendarConflict(f"it changed meanwhile: someone else changed it while "
                                   f"{doing}; nothing was overwritten")
        if response.status >= 400:
            if method in ("PUT", "DELETE"):
                self._own = None  # the collection may be gone: look again next time
            reason = scrub(str(response.reason or "")[:200], self._secrets)
            raise CalendarRefused(f"the calendar server at {self.shown_url} answered "
                                  f"{response.status} {reason} ({doing})",
                                  status=response.status)
        return response

    def _read(self, href: str) -> tuple[icalendar.Calendar, str | None] | None:
        response = self._request("GET", href, doing="reading an item", missing_ok=True)
        if response is None:
            return None
        return icalendar.Calendar.from_ical(response.raw), response.headers.get("ETag")

    def _current(self, href: str, etag: str | None, kind: str,
                 missing_ok: bool = False) -> tuple[Any, str | None]:
        """The item as stored now, if it is still the version the caller read."""
        current = self._read(href)
        if current is None:
            if missing_ok:
                return None, None
            raise CalendarConflict(f"it changed meanwhile: the {kind} was deleted")
        if etag is not None and current[1] is not None and current[1] != etag:
            raise CalendarConflict(f"it changed meanwhile: the {kind} was changed elsewhere "
                                   "since it was read; nothing was overwritten")
        return current[0], etag or current[1]

    def _put(self, href: str, ical: icalendar.Calendar, etag: str | None) -> str | None:
        headers = dict(_ICS, **({"If-Match": etag} if etag else {}))
        response = self._request("PUT", href, to_text(ical), headers, doing="saving a change")
        return response.headers.get("ETag") if response is not None else None

    def _add(self, uid: str, component: Any, kind: str,
             what: str) -> tuple[Any, str, str | None]:
        """A new item made once: the component as stored, its href and its ETag (the one
        an earlier try stored, where that try went through)."""
        with self._lock:
            href, etag = self._create(uid, wrap(component))
            if etag is not None:
                return component, href, etag
            existing = self._read(href)  # there already: an earlier try went through
        if existing is None:
            raise CalendarConflict(f"it changed meanwhile: the new {what} is gone")
        return main_component(existing[0], kind), href, existing[1]

    def _create(self, uid: str, ical: icalendar.Calendar,
                retry: bool = True) -> tuple[str, str | None]:
        """PUT a new item where only it can be. Already there (an earlier try went
        through): the href and no ETag, and that item stays as it is."""
        href = self._own_calendar().url.rstrip("/") + "/" + quote(uid) + ".ics"
        headers = dict(_ICS, **{"If-None-Match": "*"})
        try:
            response = self._request("PUT", href, to_text(ical), headers,
                                     doing="saving a new item")
        except CalendarConflict:
            return href, None
        except CalendarRefused as exc:
            if not retry or exc.status not in (404, 409):
                raise
            # The calendar itself went (deleted on a phone): found or made again.
            return self._create(uid, ical, retry=False)
        return href, response.headers.get("ETag") if response is not None else None

    def _calendars(self) -> list[Collection]:
        own = self._own_calendar()
        with self._talking("listing the calendars"):
            found = self._client.calendars()
        if not any(c.url == own.url for c in found):
            found.append(own)
        return found

    def _own_calendar(self) -> Collection:
        """The calendar named ``self.name``: found, or made once (at an id made from the
        name, so two processes making it at once make one)."""
        if self._own is not None:
            return self._own
        cal_id = re.sub(r"[^a-z0-9]+", "-", self.name.casefold()).strip("-") or OWNER
        with self._talking("finding the secretary's calendar"):
            for attempt in range(2):
                found = self._client.calendars()
                named = [c for c in found if c.name == self.name]
                at_id = [c for c in found if c.url.rstrip("/").endswith("/" + cal_id)]
                if named or at_id:
                    self._own = (named or at_id)[0]
                    return self._own
                if attempt == 0:
                    # Made by another process at the same moment? Then look again.
                    with suppress(DavError):
                        self._client.make_calendar(cal_id, self.name)
        raise CalendarRefused(f"the calendar {self.name!r} cannot be made on the calendar "
                              f"server at {self.shown_url}")


@contextmanager
def _skipped_if_unreadable(item: Any) -> Iterator[None]:
    """An item another client wrote that cannot be read is left out of a listing (and
    logged), rather than hiding all the others."""
    try:
        yield
    except (ValueError, KeyError, CalendarConflict) as exc:
        log.warning("the calendar item %s cannot be read and is left out: %s", item.url, exc)
