"""The CalDAV client against a real server (the project's calendar service, Radicale),
checked with a second, plain CalDAV client that is not the store."""

from __future__ import annotations

import itertools
import socket
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from secretary.calendar.store import (
    CalendarConflict,
    CalendarStore,
    CalendarUnavailable,
    Event,
)
from tests.calendar.support import (
    AnswerLosingProxy,
    CalendarServer,
    free_port,
    plain_calendar,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
_days = itertools.count()


@pytest.fixture(scope="module")
def server(calendar: CalendarServer) -> CalendarServer:
    return calendar


@pytest.fixture
def day() -> date:
    """A day of its own for each test, so the tests' events never meet."""
    return date(2031, 1, 5) + timedelta(days=3 * next(_days))


def at(day: date, hour: int, tz: ZoneInfo = BERLIN) -> datetime:
    return datetime.combine(day, datetime.min.time(), tz).replace(hour=hour)


def store_for(url: str, tz: ZoneInfo = BERLIN, timeout: float = 10.0) -> CalendarStore:
    return CalendarStore(url, None, None, "Secretary", timeout, tz)


def whole_day(store: CalendarStore, day: date) -> list[Event]:
    return store.events(at(day, 0), at(day, 0) + timedelta(days=1))


def test_add_list_move_cancel(server: CalendarServer, day: date) -> None:
    store = store_for(server.url)
    added = store.add_event("Dentist", at(day, 10), at(day, 11))
    assert (added.title, added.start, added.end, added.all_day) == (
        "Dentist", at(day, 10), at(day, 11), False)
    holiday = store.add_event("Holiday", at(day, 0), at(day, 0), all_day=True)
    assert [(e.title, e.start, e.end) for e in whole_day(store, day)] == [
        ("Holiday", at(day, 0), at(day, 0) + timedelta(days=1)),
        ("Dentist", at(day, 10), at(day, 11))]
    assert whole_day(store, day)[0].all_day

    moved = store.move_event(added, at(day, 14), at(day, 15))
    assert (moved.start, moved.end, moved.uid) == (at(day, 14), at(day, 15), added.uid)
    assert moved.etag != added.etag
    assert [e.start for e in store.find_events("the dentist", day, at(day, 0),
                                               at(day + timedelta(days=1), 0))] == [at(day, 14)]
    assert store.find_events("dentist", day + timedelta(days=1), at(day, 0),
                             at(day + timedelta(days=2), 0)) == []

    store.cancel_event(moved)
    store.cancel_event(holiday)
    assert whole_day(store, day) == []
    store.cancel_event(moved)  # gone already: what was asked for


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK], ids=["berlin", "new-york"])
def test_todo_due_and_alarm_as_another_client_reads_them(server: CalendarServer, day: date,
                                                         tz: ZoneInfo) -> None:
    store = store_for(server.url, tz)
    due = at(day, 9, tz)
    todo = store.add_todo("Call the plumber", due)
    assert (todo.title, todo.due, todo.done) == ("Call the plumber", due, False)

    raw = plain_calendar(server.url, "Secretary").object_by_uid(todo.uid).data
    ical = icalendar.Calendar.from_ical(raw)
    vtodo = next(iter(ical.walk("VTODO")))
    assert vtodo["DUE"].params["TZID"] == tz.key
    assert vtodo["DUE"].dt == due and vtodo["DUE"].dt.utcoffset() == due.utcoffset()
    assert [z["TZID"] for z in ical.walk("VTIMEZONE")] == [tz.key]
    (alarm,) = vtodo.walk("VALARM")
    assert str(alarm["ACTION"]) == "DISPLAY"
    assert alarm["TRIGGER"].dt == timedelta(0)
    assert alarm["TRIGGER"].params["RELATED"] == "END"
    assert "ACKNOWLEDGED" not in alarm


