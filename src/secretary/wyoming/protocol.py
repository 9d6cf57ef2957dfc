"""Reading Wyoming events with limits.

An event on the wire is one JSON line (``type``, optional ``data``, ``data_length``,
``payload_length``), then ``data_length`` bytes of more JSON data, then ``payload_length``
bytes of payload (audio). The ``wyoming`` package's reader trusts the declared lengths and
reads whatever they say into memory; this one refuses a declared length over the limits
and reads past it in small pieces instead, so a connection holds a bounded amount of
memory and, where the framing is intact, stays usable after a bad event.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from wyoming.event import Event

# The StreamReader limit the servers are started with: the longest JSON header line.
HEADER_LIMIT = 64 * 1024
_SKIP_PIECE = 64 * 1024


class EventError(Exception):
    """One event could not be used, but the stream is still in step: reading goes on."""

    def __init__(self, message: str, event_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.event_type = event_type


class FramingError(Exception):
    """The stream cannot be read any further (its lengths are unreadable or too long a
    line): the connection is answered with an error and closed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_data_bytes: int
    max_payload_bytes: int


def _length(header: dict[str, Any], key: str) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FramingError(f"{key} must be a non-negative integer, not {value!r}")
    return value


async def _skip(reader: asyncio.StreamReader, count: int) -> None:
    while count > 0:
        piece = await reader.read(min(count, _SKIP_PIECE))
        if not piece:
            raise asyncio.IncompleteReadError(b"", count)
        count -= len(piece)


async def read_event(reader: asyncio.StreamReader, limits: Limits) -> Event | None:
    """The next event; ``None`` when the peer has closed (also mid-event).

    Raises ``EventError`` for an event that is unusable but was read to its end, and
    ``FramingError`` when the stream cannot be followed any further.
    """
    try:
        try:
            line = await reader.readline()
        except ValueError as exc:  # no newline within HEADER_LIMIT bytes
            raise FramingError(
                f"an event header is longer than {HEADER_LIMIT} bytes") from exc
        if not line or not line.endswith(b"\n"):
            return None
        try:
            header = json.loads(line)
        except ValueError as exc:
            raise EventError(f"the event header is not JSON: {exc}") from exc
        if not isinstance(header, dict):
            raise EventError("the event header is not a JSON object")
        data_length = _length(header, "data_length")
        payload_length = _length(header, "payload_length")
        event_type = header.get("type")
        problem = None
        if not isinstance(event_type, str) or not event_type:
            problem, event_type = "the event has no type", None
        data = header.get("data")
        if data is None:
            data = {}
        elif not isinstance(data, dict):
            problem = problem or "the event's data is not a JSON object"
            data = {}
        if data_length > limits.max_data_bytes:
            await _skip(reader, data_length)
            problem = problem or (f"the event's data has {data_length} bytes, over the limit "
                                  f"of {limits.max_data_bytes}")
        elif data_length:
            raw = await reader.readexactly(data_length)
            try:
                extra = json.loads(raw)
            except ValueError:
                extra = None
            if isinstance(extra, dict):
                data = {**data, **extra}
            else:
                problem = problem or "the event's data is not a JSON object"
        payload = None
        if payload_length > limits.max_payload_bytes:
            await _skip(reader, payload_length)
            problem = problem or (f"the event's payload has {payload_length} bytes, over the "
                                  f"limit of {limits.max_payload_bytes}")
        elif payload_length:
            payload = await reader.readexactly(payload_length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    if problem:
        raise EventError(problem, event_type)
    return Event(type=event_type, data=data, payload=payload)
