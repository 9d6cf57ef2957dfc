"""The secretary's skills from text, in English and German, against a real CalDAV server
(the project's calendar service, Radicale): what each request leaves on the server is read
back with a separate ``caldav`` client, not taken from the secretary's answer."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from secretary.calendar.store import CalendarStore
from secretary.skills.notes import NotesStore
from secretary.skills.service import Secretary
from tests.calendar.support import CalendarServer, plain_calendar

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
# A Sunday evening: "Friday" is 2026-12-11, "tomorrow" Monday 2026-12-07.
SUNDAY = datetime(2026, 12, 6, 18, 0, tzinfo=BERLIN)
NAME = "Secretary"


@pytest.fixture(scope="module")
def server(calendar: CalendarServer) -> CalendarServer:
    return calendar


class Clock:
    """A settable "now" for the secretary."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _secretary(url: str, tmp_path: Path, zone: ZoneInfo, now: datetime,
               name: str) -> Secretary:
    store = CalendarStore(url, None, None, name, 5.0, zone)
    return Secretary(store, NotesStore(tmp_path / "notes.sqlite3"), zone,
                     clock=Clock(now.astimezone(zone)))


@pytest.fixture
def calendar_name() -> str:
    """Each test writes to a calendar of its own on the shared server."""
    return f"{NAME} {uuid.uuid4().hex[:8]}"


@pytest.fixture
def secretary(server: CalendarServer, tmp_path: Path, calendar_name: str) -> Secretary:
    return _secretary(server.url, tmp_path, BERLIN, SUNDAY, calendar_name)


def _components(url: str, name: str, kind: str) -> list[icalendar.cal.Component]:
    """What another client sees in the calendar called ``name``."""
    calendar = plain_calendar(url, name)
    items = calendar.search(todo=True, include_completed=True) if kind == "VTODO" \
        else calendar.search(event=True)
    found = []
    for item in items:
        found += [c for c in icalendar.Calendar.from_ical(item.data).walk(kind)]
    return found


def _local(value: datetime | date, zone: ZoneInfo) -> datetime:
    assert isinstance(value, datetime) and value.tzinfo is not None, value
    return value.astimezone(zone)


async def _say(secretary: Secretary, text: str, language: str,
               session: str = "s1") -> str:
    answer = await secretary.handle(session, text, language)
    assert answer is not None, f"not understood: {text!r}"
    return answer.text


EVENT_REQUESTS = [
    ("en", "Put lunch with Anna on Friday at one.", "lunch with Anna",
     datetime(2026, 12, 11, 13, 0)),
    ("de", "Trag Mittagessen mit Anna am Freitag um 13 Uhr ein.", "Mittagessen mit Anna",
     datetime(2026, 12, 11, 13, 0)),
]


@pytest.mark.parametrize(("language", "text", "title", "start"), EVENT_REQUESTS)
async def test_an_event_is_added_moved_and_cancelled(
        secretary: Secretary, server: CalendarServer, calendar_name: str, language: str,
        text: str, title: str, start: datetime) -> None:
    await _say(secretary, text, language)
    [event] = _components(server.url, calendar_name, "VEVENT")
    assert str(event["SUMMARY"]).lower() == title.lower()
    assert _local(event["DTSTART"].dt, BERLIN) == start.replace(tzinfo=BERLIN)
    assert _local(event["DTEND"].dt, BERLIN) == start.replace(tzinfo=BERLIN) + timedelta(hours=1)

    move = {"en": "Move lunch with Anna to two.",
            "de": "Verschieb das Mittagessen mit Anna auf 14 Uhr."}[language]
    answer = await _say(secretary, move, language)
    [event] = _components(server.url, calendar_name, "VEVENT")
    assert _local(event["DTSTART"].dt, BERLIN) == start.replace(hour=14, tzinfo=BERLIN), answer
    assert _local(event["DTEND"].dt, BERLIN) == start.replace(hour=15, tzinfo=BERLIN)
    assert "14" in answer or "2" in answer  # the change is confirmed with the new time

    cancel = {"en": "Cancel lunch with Anna.",
              "de": "Sag das Mittagessen mit Anna ab."}[language]
    await _say(secretary, cancel, language)
    assert _components(server.url, calendar_name, "VEVENT") == []


