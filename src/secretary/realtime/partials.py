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
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from secretary.conversation.stages import Cancel, Transcriber
from secretary.realtime.server_events import TranscriptionDelta
from secretary.realtime.vad import RATE

if TYPE_CHECKING:
    from secretary.realtime.session import RealtimeSession
    from secretary.realtime.turn_taking import Utterance


class PartialTranscriber:
    def __init__(self, transcriber: Transcriber) -> None:
        self.transcriber = transcriber
        self.engine = getattr(transcriber, "engine", None)  # the in-process Whisper, if any
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="realtime-partials")

    def _local(self, samples: np.ndarray, language: str | None) -> str:
        from secretary.stt.engine import TranscriptionOptions, collect

        duration = len(samples) / RATE
        window = min(30, max(2, math.ceil(duration + 1)))
        # Greedy, no timestamps, a token cap: a partial is a guide, the final is exact.
        options = TranscriptionOptions(language=language, temperature=0.0, beam_size=1,
                                       vad_filter=False, window_seconds=window,
                                       max_new_tokens=int(8 * duration) + 8)
        assert self.engine is not None
        return collect(self.engine.transcribe(samples, options)).text

    async def transcribe(self, samples: np.ndarray, language: str | None) -> str:
        if self.engine is not None and hasattr(self.engine, "transcribe"):
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
