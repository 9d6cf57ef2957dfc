"""The speech-to-text engine interface and the result types every engine returns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

Task = Literal["transcribe", "translate"]


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: list[Word] | None = None
    seek: int = 0
    tokens: list[int] = field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0


@dataclass(frozen=True)
class TranscriptionInfo:
    language: str  # ISO 639-1 code
    language_probability: float
    duration: float  # seconds of input audio
    duration_after_vad: float


@dataclass(frozen=True)
class TranscriptionOptions:
    """What a caller may choose per request. ``None`` means the engine's configured default."""

    language: str | None = None  # None: detect
    task: Task = "transcribe"
    # Language a translation is written in; None: English (all Whisper can translate into).
    target_language: str | None = None
    word_timestamps: bool = False
    initial_prompt: str | None = None
    temperature: float | None = None  # None: the usual fallback schedule 0.0, 0.2, ... 1.0
    vad_filter: bool | None = None
    beam_size: int | None = None
    # Seconds of audio the encoder sees at once (Whisper's is 30); a shorter window encodes
    # a short clip several times faster. None: the model's own.
    window_seconds: int | None = None
    max_new_tokens: int | None = None  # cap on tokens decoded per window (a runaway guard)


@dataclass(frozen=True)
class Transcription:
    info: TranscriptionInfo
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()


class SttEngine(Protocol):
    """An engine turns 16 kHz mono float32 audio into segments.

    ``transcribe`` returns the info at once and the segments lazily, so callers can stream
    them as they are decoded. Engines are blocking; the service runs them in a thread pool.
    """

    name: str

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """Model, device and compute type, for ``/health`` and ``/v1/models``."""
        ...

    def languages(self) -> frozenset[str]: ...

    def check(self, options: TranscriptionOptions) -> TranscriptionOptions:
        """A request's options as this engine will run them, or an InvalidRequestError that
        says what the engine supports (a language pair it cannot translate, say). Runs on
        the event loop before the request is queued, so it must be quick."""
        ...

    def transcribe(
        self, audio: np.ndarray, options: TranscriptionOptions
    ) -> tuple[TranscriptionInfo, Iterator[Segment]]: ...


def collect(result: tuple[TranscriptionInfo, Iterator[Segment]]) -> Transcription:
    info, segments = result
    return Transcription(info, list(segments))
