"""Notes and memory in SQLite: found by what a spoken question names, stored whole, and
never lost when several writers meet."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from secretary.skills.notes import NotesStore


@pytest.fixture
def notes(tmp_path: Path) -> NotesStore:
    return NotesStore(tmp_path / "data" / "notes.sqlite3")


def texts(found: list) -> list[str]:
    return [note.text for note in found]


def test_add_search_recent_delete(notes: NotesStore) -> None:
    before = datetime.now(UTC)
    dentist = notes.add("note", "The dentists on Main Street open at eight")
    assert dentist.kind == "note" and dentist.id > 0
    assert before - timedelta(seconds=1) <= dentist.created <= datetime.now(UTC)
    notes.add("memory", "My wife's name is Anna")
    notes.add("memory", "Anna likes tulips, not roses")
    notes.add("note", "Buy a new bicycle helmet")

    # The question's filler words are dropped; a word finds its longer forms.
    assert texts(notes.search("what did I say about the dentist?")) == [dentist.text]
    assert texts(notes.search("What is my wife's name?", "memory", 1)) == [
        "My wife's name is Anna"]
    assert set(texts(notes.search("anna", "memory"))) == {
        "My wife's name is Anna", "Anna likes tulips, not roses"}
    assert notes.search("anna", "note") == []
    assert notes.search("what about the") == []
    assert notes.search("submarine") == []
    assert texts(notes.search("tulips roses")) == ["Anna likes tulips, not roses"]  # best

    assert texts(notes.recent(limit=2)) == ["Buy a new bicycle helmet",
                                           "Anna likes tulips, not roses"]
    assert texts(notes.recent("note")) == ["Buy a new bicycle helmet", dentist.text]
    assert notes.delete(dentist.id) is True
    assert notes.delete(dentist.id) is False
    assert notes.search("dentist") == []


def test_german_questions_and_compounds(notes: NotesStore) -> None:
    notes.add("note", "Der Zahnarzttermin ist am Dienstag um neun")
    notes.add("memory", "Meine Schwester heißt Grete und wohnt in Köln")
    # A word inside a compound: not a prefix, found by the fallback.
    assert texts(notes.search("Wann ist der Termin?")) == [
        "Der Zahnarzttermin ist am Dienstag um neun"]
    # The first part of a compound: a prefix.
    assert texts(notes.search("Was weißt du über den Zahnarzt?")) == [
        "Der Zahnarzttermin ist am Dienstag um neun"]
    assert texts(notes.search("wie heisst meine schwester", "memory")) == [
        "Meine Schwester heißt Grete und wohnt in Köln"]
    assert texts(notes.search("koln")) == ["Meine Schwester heißt Grete und wohnt in Köln"]


def test_long_notes_whole_and_bad_ones_refused(tmp_path: Path) -> None:
    notes = NotesStore(tmp_path / "notes.sqlite3", max_chars=20_000)
    long_text = ("Line of the long note\twith a tab.\n" * 400)[:10_000 - 6] + "zebras"
    stored = notes.add("note", long_text)
    assert stored.text == long_text and len(notes.recent()[0].text) == 10_000
    assert texts(notes.search("zebras")) == [long_text]

    with pytest.raises(ValueError, match="20001 characters, more than the limit of 20000"):
        notes.add("note", "x" * 20_001)
    with pytest.raises(ValueError, match="empty"):
        notes.add("memory", " \n\t ")
    with pytest.raises(ValueError, match="control character"):
        notes.add("note", "ring the bell\x07")
    with pytest.raises(ValueError, match="kind"):
        notes.add("diary", "dear diary")
    assert notes.recent() == [stored]


def test_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite3"
    shared = NotesStore(path)
    failures: list[BaseException] = []
    per_writer = 60

    def write(name: str, store: NotesStore) -> None:
        try:
            for n in range(per_writer):
                store.add("note", f"{name} wrote note {n}")
        except BaseException as exc:  # handed to the test below
            failures.append(exc)

    # Two threads on one store, two more with their own (as two processes would).
    writers = [threading.Thread(target=write, args=(f"w{i}", shared if i < 2 else
                                                    NotesStore(path))) for i in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert failures == []
    with closing(sqlite3.connect(path)) as conn:
        stored = [row[0] for row in conn.execute("SELECT text FROM notes")]
    assert sorted(stored) == sorted(f"w{i} wrote note {n}" for i in range(4)
                                    for n in range(per_writer))
    assert len(shared.search("w3", limit=100)) == per_writer  # the index has them all too
