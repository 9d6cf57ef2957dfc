"""The stages of a turn, each a small interface with engines behind it.

A stage is async and yields as its work progresses, so the turn runner can pass each
piece on at once (the first sentence to speech before the reply is finished, the first
audio to the avatar and to the listener before the next sentence is synthesized). Each
stage has an in-process implementation (``local``: the engines called directly, no HTTP
hop and no re-encoding between stages) and one over HTTP (``remote``: the services on a
GPU box or behind a load balancer); the runner does not know which it drives.

Cancellation: every stage takes a ``Cancel`` and checks it between pieces of blocking
work (a sentence, a video frame), so a cancelled turn stops using the CPU within one
piece, not at the end of the reply.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from secretary.errors import SecretaryError


class Cancel:
    """A cancellation flag shared by the turn's tasks and the threads they run in."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str = "cancelled") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


class TurnCancelled(Exception):
    """Raised inside a stage's blocking work when its turn was cancelled."""


@dataclass(frozen=True)
class Heard:
    """The final transcript of an utterance."""

    text: str
    language: str
    language_probability: float
    duration: float  # seconds of audio
    window: int = 30  # seconds of encoder window used (30: the full one)


@dataclass(frozen=True)
class Speech:
    """A piece of synthesized speech, on the turn's audio clock."""

    samples: np.ndarray  # mono float32
    sample_rate: int
    sentence: int  # which sentence it belongs to
    start: float  # seconds from the start of the reply audio
    first: bool  # the sentence's first piece

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass(frozen=True)
class Frame:
    """One video frame of the avatar, shown at ``time`` on the reply's audio clock."""

    jpeg: bytes
    time: float
    sentence: int


class StageError(Exception):
    """A stage failed in a way the listener should be told about (not a bug)."""

    def __init__(self, stage: str, message: str, code: str = "stage_failed") -> None:
        super().__init__(message)
        self.stage = stage
        self.message = message
        self.code = code

    @classmethod
    def of(cls, stage: str, failure: SecretaryError, code: str | None = None) -> StageError:
        """A failed call to another service (as ``web.client`` tells it) as the stage's
        error: its message, and its code unless ``code`` is given."""
        return cls(stage, failure.message, code or failure.code)


class Transcriber(Protocol):
    """Audio of one whole utterance (16 kHz mono float32) to its final transcript."""

    def describe(self) -> dict[str, Any]: ...

    async def transcribe(self, samples: np.ndarray, language: str | None,
                         cancel: Cancel) -> Heard: ...


class Brain(Protocol):
    """What the secretary answers: text deltas, as they are produced."""

    def describe(self) -> dict[str, Any]: ...

    def reply(self, session: str, heard: Heard, cancel: Cancel) -> AsyncIterator[str]: ...

    async def answer(self, text: str, language: str | None,
                     history: list[tuple[str, str]]) -> str:
        """The whole reply at once, to a conversation the caller keeps (``history``: (role,
        content) pairs, oldest first); failures are ``SecretaryError``s (HTTP errors)."""
        ...

    def remember(self, session: str, user: str, assistant: str) -> None:
        """Keep a finished (or interrupted) exchange in the session's history."""
        ...

    def revise(self, session: str, user: str, before: str, after: str) -> None:
        """Cut a kept exchange's reply to what was heard (``after``; empty: forget it)."""
        ...


class Speaker(Protocol):
    """Text of one sentence to speech chunks."""

    def describe(self) -> dict[str, Any]: ...

    def speak(self, text: str, language: str, voice: str | None,
              cancel: Cancel) -> AsyncIterator[tuple[np.ndarray, int]]:
        """Yield (float32 mono samples, sample rate) as they are synthesized."""
        ...


@dataclass(frozen=True)
class Look:
    """Who the avatar is and how it looks while talking."""

    photo: bytes  # the portrait (analysed once, then cached by content hash)
    expression: str = "neutral"
    intensity: float = 1.0


class Animator(Protocol):
    """Speech to avatar frames on the same clock."""

    def describe(self) -> dict[str, Any]: ...

    async def prepare(self, portrait: bytes) -> str:
        """Analyse a portrait (a 4xx ``SecretaryError`` where it is not a face); returns the
        engine's key for it."""
        ...

    def frames(self, look: Look, speech: Speech, cancel: Cancel) -> AsyncIterator[Frame]: ...