def test_events_of_other_clients_and_calendars_are_listed(server: CalendarServer,
                                                          day: date) -> None:
    store = store_for(server.url)
    store.events(at(day, 0), at(day, 1))  # the secretary's calendar exists now
    plain_calendar(server.url, "Secretary").save_event(
        dtstart=at(day, 12), dtend=at(day, 13), summary="Lunch with Anna")
    work = plain_calendar(server.url, "Work")
    work.save_event(dtstart=at(day, 8), dtend=at(day, 9), summary="Standup",
                    rrule={"FREQ": "DAILY", "COUNT": 3})
    stamp = f"{day:%Y%m%d}"
    work.save_event(ical="BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//phone//EN\r\n"
                    f"BEGIN:VEVENT\r\nUID:gym-{stamp}\r\nDTSTAMP:{stamp}T000000Z\r\n"
                    f"DTSTART:{stamp}T170000\r\nDTEND:{stamp}T180000\r\nSUMMARY:Gym\r\n"
                    "END:VEVENT\r\nEND:VCALENDAR\r\n")  # floating: local time wherever

    assert [(e.title, e.start) for e in whole_day(store, day)] == [
        ("Standup", at(day, 8)), ("Lunch with Anna", at(day, 12)), ("Gym", at(day, 17))]
    span = store.events(at(day, 0), at(day + timedelta(days=3), 0))
    standups = [e for e in span if e.title == "Standup"]
    assert [e.start for e in standups] == [at(day + timedelta(days=n), 8) for n in range(3)]
    work.save_event(dtstart=at(day, 7) - timedelta(days=700), summary="Weekly call",
                    dtend=at(day, 7) - timedelta(days=700, minutes=-30),
                    rrule={"FREQ": "WEEKLY"})  # began two years ago, never ends
    week = store.events(at(day, 0), at(day + timedelta(days=7), 0))
    assert [e.start for e in week if e.title == "Weekly call"] == [at(day, 7)]
    assert [e.title for e in store.find_events("lunch anna", None, at(day, 0),
                                               at(day, 23))] == ["Lunch with Anna"]

    # One occurrence of the series moves, another is cancelled; the rest stay.
    store.move_event(standups[1], at(day + timedelta(days=1), 10),
                     at(day + timedelta(days=1), 11))
    store.cancel_event(store.find_events("standup", day + timedelta(days=2), at(day, 0),
                                         at(day + timedelta(days=3), 0))[0])
    span = store.events(at(day, 0), at(day + timedelta(days=3), 0))
    assert [e.start for e in span if e.title == "Standup"] == [
        at(day, 8), at(day + timedelta(days=1), 10)]


def test_two_stores_changing_one_event(server: CalendarServer, day: date) -> None:
    first, second = store_for(server.url), store_for(server.url)
    first.add_event("Haircut", at(day, 10), at(day, 11))
    (seen_by_first,) = first.find_events("haircut", day, at(day, 0), at(day, 23))
    (seen_by_second,) = second.find_events("haircut", day, at(day, 0), at(day, 23))

    first.move_event(seen_by_first, at(day, 15), at(day, 16))
    with pytest.raises(CalendarConflict, match="changed meanwhile"):
        second.move_event(seen_by_second, at(day, 18), at(day, 19))
    with pytest.raises(CalendarConflict, match="changed meanwhile"):
        second.cancel_event(seen_by_second)

    raw = plain_calendar(server.url, "Secretary").object_by_uid(seen_by_first.uid).data
    stored = next(iter(icalendar.Calendar.from_ical(raw).walk("VEVENT")))
    assert stored["DTSTART"].dt == at(day, 15)


def test_reminders_are_taken_once(server: CalendarServer, day: date) -> None:
    first, second = store_for(server.url), store_for(server.url)
    due = datetime.now(BERLIN).replace(microsecond=0) - timedelta(minutes=1)
    todo = first.add_todo(f"Water the plants {day}", due)
    later = first.add_todo(f"Pay rent {day}", due + timedelta(days=30))
    first.add_todo(f"Read a book {day}", None)

    assert [t.uid for t in second.due_reminders(datetime.now(BERLIN))
            if str(day) in t.title] == [todo.uid]
    assert first.acknowledge(todo) is True
    assert second.acknowledge(todo) is False
    assert first.acknowledge(todo) is False
    assert [t for t in second.due_reminders(datetime.now(BERLIN)) if str(day) in t.title] == []
    assert [t.uid for t in second.due_reminders(due + timedelta(days=31))
            if str(day) in t.title] == [later.uid]

    # Done after the alarm was acknowledged (its ETag changed since): still done.
    assert first.complete_todo(todo).done
    titles = [t.title for t in second.todos() if str(day) in t.title]
    assert titles == [f"Pay rent {day}", f"Read a book {day}"]  # soonest due first
    assert [t.title for t in second.find_todos(f"the rent {day}")] == [f"Pay rent {day}"]
    assert todo.uid in [t.uid for t in second.todos(include_done=True) if t.done]


