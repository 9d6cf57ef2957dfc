"""Reminders that speak: a watcher over the calendar's due to-dos that hands each one, once,
to whoever listens in this process (a realtime session says it; the page's event stream
shows and speaks it).

Decisions:
- The state lives in the calendar, not in memory: a reminder is due when its VALARM fires
  and is not yet acknowledged (RFC 9074's ``ACKNOWLEDGED``), so reminders survive restarts
  and one missed while nothing was open is said when the next listener arrives.
- A reminder is acknowledged before it is said, with the item's ETag: of several processes
  (the UI server, the realtime service) that see it due at once, exactly one wins and says
  it. Only a process with listeners takes a reminder.
- The calendar is polled (every few seconds; any CalDAV server, including the user's own,
  with no push channel needed), and woken at once when the secretary itself adds one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from secretary.calendar.store import CalendarError, Todo
from secretary.skills.phrases import say
from secretary.skills.service import Secretary

log = logging.getLogger(__name__)

_QUEUE = 16  # reminders waiting for one slow listener; past this the oldest goes


@dataclass(frozen=True)
class Reminder:
    task: str
    due: datetime | None
    uid: str

    def text(self, language: str) -> str:
        return say(language, "reminder_due", task=self.task)

    def as_json(self) -> dict[str, object]:
        return {"type": "reminder", "task": self.task, "uid": self.uid,
                "due": self.due.isoformat() if self.due else None,
                "text": self.text("en")}


class Reminders:
    """The process's watcher: ``listen()`` yields each due reminder this process takes."""

    def __init__(self, secretary: Secretary, interval: float = 5.0) -> None:
        self.secretary = secretary
        self.interval = interval
        self._listeners: set[asyncio.Queue[Reminder]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        secretary.listeners.append(lambda intent: self._nudge(intent))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _nudge(self, intent: str) -> None:
        if intent == "add_reminder":
            with contextlib.suppress(RuntimeError):  # told from another loop's thread
                self._wake.set()

    async def listen(self) -> AsyncIterator[Reminder]:
        """Each reminder this process takes from now on, while the caller listens."""
        queue: asyncio.Queue[Reminder] = asyncio.Queue(_QUEUE)
        self._listeners.add(queue)
        self._wake.set()  # one missed while nobody listened is said now
        try:
            while True:
                yield await queue.get()
        finally:
            self._listeners.discard(queue)

    async def _run(self) -> None:
        while True:
            if self._listeners:
                try:
                    await self.check()
                    self.last_error = None
                except CalendarError as exc:
                    if self.last_error != str(exc):
                        log.warning("reminders: %s", exc)
                    self.last_error = str(exc)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def check(self) -> list[Reminder]:
        """Take the reminders due now (each once across processes) and hand them out."""
        calendar = self.secretary.calendar
        due: list[Todo] = await asyncio.to_thread(calendar.due_reminders,
                                                  self.secretary.now())
        taken = []
        for todo in due:
            if not self._listeners:
                break  # nobody to say it to: leave it for the next listener
            if not await asyncio.to_thread(calendar.acknowledge, todo):
                continue  # another process said it
            reminder = Reminder(todo.title, todo.due, todo.uid)
            log.info("reminder due: %s", todo.title)
            for queue in list(self._listeners):
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait(reminder)
            taken.append(reminder)
        return taken
