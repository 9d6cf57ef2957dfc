"""The secretary's skills in plain Python: a request in words to an action on the calendar,
the to-do list, the notes or the memory, and the answer that says what was done.

Decisions:
- Understood without a language model (``intents``: hassil templates per language), so the
  skills work offline and answer within milliseconds; a chat model, where configured, gets
  what the templates do not match (``brain``).
- The calendar and to-dos are the user's CalDAV server (``calendar.store``), the embedded
  Radicale by default: what the secretary writes shows on the user's phone, and what the
  phone writes the secretary reads. The store is blocking; it runs in a thread.
- A change is confirmed in the answer with what was understood ("I moved lunch with Anna to
  Friday at 2 pm"). A request that fits several items asks back, and the next turn of the
  same session answers it. A write the server refuses, or a server that is down, is said in
  the answer: nothing is silently dropped.
- New events and to-dos get a UID derived from what they are, so a request repeated after
  a failed write cannot create the item twice.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from secretary.calendar.store import (
    CalendarConflict,
    CalendarRefused,
    CalendarStore,
    CalendarUnavailable,
    Event,
    Todo,
)
from secretary.skills.intents import IntentMatcher, Request
from secretary.skills.notes import NotesStore
from secretary.skills.phrases import join, say, second_person
from secretary.skills.when import say_clock, say_day, say_when

log = logging.getLogger(__name__)

_ASK_BACK_S = 120.0  # how long a question asked back waits for its answer
_MAX_PENDING = 256  # sessions with a question open (LRU)
_SEARCH_DAYS = 90  # how far ahead "cancel lunch with Anna" looks without a day


@dataclass(frozen=True)
class Answer:
    """What the secretary says, and whether it changed the user's data."""

    text: str
    language: str
    intent: str
    changed: bool = False


@dataclass
class _Question:
    """A request that fits several items, waiting for the user to say which."""

    request: Request
    candidates: Sequence[Event | Todo]
    asked: float = field(default_factory=time.monotonic)


