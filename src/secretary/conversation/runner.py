"""One conversation turn as a stream of events.

    audio -> final transcript -> reply text (streamed) -> speech, sentence by sentence
          -> avatar frames on the speech's clock

The stages run as concurrent tasks joined by queues: the reply's first sentence goes to
speech while the brain is still writing the second, and each piece of speech goes to the
listener and to the avatar at once. Every event carries ``t``, seconds since the turn
started (the end of the upload); the turn's timings feed the Prometheus histograms.

Cancellation is first class: ``Turn.interrupt`` (barge-in, Stop, a closed page) sets a flag
that every stage checks between pieces of work and cancels the tasks, so the server stops
synthesizing and rendering within one sentence or frame. With the seconds of reply audio
the listener actually heard, the history keeps only what was said before the interruption.

Driven live (the realtime service): feed microphone frames to ``endpointing`` (Silero) and
start a turn with the utterance when it ends; on barge-in call ``interrupt`` with the
seconds of reply audio actually played, and start the next turn. ``audio`` pieces and
``frame`` events carry their place on the reply's audio clock, so a sender can pace them
in real time and render the face as the audio goes out.

Events (``type``): ``turn``, ``transcript``, ``heard_nothing``, ``reply`` (the text as it
grows), ``sentence`` (one goes to speech), ``audio`` (MP3 stream pieces, base64, with their
place on the audio clock), ``frame`` (a JPEG, base64, shown at ``time`` on that clock),
``error`` (naming the stage), ``done`` (outcome and timings).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from secretary import audio
from secretary.conversation.brain import SentenceSplitter
from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.stages import (
    Animator,
    Brain,
    Cancel,
    Heard,
    Look,
    Speaker,
    Speech,
    StageError,
    Transcriber,
    TurnCancelled,
)
from secretary.tts.text import has_speech

log = logging.getLogger(__name__)

AUDIO_FORMAT = "mp3"  # what browsers append to a MediaSource and play as it arrives
HEARD_NOTHING = "I didn't catch any words. Try again, a little closer to the microphone."


@dataclass(frozen=True)
class PipelineOptions:
    sentence_pause: float = 0.2  # seconds of silence after each sentence
    max_sentence_chars: int = 250
    first_clause_chars: int = 24  # 0: the first sentence is never cut at a clause


@dataclass
class TurnInput:
    samples: np.ndarray  # the utterance, 16 kHz mono float32
    session: str = "default"
    language: str | None = None  # None: detected
    voice: str | None = None  # None: the routed voice of the language
    look: Look | None = None  # None: no avatar frames
    decode_seconds: float = 0.0  # how long the upload took to decode (for the timings)


@dataclass
class _Spoken:
    sentence: str
    start: float  # seconds on the reply's audio clock
    end: float


class Pipeline:
    """The stages, wired; ``start`` makes a turn."""

    def __init__(self, transcriber: Transcriber, brain: Brain, speaker: Speaker,
                 animator: Animator | None, metrics: TurnMetrics,
                 options: PipelineOptions | None = None) -> None:
        self.transcriber = transcriber
        self.brain = brain
        self.speaker = speaker
        self.animator = animator
        self.metrics = metrics
        self.options = options or PipelineOptions()

    def describe(self) -> dict[str, Any]:
        return {
            "transcribe": self.transcriber.describe(),
            "brain": self.brain.describe(),
            "speech": self.speaker.describe(),
            "avatar": self.animator.describe() if self.animator else None,
        }

    def load(self) -> None:
        """Load every in-process engine (blocking; at start-up)."""
        for stage in (self.transcriber, self.speaker, self.animator):
            load = getattr(stage, "load", None)
            if load is not None:
                load()

    async def aclose(self) -> None:
        for stage in (self.transcriber, self.brain, self.speaker, self.animator):
            close = getattr(stage, "aclose", None)
            if close is not None:
                await close()

    def start(self, request: TurnInput, started: float | None = None) -> Turn:
        return Turn(self, request, started)


@dataclass
class _State:
    heard: Heard | None = None
    reply: str = ""
    sentences: int = 0
    synthesized: int = 0
    spoken: list[_Spoken] = field(default_factory=list)
    failed: bool = False


class Turn:
    def __init__(self, pipeline: Pipeline, request: TurnInput,
                 started: float | None = None) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.pipeline = pipeline
        self.request = request
        self.started = time.perf_counter() if started is None else started
        self.cancel = Cancel()
        self.timings: dict[str, float] = {}
        if request.decode_seconds:
            self.timings["decode"] = round(request.decode_seconds, 4)
        self.played: float | None = None
        self.outcome = "running"
        self._state = _State()

    # ------------------------------------------------------------------ control
    def interrupt(self, played_seconds: float | None = None, reason: str = "interrupted") -> None:
        """Stop the turn (barge-in, Stop). ``played_seconds``: how much of the reply audio
        the listener heard; the history keeps the sentences begun before that."""
        if played_seconds is not None:
            self.played = played_seconds
        self.cancel.set(reason)

    @property
    def spoken_text(self) -> str:
        """The reply as far as it was (or will be, for a finished turn) heard."""
        spoken = self._state.spoken
        if self.played is not None:
            spoken = [s for s in spoken if s.start < self.played]
        return " ".join(s.sentence for s in spoken)

    def _now(self) -> float:
        return time.perf_counter() - self.started

    def _mark(self, name: str, metric: str | None = None) -> float:
        value = self._now()
        self.timings.setdefault(name, round(value, 4))
        if metric:
            self.pipeline.metrics.observe(metric, value)
        return value

    # ------------------------------------------------------------------ events
    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The turn's events as they happen. Closing this iterator early (the client went
        away) cancels the turn's remaining work."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def emit(event: dict[str, Any]) -> None:
            event["t"] = round(self._now(), 4)
            queue.put_nowait(event)

        driver = asyncio.create_task(self._drive(emit))
        driver.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            if not driver.done():
                self.interrupt(reason="the client went away")
                driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver

    async def _drive(self, emit: Callable[[dict[str, Any]], None]) -> None:
        metrics = self.pipeline.metrics
        if "decode" in self.timings:
            metrics.observe("decode", self.timings["decode"])
        emit({"type": "turn", "id": self.id, "session": self.request.session})
        try:
            await self._run(emit)
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            raise
        except TurnCancelled:
            self.outcome = "cancelled"
        except StageError as exc:
            self.outcome = "error"
            emit({"type": "error", "stage": exc.stage, "code": exc.code, "message": exc.message})
        except Exception as exc:  # a bug: say so instead of ending the stream silently
            log.exception("turn %s failed", self.id)
            self.outcome = "error"
            emit({"type": "error", "stage": "internal", "code": "internal_error",
                  "message": f"the turn failed: {type(exc).__name__}: {exc}"})
        finally:
            self._finish(emit)

    def _finish(self, emit: Callable[[dict[str, Any]], None]) -> None:
        state, metrics = self._state, self.pipeline.metrics
        if self.outcome == "running":
            self.outcome = ("error" if state.failed else
                            "cancelled" if self.cancel else "completed")
        metrics.turns.labels(self.outcome).inc()
        metrics.sentences.labels("skipped").inc(max(0, state.sentences - state.synthesized))
        self.timings["total"] = round(self._mark("total", "turn"), 4)
        heard = state.heard
        if heard is not None and heard.text and state.spoken:
            self.pipeline.brain.remember(self.request.session, heard.text, self.spoken_text)
        emit({"type": "done", "outcome": self.outcome, "timings": dict(self.timings),
              "reply": state.reply, "spoken": self.spoken_text})

    async def _run(self, emit: Callable[[dict[str, Any]], None]) -> None:
        pipeline, request, state = self.pipeline, self.request, self._state
        began = self._now()
        heard = await pipeline.transcriber.transcribe(request.samples, request.language,
                                                      self.cancel)
        self._mark("transcribe")
        pipeline.metrics.observe("transcribe", self._now() - began)
        state.heard = heard
        emit({"type": "transcript", "text": heard.text, "language": heard.language,
              "language_probability": round(heard.language_probability, 4),
              "duration": round(heard.duration, 3), "window": heard.window})
        if not has_speech(heard.text):
            self.outcome = "heard_nothing"
            emit({"type": "heard_nothing", "message": HEARD_NOTHING})
            return

        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        speech: asyncio.Queue[Speech | None] = asyncio.Queue()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._think(heard, sentences, emit))
            group.create_task(self._speak(heard, sentences, speech, emit))
            group.create_task(self._animate(speech, emit))

    async def _think(self, heard: Heard, sentences: asyncio.Queue[str | None],
                     emit: Callable[[dict[str, Any]], None]) -> None:
        pipeline, state = self.pipeline, self._state
        options = pipeline.options
        splitter = SentenceSplitter(options.max_sentence_chars, options.first_clause_chars)
        began = self._now()

        def send(found: list[str]) -> None:
            for sentence in found:
                if not has_speech(sentence):
                    continue
                if state.sentences == 0:
                    self._mark("first_sentence")
                emit({"type": "sentence", "index": state.sentences, "text": sentence})
                state.sentences += 1
                sentences.put_nowait(sentence)

        try:
            async for delta in pipeline.brain.reply(self.request.session, heard, self.cancel):
                if not state.reply:
                    self._mark("brain_first_token")
                    pipeline.metrics.observe("brain_first_token", self._now() - began)
                state.reply += delta
                emit({"type": "reply", "delta": delta, "text": state.reply})
                send(splitter.feed(delta))
            send(splitter.flush())
            pipeline.metrics.observe("brain", self._now() - began)
            self._mark("brain")
            if not has_speech(state.reply):
                raise StageError("brain", "the chat model gave an empty reply", "empty_reply")
        except StageError as exc:
            state.failed = True
            emit({"type": "error", "stage": exc.stage, "code": exc.code, "message": exc.message})
        finally:
            sentences.put_nowait(None)

    async def _speak(self, heard: Heard, sentences: asyncio.Queue[str | None],
                     speech: asyncio.Queue[Speech | None],
                     emit: Callable[[dict[str, Any]], None]) -> None:
        pipeline, state, request = self.pipeline, self._state, self.request
        encoder: audio.StreamEncoder | None = None
        rate = 0
        clock = 0.0
        sequence = 0

        def send(data: bytes, sentence: int, start: float, duration: float) -> None:
            nonlocal sequence
            if not data:
                return
            if sequence == 0:
                self._mark("first_audio", "first_audio")
            emit({"type": "audio", "seq": sequence, "sentence": sentence,
                  "format": AUDIO_FORMAT, "sample_rate": rate, "start": round(start, 4),
                  "duration": round(duration, 4), "data": base64.b64encode(data).decode()})
            sequence += 1

        try:
            index = 0
            while (sentence := await sentences.get()) is not None:
                if self.cancel:
                    continue
                began = self._now()
                start = clock
                async for samples, chunk_rate in pipeline.speaker.speak(
                        sentence, heard.language or "en", request.voice, self.cancel):
                    if encoder is None:
                        rate = chunk_rate
                        encoder = audio.StreamEncoder(AUDIO_FORMAT, rate)
                    if chunk_rate != rate:
                        samples = audio.resample(samples, chunk_rate, rate)
                    if clock == start:
                        pipeline.metrics.observe("speech_first_chunk", self._now() - began)
                    piece = Speech(samples, rate, index, clock, clock == start)
                    data = await asyncio.to_thread(encoder.write, samples)
                    send(data, index, clock, piece.duration)
                    speech.put_nowait(piece)
                    clock += piece.duration
                if self.cancel:
                    break
                pipeline.metrics.observe("speech_sentence", self._now() - began)
                pipeline.metrics.sentences.labels("synthesized").inc()
                state.synthesized += 1
                state.spoken.append(_Spoken(sentence, start, clock))
                pause = np.zeros(int(rate * pipeline.options.sentence_pause), np.float32)
                if encoder is not None and len(pause):
                    send(await asyncio.to_thread(encoder.write, pause), index, clock,
                         len(pause) / rate)
                    clock += len(pause) / rate
                index += 1
            if encoder is not None and not self.cancel:
                send(await asyncio.to_thread(encoder.close), index - 1, clock, 0.0)
                emit({"type": "audio_end", "duration": round(clock, 4)})
        except StageError as exc:
            # No speech, no turn: say why, and stop the brain writing for nobody.
            state.failed = True
            emit({"type": "error", "stage": exc.stage, "code": exc.code, "message": exc.message})
            self.cancel.set("speech failed")
        finally:
            speech.put_nowait(None)

    async def _animate(self, speech: asyncio.Queue[Speech | None],
                       emit: Callable[[dict[str, Any]], None]) -> None:
        pipeline, look = self.pipeline, self.request.look
        animator = pipeline.animator
        failed = animator is None or look is None
        while (piece := await speech.get()) is not None:
            if failed or self.cancel:
                continue  # keep draining, so the speech task never waits on the avatar
            assert animator is not None and look is not None
            try:
                async for frame in animator.frames(look, piece, self.cancel):
                    if "first_frame" not in self.timings:
                        self._mark("first_frame", "first_frame")
                    pipeline.metrics.frames.inc()
                    emit({"type": "frame", "time": round(frame.time, 4),
                          "sentence": frame.sentence,
                          "data": base64.b64encode(frame.jpeg).decode()})
            except StageError as exc:
                # Without a face the reply is still worth hearing.
                failed = True
                emit({"type": "error", "stage": exc.stage, "code": exc.code,
                      "message": exc.message, "fatal": False})
