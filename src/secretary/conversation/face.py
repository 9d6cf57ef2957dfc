"""The secretary's face, live: a pose per video frame from the reply audio being played
at that moment, and an idle face (blinks, slight head motion) while it listens.

Plain Python over the avatar engine (``render(key, pose, size)``); the WebRTC video track
asks for a frame at a time on the audio track's clock and gets the face for the audio that
is playing then, so lips and sound stay together.
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any

import numpy as np

from secretary.avatar.engine import Pose

# Mouth from loudness: speech RMS of about 0.1 (-20 dBFS) opens it fully.
_OPEN_DB_LOW, _OPEN_DB_HIGH = -45.0, -20.0


def openness(samples: np.ndarray) -> float:
    if len(samples) == 0:
        return 0.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    if rms <= 0:
        return 0.0
    db = 20 * math.log10(rms)
    return min(1.0, max(0.0, (db - _OPEN_DB_LOW) / (_OPEN_DB_HIGH - _OPEN_DB_LOW)))


class FacePoser:
    """Successive poses for successive frames: the mouth follows the audio with a fast
    attack and a slower release (as a jaw does); blinks every few seconds; the head drifts
    a little; the expression follows the state."""

    def __init__(self, fps: int, seed: int = 0) -> None:
        self.fps = fps
        self.rng = random.Random(seed)
        self.mouth = 0.0
        self.frame = 0
        self.next_blink = self._blink_gap()
        self.blink_frames = 0

    def _blink_gap(self) -> int:
        return int(self.rng.uniform(2.5, 5.0) * self.fps)

    def pose(self, audio: np.ndarray, state: str) -> Pose:
        self.frame += 1
        target = openness(audio)
        rate = 0.7 if target > self.mouth else 0.35
        self.mouth += (target - self.mouth) * rate
        blink = 0.0
        self.next_blink -= 1
        if self.next_blink <= 0:
            self.blink_frames = max(3, self.fps // 8)
            self.next_blink = self._blink_gap()
        if self.blink_frames > 0:
            half = max(3, self.fps // 8) / 2
            blink = 1.0 - abs(self.blink_frames - half) / half
            self.blink_frames -= 1
        t = self.frame / self.fps
        yaw = 2.0 * math.sin(t * 0.5) + 0.8 * math.sin(t * 1.3)
        pitch = 1.2 * math.sin(t * 0.7 + 1.0)
        if state == "thinking":
            pitch -= 3.0  # a glance up while it thinks
        expression, intensity = ("happy", 0.35) if state == "listening" else ("neutral", 1.0)
        if state == "speaking":
            pitch += 2.0 * self.mouth
        return Pose(expression=expression, intensity=intensity, viseme="open",
                    mouth_open=round(self.mouth, 3), blink=max(0.0, blink),
                    yaw=yaw, pitch=pitch, roll=0.0)


class FaceRenderer:
    """The avatar engine with one portrait prepared; ``render`` is blocking (a few ms)."""

    def __init__(self, engine: Any, portrait: bytes, size: int) -> None:
        self.engine = engine
        self.portrait = portrait
        self.size = size
        self.key = engine.prepare(portrait).key
        self._lock = threading.Lock()

    def render(self, pose: Pose) -> np.ndarray:
        """An RGB frame."""
        from secretary.errors import NotFoundError

        with self._lock:
            try:
                image = self.engine.render(self.key, pose, self.size).image
            except NotFoundError:  # evicted from the engine's cache by other work
                self.key = self.engine.prepare(self.portrait).key
                image = self.engine.render(self.key, pose, self.size).image
        rgb = image[:, :, ::-1]
        height, width = rgb.shape[:2]
        # Video encoders want even sides.
        return np.ascontiguousarray(rgb[: height - height % 2, : width - width % 2])
