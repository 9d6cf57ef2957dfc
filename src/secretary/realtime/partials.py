"""Live partial transcripts while the user speaks.

Whisper re-reads the utterance so far every few hundred milliseconds in a window fitted to
it (a 3 s utterance encodes in a 4 s window, several times faster than the full 30 s), in
one worker thread. The loop always takes the newest audio and never queues: when the CPU
falls behind, partials are dropped (they come less often), finals never are.

The protocol's deltas only append, so each partial adds the words past those already sent,
holding back the last word (it may be cut mid-word); the final transcript replaces them.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from secretary.conversation.stages import Cancel, Transcriber
from secretary.realtime.server_events import TranscriptionDelta
from secretary.realtime.vad import RATE

if TYPE_CHECKING:
    from secretary.realtime.ahead import Utterance
    from secretary.realtime.session import RealtimeSession


class PartialTranscriber:
    def __init__(self, transcriber: Transcriber) -> None:
        self.transcriber = transcriber
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="realtime-partials")

    def _local(self, samples: np.ndarray, language: str | None) -> str:
        return self.transcriber.partial_text(samples, language)  # type: ignore[attr-defined]

    async def transcribe(self, samples: np.ndarray, language: str | None) -> str:
        # An in-process transcriber reads partials quickly in this thread; a remote one
        # gives its final transcript of the audio so far.
        if hasattr(self.transcriber, "partial_text"):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, self._local, samples, language)
        heard = await self.transcriber.transcribe(samples, language, Cancel())
        return heard.text

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class PartialText:
    """Turns successive hypotheses into append-only deltas."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def update(self, hypothesis: str) -> str:
        words = hypothesis.split()
        stable = words[:-1]  # the last word may still be growing
        if len(stable) <= len(self.sent):
            return ""
        new = stable[len(self.sent):]
        self.sent.extend(new)
        return (" " if len(self.sent) > len(new) else "") + " ".join(new)


async def follow_partials(session: RealtimeSession, utterance: Utterance) -> None:
    """Partial transcripts of ``utterance`` while the user speaks, as the protocol's
    transcription deltas; ends when the utterance does (its task is cancelled)."""
    assert session.partials is not None
    text = PartialText()
    while True:
        await asyncio.sleep(session.limits.partial_interval)
        detector = session.turns.detector
        if utterance.early is not None or (detector is not None and detector.silence_ms > 0):
            continue  # nothing new was said; leave the CPU to the final transcript
        turn = session.config.turn_detection
        padding = turn.prefix_padding_ms if turn else 0
        audio = session.input.take(utterance.start_ms - padding)
        covered_ms = session.input.now_ms
        if len(audio) < RATE // 3:
            continue
        began = time.perf_counter()
        hypothesis = await session.partials.transcribe(audio, session.config.language)
        if session.turns.utterance is not utterance:
            return  # the final is on its way
        delta = text.update(hypothesis)
        session.stats["partial_lag"].append(time.perf_counter() - began)
        if delta:
            await session.emit(TranscriptionDelta(item_id=utterance.item_id, delta=delta,
                                                  audio_end_ms=covered_ms))
