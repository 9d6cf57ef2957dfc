"""A fast final transcript for short utterances.

Whisper encodes a 30 s window whatever the clip's length; a spoken turn lasts a few
seconds, so most of that encoding is padding. A window fitted to the utterance encodes
several times faster, but a window the model was not trained on makes it loop on some
clips. So the fitted window is guarded: the decode is capped at a number of tokens per
second of audio, and a result that hits the cap, repeats itself or compresses like a loop
is thrown away and the clip decoded again with the full window.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

import numpy as np

from secretary.audio import WHISPER_SAMPLE_RATE
from secretary.stt.engine import SttEngine, Transcription, TranscriptionOptions, collect

FULL_WINDOW = 30


@dataclass(frozen=True)
class FastFinalPolicy:
    enabled: bool = True
    min_window: int = 15  # seconds; bench/fast_final.py: 10 cost Spanish a word, 15 none
    margin: float = 1.0  # seconds of window beyond the clip
    tokens_per_second: float = 8.0  # fast speech is about 4-5 tokens a second
    max_compression: float = 2.4  # Whisper's own loop threshold
    max_repeats: int = 3  # the same four words this often means a loop

    def window(self, duration: float) -> int | None:
        """The window for a clip, or None where the full one is used."""
        if not self.enabled:
            return None
        window = max(self.min_window, math.ceil(duration + self.margin))
        return window if window < FULL_WINDOW else None

    def token_cap(self, duration: float) -> int:
        return int(math.ceil(self.tokens_per_second * duration)) + 12


@dataclass(frozen=True)
class Final:
    transcription: Transcription
    window: int  # seconds of window the kept result was decoded with
    fell_back: bool  # the fitted window's result was rejected


def looks_like_a_loop(result: Transcription, cap: int, policy: FastFinalPolicy) -> bool:
    tokens = sum(len(s.tokens) for s in result.segments)
    if tokens >= cap:
        return True
    text = result.text
    if text and len(text) > 24:
        encoded = text.encode("utf-8")
        if len(encoded) / len(zlib.compress(encoded)) > policy.max_compression:
            return True
    words = text.lower().split()
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - 3):
        gram = tuple(words[i:i + 4])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= policy.max_repeats:
            return True
    return False


def final_transcript(engine: SttEngine, samples: np.ndarray, options: TranscriptionOptions,
                     policy: FastFinalPolicy) -> Final:
    """Blocking: the transcript of a whole utterance, by the fitted window where it holds."""
    duration = len(samples) / WHISPER_SAMPLE_RATE
    window = policy.window(duration)
    if window is not None:
        cap = policy.token_cap(duration)
        fast = replace(options, window_seconds=window, max_new_tokens=cap)
        result = collect(engine.transcribe(samples, fast))
        if not looks_like_a_loop(result, cap, policy):
            return Final(result, window, fell_back=False)
        return Final(collect(engine.transcribe(samples, options)), FULL_WINDOW, fell_back=True)
    return Final(collect(engine.transcribe(samples, options)), FULL_WINDOW, fell_back=False)
