"""A real aiortc peer for the WebRTC tests and the benchmark: microphones that say real
clips at real time pace, the offer posted as SDP, the data channel's events recorded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from secretary.audio import resample
from secretary.realtime.media import audio_frame
from tests.realtime.support import RATE, silence

# A browser's microphone: 20 ms frames of 48 kHz stereo, what its Opus encoder takes as they
# are. (Frames at the clips' 24 kHz would wait in aiortc's encoder's resampler for a whole
# 48 kHz frame: 20 ms more before the server hears each one.)
MIC_RATE = 48000
STEP = MIC_RATE // 50


class Microphone(MediaStreamTrack):
    """20 ms frames paced by the wall clock from the first one; ``piece`` says what (48 kHz
    samples)."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.index = 0
        self.start = 0.0

    def piece(self) -> np.ndarray:
        raise NotImplementedError

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.index == 0:
            self.start = time.perf_counter()
        await asyncio.sleep(max(0.0, self.start + self.index * 0.02 - time.perf_counter()))
        piece = np.zeros(STEP, np.float32)
        part = self.piece()
        piece[:len(part)] = part
        frame = audio_frame(piece, self.index, MIC_RATE, stereo=True)
        self.index += 1
        return frame


class ClipTrack(Microphone):
    """A microphone that says a clip (24 kHz) after ``delay`` seconds, then stays silent."""

    def __init__(self, samples: np.ndarray, delay: float = 1.0) -> None:
        super().__init__()
        self.samples = resample(np.concatenate([silence(delay), samples]), RATE, MIC_RATE)

    def piece(self) -> np.ndarray:
        return self.samples[self.index * STEP:(self.index + 1) * STEP]


class CueTrack(Microphone):
    """A microphone that stays silent until ``cue`` is set, then says a clip (24 kHz)."""

    def __init__(self, samples: np.ndarray, cue: asyncio.Event) -> None:
        super().__init__()
        self.samples, self.cue = resample(samples, RATE, MIC_RATE), cue
        self.position = 0

    def piece(self) -> np.ndarray:
        if not self.cue.is_set():
            return self.samples[:0]
        part = self.samples[self.position:self.position + STEP]
        self.position += STEP
        return part


async def frames(track: Any) -> AsyncIterator[Any]:
    """A received track's frames until it ends."""
    while True:
        try:
            yield await track.recv()
        except MediaStreamError:
            return


def record_events(channel: Any, events: list[dict[str, Any]]) -> asyncio.Event:
    """Append the channel's events (with their arrival as ``_at``) to ``events``; the
    returned event is set at the first ``response.done``."""
    done = asyncio.Event()

    @channel.on("message")
    def on_message(message: str) -> None:
        event = json.loads(message)
        event["_at"] = time.perf_counter()
        events.append(event)
        if event["type"] == "response.done":
            done.set()

    return done


async def offer(pc: RTCPeerConnection, url: str, **request: Any) -> httpx.Response:
    """Post ``pc``'s offer as SDP to ``url``; a 201's answer becomes its remote side."""
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=60) as client:
        answer = await client.post(url, content=pc.localDescription.sdp,
                                   headers={"Content-Type": "application/sdp"}, **request)
    if answer.status_code == 201:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))
    return answer
