"""One Realtime session in plain Python: client events in, server events out.

The transport (a WebSocket, or a WebRTC data channel with audio tracks) hands each client
event to ``handle`` and gives the session a ``send`` coroutine for server events and an
``Output`` for the reply's audio. The conversation stages do the work: the pipeline's
transcriber (finals), its brain (the reply, streamed), its speaker (speech, sentence by
sentence).

Reply audio goes out in real time (``Output`` paces it), so the server always knows how
much of the reply the listener has heard: a barge-in or ``response.cancel`` stops the
audio within one chunk, the response ends ``cancelled``, and the history and the item's
transcript keep only the sentences that had begun playing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from secretary.audio import Resampler
from secretary.conversation.stages import Cancel, Heard, StageError
from secretary.realtime.metrics import RESPONSE_STAGES, RealtimeMetrics
from secretary.realtime.partials import PartialText, PartialTranscriber
from secretary.realtime.protocol import (
    BACKCHANNELS,
    BETA_NAMES,
    CLIENT_ALIASES,
    INPUT_RATE,
    OUTPUT_RATE,
    ProtocolError,
    SessionConfig,
    TurnDetection,
    check_event_text,
    decode_pcm16,
    error_event,
    new_id,
)
from secretary.realtime.reply import ReplyStream, Sentence
from secretary.realtime.vad import RATE, TurnDetector, VadConfig
from secretary.tts.text import has_speech
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
    early_final_ms: int = 96  # silence after which the final transcript starts early
    reply_ahead: bool = True  # start the reply to that transcript before the turn ends
    audio_lead: float = 0.3  # seconds reply audio is sent ahead of real time (WebSocket)


class Output(Protocol):
    """Where the reply's audio goes, at the pace it is heard."""

    async def begin(self, response_id: str, item_id: str) -> None: ...

    async def play(self, samples: np.ndarray) -> None:
        """24 kHz mono float32; returns once the audio is due (real-time pacing)."""
        ...

    def played(self) -> float:
        """Seconds of this response's audio the listener has heard."""
        ...

    def clear(self) -> None:
        """Drop what has not been played (barge-in, cancel)."""
        ...

    async def drain(self) -> None:
        """Wait until everything sent has been played."""
        ...

    def state(self, name: str) -> None:
        """listening, thinking or speaking (the face follows it)."""
        ...


class PacedEvents:
    """Output over the protocol's own events (WebSocket): ``response.output_audio.delta``
    sent ``lead`` seconds ahead of real time, so the client's buffer never runs dry and a
    cancel leaves at most ``lead`` seconds unplayed on its side."""

    chunk = 0.1  # seconds per delta

    def __init__(self, session: RealtimeSession, lead: float = 0.3) -> None:
        self.session = session
        self.lead = lead
        self.started: float | None = None
        self.sent = 0.0
        self.ids: tuple[str, str] = ("", "")

    async def begin(self, response_id: str, item_id: str) -> None:
        self.ids = (response_id, item_id)
        self.started, self.sent = None, 0.0

    async def play(self, samples: np.ndarray) -> None:
        step = int(self.chunk * OUTPUT_RATE)
        for start in range(0, len(samples), step):
            piece = samples[start:start + step]
            if self.started is None:
                self.started = time.perf_counter()
            wait = self.sent - self.lead - (time.perf_counter() - self.started)
            if wait > 0:
                await asyncio.sleep(wait)
            pcm = (np.clip(piece, -1, 1) * 32767).astype("<i2").tobytes()
            response_id, item_id = self.ids
            await self.session.emit({
                "type": "response.output_audio.delta", "response_id": response_id,
                "item_id": item_id, "output_index": 0, "content_index": 0,
                "delta": base64.b64encode(pcm).decode()})
            self.sent += len(piece) / OUTPUT_RATE

    def played(self) -> float:
        if self.started is None:
            return 0.0
        return min(self.sent, time.perf_counter() - self.started)

    def clear(self) -> None:
        pass  # what was not sent is never sent

    async def drain(self) -> None:
        if self.started is not None:
            rest = self.sent - (time.perf_counter() - self.started)
            if rest > 0:
                await asyncio.sleep(rest)

    def state(self, name: str) -> None:
        pass


@dataclass
class _Spoken:
    text: str
    start: float
    end: float


@dataclass
class Response:
    id: str
    item_id: str
    marks: dict[str, float] = field(default_factory=dict)
    cancel: Cancel = field(default_factory=Cancel)
    task: asyncio.Task[None] | None = None
    audio_started: float | None = None  # wall clock of the first audio
    reason: str = "client_cancelled"
    stream: ReplyStream | None = None  # made ahead, in the silence before the response

    @property
    def speaking(self) -> bool:
        return self.audio_started is not None


