"""A reply being made: the brain's text cut into sentences, each sentence spoken, in tasks
that run ahead of playback by a bounded amount.

A response plays what a ``ReplyStream`` yields. The stream may start before the response
does: in the silence that may end the user's turn, as soon as the early final transcript
is known, so the first sentence's audio is ready when the turn detector decides. If the
user speaks on instead, the stream is cancelled and nothing of it was ever sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from secretary.audio import Resampler
from secretary.conversation.brain import SentenceSplitter
from secretary.conversation.stages import Cancel, Heard
from secretary.realtime.protocol import OUTPUT_RATE
from secretary.tts.text import has_speech

# Below this a sample is silence; the reply's first sound goes out without the engine's
# lead-in (Piper starts with up to ~0.1 s of near silence).
_QUIET = 10 ** (-50 / 20)


@dataclass(frozen=True)
class Sentence:
    text: str


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # 24 kHz mono float32
    sentence_end: bool = False  # the pause after a sentence


Piece = Sentence | Audio


class ReplyStream:
    """Sentences and their speech, produced ahead of the listener.

    ``heard`` is what the reply answers; ``audio`` False makes a text-only reply. The
    producer keeps at most ``ahead`` pieces waiting, so a long reply is not synthesized far
    past what has been played (a barge-in wastes little) while the next sentence is ready
    before the current one ends."""

    def __init__(self, brain: Any, speaker: Any, session_id: str, heard: Heard, *,
                 voice: str | None, audio: bool, max_sentence_chars: int,
                 first_clause_chars: int, sentence_pause: float, ahead: int = 4) -> None:
        self.brain, self.speaker = brain, speaker
        self.session_id, self.heard = session_id, heard
        self.voice, self.audio = voice, audio
        self.splitter = SentenceSplitter(max_sentence_chars, first_clause_chars)
        self.pause = np.zeros(int(sentence_pause * OUTPUT_RATE), np.float32)
        self.cancel = Cancel()
        self.reply = ""
        self.first_delta: float | None = None  # perf_counter of the brain's first text
        self.pieces: asyncio.Queue[Piece | BaseException | None] = asyncio.Queue(ahead)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> ReplyStream:
        self.task = asyncio.create_task(self._produce())
        return self

    async def aclose(self) -> None:
        self.cancel.set("dropped")
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task

    def drop(self) -> None:
        """Cancel without waiting (from synchronous code)."""
        self.cancel.set("dropped")
        if self.task is not None:
            self.task.cancel()

    async def __aiter__(self) -> AsyncIterator[Piece]:
        if self.task is None:
            self.start()
        while (piece := await self.pieces.get()) is not None:
            if isinstance(piece, BaseException):
                raise piece
            yield piece

    async def _produce(self) -> None:
        sentences: asyncio.Queue[str | None] = asyncio.Queue()
        thinker = asyncio.create_task(self._think(sentences))
        try:
            first = True
            while (text := await sentences.get()) is not None:
                if not has_speech(text):
                    continue
                await self.pieces.put(Sentence(text))
                if self.audio:
                    await self._speak(text, trim=first)
                first = False
            await thinker
            await self.pieces.put(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the consumer raises it (a StageError, a bug)
            await self.pieces.put(exc)
        finally:
            if not thinker.done():
                thinker.cancel()
                with contextlib.suppress(BaseException):
                    await thinker

    async def _think(self, sentences: asyncio.Queue[str | None]) -> None:
        try:
            async for delta in self.brain.reply(self.session_id, self.heard, self.cancel):
                if self.first_delta is None:
                    self.first_delta = time.perf_counter()
                self.reply += delta
                for sentence in self.splitter.feed(delta):
                    sentences.put_nowait(sentence)
            for sentence in self.splitter.flush():
                sentences.put_nowait(sentence)
        finally:
            sentences.put_nowait(None)

    async def _speak(self, text: str, *, trim: bool) -> None:
        resampler: Resampler | None = None
        async for samples, rate in self.speaker.speak(text, self.heard.language or "en",
                                                      self.voice, self.cancel):
            if resampler is None:
                resampler = Resampler(rate, OUTPUT_RATE)
            out = resampler.push(samples)
            if trim:
                loud = np.flatnonzero(np.abs(out) > _QUIET)
                if not len(loud):
                    continue
                out, trim = out[max(0, loud[0] - int(0.005 * OUTPUT_RATE)):], False
            if len(out):
                await self.pieces.put(Audio(out))
        tail = resampler.flush() if resampler is not None else None
        if tail is not None and len(tail) and not trim:
            await self.pieces.put(Audio(tail))
        if len(self.pause):
            await self.pieces.put(Audio(self.pause, sentence_end=True))
