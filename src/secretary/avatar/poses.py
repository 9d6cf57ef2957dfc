"""From speech audio to a track of poses: mouth shape and openness, blinks, head motion.

Openness follows the short-time loudness of the voice, normalised per clip between its
noise floor and its loud parts, so a quiet recording moves the mouth as much as a loud
one and pauses close it. The mouth shape comes from the spectrum of the same window:
energy high above 3.5 kHz (s, sh, f) keeps the teeth together with the lips spread,
energy concentrated low with little in the second-formant band means rounded lips
(oo, o, w), a strong second-formant band means spread lips (ee, i), and the rest is an
open 'ah'. Both are smoothed with a fast attack and a slower release, the way lips move.
Blinks come every few seconds at random (seeded by the audio, so a clip always renders
the same), and the head sways slowly with a nod on stressed syllables.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from secretary.avatar.engine import Pose

_BLINK_SECONDS = 0.2


@dataclass(frozen=True)
class MouthTrack:
    """Per video frame: openness 0..1 and the weights of open/wide/round (summing to 1)."""

    openness: np.ndarray  # (n,)
    weights: np.ndarray  # (n, 3) for VISEME_ORDER
    fps: float


VISEME_ORDER = ("open", "wide", "round")


def frame_count(samples: int, sample_rate: int, fps: float) -> int:
    """Frames for a clip: one per 1/fps of audio, the last partial one included."""
    return max(1, int(np.ceil(samples * fps / sample_rate - 1e-6)))


def _smooth(values: np.ndarray, attack: float, release: float) -> np.ndarray:
    """One-pole smoothing, faster when rising than when falling (per-frame factors)."""
    out = np.empty_like(values)
    level = float(values[0]) if len(values) else 0.0
    for i, value in enumerate(values):
        rate = attack if value > level else release
        level += rate * (float(value) - level)
        out[i] = level
    return out


def mouth_track(samples: np.ndarray, sample_rate: int, fps: float) -> MouthTrack:
    n = frame_count(len(samples), sample_rate, fps)
    hop = sample_rate / fps
    window = int(2 * hop)
    padded = np.concatenate([np.zeros(window // 2, np.float32), samples.astype(np.float32),
                             np.zeros(window, np.float32)])
    taper = np.hanning(window).astype(np.float32)
    starts = (np.arange(n) * hop + hop / 2).astype(int)  # window centred mid-frame
    frames = np.stack([padded[s:s + window] for s in starts]) * taper
    spectrum = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    freqs = np.fft.rfftfreq(window, 1.0 / sample_rate)

    def band(low: float, high: float) -> np.ndarray:
        return spectrum[:, (freqs >= low) & (freqs < high)].sum(axis=1) + 1e-12

    level = 10 * np.log10(band(80, min(8000, sample_rate / 2)) / window)
    floor = np.percentile(level, 10)
    loud = np.percentile(level, 95)
    span = max(loud - floor, 12.0)
    openness = np.clip((level - floor - 0.15 * span) / (0.7 * span), 0.0, 1.0) ** 0.8

    low = band(250, 900)
    mid = band(900, 2500)
    high = band(3500, min(8000, sample_rate / 2)) if sample_rate > 7000 else low * 0
    voiced = low + mid
    fricative = high / (high + voiced)
    low_share = low / voiced
    wide = np.clip((0.55 - low_share) / 0.3, 0.0, 1.0) + np.clip((fricative - 0.35) / 0.3,
                                                                  0.0, 1.0)
    round_ = np.clip((low_share - 0.8) / 0.15, 0.0, 1.0)
    open_ = np.clip(1.0 - wide - round_, 0.15, 1.0)
    weights = np.stack([open_, np.clip(wide, 0, 1), round_], axis=1)
    # Fricatives barely open the jaw.
    openness = openness * (1.0 - 0.5 * np.clip((fricative - 0.35) / 0.3, 0.0, 1.0))

    per_frame = 1.0 / fps
    attack = 1.0 - np.exp(-per_frame / 0.03)
    release = 1.0 - np.exp(-per_frame / 0.08)
    openness = _smooth(openness.astype(np.float32), attack, release)
    for k in range(weights.shape[1]):
        weights[:, k] = _smooth(weights[:, k].astype(np.float32), attack, release)
    weights /= weights.sum(axis=1, keepdims=True)
    return MouthTrack(openness.astype(np.float32), weights.astype(np.float32), fps)


def blink_track(n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Eye closure per frame: quick blinks every 2 to 6 seconds."""
    closure = np.zeros(n, dtype=np.float32)
    t = rng.uniform(0.8, 2.5)
    duration = _BLINK_SECONDS
    while t < n / fps:
        centre = t * fps
        half = duration * fps / 2
        frames = np.arange(max(0, int(centre - half) - 1), min(n, int(centre + half) + 2))
        shape = np.clip(1.0 - np.abs(frames - centre) / max(half, 1.0), 0.0, 1.0)
        closure[frames] = np.maximum(closure[frames], shape ** 0.6)
        t += rng.uniform(2.0, 6.0)
    return closure


def head_track(n: int, fps: float, openness: np.ndarray, rng: np.random.Generator
               ) -> np.ndarray:
    """(n, 3) yaw, pitch, roll in degrees: slow sway plus a small nod with the voice."""
    t = np.arange(n) / fps
    out = np.zeros((n, 3), dtype=np.float32)
    for axis, amplitude in enumerate((2.0, 1.2, 1.0)):
        for _ in range(2):
            freq = rng.uniform(0.08, 0.35)
            phase = rng.uniform(0, 2 * np.pi)
            out[:, axis] += amplitude / 2 * np.sin(2 * np.pi * freq * t + phase)
    emphasis = _smooth(openness, 0.15, 0.05)
    out[:, 1] += 1.5 * emphasis
    return out


def talking_poses(samples: np.ndarray, sample_rate: int, fps: float,
                  expression: str = "neutral", intensity: float = 1.0) -> Iterator[Pose]:
    """One pose per video frame for a clip (frame i shows time i / fps)."""
    track = mouth_track(samples, sample_rate, fps)
    n = len(track.openness)
    seed = int(np.abs(samples[: sample_rate]).sum() * 1000) % (2**32)
    rng = np.random.default_rng(seed)
    blinks = blink_track(n, fps, rng)
    head = head_track(n, fps, track.openness, rng)
    for i in range(n):
        weights = dict(zip(VISEME_ORDER, track.weights[i].tolist(), strict=True))
        yield Pose(
            expression=expression, intensity=intensity,
            mouth_open=float(track.openness[i]), viseme_weights=weights,
            blink=float(blinks[i]),
            yaw=float(head[i, 0]), pitch=float(head[i, 1]), roll=float(head[i, 2]),
        )
