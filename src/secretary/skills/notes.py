"""Notes and remembered facts: a SQLite file in the data folder, searched with FTS5.

A connection per call (WAL, a busy timeout, writes in ``BEGIN IMMEDIATE``) makes one file
safe for the UI's and the realtime service's processes and for any number of threads.
Search is for spoken questions: the meaningful words of the question (English and German
filler dropped) are matched as prefixes ("dentist" finds "dentists"), best first; where
that finds nothing, any word inside a longer one counts, for German compounds ("Termin"
finds "Zahnarzttermin").
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

KINDS = ("note", "memory")
_MAX_RESULTS = 100
_MIN_INNER_WORD = 3  # shorter words match inside too many others to mean anything

_STOP_WORDS = """
a about all also am an and any anything are as at be been but by can could did do does
for from had has have he her him his how i if in is it its just know me my note notes
of on or our please remember said say she so some something tell than that the their
them then there these they this to told us was we were what when where which who why
will with would you your
aber alle alles also am an auf aus bei bin bist bitte da das dass daß dein deine dem den
denn der des die du ein eine einem einen einer er es etwas für gesagt hab habe hast hat
hatte ich ihm ihr im in ist ja kannst mal man mein meine meinem meinen meiner mich mir
mit noch notiz notizen nur oder sagen sagte sie sind so über um und uns von vom wann war was
weißt welche welcher wer wie wir wo zu zum zur
"""




@dataclass(frozen=True)
class Note:
    id: int
    kind: str  # "note" | "memory"
    text: str
    created: datetime


_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: an old id cannot hit a new note
    kind TEXT NOT NULL CHECK (kind IN ('note', 'memory')),
    text TEXT NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_kind ON notes (kind, id);
CREATE VIRTUAL TABLE IF NOT EXISTS notes_fts USING fts5(
    text, content='notes', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS notes_added AFTER INSERT ON notes BEGIN
    INSERT INTO notes_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS notes_deleted AFTER DELETE ON notes BEGIN
    INSERT INTO notes_fts (notes_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"""


class NotesStore:
    def __init__(self, path: Path, max_chars: int = 20_000) -> None:
        self.path = path
        self.max_chars = max_chars
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # kept in the file: readers never wait
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30.0, isolation_level=None)) as conn:
            conn.create_function("fold", 1, _fold, deterministic=True)
            yield conn

    def add(self, kind: str, text: str) -> Note:
        """Store ``text`` whole; refuses (ValueError) what could not be said back."""
        if kind not in KINDS:
            raise ValueError(f"the kind {kind!r} is not one of {', '.join(KINDS)}")
        text = self._check(text)
        created = datetime.now(UTC)
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = conn.execute("INSERT INTO notes (kind, text, created) VALUES (?, ?, ?)",
                                      (kind, text, created.isoformat()))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        assert cursor.lastrowid is not None
        return Note(cursor.lastrowid, kind, text, created)

    def _check(self, text: str) -> str:
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
        if not text:
            raise ValueError("the note is empty")
        if len(text) > self.max_chars:
            raise ValueError(f"the note has {len(text)} characters, more than the limit of "
                             f"{self.max_chars}")
        bad = next((c for c in text if c not in "\n\t"
                    and unicodedata.category(c) in ("Cc", "Cs")), None)
        if bad is not None:
            raise ValueError(f"the note contains a control character ({ascii(bad)})")
        return text

    def search(self, query: str, kind: str | None = None, limit: int = 5) -> list[Note]:
        """Notes about ``query``'s meaningful words, best first (BM25); inner-word matches
        (German compounds) where no word matches as a whole or a prefix."""
        words = list(dict.fromkeys(w for w in re.findall(r"\w+", _fold(query))
                                   if w not in STOP_WORDS and len(w) > 1))
        if not words:
            return []
        limit = max(1, min(limit, _MAX_RESULTS))
        where, args = ("AND n.kind = ?", [kind]) if kind is not None else ("", [])
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT n.id, n.kind, n.text, n.created FROM notes_fts "
                "JOIN notes AS n ON n.id = notes_fts.rowid "
                f"WHERE notes_fts MATCH ? {where} "
                "ORDER BY bm25(notes_fts), n.id DESC LIMIT ?",
                [" OR ".join(f'"{w}"*' for w in words), *args, limit]).fetchall()
            inner = [w for w in words if len(w) >= _MIN_INNER_WORD]
            if not rows and inner:
                hits = " + ".join(["(instr(fold(n.text), ?) > 0)"] * len(inner))
                rows = conn.execute(
                    f"SELECT id, kind, text, created FROM (SELECT n.*, {hits} AS hits "
                    f"FROM notes AS n WHERE 1 {where}) WHERE hits > 0 "
                    "ORDER BY hits DESC, id DESC LIMIT ?",
                    [*inner, *args, limit]).fetchall()
        return [_note(row) for row in rows]

    def recent(self, kind: str | None = None, limit: int = 10) -> list[Note]:
        """The latest notes, newest first."""
        limit = max(1, min(limit, _MAX_RESULTS))
        where, args = ("WHERE kind = ?", [kind]) if kind is not None else ("", [])
        with self._connection() as conn:
            rows = conn.execute(f"SELECT id, kind, text, created FROM notes {where} "
                                "ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return [_note(row) for row in rows]

    def delete(self, note_id: int) -> bool:
        """True if the note was there (and is gone now)."""
        with self._connection() as conn:
            return conn.execute("DELETE FROM notes WHERE id = ?", (note_id,)).rowcount > 0


def _fold(text: str | None) -> str:
    return unicodedata.normalize("NFKC", text or "").casefold()


STOP_WORDS = frozenset(_fold(word) for word in _STOP_WORDS.split())


def _note(row: tuple[int, str, str, str]) -> Note:
    return Note(row[0], row[1], row[2], datetime.fromisoformat(row[3]))