@dataclass
class _Utterance:
    item_id: str
    start_ms: int
    started_wall: float
    over_reply: bool = False  # began while a reply was playing
    ignored: bool = False  # began in the reply's first moments (echo settling)
    partial_task: asyncio.Task[None] | None = None
    # The final transcript started early, in the silence that may end the turn.
    early: asyncio.Task[Heard] | None = None
    early_at: float = 0.0
    # The reply to that transcript, being made while the silence runs.
    reply: ReplyStream | None = None

    def drop_reply(self) -> None:
        if self.reply is not None:
            self.reply.drop()
            self.reply = None


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
        self.output: Output = output or PacedEvents(self, lead=self.limits.audio_lead)
        self.partials = partials if self.limits.partials else None
        self.on_activity = on_activity
        self.metrics = metrics
        self.resampler = Resampler(INPUT_RATE, RATE)
        self.track_resampler: Resampler | None = None
        self.detector: TurnDetector | None = None
        self._reset_detector()
        self.buffer: list[np.ndarray] = []  # 16 kHz input since the last commit
        self.buffer_start = 0  # samples on the input clock where the buffer begins
        self.clock = 0  # samples of input received (16 kHz)
        self.items: list[dict[str, Any]] = []
        self.transcripts: dict[str, asyncio.Task[str]] = {}
        self.response: Response | None = None
        self.utterance: _Utterance | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self.stats: dict[str, list[float]] = {"partial_lag": [], "barge_in_stop": []}
        self.marks: dict[str, float] = {}  # the coming turn's stage times (perf_counter)

    # ------------------------------------------------------------------ plumbing
    @property
    def id(self) -> str:
        return self.config.id

    async def emit(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        if self.beta:
            event["type"] = BETA_NAMES.get(event["type"], event["type"])
        event.setdefault("event_id", new_id("event"))
        try:
            await self.send(event)
        except Exception:  # the client went away; the transport closes the session
            log.debug("could not send %s", event["type"], exc_info=True)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
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
        kind = "transcription_session.created" if (
            self.beta and self.config.kind == "transcription") else "session.created"
        await self.emit({"type": kind, "session": self.config.as_json(self.beta)})
        self.output.state("listening")

    async def close(self) -> None:
        self.closed = True
        if self.utterance is not None:
            self.utterance.drop_reply()
        if self.response is not None:
            self.response.cancel.set("closed")
            self.output.clear()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task

    def _reset_detector(self) -> None:
        turn = self.config.turn_detection
        if turn is None:
            self.detector = None
            return
        rule = self.end_of_turn if turn.type == "semantic_vad" else None
        if rule is None:  # server_vad, or semantic_vad without its model: silence alone
            self.detector = TurnDetector(VadConfig(
                turn.threshold, turn.prefix_padding_ms, turn.silence_duration_ms))
            return
        self.detector = TurnDetector(VadConfig(
            turn.threshold, turn.prefix_padding_ms, rule.incomplete_wait(turn.eagerness),
            semantic=True, ask_ms=max(32, self.limits.early_final_ms),
            complete_ms=rule.complete_ms, complete_threshold=rule.threshold))

    # ------------------------------------------------------------------ client events
    async def handle(self, raw: str | bytes) -> None:
        """One client event; a bad one gets an ``error`` event and the session goes on."""
        event_id = None
        try:
            if len(raw) > self.limits.max_event_bytes:
                raise ProtocolError(
                    f"an event may be at most {self.limits.max_event_bytes} bytes",
                    code="event_too_large")
            try:
                event = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise ProtocolError("the event is not valid JSON", code="invalid_json") from None
            except RecursionError:  # [[[[...]]]]: the parser's stack, not the session's end
                raise ProtocolError("the event's JSON is nested too deeply",
                                    code="invalid_json") from None
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise ProtocolError("an event is a JSON object with a 'type'",
                                    code="invalid_event", param="type")
            event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            kind = CLIENT_ALIASES.get(event["type"], event["type"])
            handler = self._handlers.get(kind)
            if handler is None:
                raise ProtocolError(f"unknown event type {event['type']!r}",
                                    code="invalid_event", param="type")
            if self.on_activity is not None:
                self.on_activity()
            if kind != "input_audio_buffer.append" and self.utterance is not None:
                # The session or the conversation may change: a reply made ahead of this
                # event could answer the wrong question or in the wrong voice.
                self.utterance.drop_reply()
            await handler(self, event)
        except ProtocolError as exc:
            await self.emit(error_event(exc, event_id))

    async def _session_update(self, event: dict[str, Any]) -> None:
        body = event.get("session")
        if isinstance(body, dict) and ("input_audio_format" in body or "modalities" in body):
            self.beta = True
        before = self.config.turn_detection
        self.config.update(body)
        if self.config.kind == "transcription":
            self.config.output_modalities = ["text"]
        if (before is None) != (self.config.turn_detection is None) or (
                before and self.config.turn_detection
                and before.as_json() != self.config.turn_detection.as_json()):
            self._reset_detector()
        kind = ("transcription_session.updated" if event["type"].startswith("transcription")
                else "session.updated")
        await self.emit({"type": kind, "session": self.config.as_json(self.beta)})

    async def _append(self, event: dict[str, Any]) -> None:
        raw = decode_pcm16(event.get("audio"), self.limits.max_event_bytes)
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        await self._input(self.resampler.push(samples))

    async def push_audio(self, samples: np.ndarray, rate: int) -> None:
        """Microphone audio from a media track (WebRTC), mono float32 at ``rate``."""
        if self.track_resampler is None or self.track_resampler.from_rate != rate:
            self.track_resampler = Resampler(rate, RATE)
        if self.on_activity is not None:
            self.on_activity()
        try:
            await self._input(self.track_resampler.push(samples))
        except ProtocolError as exc:
            await self.emit(error_event(exc))

    async def _input(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        buffered = sum(len(b) for b in self.buffer) + len(samples)
        if self.detector is None and buffered > self.limits.max_buffer_seconds * RATE:
            raise ProtocolError(
                f"the input buffer holds at most {self.limits.max_buffer_seconds:g} s; "
                "commit or clear it", code="input_audio_buffer_full")
        self.buffer.append(samples)
        self.clock += len(samples)
        if self.detector is None:
            return
        events = self.detector.feed(samples)
        while events:
            vad = events.pop(0)
            if vad.kind == "started":
                await self._speech_started(vad.at_ms)
            elif vad.kind == "paused":
                # The frames after the pause wait for the verdict, so the rule is judged on
                # the audio alone, whatever the machine's speed.
                events += self.detector.decide(await self._judge_pause(vad.at_ms))
            else:
                await self._speech_stopped(vad.at_ms)
        if self.utterance is None:
            self._trim_buffer()
        else:
            self._speculate(self.utterance)
            await self._maybe_barge_in()
            if self.clock - self.buffer_start > self.limits.max_buffer_seconds * RATE:
                await self._speech_stopped(self.clock * 1000 // RATE)  # a very long turn

    def _speculate(self, utterance: _Utterance) -> None:
        """Start the final transcript in the silence that may end the turn (it is the same
        audio if the turn does end), and drop it if the user goes on."""
        detector = self.detector
        if detector is None or not detector.speaking:
            return
        if detector.silence_ms == 0 and utterance.early is not None:
            utterance.early = None  # speech again: that transcript would be short
            utterance.drop_reply()
        elif (detector.silence_ms >= self.limits.early_final_ms and utterance.early is None
              and self.config.kind in ("realtime", "transcription")):
            turn = self.config.turn_detection
            padding = turn.prefix_padding_ms if turn else 0
            audio = self._take(utterance.start_ms - padding)
            utterance.early = self._spawn(self.stages.transcriber.transcribe(
                audio, self.config.language, Cancel()))
            utterance.early_at = time.perf_counter()
            if self.limits.reply_ahead:
                self._spawn(self._reply_ahead(utterance, utterance.early))
            if utterance.over_reply and not utterance.ignored and self.response is not None:
                self._spawn(self._early_barge_in(utterance, utterance.early, self.response))

    async def _early_barge_in(self, utterance: _Utterance, early: asyncio.Task[Heard],
                              response: Response) -> None:
        """Speech over the reply too short to stop it by its length ("Stop!") stops it as
        soon as the transcript made in its first pause shows it is no backchannel, without
        waiting for the turn to end."""
        with contextlib.suppress(StageError):
            heard = await early
            turn = self.config.turn_detection
            if (utterance.early is not early or self.response is not response
                    or response.cancel or turn is None or not turn.interrupt_response):
                return
            if has_speech(heard.text) and not is_backchannel(heard.text):
                self._cancel_response("turn_detected")

    async def _reply_ahead(self, utterance: _Utterance, early: asyncio.Task[Heard]) -> None:
        """Start the reply to the early transcript while the silence runs: if the turn
        ends, its first audio is ready then; if the user goes on, it is dropped unheard."""
        with contextlib.suppress(StageError):
            heard = await early
            turn = self.config.turn_detection
            if (self.utterance is not utterance or utterance.early is not early
                    or utterance.over_reply or self.response is not None
                    or self.config.kind != "realtime" or turn is None
                    or not turn.create_response or not has_speech(heard.text)):
                return  # the turn ended first (the response starts from the final), or
                # there will be no response to this
            audio = "audio" in self.config.output_modalities
            utterance.reply = self._reply_stream(
                self._heard(heard.text.strip(), heard.language), audio).start()
            if self.metrics is not None:
                self.metrics.replies_ahead.labels("started").inc()

    async def _judge_pause(self, at_ms: int) -> float:
        """The end-of-turn model's probability that the utterance paused at ``at_ms`` is
        complete (0 where it cannot tell: the turn then waits the long silence)."""
        rule, utterance = self.end_of_turn, self.utterance
        if rule is None or utterance is None:
            return 0.0
        audio = self._take(utterance.start_ms, at_ms)
        began = time.perf_counter()
        try:
            complete = await asyncio.to_thread(rule.model.complete, audio)
        except Exception:
            log.exception("realtime session %s: the end-of-turn model failed", self.id)
            return 0.0
        if self.metrics is not None:
            self.metrics.end_of_turn_seconds.observe(time.perf_counter() - began)
            self.metrics.end_of_turn.labels(
                "complete" if complete >= rule.threshold else "unfinished").inc()
        return complete

    def _trim_buffer(self) -> None:
        """Outside speech keep only what the prefix padding may need."""
        turn = self.config.turn_detection
        keep = int(((turn.prefix_padding_ms if turn else 0) + 500) * RATE / 1000)
        total = sum(len(b) for b in self.buffer)
        if total > 2 * keep:
            audio = np.concatenate(self.buffer)[-keep:]
            self.buffer = [audio]
            self.buffer_start = self.clock - len(audio)

    def _take(self, start_ms: int | None = None, end_ms: int | None = None) -> np.ndarray:
        audio = np.concatenate(self.buffer) if self.buffer else np.zeros(0, np.float32)
        first = 0 if start_ms is None else max(0, start_ms * RATE // 1000 - self.buffer_start)
        last = len(audio) if end_ms is None else max(first, end_ms * RATE // 1000
                                                     - self.buffer_start)
        return audio[first:last]

    async def _commit(self, event: dict[str, Any]) -> None:
        audio = self._take()
        if len(audio) < RATE // 10:
            raise ProtocolError("the input buffer holds less than 100 ms of audio",
                                code="input_audio_buffer_commit_empty")
        item_id = self.utterance.item_id if self.utterance else new_id("item")
        self.utterance = None
        await self._add_user_audio(item_id, audio)

    async def _clear(self, event: dict[str, Any]) -> None:
        self.buffer, self.buffer_start = [], self.clock
        if self.utterance and self.utterance.partial_task:
            self.utterance.partial_task.cancel()
        if self.utterance:
            self.utterance.drop_reply()
        self.utterance = None
        await self.emit({"type": "input_audio_buffer.cleared"})

    async def _item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        if not isinstance(item, dict):
            raise ProtocolError("item must be an object", param="item")
        if item.get("type", "message") != "message" or item.get("role") not in (
                "user", "system", "assistant"):
            raise ProtocolError("only message items (user, assistant or system) are "
                                "supported here", code="unsupported_item", param="item.type")
        content = item.get("content")
        if not isinstance(content, list) or not content:
            raise ProtocolError("item.content must be a non-empty list", param="item.content")
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in (
                    "input_text", "text", "output_text"):
                raise ProtocolError("content parts must be text (input_text) here",
                                    code="unsupported_content", param="item.content")
            text = part.get("text")
            if not isinstance(text, str) or len(text) > 16384:
                raise ProtocolError("content text must be a string of at most 16384 "
                                    "characters", param="item.content.text")
            check_event_text(text, "item.content.text")
            texts.append(text)
        stored = {"id": item.get("id") if isinstance(item.get("id"), str) else new_id("item"),
                  "object": "realtime.item", "type": "message", "role": item["role"],
                  "status": "completed",
                  "content": [{"type": "input_text", "text": t} for t in texts]}
        await self._add_item(stored)

    async def _add_item(self, item: dict[str, Any]) -> None:
        previous = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        await self.emit({"type": "conversation.item.added", "previous_item_id": previous,
                         "item": item})
        await self.emit({"type": "conversation.item.done", "previous_item_id": previous,
                         "item": item})

    async def _add_user_audio(self, item_id: str, audio: np.ndarray,
                              early: asyncio.Task[Heard] | None = None) -> asyncio.Task[str]:
        previous = self.items[-1]["id"] if self.items else None
        self.buffer, self.buffer_start = [], self.clock
        await self.emit({"type": "input_audio_buffer.committed", "item_id": item_id,
                         "previous_item_id": previous})
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]}
        await self._add_item(item)
        task = self._spawn(self._transcribe(item, audio, early))
        self.transcripts[item_id] = task
        return task

    async def _transcribe(self, item: dict[str, Any], audio: np.ndarray,
                          early: asyncio.Task[Heard] | None = None) -> str:
        try:
            if early is not None:
                heard = await early
            else:
                heard = await self.stages.transcriber.transcribe(audio, self.config.language,
                                                                 Cancel())
        except StageError as exc:
            if self.config.transcription is not None:
                await self.emit({
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item["id"], "content_index": 0,
                    "error": {"type": "transcription_error", "code": exc.code,
                              "message": exc.message}})
            return ""
        text = heard.text.strip()
        if "speech_stopped" in self.marks:
            self.marks.setdefault("transcribed", time.perf_counter())
        item["content"][0]["transcript"] = text
        item["language"] = heard.language
        if self.config.transcription is not None:
            await self.emit({
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item["id"], "content_index": 0, "transcript": text,
                "usage": {"type": "duration", "seconds": round(len(audio) / RATE, 3)},
                "language": heard.language})
        return text

    async def _response_create(self, event: dict[str, Any]) -> None:
        if self.config.kind == "transcription":
            raise ProtocolError("a transcription session makes no responses",
                                code="invalid_event", param="type")
        if self.response is not None:
            raise ProtocolError("a response is already in progress; cancel it first",
                                code="conversation_already_has_active_response")
        options = event.get("response") or {}
        if not isinstance(options, dict):
            raise ProtocolError("response must be an object", param="response")
        modalities = options.get("output_modalities", options.get("modalities"))
        if modalities is not None and (not isinstance(modalities, list)
                                       or not set(modalities) <= {"text", "audio"}):
            raise ProtocolError("output_modalities: ['audio'] or ['text']",
                                param="response.output_modalities")
        audio = "audio" in (modalities or self.config.output_modalities)
        self._start_response(audio)

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        response = self.response
        wanted = event.get("response_id")
        if response is None or (wanted and wanted != response.id):
            raise ProtocolError("there is no response in progress to cancel",
                                code="response_cancel_not_active")
        self._cancel_response("client_cancelled")

    async def _truncate(self, event: dict[str, Any]) -> None:
        item_id, end = event.get("item_id"), event.get("audio_end_ms")
        item = next((i for i in self.items if i["id"] == item_id), None)
        if item is None or item.get("role") != "assistant":
            raise ProtocolError(f"no assistant item {item_id!r}", code="item_not_found",
                                param="item_id")
        if not isinstance(end, int) or end < 0:
            raise ProtocolError("audio_end_ms must be a non-negative integer",
                                param="audio_end_ms")
        spoken = item.get("_spoken", [])
        text = " ".join(s.text for s in spoken if s.start * 1000 < end)
        item["content"][0]["transcript"] = text
        remembered = item.get("_remembered")
        if remembered is not None and remembered[1] != text:
            # The chat history, too, keeps only what was heard.
            self.stages.brain.revise(self.id, *remembered, text)
            item["_remembered"] = (remembered[0], text) if text else None
        await self.emit({"type": "conversation.item.truncated", "item_id": item_id,
                         "content_index": 0, "audio_end_ms": end})

    async def _output_clear(self, event: dict[str, Any]) -> None:
        if self.response is not None:
            self._cancel_response("client_cancelled")

    _handlers: dict[str, Callable[[RealtimeSession, dict[str, Any]], Awaitable[None]]] = {
        "session.update": _session_update,
        "input_audio_buffer.append": _append,
        "input_audio_buffer.commit": _commit,
        "input_audio_buffer.clear": _clear,
        "conversation.item.create": _item_create,
        "conversation.item.truncate": _truncate,
        "response.create": _response_create,
        "response.cancel": _response_cancel,
        "output_audio_buffer.clear": _output_clear,
    }

    # ------------------------------------------------------------------ turn detection
    async def _speech_started(self, at_ms: int) -> None:
        response = self.response
        utterance = _Utterance(new_id("item"), at_ms, time.perf_counter())
        if response is not None and response.speaking:
            utterance.over_reply = True
            heard_for = time.perf_counter() - (response.audio_started or 0)
            utterance.ignored = heard_for < self.limits.barge_in_grace
        self.utterance = utterance
        await self.emit({"type": "input_audio_buffer.speech_started",
                         "audio_start_ms": at_ms, "item_id": utterance.item_id})
        if self.partials is not None and self.config.transcription is not None and (
                not utterance.ignored):
            utterance.partial_task = self._spawn(self._partials(utterance))

    async def _maybe_barge_in(self) -> None:
        utterance, response = self.utterance, self.response
        turn = self.config.turn_detection
        if (utterance is None or response is None or not utterance.over_reply
                or utterance.ignored or turn is None or not turn.interrupt_response):
            return
        voiced = (self.detector.voiced_ms if self.detector else 0) / 1000
        if voiced >= self.limits.barge_in_min:
            self._cancel_response("turn_detected")

    async def _speech_stopped(self, at_ms: int) -> None:
        utterance = self.utterance
        if utterance is None:
            return
        self.utterance = None
        if utterance.partial_task is not None:
            utterance.partial_task.cancel()
        now = time.perf_counter()
        self.marks = {"speech_stopped": now,
                      "final_started": utterance.early_at if utterance.early else now}
        await self.emit({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": at_ms,
                         "item_id": utterance.item_id})
        turn = self.config.turn_detection
        padding = turn.prefix_padding_ms if turn else 0
        audio = self._take(utterance.start_ms - padding, at_ms + 100)
        if utterance.ignored and self.response is not None:
            # The reply's first moments: most likely its own echo settling.
            self.buffer, self.buffer_start = [], self.clock
            utterance.drop_reply()
            return
        task = await self._add_user_audio(utterance.item_id, audio, utterance.early)
        if self.config.kind == "transcription" or turn is None:
            return
        self._spawn(self._after_utterance(utterance, task))

    async def _after_utterance(self, utterance: _Utterance, transcript: asyncio.Task[str]
                               ) -> None:
        turn = self.config.turn_detection
        stream, utterance.reply = utterance.reply, None
        try:
            text = await transcript
            response = self.response
            if response is not None and utterance.over_reply and not response.cancel:
                if is_backchannel(text) or not has_speech(text):
                    return  # "mhm" over the reply: it goes on
                if turn is not None and turn.interrupt_response:
                    self._cancel_response("turn_detected")
            if not has_speech(text) or turn is None or not turn.create_response:
                return
            if self.response is not None and self.response.task is not None:
                with contextlib.suppress(BaseException):
                    await self.response.task
            if self.response is None and not self.closed:
                self._start_response("audio" in self.config.output_modalities, stream)
                stream = None  # the response owns it now
        finally:
            if stream is not None:
                stream.drop()

    async def _partials(self, utterance: _Utterance) -> None:
        assert self.partials is not None
        text = PartialText()
        while True:
            await asyncio.sleep(self.limits.partial_interval)
            if utterance.early is not None or (
                    self.detector is not None and self.detector.silence_ms > 0):
                continue  # nothing new was said; leave the CPU to the final transcript
            turn = self.config.turn_detection
            padding = turn.prefix_padding_ms if turn else 0
            audio = self._take(utterance.start_ms - padding)
            covered_ms = self.clock * 1000 // RATE
            if len(audio) < RATE // 3:
                continue
            began = time.perf_counter()
            hypothesis = await self.partials.transcribe(audio, self.config.language)
            if self.utterance is not utterance:
                return  # the final is on its way
            delta = text.update(hypothesis)
            self.stats["partial_lag"].append(time.perf_counter() - began)
            if delta:
                await self.emit({"type": "conversation.item.input_audio_transcription.delta",
                                 "item_id": utterance.item_id, "content_index": 0,
                                 "delta": delta,
                                 # Not in OpenAI's schema: the input audio this partial
                                 # heard, so a client can measure how far behind it is.
                                 "audio_end_ms": covered_ms})

    # ------------------------------------------------------------------ responses
    def brain(self) -> Any:
        """The pipeline's brain, with this session's instructions as the system prompt
        where it is a chat model (a shallow copy: the same client and history)."""
        brain = self.stages.brain
        if self.config.instructions and hasattr(brain, "system_prompt"):
            brain = copy.copy(brain)
            brain.system_prompt = self.config.instructions
        return brain

    def _start_response(self, audio: bool, stream: ReplyStream | None = None) -> None:
        response = Response(new_id("resp"), new_id("item"),
                            {**self.marks, "response_created": time.perf_counter()},
                            stream=stream)
        self.marks = {}
        self.response = response
        response.task = self._spawn(self._respond(response, audio))

    def _cancel_response(self, reason: str) -> None:
        response = self.response
        if response is None or response.cancel:
            return
        response.reason = reason
        response.cancel.set(reason)
        self.output.clear()
        if response.task is not None:
            response.task.cancel()

    def _user_text(self) -> tuple[str, str | None]:
        for item in reversed(self.items):
            if item.get("role") != "user":
                continue
            part = item["content"][0]
            text = part.get("text") if part["type"] == "input_text" else part.get("transcript")
            return (text or "").strip(), item.get("language")
        return "", None

    async def _respond(self, response: Response, audio: bool) -> None:
        item = {"id": response.item_id, "object": "realtime.item", "type": "message",
                "role": "assistant", "status": "in_progress",
                "content": [{"type": "output_audio" if audio else "output_text",
                             "transcript" if audio else "text": ""}]}
        body = {"id": response.id, "object": "realtime.response", "status": "in_progress",
                "status_details": None, "output": [], "conversation_id": "conv_" + self.id,
                "output_modalities": ["audio"] if audio else ["text"], "usage": None}
        await self.emit({"type": "response.created", "response": dict(body)})
        self.output.state("thinking")
        spoken: list[_Spoken] = []
        status, details = "completed", None
        reply = ""
        user = ""
        try:
            for task in list(self.transcripts.values()):
                with contextlib.suppress(BaseException):
                    await task
            user, language = self._user_text()
            if not has_speech(user):
                raise StageError("input", "there is no user message to respond to",
                                 "no_input")
            previous = self.items[-1]["id"] if self.items else None
            self.items.append(item)
            await self.emit({"type": "response.output_item.added", "response_id": response.id,
                             "output_index": 0, "item": item})
            await self.emit({"type": "conversation.item.added", "previous_item_id": previous,
                             "item": item})
            part = "audio" if audio else "text"
            await self.emit({"type": "response.content_part.added", "response_id": response.id,
                             "item_id": item["id"], "output_index": 0, "content_index": 0,
                             "part": {"type": part, "transcript": ""} if audio
                             else {"type": "text", "text": ""}})
            await self.output.begin(response.id, item["id"])
            stream, response.stream = response.stream, None
            heard = self._heard(user, language)
            if stream is not None and (stream.heard != heard or stream.audio != audio):
                stream.drop()  # made for another text: start over
                stream = None
            if stream is None:
                stream = self._reply_stream(heard, audio).start()
            elif self.metrics is not None:
                self.metrics.replies_ahead.labels("used").inc()
            # Shielded: a cancel ends the response at once, while the speech engine finishes
            # the piece it is on in its thread (its output is dropped).
            inner = asyncio.create_task(self._speak_reply(response, stream, audio, spoken))
            inner.add_done_callback(lambda t: t.cancelled() or t.exception())
            try:
                reply = await asyncio.shield(inner)
            except asyncio.CancelledError:
                inner.cancel()
                raise
            if audio:
                await self.output.drain()
        except asyncio.CancelledError:
            status = "cancelled"
            details = {"type": "cancelled", "reason": response.reason}
        except StageError as exc:
            status = "failed"
            details = {"type": "failed", "error": {"type": "server_error", "code": exc.code,
                                                   "message": exc.message}}
        except Exception as exc:  # a bug: end the response, keep the session
            log.exception("response %s failed", response.id)
            status = "failed"
            details = {"type": "failed", "error": {"type": "server_error",
                                                   "code": "internal_error",
                                                   "message": f"{type(exc).__name__}: {exc}"}}
        finally:
            if response.cancel and status == "completed":
                status, details = "cancelled", {"type": "cancelled", "reason": response.reason}
            played = self.output.played() if audio else None
            stopped = time.perf_counter()
            self.output.clear()
            self.output.state("listening")
            await self._finish(response, item, body, audio, spoken, reply, user, status,
                               details, played)
            if response.reason == "turn_detected" and status == "cancelled":
                self.stats["barge_in_stop"].append(time.perf_counter() - stopped)
            if self.response is response:
                self.response = None

    def _heard(self, text: str, language: str | None) -> Heard:
        return Heard(text=text, language=language or self.config.language or "en",
                     language_probability=1.0, duration=0.0)

    def _reply_stream(self, heard: Heard, audio: bool) -> ReplyStream:
        limits = self.limits
        return ReplyStream(self.brain(), self.stages.speaker, self.id, heard,
                           voice=self.config.voice, audio=audio,
                           max_sentence_chars=limits.max_sentence_chars,
                           first_clause_chars=limits.first_clause_chars,
                           sentence_pause=limits.sentence_pause)

    async def _speak_reply(self, response: Response, stream: ReplyStream, audio: bool,
                           spoken: list[_Spoken]) -> str:
        """Play ``stream``: each sentence's transcript delta, then its audio at the pace it
        is heard, noting which sentences began playing (what the history keeps)."""
        clock = 0.0
        first = True
        began = False
        current = ""
        try:
            async for piece in stream:
                if stream.first_delta is not None:
                    response.marks.setdefault("brain_first_delta", stream.first_delta)
                if isinstance(piece, Sentence):
                    text = piece.text if first else " " + piece.text
                    first, began = False, False
                    delta_type = ("response.output_audio_transcript.delta" if audio
                                  else "response.output_text.delta")
                    await self.emit({"type": delta_type, "response_id": response.id,
                                     "item_id": response.item_id, "output_index": 0,
                                     "content_index": 0, "delta": text})
                    if not audio:
                        spoken.append(_Spoken(piece.text, 0.0, 0.0))
                    current = piece.text
                    continue
                if not began and piece.sentence_end:
                    continue  # a sentence that made no sound gets no pause either
                if response.audio_started is None:
                    response.audio_started = time.perf_counter()
                    response.marks["first_audio"] = response.audio_started
                    self.output.state("speaking")
                if not began:
                    spoken.append(_Spoken(current, clock, clock))
                    began = True
                await self.output.play(piece.samples)
                clock += len(piece.samples) / OUTPUT_RATE
                if not piece.sentence_end:
                    spoken[-1].end = clock
        finally:
            await stream.aclose()
        return stream.reply

    async def _finish(self, response: Response, item: dict[str, Any], body: dict[str, Any],
                      audio: bool, spoken: list[_Spoken], reply: str, user: str, status: str,
                      details: dict[str, Any] | None, played: float | None) -> None:
        heard = spoken if played is None else [s for s in spoken if s.start < played]
        text = " ".join(s.text for s in heard)
        key = "transcript" if audio else "text"
        item["content"][0][key] = text
        item["status"] = "completed" if status == "completed" else "incomplete"
        item["_spoken"] = spoken
        public = {k: v for k, v in item.items() if not k.startswith("_")}
        common = {"response_id": response.id, "item_id": item["id"], "output_index": 0,
                  "content_index": 0}
        output = []
        if item in self.items:
            if audio:
                await self.emit({"type": "response.output_audio.done", **common})
                await self.emit({"type": "response.output_audio_transcript.done", **common,
                                 "transcript": text})
            else:
                await self.emit({"type": "response.output_text.done", **common, "text": text})
            await self.emit({"type": "response.content_part.done", **common,
                             "part": {"type": "audio", "transcript": text} if audio
                             else {"type": "text", "text": text}})
            await self.emit({"type": "response.output_item.done", "response_id": response.id,
                             "output_index": 0, "item": public})
            await self.emit({"type": "conversation.item.done", "item": public})
            output = [public]
            if user and text:
                self.stages.brain.remember(self.id, user, text)
                item["_remembered"] = (user, text)
        done = dict(body, status=status, status_details=details, output=output,
                    usage={"total_tokens": 0, "input_tokens": 0, "output_tokens": 0})
        if played is not None:
            done["audio_played_seconds"] = round(played, 3)
        # Not in OpenAI's schema (clients ignore it): stage times in seconds from the end
        # of the user's speech (or from response.create), for benchmarks and dashboards.
        marks = response.marks
        base = marks.get("speech_stopped", marks["response_created"])
        if self.metrics is not None and "speech_stopped" in marks:
            for stage in RESPONSE_STAGES:
                if stage in marks:
                    self.metrics.response_seconds.labels(stage).observe(
                        max(0.0, marks[stage] - base))
        done["timings"] = {k: round(v - base, 4) for k, v in marks.items()}
        await self.emit({"type": "response.done", "response": done})


_WORDS = re.compile(r"[^\w\s]")


def is_backchannel(text: str) -> bool:
    """'Yeah.', 'Okay!', 'Mhm, mhm': acknowledgement, not a turn."""
    words = _WORDS.sub(" ", text.lower()).split()
    if not words or len(words) > 3:
        return False
    joined = " ".join(words)
    return joined in BACKCHANNELS or all(w in BACKCHANNELS for w in words)
