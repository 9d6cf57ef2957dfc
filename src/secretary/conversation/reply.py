"""The reply pipeline: the brain's text cut into sentences, each sentence spoken, in a task
that runs ahead of the listener by a bounded amount. One for every user of a reply: the
browser's turns (``runner.Turn``), Live mode and the Realtime API (``realtime``), and what
comes next.

The consumer iterates the stream (``Sentence`` and ``Audio`` pieces, in order) and plays or
sends the audio; the stream keeps the reply's own clock and which sentences began where on
it, so once the listener's position is known (``heard(played)``) what was heard follows.
Cancellation is a signal (``cancel``): the brain and the speaker check it between pieces of
work, and ``drop`` or ``aclose`` end the task. A stream may start before anyone listens
(the realtime service starts it in the silence that may end the user's turn), and if it
is dropped unheard nothing of it was ever sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from secretary import audio
from secretary.conversation.sentences import Fragment, SentenceSplitter
from secretary.conversation.stages import Brain, Cancel, Heard, Speaker
from secretary.validation import has_speech

# Below this a sample is silence; the reply's first sound goes out without the engine's
# lead-in (Piper starts with up to ~0.1 s of near silence).
_QUIET = 10 ** (-50 / 20)


@dataclass(frozen=True)
class ReplyOptions:
    max_sentence_chars: int = 250
    first_clause_chars: int = 24  # 0: the first sentence is never cut at a clause
    sentence_pause: float = 0.2  # seconds of silence after each sentence
    ahead: int = 4  # pieces made ahead of the listener at most
    first_words: int = 0  # 0: the first sentence is never cut at a word


@dataclass(frozen=True)
class Sentence:
    text: str
    index: int = 0
    flows_on: bool = False  # cut at a word: the next piece follows without a pause


@dataclass(frozen=True)
class Audio:
    samples: np.ndarray  # mono float32 at ``rate``
    rate: int
    sentence: int  # the sentence it belongs to
    start: float  # seconds on the reply's audio clock
    sentence_end: bool = False  # the pause after a sentence

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate


Piece = Sentence | Audio


@dataclass
class Spoken:
    text: str
    start: float  # seconds on the reply's audio clock
    end: float


class Words:
    """A brain that says given words: what the server says on its own (a reminder that
    falls due), through the same sentences, speech and pacing as any reply."""

    def __init__(self, text: str) -> None:
        self.text = text

    def describe(self) -> dict[str, Any]:
        return {"source": "announcement", "model": None}

    async def reply(self, session: str, heard: Heard, cancel: Cancel) -> AsyncIterator[str]:
        yield self.text

    async def answer(self, text: str, language: str | None,
                     history: list[tuple[str, str]]) -> str:
        return self.text

    def remember(self, session: str, user: str, assistant: str) -> None:
        pass

    def revise(self, session: str, user: str, before: str, after: str) -> None:
        pass


class ReplyStream:
    """Sentences and their speech, made ahead of the listener.

    ``heard`` is what the reply answers; ``audio`` False makes a text-only reply. ``rate``
    resamples the speech to one rate (None: the engine's own); ``trim_lead`` starts the
    first sound without the engine's quiet lead-in. The producer keeps at most
    ``options.ahead`` pieces waiting, so a long reply is not synthesized far past what has
    been played (a barge-in wastes little) while the next sentence is ready before the
    current one ends."""

    def __init__(self, brain: Brain, speaker: Speaker, session_id: str, heard: Heard, *,
                 voice: str | None, audio: bool = True, options: ReplyOptions | None = None,
                 rate: int | None = None, trim_lead: bool = False,
                 cancel: Cancel | None = None,
                 on_text: Callable[[str], None] | None = None,
                 on_sentence: Callable[[Sentence], None] | None = None) -> None:
        self.brain, self.speaker = brain, speaker
        self.session_id, self.heard = session_id, heard
        self.voice, self.audio = voice, audio
        self.options = options or ReplyOptions()
        self.rate, self.trim_lead = rate, trim_lead
        self.cancel = cancel if cancel is not None else Cancel()
        self.on_text = on_text  # each piece of the brain's text, as it comes
        self.on_sentence = on_sentence  # each sentence as the brain's text completes it
        self.splitter = SentenceSplitter(self.options.max_sentence_chars,
                                         self.options.first_clause_chars,
                                         self.options.first_words)
        self.reply = ""
        self.first_delta: float | None = None  # perf_counter of the brain's first text
        self.brain_done: float | None = None  # perf_counter when the brain's text ended
        self.spoken: list[Spoken] = []  # sentences whose sound was handed on, on the clock
        self.clock = 0.0  # seconds of audio handed on
        self.pieces: asyncio.Queue[Piece | BaseException | None] = asyncio.Queue(
            self.options.ahead)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> ReplyStream:
        self.task = asyncio.create_task(self._produce())
        return self

    async def aclose(self) -> None:
        """Stop making the reply (if it is not made yet) and wait until it has stopped."""
        if self.task is not None and not self.task.done():
            self.cancel.set("dropped")
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task

    def drop(self) -> None:
        """Cancel without waiting (from synchronous code)."""
        if self.task is None or not self.task.done():
            self.cancel.set("dropped")
        if self.task is not None:
            self.task.cancel()

    def heard_text(self, played: float | None = None) -> str:
        """The reply as far as the listener heard it: the sentences that had begun before
        ``played`` seconds of its audio (None: all that were handed on)."""
        spoken = self.spoken if played is None else [s for s in self.spoken
                                                      if s.start < played]
        return " ".join(s.text for s in spoken)

    async def __aiter__(self) -> AsyncIterator[Piece]:
        """The pieces in order; the clock and ``spoken`` follow what was handed on. A
        sentence that made no sound gets no pause, and no place in ``spoken``."""
        if self.task is None:
            self.start()
        current: Sentence | None = None
        began = False
        while (piece := await self.pieces.get()) is not None:
            if isinstance(piece, BaseException):
                raise piece
            if isinstance(piece, Sentence):
                current, began = piece, False
                if not self.audio:
                    self.spoken.append(Spoken(piece.text, 0.0, 0.0))
                yield piece
                continue
            if piece.sentence_end and not began:
                continue
            if not began and current is not None:
                self.spoken.append(Spoken(current.text, self.clock, self.clock))
                began = True
            piece = Audio(piece.samples, piece.rate, piece.sentence, self.clock,
                          piece.sentence_end)
            self.clock += piece.duration
            if not piece.sentence_end and self.spoken:
                self.spoken[-1].end = self.clock
            yield piece

    async def _produce(self) -> None:
        sentences: asyncio.Queue[Sentence | None] = asyncio.Queue()
        thinker = asyncio.create_task(self._think(sentences))
        try:
            follows = False  # the previous piece was cut at a word
            while (sentence := await sentences.get()) is not None:
                await self.pieces.put(sentence)
                if self.audio and not self.cancel:
                    await self._speak(sentence, trim=follows or (
                        self.trim_lead and sentence.index == 0))
                follows = sentence.flows_on
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

    async def _think(self, sentences: asyncio.Queue[Sentence | None]) -> None:
        found = 0

        def send(texts: list[str]) -> None:
            nonlocal found
            for text in texts:
                if not has_speech(text):
                    continue
                sentence = Sentence(text, found, isinstance(text, Fragment))
                found += 1
                if self.on_sentence is not None:
                    self.on_sentence(sentence)
                sentences.put_nowait(sentence)

        try:
            async for delta in self.brain.reply(self.session_id, self.heard, self.cancel):
                if self.first_delta is None:
                    self.first_delta = time.perf_counter()
                self.reply += delta
                if self.on_text is not None:
                    self.on_text(delta)
                send(self.splitter.feed(delta))
            send(self.splitter.flush())
        finally:
            self.brain_done = time.perf_counter()
            sentences.put_nowait(None)

    async def _speak(self, sentence: Sentence, *, trim: bool) -> None:
        """The sentence's speech as pieces, then the pause after it. ``trim`` starts it
        without the engine's quiet lead-in; a piece cut at a word also ends without its
        quiet tail and without the pause, so the next piece follows as one sentence."""
        resampler: Any = None
        rate = self.rate
        index = sentence.index
        held: np.ndarray | None = None  # a fragment's last audio, its tail trimmed at the end
        async for samples, engine_rate in self.speaker.speak(
                sentence.text, self.heard.language or "en", self.voice, self.cancel):
            if rate is None:
                rate = engine_rate
            if resampler is None:
                resampler = audio.Resampler(engine_rate, rate)
            out = resampler.push(samples)
            if trim:
                loud = np.flatnonzero(np.abs(out) > _QUIET)
                if not len(loud):
                    continue
                out, trim = out[max(0, loud[0] - int(0.005 * rate)):], False
            if not len(out):
                continue
            if sentence.flows_on:
                if held is not None:
                    await self.pieces.put(Audio(held, rate, index, 0.0))
                held = out
                continue
            await self.pieces.put(Audio(out, rate, index, 0.0))
        if resampler is None or rate is None:
            return
        tail = resampler.flush()
        if sentence.flows_on:
            if held is not None or (len(tail) and not trim):
                whole = tail if held is None else np.concatenate([held, tail])
                loud = np.flatnonzero(np.abs(whole) > _QUIET)
                if len(loud):
                    end = min(len(whole), loud[-1] + int(0.02 * rate))
                    await self.pieces.put(Audio(whole[:end], rate, index, 0.0))
            return
        if len(tail) and not trim:
            await self.pieces.put(Audio(tail, rate, index, 0.0))
        pause = np.zeros(int(self.options.sentence_pause * rate), np.float32)
        if len(pause):
            await self.pieces.put(Audio(pause, rate, index, 0.0, sentence_end=True))
