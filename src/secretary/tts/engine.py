"""The text-to-speech engine interface.

An engine synthesizes one piece of text (a sentence, usually) into mono float32 audio at
its own sample rate. The service splits text into sentences, so streaming and the
"first audio early" behaviour come from the service, not from each engine; an engine
that can stream within a sentence (XTTS, Piper) may yield several chunks per sentence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Voice:
    """A voice an engine offers."""

    id: str  # the name clients send ("en_US-joe-medium", "de", "Claribel Dervla")
    engine: str  # "piper", "espeak", "xtts"
    languages: tuple[str, ...]  # ISO codes ("en", "de", "zh-cn")
    clones: bool = False  # accepts a reference clip instead of a fixed voice
    description: str = ""


@dataclass(frozen=True)
class SpeakerReference:
    """A voice-cloning reference clip, decoded; ``key`` identifies it for latent caching."""

    samples: np.ndarray  # mono float32
    sample_rate: int
    key: str  # content hash of the clip


@dataclass(frozen=True)
class SynthesisRequest:
    text: str  # one sentence or short paragraph
    language: str
    voice: str | None = None  # None: the engine's default voice for the language
    speed: float = 1.0
    reference: SpeakerReference | None = None
    options: dict[str, float] = field(default_factory=dict)


class TtsEngine(Protocol):
    name: str

    @property
    def sample_rate(self) -> int: ...

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...

    def voices(self) -> list[Voice]: ...

    def synthesize(self, request: SynthesisRequest) -> Iterator[np.ndarray]:
        """Yield float32 mono chunks at ``sample_rate``; at least one for non-empty text."""
        ...