class Secretary:
    """Requests in words to actions and answers. Thread-safe; one per process."""

    def __init__(self, calendar: CalendarStore, notes: NotesStore, zone: ZoneInfo,
                 matcher: IntentMatcher | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.calendar = calendar
        self.notes = notes
        self.zone = zone
        self.matcher = matcher or IntentMatcher()
        self.clock = clock or (lambda: datetime.now(zone))
        self.listeners: list[Callable[[str], None]] = []  # told when data changed
        self._questions: OrderedDict[str, _Question] = OrderedDict()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self.clock().astimezone(self.zone)

    def understand(self, session: str, text: str, language: str | None) -> Request | None:
        """The request ``text`` makes, or None; an answer to a question asked back first."""
        now = self.now()
        question = self._question(session)
        if question is not None:
            choice = self.matcher.match(text, language, now, expect_choice=True)
            if choice is not None and choice.intent == "answer_choice":
                return choice
        return self.matcher.match(text, language, now)

    async def handle(self, session: str, text: str, language: str | None) -> Answer | None:
        """The answer to ``text``, or None when it is not a request the skills know."""
        request = self.understand(session, text, language)
        if request is None:
            return None
        return await self.perform(session, request)

    async def perform(self, session: str, request: Request) -> Answer:
        """Do what ``request`` asks (from the templates, or a chat model's tool call) and
        say what was done; a calendar that is down or refuses is said, not raised."""
        started = time.perf_counter()
        try:
            answer = await self._act(session, request)
        except CalendarUnavailable as exc:
            log.warning("calendar unreachable: %s", exc)
            answer = self._failed(request, "calendar_down")
        except CalendarRefused as exc:
            log.warning("calendar refused a write: %s", exc)
            answer = self._failed(request, "calendar_refused", reason=_short(exc))
        except CalendarConflict as exc:  # a new item's UID taken by another meanwhile
            answer = self._said(request, "calendar_conflict", title=_short(exc))
        except ValueError as exc:  # the store refused the words (control characters...)
            answer = self._failed(request, "refused_input", reason=_short(exc))
        log.info("skill %s (%s) answered in %.0f ms", request.intent, request.language,
                 (time.perf_counter() - started) * 1000)
        if answer.changed:
            for listener in list(self.listeners):
                listener(answer.intent)
        return answer

    # ------------------------------------------------------------------ actions
    async def _act(self, session: str, request: Request) -> Answer:
        if request.intent == "answer_choice":
            return await self._answer_choice(session, request)
        self._forget_question(session)
        action = getattr(self, f"_{request.intent}", None)
        if action is None:
            raise ValueError(f"no skill for the intent {request.intent!r}")
        return await action(session, request)

    def _said(self, request: Request, key: str, changed: bool = False, **values: Any) -> Answer:
        return Answer(say(request.language, key, **values), request.language, request.intent,
                      changed)

    def _failed(self, request: Request, key: str, **values: Any) -> Answer:
        reading = request.intent in ("list_events", "list_todos")
        done = say(request.language, "done_read" if reading else "done_saved")
        return self._said(request, key, done=done, **values)

    def _when(self, moment: datetime, request: Request, all_day: bool = False) -> str:
        return say_when(moment, self.now(), request.language, all_day=all_day)

    async def _add_event(self, session: str, request: Request) -> Answer:
        slots = request.slots
        title, start, end = slots["title"], slots["start"], slots["end"]
        all_day = bool(slots.get("all_day"))
        when = self._when(start, request, all_day)
        if (start.date() < self.now().date()) if all_day else (end <= self.now()):
            return self._said(request, "event_past", when=when)
        # Said the same way again (after a failed try), it is the same event, made once.
        await asyncio.to_thread(self.calendar.add_event, title, start, end, all_day,
                                _uid("event", title, start))
        return self._said(request, "event_added", changed=True, title=title, when=when)

    async def _list_events(self, session: str, request: Request) -> Answer:
        slots = request.slots
        start, end, label = slots["start"], slots["end"], slots["label"]
        events = await asyncio.to_thread(self.calendar.events, start, end)
        todos = await asyncio.to_thread(self.calendar.todos)
        due = [t for t in todos if t.due is not None and start <= t.due < end]
        language = request.language
        if not events and not due:
            return self._said(request, "agenda_empty", label=label)
        parts = []
        if events:
            items = [self._event_words(e, language, day_known=(end - start) <= timedelta(days=1))
                     for e in events]
            parts.append(say(language, "agenda", label=label, items=join(items, language)))
        if due:
            items = [f"{t.title} {say_clock(t.due, language)}" for t in due if t.due]
            parts.append(say(language, "agenda_due", label=label, items=join(items, language)))
        return Answer(" ".join(parts), language, request.intent)

    def _event_words(self, event: Event, language: str, day_known: bool) -> str:
        if event.all_day:
            return event.title if day_known else (
                f"{event.title} {say_day(event.start.date(), self.now().date(), language)}")
        if day_known:
            return f"{event.title} {_at(language)} {say_clock(event.start, language)}"
        return f"{event.title} {say_when(event.start, self.now(), language)}"

    async def _find_events(self, request: Request) -> list[Event]:
        title, day = request.slots["title"], request.slots.get("day")
        if day is not None:
            start = datetime.combine(day, datetime.min.time(), self.zone)
            end = start + timedelta(days=1)
        else:
            start = self.now().replace(hour=0, minute=0, second=0, microsecond=0)
            end = start + timedelta(days=_SEARCH_DAYS)
        return await asyncio.to_thread(self.calendar.find_events, title, day, start, end)

    async def _move_event(self, session: str, request: Request) -> Answer:
        events = await self._find_events(request)
        return await self._one_event(session, request, events, self._move)

    async def _cancel_event(self, session: str, request: Request) -> Answer:
        events = await self._find_events(request)
        return await self._one_event(session, request, events, self._cancel)

    async def _one_event(self, session: str, request: Request, events: list[Event],
                         act: Callable[[Request, Event], Any]) -> Answer:
        title = request.slots["title"]
        if not events:
            day = request.slots.get("day")
            where = (" " + say_day(day, self.now().date(), request.language)) if day else ""
            return self._said(request, "event_not_found", title=title, where=where)
        if len(events) > 1:
            self._ask(session, request, events)
            choices = [self._when(e.start, request, e.all_day) for e in events[:4]]
            return self._said(request, "which_event", title=title,
                              choices=join(choices, request.language, "or"))
        return await act(request, events[0])

    async def _move(self, request: Request, event: Event) -> Answer:
        start: datetime = request.slots["start"]
        if request.slots.get("new_time_only"):
            start = datetime.combine(event.start.astimezone(self.zone).date(),
                                     start.timetz().replace(tzinfo=None), self.zone)
        end = start + (event.end - event.start)
        try:
            await asyncio.to_thread(self.calendar.move_event, event, start, end)
        except CalendarConflict:
            return self._said(request, "calendar_conflict", title=event.title)
        return self._said(request, "event_moved", changed=True, title=event.title,
                          when=self._when(start, request))

    async def _cancel(self, request: Request, event: Event) -> Answer:
        try:
            await asyncio.to_thread(self.calendar.cancel_event, event)
        except CalendarConflict:
            return self._said(request, "calendar_conflict", title=event.title)
        return self._said(request, "event_cancelled", changed=True, title=event.title,
                          when=self._when(event.start, request, event.all_day))

    async def _add_reminder(self, session: str, request: Request) -> Answer:
        task, due = request.slots["task"], request.slots["due"]
        when = self._when(due, request)
        if due <= self.now():
            return self._said(request, "reminder_past", when=when)
        await asyncio.to_thread(self.calendar.add_todo, task, due, _uid("todo", task, due))
        return self._said(request, "reminder_set", changed=True, task=task, when=when)

    async def _add_todo(self, session: str, request: Request) -> Answer:
        task = request.slots["task"]
        await asyncio.to_thread(self.calendar.add_todo, task, None,
                                _uid("todo", task, self.now().date()))
        return self._said(request, "todo_added", changed=True, task=task)

    async def _list_todos(self, session: str, request: Request) -> Answer:
        todos = await asyncio.to_thread(self.calendar.todos)
        if not todos:
            return self._said(request, "todos_empty")
        items = [say(request.language, "todo_due", task=t.title, when=self._when(t.due, request))
                 if t.due else t.title for t in todos[:10]]
        return self._said(request, "todos", items=join(items, request.language))

    async def _complete_todo(self, session: str, request: Request) -> Answer:
        task = request.slots["task"]
        todos = await asyncio.to_thread(self.calendar.find_todos, task)
        if not todos:
            return self._said(request, "todo_not_found", task=task)
        if len(todos) > 1:
            self._ask(session, request, todos)
            return self._said(request, "which_todo",
                              choices=join([t.title for t in todos[:4]], request.language,
                                           "or"))
        return await self._complete(request, todos[0])

    async def _complete(self, request: Request, todo: Todo) -> Answer:
        try:
            await asyncio.to_thread(self.calendar.complete_todo, todo)
        except CalendarConflict:
            return self._said(request, "calendar_conflict", title=todo.title)
        return self._said(request, "todo_done", changed=True, task=todo.title)

    async def _add_note(self, session: str, request: Request) -> Answer:
        return await self._write_note(request, "note", request.slots["text"], "noted")

    async def _remember(self, session: str, request: Request) -> Answer:
        return await self._write_note(request, "memory", request.slots["fact"], "remembered")

    async def _write_note(self, request: Request, kind: str, text: str, key: str) -> Answer:
        try:
            await asyncio.to_thread(self.notes.add, kind, text)
        except ValueError as exc:
            return self._said(request, "notes_failed", reason=str(exc))
        spoken = second_person(text, request.language) if kind == "memory" else text
        return self._said(request, key, changed=True, text=spoken, fact=spoken)

    async def _recall(self, session: str, request: Request) -> Answer:
        subject = request.slots["subject"]
        found = await asyncio.to_thread(self.notes.search, subject, None, 2)
        if not found:
            return self._said(request, "recall_unknown",
                              subject=second_person(subject, request.language))
        note = found[0]
        fact = second_person(note.text, request.language)
        key = "recalled" if note.kind == "memory" else "recalled_note"
        return self._said(request, key, fact=fact)

    async def _time(self, session: str, request: Request) -> Answer:
        return self._said(request, "time", clock=say_clock(self.now(), request.language))

    async def _date(self, session: str, request: Request) -> Answer:
        return self._said(request, "date", date=_full_date(self.now().date(), request.language))

    async def _help(self, session: str, request: Request) -> Answer:
        return self._said(request, "help")

    async def agenda(self, days: int = 2) -> dict[str, Any]:
        """Today's and tomorrow's events, the open to-dos and the reminders to come, for the
        page's panel; a part the calendar could not give is named in ``error``."""
        start = self.now().replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + timedelta(days=days)
        out: dict[str, Any] = {"timezone": self.zone.key, "from": start.isoformat(),
                               "to": end.isoformat(), "events": [], "todos": [],
                               "reminders": [], "error": None}
        try:
            events = await asyncio.to_thread(self.calendar.events, start, end)
            todos = await asyncio.to_thread(self.calendar.todos)
        except (CalendarUnavailable, CalendarRefused) as exc:
            out["error"] = _short(exc)
            return out
        out["events"] = [{"title": e.title, "start": e.start.isoformat(),
                          "end": e.end.isoformat(), "all_day": e.all_day} for e in events]
        now = self.now()
        out["todos"] = [{"title": t.title, "due": t.due.isoformat() if t.due else None}
                        for t in todos]
        out["reminders"] = [{"title": t.title, "due": t.due.isoformat()}
                            for t in todos if t.due is not None and t.due > now]
        return out

    # ------------------------------------------------------------------ asking back
    def _ask(self, session: str, request: Request, candidates: Sequence[Event | Todo]) -> None:
        with self._lock:
            self._questions[session] = _Question(request, list(candidates))
            self._questions.move_to_end(session)
            while len(self._questions) > _MAX_PENDING:
                self._questions.popitem(last=False)

    def _question(self, session: str) -> _Question | None:
        with self._lock:
            question = self._questions.get(session)
            if question is not None and time.monotonic() - question.asked > _ASK_BACK_S:
                del self._questions[session]
                return None
            return question

    def _forget_question(self, session: str) -> None:
        with self._lock:
            self._questions.pop(session, None)

    async def _answer_choice(self, session: str, request: Request) -> Answer:
        question = self._question(session)
        if question is None:  # expired between understanding and acting
            return self._said(request, "help")
        chosen = _choose(question.candidates, request.slots, self.zone)
        asked = question.request
        answered = Request(asked.intent, asked.language, asked.slots, asked.text)
        if chosen is None:
            titles = [self._when(c.start, answered, c.all_day) if isinstance(c, Event)
                      else c.title for c in question.candidates[:4]]
            return self._said(answered, "choice_unclear",
                              choices=join(titles, answered.language, "or"))
        self._forget_question(session)
        if isinstance(chosen, Todo):
            return await self._complete(answered, chosen)
        act = self._move if asked.intent == "move_event" else self._cancel
        return await act(answered, chosen)


def _choose(candidates: Sequence[Event | Todo], slots: dict[str, Any],
            zone: ZoneInfo) -> Event | Todo | None:
    """The candidate an answer to "which one?" names: by day, by position, or by words."""
    day: date | None = slots.get("day")
    if day is not None:
        on_day = [c for c in candidates if isinstance(c, Event)
                  and c.start.astimezone(zone).date() == day]
        if len(on_day) == 1:
            return on_day[0]
    ordinal = slots.get("ordinal")
    if isinstance(ordinal, int) and 1 <= ordinal <= len(candidates):
        return candidates[ordinal - 1]
    words = {w for w in str(slots.get("choice", "")).lower().split() if len(w) > 2}
    named = [c for c in candidates if words & set(c.title.lower().split())]
    return named[0] if len(named) == 1 else None


def _uid(kind: str, title: str, moment: datetime | date) -> str:
    """The same request gives the same UID: repeating it cannot duplicate the item."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL,
                          f"secretary:{kind}:{title.strip().lower()}:{moment.isoformat()}"))


def _at(language: str) -> str:
    return "um" if language == "de" else "at"


def _short(exc: Exception) -> str:
    return str(exc).split("\n", 1)[0][:120]


_WEEKDAYS = {"en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                    "Sunday"),
             "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag",
                    "Sonntag")}
_MONTHS = {"en": ("January", "February", "March", "April", "May", "June", "July", "August",
                  "September", "October", "November", "December"),
           "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
                  "September", "Oktober", "November", "Dezember")}


def _full_date(day: date, language: str) -> str:
    names = "de" if language == "de" else "en"
    weekday, month = _WEEKDAYS[names][day.weekday()], _MONTHS[names][day.month - 1]
    if names == "de":
        return f"{weekday}, der {day.day}. {month} {day.year}"
    return f"{weekday}, {month} {day.day}, {day.year}"
