"""One Realtime session in plain Python: client events in, server events out.

The transport (a WebSocket, or a WebRTC data channel with audio tracks) hands each client
event to ``handle`` and gives the session a ``send`` coroutine for server events and an
``Output`` for the reply's audio. The conversation stages do the work: the pipeline's
transcriber (finals), its brain (the reply, streamed), its speaker (speech, sentence by
sentence).

The session wires its parts and holds what they share (the configuration, the limits, the
stage times of the coming turn): the input buffer (``buffer.py``), turn taking
(``turn_taking.py``, with what starts ahead of the turn's end in ``ahead.py`` and barge-in
in ``barge_in.py``), the conversation's items (``items.py``) and the response
(``response.py``). Each client event goes to the part it is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from secretary.conversation.stages import StageError
from secretary.realtime.buffer import InputBuffer
from secretary.realtime.client_events import (
    ClientEvent,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    ItemCreate,
    ItemTruncate,
    OutputAudioBufferClear,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    TranscriptionSessionUpdate,
    parse_client_event,
)
from secretary.realtime.items import Conversation
from secretary.realtime.metrics import RealtimeMetrics
from secretary.realtime.output import Output, PacedEvents
from secretary.realtime.partials import PartialTranscriber
from secretary.realtime.protocol import ProtocolError, SessionConfig, TurnDetection, new_id
from secretary.realtime.response import Responses
from secretary.realtime.server_events import (
    ErrorEvent,
    ServerEvent,
    SessionCreated,
    SessionUpdated,
    TranscriptionSessionCreated,
    TranscriptionSessionUpdated,
)
from secretary.realtime.turn_taking import TurnTaking
from secretary.turns.rule import EndOfTurnRule

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    max_event_bytes: int = 1 << 20
    max_buffer_seconds: float = 60.0
    partials: bool = True
    partial_interval: float = 0.35
    barge_in_min: float = 0.5  # seconds of speech over the reply before it stops
    barge_in_grace: float = 0.6  # seconds at the reply's start when speech is not a barge-in
    sentence_pause: float = 0.2
    max_sentence_chars: int = 250
    first_clause_chars: int = 24
    first_words: int = 0
    early_final_ms: int = 32  # silence after which the final transcript starts early
    reply_ahead: bool = True  # start the reply to that transcript before the turn ends
    audio_lead: float = 0.3  # seconds reply audio is sent ahead of real time (WebSocket)


class RealtimeSession:
    def __init__(self, stages: Any, send: Send, *, model: str, kind: str = "realtime",
                 limits: Limits | None = None, partials: PartialTranscriber | None = None,
                 output: Output | None = None, beta: bool = False,
                 on_activity: Callable[[], None] | None = None,
                 metrics: RealtimeMetrics | None = None,
                 end_of_turn: EndOfTurnRule | None = None) -> None:
        self.end_of_turn = end_of_turn  # semantic_vad's model and waits (None: VAD alone)
        self.stages = stages  # the conversation pipeline: transcriber, brain, speaker
        self.send = send
        self.limits = limits or Limits()
        self.beta = beta
        self.config = SessionConfig(id=new_id("sess"), model=model, kind=kind)
        if kind == "transcription":
            self.config.output_modalities = ["text"]
        if end_of_turn is not None:
            self.config.turn_detection = TurnDetection(type="semantic_vad")
        self.output: Output = output or PacedEvents(self.emit, lead=self.limits.audio_lead)
        self.partials = partials if self.limits.partials else None
        self.on_activity = on_activity
        self.metrics = metrics
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self.stats: dict[str, list[float]] = {"partial_lag": [], "barge_in_stop": []}
        self.marks: dict[str, float] = {}  # the coming turn's stage times (perf_counter)
        self.input = InputBuffer(self)
        self.turns = TurnTaking(self)
        self.conversation = Conversation(self)
        self.responses = Responses(self)
        self._handlers: dict[type[ClientEvent], Callable[[Any], Awaitable[None]]] = {
            SessionUpdate: self._session_update,
            TranscriptionSessionUpdate: self._session_update,
            InputAudioBufferAppend: self.input.append,
            InputAudioBufferCommit: self.input.commit,
            InputAudioBufferClear: self.input.clear,
            ItemCreate: self.conversation.create,
            ItemTruncate: self.conversation.truncate,
            ResponseCreate: self.responses.create,
            ResponseCancel: self.responses.cancel,
            OutputAudioBufferClear: self.responses.clear_output,
        }

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def items(self) -> list[dict[str, Any]]:
        return self.conversation.items

    # ------------------------------------------------------------------ plumbing
    async def emit(self, event: ServerEvent) -> None:
        if self.closed:
            return
        data = event.as_json(self.beta)
        data["event_id"] = new_id("event")
        try:
            await self.send(data)
        except Exception:  # the client went away; the transport closes the session
            log.debug("could not send %s", data["type"], exc_info=True)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved here, so a dropped early transcript is quiet
        if error is not None and not isinstance(error, StageError):
            log.error("realtime session %s: %r", self.id, error, exc_info=error)

    async def start(self) -> None:
        created = (TranscriptionSessionCreated if self.config.kind == "transcription"
                   else SessionCreated)
        await self.emit(created(session=self.config.as_json(self.beta)))
        self.output.state("listening")

    async def close(self) -> None:
        self.closed = True
        if self.turns.utterance is not None:
            self.turns.utterance.drop_reply()
        self.responses.close()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task

    def brain(self) -> Any:
        """The pipeline's brain, with this session's instructions as the system prompt
        where it has a chat model (a copy: the same client and history)."""
        brain = self.stages.brain
        change = getattr(brain, "with_instructions", None)
        if self.config.instructions and change is not None:
            brain = change(self.config.instructions)
        return brain

    # ------------------------------------------------------------------ client events
    async def handle(self, raw: str | bytes) -> None:
        """One client event; a bad one gets an ``error`` event and the session goes on."""
        try:
            event = parse_client_event(raw, self.limits.max_event_bytes)
        except ProtocolError as exc:
            await self.emit(ErrorEvent.of(exc))
            return
        if self.on_activity is not None:
            self.on_activity()
        if not isinstance(event, InputAudioBufferAppend) and self.turns.utterance is not None:
            # The session or the conversation may change: a reply made ahead of this
            # event could answer the wrong question or in the wrong voice.
            self.turns.utterance.drop_reply()
        try:
            await self._handlers[type(event)](event)
        except ProtocolError as exc:
            await self.emit(ErrorEvent.of(exc, event.event_id))

    async def push_audio(self, samples: np.ndarray, rate: int) -> None:
        """Microphone audio from a media track (WebRTC), mono float32 at ``rate``."""
        if self.on_activity is not None:
            self.on_activity()
        try:
            await self.input.push_track(samples, rate)
        except ProtocolError as exc:
            await self.emit(ErrorEvent.of(exc))

    async def _session_update(self, event: SessionUpdate) -> None:
        body = event.session
        if isinstance(body, dict) and ("input_audio_format" in body or "modalities" in body):
            self.beta = True
        before = self.config.turn_detection
        self.config.update(body)
        if self.config.kind == "transcription":
            self.config.output_modalities = ["text"]
        if hasattr(self.output, "format"):  # the protocol's own audio events (WebSocket)
            self.output.format = self.config.output_format
        after = self.config.turn_detection
        if (before is None) != (after is None) or (
                before and after and before.as_json() != after.as_json()):
            self.turns.reset_detector()
        updated = (TranscriptionSessionUpdated if isinstance(event, TranscriptionSessionUpdate)
                   else SessionUpdated)
        await self.emit(updated(session=self.config.as_json(self.beta)))
