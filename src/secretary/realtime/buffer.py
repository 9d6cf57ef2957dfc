"""The input audio buffer: the user's audio since the last commit, at 16 kHz (what the VAD
and Whisper take), on one clock that counts every sample the session has received.

Audio comes in as the protocol's 24 kHz PCM16 (``input_audio_buffer.append``) or as a
WebRTC microphone track at its own rate, and is resampled once, on the way in. Turn
detection hears it next; outside speech the buffer keeps only what the prefix padding may
need, so a session that listens for an hour holds a second of audio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from secretary import g711
from secretary.audio import Resampler, from_pcm16
from secretary.realtime.protocol import (
    INPUT_RATE,
    ProtocolError,
    decode_pcm16,
    format_rate,
    new_id,
)
from secretary.realtime.server_events import InputAudioBufferCleared
from secretary.realtime.vad import RATE

if TYPE_CHECKING:
    from secretary.realtime.client_events import (
        InputAudioBufferAppend,
        InputAudioBufferClear,
        InputAudioBufferCommit,
    )
    from secretary.realtime.session import RealtimeSession


class InputBuffer:
    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.resampler = Resampler(INPUT_RATE, RATE)
        self.track_resampler: Resampler | None = None
        self.chunks: list[np.ndarray] = []  # 16 kHz input since the last commit
        self.start = 0  # samples on the input clock where the buffer begins
        self.clock = 0  # samples of input received (16 kHz)

    @property
    def held(self) -> int:
        """Samples in the buffer."""
        return self.clock - self.start

    @property
    def now_ms(self) -> int:
        return self.clock * 1000 // RATE

    # ------------------------------------------------------------------ client events
    async def append(self, event: InputAudioBufferAppend) -> None:
        fmt = self.session.config.input_format
        raw = decode_pcm16(event.audio, self.session.limits.max_event_bytes, fmt == "pcm")
        rate = format_rate(fmt)
        if self.resampler.from_rate != rate:  # the format changed (session.update)
            self.resampler = Resampler(rate, RATE)
        samples = from_pcm16(raw) if fmt == "pcm" else g711.decode(fmt, raw)
        await self.push(self.resampler.push(samples))

    async def commit(self, event: InputAudioBufferCommit) -> None:
        audio = self.take()
        if len(audio) < RATE // 10:
            raise ProtocolError("the input buffer holds less than 100 ms of audio",
                                code="input_audio_buffer_commit_empty")
        turns = self.session.turns
        item_id = turns.utterance.item_id if turns.utterance else new_id("item")
        turns.utterance = None
        self.reset()
        await self.session.conversation.add_user_audio(item_id, audio)

    async def clear(self, event: InputAudioBufferClear) -> None:
        self.reset()
        self.session.turns.drop_utterance()
        await self.session.emit(InputAudioBufferCleared())

    # ------------------------------------------------------------------ audio
    async def push_track(self, samples: np.ndarray, rate: int) -> None:
        """Microphone audio from a media track, mono float32 at ``rate``."""
        if self.track_resampler is None or self.track_resampler.from_rate != rate:
            self.track_resampler = Resampler(rate, RATE)
        await self.push(self.track_resampler.push(samples))

    async def push(self, samples: np.ndarray) -> None:
        """16 kHz audio into the buffer, then to turn detection."""
        if not len(samples):
            return
        session = self.session
        limit = session.limits.max_buffer_seconds
        # Without turn detection only the client empties the buffer.
        if session.turns.detector is None and self.held + len(samples) > limit * RATE:
            raise ProtocolError(f"the input buffer holds at most {limit:g} s; commit or "
                                "clear it", code="input_audio_buffer_full")
        self.chunks.append(samples)
        self.clock += len(samples)
        await session.turns.hear(samples)

    def take(self, start_ms: int | None = None, end_ms: int | None = None) -> np.ndarray:
        """The buffer's audio from ``start_ms`` to ``end_ms`` on the input clock."""
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        first = 0 if start_ms is None else max(0, start_ms * RATE // 1000 - self.start)
        last = len(audio) if end_ms is None else max(first, end_ms * RATE // 1000
                                                     - self.start)
        return audio[first:last]

    def trim(self, padding_ms: int) -> None:
        """Outside speech keep only what the prefix padding may need."""
        keep = int((padding_ms + 500) * RATE / 1000)
        if self.held > 2 * keep:
            audio = np.concatenate(self.chunks)[-keep:]
            self.chunks = [audio]
            self.start = self.clock - len(audio)

    def reset(self) -> None:
        """Empty: the next audio begins a new buffer."""
        self.chunks, self.start = [], self.clock
