"""A WebRTC call's media: the reply's audio track and the secretary's face as a video
track, both paced by one clock, and the playout queue the session's ``Output`` fills.

One clock: the audio track plays the reply in 20 ms frames paced by the wall clock from
its start; the video track shows, at each of its frames, the face for the sound about to
play (``Playout.coming``): its picture takes longer to reach the far end than the sound.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from av import AudioFrame, VideoFrame

from secretary.audio import Resampler, to_pcm16
from secretary.conversation.face import FacePoser, FaceRenderer
from secretary.realtime.protocol import OUTPUT_RATE

FRAME_SECONDS = 0.02
# The track plays at Opus's own rate, in stereo 20 ms frames: those go to aiortc's encoder
# as they are, where 24 kHz mono frames waited in its resampler for a whole 48 kHz frame
# (20 ms more before every reply's first sound).
TRACK_RATE = 48000
# The face shows the next 60 ms of sound. By arrival at an aiortc peer (bench/realtime.py's
# lip sync) the lips were 80 ms behind the sound when they showed the 40 ms just played,
# and 30-40 ms behind with this lead: a picture is rendered, VP8-coded and held a whole frame
# by the receiver, a sound frame only Opus-coded.
FACE_LEAD = 0.06
FRAME = int(TRACK_RATE * FRAME_SECONDS)  # samples per audio frame


class Clock:
    """The media clock both tracks pace themselves by (wall time since the first frame)."""

    def __init__(self) -> None:
        self.start: float | None = None

    def begin(self) -> float:
        if self.start is None:
            self.start = time.perf_counter()
        return self.start

    async def wait_until(self, seconds: float) -> None:
        delay = self.begin() + seconds - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


class Playout:
    """Reply audio waiting to be played (pushed at the protocol's 24 kHz, kept at the
    track's rate), and how much of the response was played."""

    def __init__(self) -> None:
        self.resampler = Resampler(OUTPUT_RATE, TRACK_RATE)
        self.queue: deque[np.ndarray] = deque()
        self.queued = 0
        self.played = 0  # samples of the current response played
        self.state = "listening"
        self.changed = asyncio.Event()

    def push(self, samples: np.ndarray) -> None:
        self._add(self.resampler.push(samples))

    def end(self) -> None:
        """The reply's audio is all pushed: the resampler's last samples too."""
        self._add(self.resampler.flush())
        self.resampler = Resampler(OUTPUT_RATE, TRACK_RATE)

    def _add(self, samples: np.ndarray) -> None:
        if len(samples):
            self.queue.append(samples)
            self.queued += len(samples)

    def pull(self) -> np.ndarray:
        out = np.zeros(FRAME, np.float32)
        filled = 0
        while filled < FRAME and self.queue:
            head = self.queue[0]
            take = min(FRAME - filled, len(head))
            out[filled:filled + take] = head[:take]
            filled += take
            if take == len(head):
                self.queue.popleft()
            else:
                self.queue[0] = head[take:]
        self.queued -= filled
        self.played += filled
        if filled or not self.queue:
            self.changed.set()
        return out

    def coming(self, seconds: float) -> np.ndarray:
        """The next ``seconds`` of audio queued to play (less at a reply's end)."""
        wanted, parts = int(seconds * TRACK_RATE), []
        for head in self.queue:
            if wanted <= 0:
                break
            parts.append(head[:wanted])
            wanted -= len(parts[-1])
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def clear(self) -> None:
        self.queue.clear()
        self.queued = 0
        self.resampler = Resampler(OUTPUT_RATE, TRACK_RATE)


class RtcOutput:
    """The session's ``Output`` over the audio track: synthesis waits while more than
    ``lead`` seconds are queued, so the response lasts as long as its audio plays and a
    cancel drops at most that much."""

    def __init__(self, playout: Playout, lead: float = 0.2) -> None:
        self.playout = playout
        self.lead = lead

    async def begin(self, response_id: str, item_id: str) -> None:
        self.playout.played = 0

    async def play(self, samples: np.ndarray) -> None:
        self.playout.push(samples)
        while self.playout.queued > self.lead * TRACK_RATE:
            self.playout.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.playout.changed.wait(), 0.1)

    def played(self) -> float:
        return self.playout.played / TRACK_RATE

    def clear(self) -> None:
        self.playout.clear()

    async def drain(self) -> None:
        self.playout.end()
        while self.playout.queued > 0:
            self.playout.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.playout.changed.wait(), 0.1)

    def state(self, name: str) -> None:
        self.playout.state = name


def audio_frame(samples: np.ndarray, index: int, rate: int, stereo: bool = False
                ) -> AudioFrame:
    """Frame ``index`` of a track in frames of ``len(samples)``: mono float32 -> s16, mono
    or both channels alike."""
    pcm = np.frombuffer(to_pcm16(samples), np.int16)
    if stereo:
        pcm = np.repeat(pcm, 2)  # packed: left and right of each sample side by side
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16",
                                    layout="stereo" if stereo else "mono")
    frame.sample_rate = rate
    frame.pts = index * len(samples)
    frame.time_base = fractions.Fraction(1, rate)
    return frame


def media_tracks() -> tuple[type, type]:
    """The track classes (ReplyAudio, Face), made once aiortc is imported."""
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class ReplyAudio(MediaStreamTrack):
        kind = "audio"

        def __init__(self, playout: Playout, clock: Clock) -> None:
            super().__init__()
            self.playout, self.clock, self.index = playout, clock, 0

        async def recv(self) -> AudioFrame:
            if self.readyState != "live":
                raise MediaStreamError
            media_time = self.index * FRAME_SECONDS
            await self.clock.wait_until(media_time)
            frame = audio_frame(self.playout.pull(), self.index, TRACK_RATE,
                                stereo=True)
            self.index += 1
            return frame

    class Face(MediaStreamTrack):
        kind = "video"

        def __init__(self, playout: Playout, clock: Clock, renderer: FaceRenderer,
                     fps: int, executor: ThreadPoolExecutor) -> None:
            super().__init__()
            self.playout, self.clock, self.renderer = playout, clock, renderer
            self.fps, self.executor, self.index = fps, executor, 0
            self.poser = FacePoser(fps)
            self.cpu = 0.0  # seconds of render time, for the benchmark

        async def recv(self) -> VideoFrame:
            if self.readyState != "live":
                raise MediaStreamError
            media_time = self.index / self.fps
            await self.clock.wait_until(media_time)
            pose = self.poser.pose(self.playout.coming(FACE_LEAD), self.playout.state)
            began = time.thread_time()
            loop = asyncio.get_running_loop()
            image, spent = await loop.run_in_executor(self.executor, _render,
                                                      self.renderer, pose)
            self.cpu += spent + time.thread_time() - began
            frame = VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = int(self.index * 90000 / self.fps)
            frame.time_base = fractions.Fraction(1, 90000)
            self.index += 1
            return frame

    return ReplyAudio, Face


def _render(renderer: FaceRenderer, pose: Any) -> tuple[np.ndarray, float]:
    began = time.thread_time()
    image = renderer.render(pose)
    return image, time.thread_time() - began
