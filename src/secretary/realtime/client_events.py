"""The Realtime protocol's client events as typed classes, read from their JSON.

``parse_client_event`` reads an event, under its GA name or its beta one, into its class.
The values an event carries are the client's as sent: each is checked where it is applied,
so a bad one gets the ``error`` it always got, in the same order of checks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from secretary.realtime.protocol import ProtocolError


@dataclass(kw_only=True)
class ClientEvent:
    """A client event as sent; its values are the client's, checked where applied."""

    type: ClassVar[str]
    event_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The event as a client sends it (an ``event_id`` where it has one)."""
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "event_id" or value is not None:
                out[f.name] = value
        return out


@dataclass(kw_only=True)
class SessionUpdate(ClientEvent):
    type = "session.update"
    session: Any = None


@dataclass(kw_only=True)
class TranscriptionSessionUpdate(SessionUpdate):
    """The beta name of a transcription session's update (answered under its own name)."""

    type = "transcription_session.update"


@dataclass(kw_only=True)
class InputAudioBufferAppend(ClientEvent):
    type = "input_audio_buffer.append"
    audio: Any = None  # base64 PCM16 at 24 kHz


@dataclass(kw_only=True)
class InputAudioBufferCommit(ClientEvent):
    type = "input_audio_buffer.commit"


@dataclass(kw_only=True)
class InputAudioBufferClear(ClientEvent):
    type = "input_audio_buffer.clear"


@dataclass(kw_only=True)
class ItemCreate(ClientEvent):
    type = "conversation.item.create"
    item: Any = None


@dataclass(kw_only=True)
class ItemTruncate(ClientEvent):
    type = "conversation.item.truncate"
    item_id: Any = None
    audio_end_ms: Any = None


@dataclass(kw_only=True)
class ResponseCreate(ClientEvent):
    type = "response.create"
    response: Any = None


@dataclass(kw_only=True)
class ResponseCancel(ClientEvent):
    type = "response.cancel"
    response_id: Any = None


@dataclass(kw_only=True)
class OutputAudioBufferClear(ClientEvent):
    type = "output_audio_buffer.clear"


CLIENT_EVENTS: dict[str, type[ClientEvent]] = {cls.type: cls for cls in (
    SessionUpdate, TranscriptionSessionUpdate, InputAudioBufferAppend, InputAudioBufferCommit,
    InputAudioBufferClear, ItemCreate, ItemTruncate, ResponseCreate, ResponseCancel,
    OutputAudioBufferClear)}


def parse_client_event(raw: str | bytes, max_bytes: int) -> ClientEvent:
    """A client event read from its JSON; ``ProtocolError`` for one that is too large, not
    JSON, not an event, or of a type this server does not know."""
    if len(raw) > max_bytes:
        raise ProtocolError(f"an event may be at most {max_bytes} bytes",
                            code="event_too_large")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("the event is not valid JSON", code="invalid_json") from None
    except RecursionError:  # [[[[...]]]]: the parser's stack, not the session's end
        raise ProtocolError("the event's JSON is nested too deeply",
                            code="invalid_json") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolError("an event is a JSON object with a 'type'",
                            code="invalid_event", param="type")
    event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    cls = CLIENT_EVENTS.get(data["type"])
    if cls is None:
        raise ProtocolError(f"unknown event type {data['type']!r}", code="invalid_event",
                            param="type", event_id=event_id)
    return cls(event_id=event_id, **{f.name: data.get(f.name) for f in fields(cls)
                                     if f.name != "event_id"})
