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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
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

    @classmethod
    def of(cls, uri: str) -> CallRecord:
        name, number = parse_caller(uri)
        return cls(caller_uri=uri, caller_name=name, caller_number=number)

    def add(self, who: str, text: str) -> None:
        text = " ".join(text.split())
        if text:
            self.lines.append(Line(round(time.monotonic() - self._t0, 2), who, text))

    def caller(self) -> str:
        if self.caller_name and self.caller_number:
            return f"{self.caller_name} ({self.caller_number})"
        return self.caller_name or self.caller_number or "an unknown caller"

    def finish(self, reason: str) -> None:
        if self.ended is None:
            self.ended = datetime.now(UTC).isoformat()
            self.duration_s = round(time.monotonic() - self._t0, 2)
            self.end_reason = reason
            if not self.summary:
                self.summary = first_sentences(
                    " ".join(line.text for line in self.lines if line.who == "caller"))
                self.summary_source = "transcript" if self.summary else ""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_t0")
        return data

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


class CallLog:
    """Finished calls: JSON files in ``folder``, a note each, the webhook."""

    def __init__(self, folder: Path, notes: Any = None, webhook: str | None = None,
                 webhook_timeout: float = 10.0) -> None:
        self.folder = folder
        self.notes = notes
        self.webhook = webhook
        self.webhook_timeout = webhook_timeout

    def save(self, record: CallRecord) -> None:
        """Blocking (a thread): the file, the note, the webhook; each failure logged."""
        data = record.as_json()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{record.id}.json"
            temp = path.with_suffix(".tmp")
            temp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
            temp.replace(path)
        except OSError:
            log.exception("call %s could not be saved", record.id)
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