@pytest.mark.parametrize(("zone", "language", "text", "task", "due"), [
    (BERLIN, "en", "Remind me to call the dentist tomorrow at three.", "call the dentist",
     datetime(2026, 12, 7, 15, 0)),
    (NEW_YORK, "en", "Remind me to call the dentist tomorrow at 3 p.m.", "call the dentist",
     datetime(2026, 12, 7, 15, 0)),
    (BERLIN, "de", "Erinnere mich morgen um 17 Uhr an den Zahnarzt.", "den Zahnarzt",
     datetime(2026, 12, 7, 17, 0)),
    (NEW_YORK, "de", "Erinnere mich morgen um 17 Uhr an den Zahnarzt.", "den Zahnarzt",
     datetime(2026, 12, 7, 17, 0)),
])
async def test_a_reminder_is_a_todo_due_in_the_users_zone_with_an_alarm(
        server: CalendarServer, tmp_path: Path, calendar_name: str, zone: ZoneInfo,
        language: str, text: str, task: str, due: datetime) -> None:
    # Sunday 18:00 in the user's own zone.
    secretary = _secretary(server.url, tmp_path, zone, SUNDAY.replace(tzinfo=zone),
                           calendar_name)
    await _say(secretary, text, language)
    [todo] = _components(server.url, calendar_name, "VTODO")
    assert str(todo["SUMMARY"]) == task
    assert _local(todo["DUE"].dt, zone) == due.replace(tzinfo=zone)
    [alarm] = todo.walk("VALARM")
    assert "TRIGGER" in alarm


async def test_a_reminder_in_the_past_is_refused_and_nothing_is_written(
        secretary: Secretary, server: CalendarServer, calendar_name: str) -> None:
    answer = await _say(secretary, "Remind me to stretch today at 9 am.", "en")
    assert "passed" in answer
    assert _components(server.url, calendar_name, "VTODO") == []


@pytest.mark.parametrize(("language", "add", "listing", "done", "title"), [
    ("en", "Add buy milk to my list.", "What's on my list?", "Mark buy milk done.",
     "buy milk"),
    ("de", "Setz Milch kaufen auf meine Liste.", "Was steht auf meiner Liste?",
     "Hak Milch kaufen ab.", "Milch kaufen"),
])
async def test_todos_are_added_listed_and_marked_done(
        secretary: Secretary, server: CalendarServer, calendar_name: str, language: str,
        add: str, listing: str, done: str, title: str) -> None:
    await _say(secretary, add, language)
    [todo] = _components(server.url, calendar_name, "VTODO")
    assert str(todo["SUMMARY"]).lower() == title.lower()
    assert "DUE" not in todo
    assert title.lower() in (await _say(secretary, listing, language)).lower()
    await _say(secretary, done, language)
    [todo] = _components(server.url, calendar_name, "VTODO")
    assert str(todo["STATUS"]) == "COMPLETED"


@pytest.mark.parametrize(("language", "question"), [
    ("en", "What's on tomorrow?"), ("de", "Was steht morgen an?")])
