"""What is kept of a call: who called, when and how long, what both sides said (with the
second of the call each line was said at), how it ended, and a short summary (the caller's
first sentences, or the chat model's where one is configured: ``summary.py``). Kept as a
note in the secretary's notes, as JSON in the data folder (``calls/``, the page's list),
and POSTed to the webhook where one is set."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def parse_caller(uri: str) -> tuple[str, str]:
    """(name, number) from a SIP From header's value: '"Alice" <sip:+4930@host>'."""
    text = (uri or "").strip()
    name = ""
    if "<" in text:
        name, _, text = text.partition("<")
        text = text.partition(">")[0]
        name = name.strip().strip('"').strip()
    text = text.split(";")[0]
    for scheme in ("sips:", "sip:", "tel:"):
        text = text.removeprefix(scheme)
    return name, text.split("@")[0].strip()


@dataclass
class Line:
    at: float  # seconds since the call was answered
    who: str  # caller, secretary or event
    text: str


@dataclass
class CallRecord:
    caller_uri: str
    caller_name: str = ""
    caller_number: str = ""
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:16])
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    codec: str = ""
    lines: list[Line] = field(default_factory=list)
    ended: str | None = None
    duration_s: float = 0.0
    end_reason: str = ""
    transferred_to: str | None = None
    summary: str = ""
    summary_source: str = ""  # "chat": the chat model's; "transcript": the caller's words
    _t0: float = field(default_factory=time.monotonic, repr=False)
    # Called with the record after each line: the call in progress is kept as it goes.
    _journal: Callable[[CallRecord], None] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, uri: str) -> CallRecord:
        name, number = parse_caller(uri)
        return cls(caller_uri=uri, caller_name=name, caller_number=number)

    def add(self, who: str, text: str) -> None:
        text = " ".join(text.split())
        if text:
            self.lines.append(Line(round(time.monotonic() - self._t0, 2), who, text))
            if self._journal is not None:
                self._journal(self)

    def caller(self) -> str:
        if self.caller_name and self.caller_number:
            return f"{self.caller_name} ({self.caller_number})"
        return self.caller_name or self.caller_number or "an unknown caller"

    def finish(self, reason: str, duration_s: float | None = None) -> None:
        """Ended now (or ``duration_s`` after it started: a call recovered afterwards)."""
        if self.ended is None:
            if duration_s is None:
                self.ended = datetime.now(UTC).isoformat()
                self.duration_s = round(time.monotonic() - self._t0, 2)
            else:
                self.duration_s = round(duration_s, 2)
                self.ended = (datetime.fromisoformat(self.started)
                              + timedelta(seconds=duration_s)).isoformat()
            self.end_reason = reason
            if not self.summary:
                self.summary = first_sentences(
                    " ".join(line.text for line in self.lines if line.who == "caller"))
                self.summary_source = "transcript" if self.summary else ""

    def as_json(self) -> dict[str, Any]:
        data = asdict(replace(self, _journal=None))  # (asdict would deep-copy the journal)
        data.pop("_t0")
        data.pop("_journal")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallRecord:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__
                  and not k.startswith("_") and k != "lines"}
        record = cls(**fields)
        record.lines = [Line(float(line["at"]), str(line["who"]), str(line["text"]))
                        for line in data.get("lines", [])]
        return record

    def note(self) -> str:
        """The call as a note: who, when, the summary, then the transcript."""
        head = (f"Phone call from {self.caller()} at {self.started[:16].replace('T', ' ')} "
                f"UTC, {self.duration_s:.0f} s ({self.end_reason}).")
        summary = f"Message: {self.summary}" if self.summary else "No message was left."
        transcript = "\n".join(f"[{line.at:6.1f}] {line.who}: {line.text}"
                               for line in self.lines)
        return f"{head}\n{summary}\n{transcript}".strip()


def first_sentences(text: str, count: int = 2, limit: int = 300) -> str:
    """The first ``count`` sentences of ``text``, at most ``limit`` characters."""
    parts = [p for p in _SENTENCE.split(" ".join(text.split())) if p]
    summary = " ".join(parts[:count])
    return summary if len(summary) <= limit else summary[:limit - 1].rstrip() + "…"


def _write(path: Path, data: dict[str, Any]) -> None:
    """``data`` as ``path``, whole or not at all (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    temp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    temp.replace(path)


class CallLog:
    """Finished calls: JSON files in ``folder``, a note each, the webhook. A call in
    progress is kept in ``folder/in-progress`` as it goes, so a telephone that is killed
    mid-call loses none of what was said: the next start finishes and saves it."""

    # Why a call recovered at start ended.
    RECOVERED = "the telephone stopped during the call"

    def __init__(self, folder: Path, notes: Any = None, webhook: str | None = None,
                 webhook_timeout: float = 10.0) -> None:
        self.folder = folder
        self.notes = notes
        self.webhook = webhook
        self.webhook_timeout = webhook_timeout
        self.in_progress = folder / "in-progress"

    def keep(self, record: CallRecord) -> None:
        """The call so far, kept until it is saved (quick: on the event loop)."""
        if record.ended is not None:
            return  # finished: saved as a whole from now on
        try:
            _write(self.in_progress / f"{record.id}.json", record.as_json())
        except OSError:
            log.exception("call %s: what was said so far could not be kept", record.id)

    def recover(self) -> list[CallRecord]:
        """Blocking: calls left in progress by a telephone that stopped without ending
        them, finished (at their last line) and saved."""
        recovered = []
        for path in sorted(self.in_progress.glob("call_*.json")):
            if (self.folder / path.name).exists():
                path.unlink(missing_ok=True)  # saved, then stopped before this went
                continue
            try:
                record = CallRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError, KeyError):
                log.exception("call %s could not be recovered; left in %s", path.stem,
                              self.in_progress)
                continue
            record.finish(self.RECOVERED, record.lines[-1].at if record.lines else 0.0)
            log.warning("phone: the call from %s (%s) was left in progress; saved",
                        record.caller(), record.id)
            self.save(record)
            recovered.append(record)
        return recovered

    def save(self, record: CallRecord) -> None:
        """Blocking (a thread): the file, the note, the webhook; each failure logged."""
        data = record.as_json()
        try:
            _write(self.folder / f"{record.id}.json", data)
        except OSError:
            log.exception("call %s could not be saved; what was said is kept in %s",
                          record.id, self.in_progress)
        else:
            # Kept as a finished call: the copy in progress goes.
            (self.in_progress / f"{record.id}.json").unlink(missing_ok=True)
        if self.notes is not None:
            try:
                self.notes.add("note", record.note()[: getattr(self.notes, "max_chars", 20000)])
            except Exception:
                log.exception("call %s could not be kept as a note", record.id)
        if self.webhook:
            import httpx

            try:
                httpx.post(self.webhook, json=data,
                           timeout=self.webhook_timeout).raise_for_status()
            except Exception as exc:
                log.warning("call %s: the webhook %s failed: %s", record.id, self.webhook, exc)

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest calls, newest first."""
        if not self.folder.is_dir():
            return []
        paths = sorted(self.folder.glob("call_*.json"), key=lambda p: p.stat().st_mtime,
                       reverse=True)
        calls = []
        for path in paths[:limit]:
            try:
                calls.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return calls
