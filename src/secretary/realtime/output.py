"""Where a response's audio goes, at the pace it is heard.

``Output`` is what a response plays into: over WebSocket ``PacedEvents`` (the protocol's own
audio deltas), over WebRTC the call's audio track (``media.RtcOutput``). Either way the
server knows how much of the reply the listener has heard, so a barge-in or a cancel keeps
only that much in the history.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import numpy as np

from secretary import g711
from secretary.audio import Resampler, to_pcm16
from secretary.realtime.protocol import G711_RATE, OUTPUT_RATE
from secretary.realtime.server_events import OutputAudioDelta, ServerEvent


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

    def __init__(self, emit: Callable[[ServerEvent], Awaitable[None]],
                 lead: float = 0.3) -> None:
        self.emit = emit
        self.lead = lead
        self.started: float | None = None
        self.sent = 0.0
        self.ids: tuple[str, str] = ("", "")
        self.format = "pcm"  # the session's output format: pcm, pcmu or pcma
        self.resampler: Resampler | None = None  # to G.711's 8 kHz

    async def begin(self, response_id: str, item_id: str) -> None:
        self.ids = (response_id, item_id)
        self.started, self.sent = None, 0.0
        self.resampler = None if self.format == "pcm" else Resampler(OUTPUT_RATE, G711_RATE)

    def _encode(self, piece: np.ndarray) -> bytes:
        if self.resampler is None:
            return to_pcm16(piece)
        return g711.encode(self.format, self.resampler.push(piece))

    async def play(self, samples: np.ndarray) -> None:
        step = int(self.chunk * OUTPUT_RATE)
        for start in range(0, len(samples), step):
            piece = samples[start:start + step]
            if self.started is None:
                self.started = time.perf_counter()
            wait = self.sent - self.lead - (time.perf_counter() - self.started)
            if wait > 0:
                await asyncio.sleep(wait)
            response_id, item_id = self.ids
            await self.emit(OutputAudioDelta(
                response_id=response_id, item_id=item_id,
                delta=base64.b64encode(self._encode(piece)).decode()))
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