async def test_the_agenda_lists_what_another_client_wrote_and_the_todos_due(
        secretary: Secretary, server: CalendarServer, calendar_name: str, language: str,
        question: str) -> None:
    # The user's phone wrote an event into another calendar of theirs.
    phone = plain_calendar(server.url, f"Phone {calendar_name}"[:60])
    monday = datetime(2026, 12, 7, 9, 30, tzinfo=BERLIN)
    phone.save_event(dtstart=monday, dtend=monday + timedelta(hours=1),
                     summary="Standup with the team", uid=f"phone-{language}")
    await _say(secretary, {"en": "Remind me to water the plants tomorrow at 5 pm.",
                           "de": "Erinnere mich morgen um 17 Uhr an die Pflanzen."}[language],
               language)
    answer = await _say(secretary, question, language)
    assert "Standup with the team" in answer
    assert ("water the plants" if language == "en" else "die Pflanzen") in answer
    phone.delete()


async def test_an_ambiguous_request_asks_back_and_the_next_turn_answers(
        secretary: Secretary, server: CalendarServer, calendar_name: str) -> None:
    await _say(secretary, "Put lunch with Anna on Friday at one.", "en")
    await _say(secretary, "Put lunch with Anna on Wednesday at 12 pm.", "en")
    question = await _say(secretary, "Cancel lunch with Anna.", "en")
    assert question.startswith("Which") and "Friday" in question and "Wednesday" in question
    assert len(_components(server.url, calendar_name, "VEVENT")) == 2  # nothing yet
    await _say(secretary, "The one on Wednesday.", "en")
    [kept] = _components(server.url, calendar_name, "VEVENT")
    assert _local(kept["DTSTART"].dt, BERLIN).date() == date(2026, 12, 11)


@pytest.mark.parametrize(("language", "tell", "ask", "expected"), [
    ("en", "Remember that my dentist is Dr. Weber.", "Who is my dentist?",
     "your dentist is Dr. Weber"),
    ("en", "Note that the wifi password is on the fridge.", "Where is the wifi password?",
     "the wifi password is on the fridge"),
    ("de", "Merk dir, dass mein Zahnarzt Dr. Weber ist.", "Wer ist mein Zahnarzt?",
     "dein Zahnarzt Dr. Weber ist"),
])
async def test_notes_and_memory_answer_the_ways_people_ask(
        secretary: Secretary, language: str, tell: str, ask: str, expected: str) -> None:
    await _say(secretary, tell, language)
    assert expected in await _say(secretary, ask, language)
    kinds = {note.kind for note in secretary.notes.recent()}
    assert kinds == {"note" if tell.startswith("Note") else "memory"}


async def test_a_calendar_that_is_down_is_said_and_a_retry_writes_once(
        tmp_path: Path) -> None:
    with CalendarServer(tmp_path / "data") as server:
        secretary = _secretary(server.url, tmp_path, BERLIN, SUNDAY, NAME)
        await _say(secretary, "What's on my list?", "en")  # the calendar exists
        server.kill()
        answer = await _say(secretary, "Put lunch with Anna on Friday at one.", "en")
        assert "couldn't reach the calendar" in answer and "nothing was saved" in answer
        server.start()
        answer = await _say(secretary, "Put lunch with Anna on Friday at one.", "en")
        assert answer.startswith("I put lunch with Anna")
        # Said once more (the user was not sure it took): still one event.
        await _say(secretary, "Put lunch with Anna on Friday at one.", "en")
        assert len(_components(server.url, NAME, "VEVENT")) == 1


@pytest.mark.parametrize(("text", "language"), [
    ("Tell me a joke.", "en"), ("The weather is nice today.", "en"),
    ("Erzähl mir einen Witz.", "de")])
async def test_what_the_templates_do_not_know_is_left_to_the_brain(
        secretary: Secretary, text: str, language: str) -> None:
    assert await secretary.handle("s1", text, language) is None


async def test_time_date_and_help(secretary: Secretary) -> None:
    assert await _say(secretary, "What time is it?", "en") == "It's 6 pm."
    assert await _say(secretary, "Wie spät ist es?", "de") == "Es ist 18 Uhr."
    assert await _say(secretary, "What's the date today?", "en") == \
        "Today is Sunday, December 6, 2026."
    assert "calendar" in await _say(secretary, "What can you do?", "en")