def test_a_reminder_moved_later_reminds_again(server: CalendarServer, day: date) -> None:
    store = store_for(server.url)
    now = datetime.now(BERLIN).replace(microsecond=0)
    todo = store.add_todo(f"Feed the cat {day}", now - timedelta(minutes=5))
    assert store.acknowledge(todo)
    # The user moves it to later on the phone: its alarm goes off again then (RFC 9074).
    item = plain_calendar(server.url, "Secretary").object_by_uid(todo.uid)
    ical = icalendar.Calendar.from_ical(item.data)
    vtodo = next(iter(ical.walk("VTODO")))
    vtodo.pop("DUE")
    vtodo.add("due", now + timedelta(hours=1))
    item.data = ical.to_ical().decode()
    item.save()
    assert [t.uid for t in store.due_reminders(now) if t.uid == todo.uid] == []
    later = [t.uid for t in store.due_reminders(now + timedelta(hours=2))]
    assert todo.uid in later
    assert store.acknowledge(todo) and not store.acknowledge(todo)


def test_a_deleted_calendar_is_made_again(server: CalendarServer, day: date) -> None:
    store = CalendarStore(server.url, None, None, "Scratch", 10, BERLIN)
    store.add_event("First", at(day, 9), at(day, 10))
    plain_calendar(server.url, "Scratch").delete()  # the user deleted it on the phone
    store.add_event("Second", at(day, 11), at(day, 12))
    assert [e.title for e in whole_day(store, day)] == ["Second"]


def test_control_characters_are_refused(server: CalendarServer, day: date) -> None:
    store = store_for(server.url)
    with pytest.raises(ValueError, match="control characters"):
        store.add_event("Lunch\x00", at(day, 12), at(day, 13))
    with pytest.raises(ValueError, match="control characters"):
        store.add_todo("Buy milk\x1b[31m", None)
    with pytest.raises(ValueError, match="empty"):
        store.add_todo("   ", None)
    assert whole_day(store, day) == []


def test_a_server_that_is_down_is_unavailable_at_once() -> None:
    store = CalendarStore(f"http://user:hunter2@127.0.0.1:{free_port()}/", "user", "hunter2",
                          "Secretary", 5, BERLIN)
    started = time.monotonic()
    with pytest.raises(CalendarUnavailable, match="cannot be reached") as caught:
        store.events(datetime.now(BERLIN), datetime.now(BERLIN) + timedelta(days=1))
    assert time.monotonic() - started < 2
    assert "hunter2" not in str(caught.value) and "***@127.0.0.1" in str(caught.value)


def test_a_server_that_does_not_answer_times_out() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        store = store_for(f"http://127.0.0.1:{silent.getsockname()[1]}/", timeout=1)
        started = time.monotonic()
        with pytest.raises(CalendarUnavailable, match="did not answer within 1 s"):
            store.add_todo("Anything", None)
        assert time.monotonic() - started < 5


def test_a_write_retried_after_a_crash_is_made_once(tmp_path: Path, day: date) -> None:
    server = CalendarServer(tmp_path / "data")
    server.start()
    try:
        store = store_for(server.url)
        store.add_event("Warm-up", at(day, 8), at(day, 9))
        server.kill()
        with pytest.raises(CalendarUnavailable):
            store.add_event("Board meeting", at(day, 10), at(day, 11), uid="board-1")
        server.start()
        first = store.add_event("Board meeting", at(day, 10), at(day, 11), uid="board-1")
        again = store.add_event("Board meeting", at(day, 10), at(day, 11), uid="board-1")
        assert (again.href, again.etag) == (first.href, first.etag)
        assert [e.title for e in whole_day(store, day)] == ["Warm-up", "Board meeting"]
    finally:
        server.kill()


def test_a_write_whose_answer_was_lost_is_made_once(server: CalendarServer,
                                                    day: date) -> None:
    proxy = AnswerLosingProxy(server.port)
    try:
        store = store_for(proxy.url)
        store.events(at(day, 0), at(day, 1))  # found the calendar while answers came back
        proxy.lose = True
        with pytest.raises(CalendarUnavailable):
            store.add_todo(f"Renew passport {day}", at(day, 9), uid=f"passport-{day}")
        landed = plain_calendar(server.url, "Secretary").object_by_uid(f"passport-{day}")
        assert "Renew passport" in landed.data  # the write went through; its answer did not
        proxy.lose = False
        retried = store.add_todo(f"Renew passport {day}", at(day, 9), uid=f"passport-{day}")
        assert retried.due == at(day, 9)
        matching = [t for t in store.todos() if t.title == f"Renew passport {day}"]
        assert [t.uid for t in matching] == [f"passport-{day}"]
    finally:
        proxy.close()
