"""The Realtime protocol's server events as typed classes, and their one serialisation.

Each event is a dataclass whose fields are the event's own, in the order they are sent;
``as_json`` writes it under its GA name, or, for a beta client, under its beta name
(``beta_type``) where the two protocols differ. Every event a session or a transport sends
is one of these, so the names live here and nowhere else.

Decisions: the payloads (items, responses, the session) stay the plain dicts the item store
keeps; the envelope is what is typed. A field left ``UNSET`` is not written (the reply's
``conversation.item.done`` has no ``previous_item_id``; a user item's has one, maybe null).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from secretary.realtime.protocol import ProtocolError


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass(kw_only=True)
class ServerEvent:
    type: ClassVar[str]
    beta_type: ClassVar[str | None] = None  # the beta protocol's name, where it differs

    def as_json(self, beta: bool = False) -> dict[str, Any]:
        """The event as sent: its name, then its fields (the session adds ``event_id``)."""
        name = self.beta_type if beta and self.beta_type else self.type
        out: dict[str, Any] = {"type": name}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not UNSET:
                out[f.name] = value
        return out


# ---------------------------------------------------------------------- the session
@dataclass(kw_only=True)
class SessionCreated(ServerEvent):
    type = "session.created"
    session: dict[str, Any]


@dataclass(kw_only=True)
class TranscriptionSessionCreated(SessionCreated):
    beta_type = "transcription_session.created"


@dataclass(kw_only=True)
class SessionUpdated(ServerEvent):
    type = "session.updated"
    session: dict[str, Any]


@dataclass(kw_only=True)
class TranscriptionSessionUpdated(SessionUpdated):
    """The answer to ``transcription_session.update``, under its name in either protocol."""

    type = "transcription_session.updated"


@dataclass(kw_only=True)
class ErrorEvent(ServerEvent):
    type = "error"
    error: dict[str, Any]

    @classmethod
    def of(cls, exc: ProtocolError, event_id: str | None = None) -> ErrorEvent:
        """``exc`` as the protocol says it; ``event_id`` names the client event at fault."""
        return cls(error={"type": exc.type, "code": exc.code, "message": exc.message,
                          "param": exc.param,
                          "event_id": exc.event_id if event_id is None else event_id})


# ---------------------------------------------------------------------- the input buffer
@dataclass(kw_only=True)
class InputAudioBufferCommitted(ServerEvent):
    type = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None


@dataclass(kw_only=True)
class InputAudioBufferCleared(ServerEvent):
    type = "input_audio_buffer.cleared"


@dataclass(kw_only=True)
class SpeechStarted(ServerEvent):
    type = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


@dataclass(kw_only=True)
class SpeechStopped(ServerEvent):
    type = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


# ---------------------------------------------------------------------- the conversation
@dataclass(kw_only=True)
class ItemAdded(ServerEvent):
    type = "conversation.item.added"
    beta_type = "conversation.item.created"
    previous_item_id: str | None
    item: dict[str, Any]


@dataclass(kw_only=True)
class ItemDone(ServerEvent):
    type = "conversation.item.done"
    previous_item_id: str | None = UNSET
    item: dict[str, Any]


@dataclass(kw_only=True)
class ItemTruncated(ServerEvent):
    type = "conversation.item.truncated"
    item_id: str
    content_index: int = 0
    audio_end_ms: int


@dataclass(kw_only=True)
class TranscriptionDelta(ServerEvent):
    type = "conversation.item.input_audio_transcription.delta"
    item_id: str
    content_index: int = 0
    delta: str
    # Not in OpenAI's schema: the input audio this partial heard, so a client can measure
    # how far behind it is.
    audio_end_ms: int


@dataclass(kw_only=True)
class TranscriptionCompleted(ServerEvent):
    type = "conversation.item.input_audio_transcription.completed"
    item_id: str
    content_index: int = 0
    transcript: str
    usage: dict[str, Any]
    language: str | None


@dataclass(kw_only=True)
class TranscriptionFailed(ServerEvent):
    type = "conversation.item.input_audio_transcription.failed"
    item_id: str
    content_index: int = 0
    error: dict[str, Any]


# ---------------------------------------------------------------------- the response
@dataclass(kw_only=True)
class ResponseCreated(ServerEvent):
    type = "response.created"
    response: dict[str, Any]


@dataclass(kw_only=True)
class ResponseDone(ServerEvent):
    type = "response.done"
    response: dict[str, Any]


@dataclass(kw_only=True)
class OutputItemAdded(ServerEvent):
    type = "response.output_item.added"
    response_id: str
    output_index: int = 0
    item: dict[str, Any]


@dataclass(kw_only=True)
class OutputItemDone(OutputItemAdded):
    type = "response.output_item.done"


@dataclass(kw_only=True)
class _Content(ServerEvent):
    """An event about the reply item's one content part."""

    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0


@dataclass(kw_only=True)
class ContentPartAdded(_Content):
    type = "response.content_part.added"
    part: dict[str, Any]


@dataclass(kw_only=True)
class ContentPartDone(ContentPartAdded):
    type = "response.content_part.done"


@dataclass(kw_only=True)
class OutputAudioDelta(_Content):
    type = "response.output_audio.delta"
    beta_type = "response.audio.delta"
    delta: str  # base64 PCM16 at 24 kHz


@dataclass(kw_only=True)
class OutputAudioDone(_Content):
    type = "response.output_audio.done"
    beta_type = "response.audio.done"


@dataclass(kw_only=True)
class OutputAudioTranscriptDelta(_Content):
    type = "response.output_audio_transcript.delta"
    beta_type = "response.audio_transcript.delta"
    delta: str


@dataclass(kw_only=True)
class OutputAudioTranscriptDone(_Content):
    type = "response.output_audio_transcript.done"
    beta_type = "response.audio_transcript.done"
    transcript: str


@dataclass(kw_only=True)
class OutputTextDelta(_Content):
    type = "response.output_text.delta"
    beta_type = "response.text.delta"
    delta: str


@dataclass(kw_only=True)
class OutputTextDone(_Content):
    type = "response.output_text.done"
    beta_type = "response.text.done"
    text: str


@dataclass(kw_only=True)
class FunctionCallArgumentsDelta(ServerEvent):
    """A piece of a function call's arguments, as the model streams them."""

    type = "response.function_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int = 0
    call_id: str
    delta: str


@dataclass(kw_only=True)
class FunctionCallArgumentsDone(ServerEvent):
    type = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int = 0
    call_id: str
    name: str
    arguments: str  # the whole JSON object


SERVER_EVENTS: tuple[type[ServerEvent], ...] = (
    SessionCreated, TranscriptionSessionCreated, SessionUpdated, TranscriptionSessionUpdated,
    ErrorEvent, InputAudioBufferCommitted, InputAudioBufferCleared, SpeechStarted,
    SpeechStopped, ItemAdded, ItemDone, ItemTruncated, TranscriptionDelta,
    TranscriptionCompleted, TranscriptionFailed, ResponseCreated, ResponseDone,
    OutputItemAdded, OutputItemDone, ContentPartAdded, ContentPartDone, OutputAudioDelta,
    OutputAudioDone, OutputAudioTranscriptDelta, OutputAudioTranscriptDone, OutputTextDelta,
    OutputTextDone, FunctionCallArgumentsDelta, FunctionCallArgumentsDone)
