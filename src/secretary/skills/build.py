"""The secretary's skills wired from the settings: the CalDAV server, the notes file, the
user's time zone. One per process (the UI server's and the realtime service's share the
calendar server and the notes file)."""

from __future__ import annotations

from secretary.calendar.store import CalendarStore
from secretary.config import Settings
from secretary.skills.notes import NotesStore
from secretary.skills.service import Secretary


def build_secretary(settings: Settings) -> Secretary:
    notes = NotesStore(settings.data_dir / "notes.sqlite3")
    return Secretary(CalendarStore.from_settings(settings), notes, settings.zone)
