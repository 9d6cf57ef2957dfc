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
from dataclasses import dataclass
from typing import Any

import numpy as np

from secretary import audio
from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.reply import ReplyOptions, ReplyStream, Sentence
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
from secretary.validation import has_speech

log = logging.getLogger(__name__)

AUDIO_FORMAT = "mp3"  # what browsers append to a MediaSource and play as it arrives
HEARD_NOTHING = "I didn't catch any words. Try again, a little closer to the microphone."


@dataclass(frozen=True)
class PipelineOptions:
    sentence_pause: float = 0.2  # seconds of silence after each sentence
    max_sentence_chars: int = 250
    first_clause_chars: int = 24  # 0: the first sentence is never cut at a clause
    first_words: int = 0  # 0: the first sentence is never cut at a word


@dataclass
class TurnInput:
    samples: np.ndarray  # the utterance, 16 kHz mono float32
    session: str = "default"
    language: str | None = None  # None: detected
    voice: str | None = None  # None: the routed voice of the language
    look: Look | None = None  # None: no avatar frames
    decode_seconds: float = 0.0  # how long the upload took to decode (for the timings)


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
        self._stream: ReplyStream | None = None

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
        return self._stream.heard_text(self.played) if self._stream else ""

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
        if heard is not None and heard.text and self._stream and self._stream.spoken:
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

        began = self._now()

        def text(delta: str) -> None:
            if not state.reply:
                self._mark("brain_first_token")
                pipeline.metrics.observe("brain_first_token", self._now() - began)
            state.reply += delta
            emit({"type": "reply", "delta": delta, "text": state.reply})

        def sentence(found: Sentence) -> None:
            if state.sentences == 0:
                self._mark("first_sentence")
            emit({"type": "sentence", "index": found.index, "text": found.text})
            state.sentences += 1

        options = pipeline.options
        stream = ReplyStream(pipeline.brain, pipeline.speaker, request.session, heard,
                             voice=request.voice, cancel=self.cancel, on_text=text,
                             on_sentence=sentence,
                             options=ReplyOptions(options.max_sentence_chars,
                                                  options.first_clause_chars,
                                                  options.sentence_pause,
                                                  first_words=options.first_words))
        self._stream = stream
        speech: asyncio.Queue[Speech | None] = asyncio.Queue()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._speak(stream, speech, emit, began))
            group.create_task(self._animate(speech, emit))

    async def _speak(self, stream: ReplyStream, speech: asyncio.Queue[Speech | None],
                     emit: Callable[[dict[str, Any]], None], began: float) -> None:
        """The reply pipeline's pieces out as events: each sentence, its speech as pieces of
        one MP3 stream on the reply's clock, and to the avatar."""
        pipeline, state = self.pipeline, self._state
        metrics = pipeline.metrics
        encoder: audio.StreamEncoder | None = None
        rate = 0
        sequence = 0
        sentence_began = 0.0
        first_piece = False

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
            async for piece in stream:
                if isinstance(piece, Sentence):  # its speech follows
                    sentence_began, first_piece = self._now(), True
                    continue
                if self.cancel:
                    continue
                if encoder is None:
                    rate = piece.rate
                    encoder = audio.StreamEncoder(AUDIO_FORMAT, rate)
                data = await asyncio.to_thread(encoder.write, piece.samples)
                send(data, piece.sentence, piece.start, piece.duration)
                if piece.sentence_end:
                    metrics.observe("speech_sentence", self._now() - sentence_began)
                    metrics.sentences.labels("synthesized").inc()
                    state.synthesized += 1
                    continue
                if first_piece:
                    metrics.observe("speech_first_chunk", self._now() - sentence_began)
                speech.put_nowait(Speech(piece.samples, piece.rate, piece.sentence,
                                         piece.start, first_piece))
                first_piece = False
            brain_done = (stream.brain_done or time.perf_counter()) - self.started
            metrics.observe("brain", brain_done - began)
            self.timings.setdefault("brain", round(brain_done, 4))
            if not has_speech(stream.reply) and not self.cancel:
                raise StageError("brain", "the chat model gave an empty reply", "empty_reply")
            if encoder is not None and not self.cancel:
                send(await asyncio.to_thread(encoder.close), max(0, state.sentences - 1),
                     stream.clock, 0.0)
                emit({"type": "audio_end", "duration": round(stream.clock, 4)})
        except StageError as exc:
            # No speech, no turn: say why, and stop the brain writing for nobody.
            state.failed = True
            emit({"type": "error", "stage": exc.stage, "code": exc.code, "message": exc.message})
            if exc.stage != "brain":
                self.cancel.set("speech failed")
        finally:
            await stream.aclose()
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
