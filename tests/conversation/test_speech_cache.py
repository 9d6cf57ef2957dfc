"""Sentences said again are played from what was kept, with the real Piper voice: the
telephone's greeting costs its synthesis once, not at every call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from secretary.conversation.local import LocalSpeaker
from secretary.conversation.stages import Cancel
from secretary.tts.piper import PiperEngine
from secretary.tts.service import TtsService
from tests.conftest import make_settings

GREETING = "Hello, this is the secretary. How can I help you?"


@pytest.fixture
def synthesized(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts Piper was asked to synthesize."""
    asked: list[str] = []
    real = PiperEngine.synthesize

    def counted(self: PiperEngine, request: object) -> Iterator[np.ndarray]:
        asked.append(request.text)  # type: ignore[attr-defined]
        return real(self, request)  # type: ignore[arg-type]

    monkeypatch.setattr(PiperEngine, "synthesize", counted)
    return asked


@pytest.fixture(scope="module")
def service(cache_dir: Path) -> TtsService:
    return TtsService(make_settings(cache_dir))


async def said(speaker: LocalSpeaker, text: str, cancel: Cancel | None = None,
               voice: str | None = None) -> np.ndarray:
    pieces = [samples async for samples, _ in speaker.speak(text, "en", voice,
                                                            cancel or Cancel())]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


async def test_a_sentence_said_again_is_played_from_what_was_kept(
        service: TtsService, synthesized: list[str]) -> None:
    speaker = LocalSpeaker(service, cache_size=4)
    first = await said(speaker, GREETING)
    assert len(first) > 22050  # over a second of speech
    first[:] = 0  # what a listener does with its copy does not reach the next one
    again = await said(speaker, GREETING)
    assert synthesized == [GREETING]
    assert np.abs(again).max() > 0.1
    third = await said(speaker, GREETING)
    assert np.array_equal(again, third) and synthesized == [GREETING]
    # Other words are synthesized; the same words in another voice are that voice's.
    piper = await said(speaker, "Goodbye.")
    assert synthesized == [GREETING, "Goodbye."]
    espeak = await said(speaker, "Goodbye.", voice="espeak:en-us")
    assert synthesized == [GREETING, "Goodbye."]  # (eSpeak NG is no Piper)
    assert len(espeak) != len(piper) or not np.array_equal(espeak, piper)


async def test_only_speech_synthesized_whole_is_kept(
        service: TtsService, synthesized: list[str]) -> None:
    speaker = LocalSpeaker(service, cache_size=4)
    cancel = Cancel()
    cancel.set("barge-in")
    assert len(await said(speaker, GREETING, cancel)) == 0
    assert len(await said(speaker, GREETING)) > 22050
    assert synthesized.count(GREETING) == 2  # the cancelled one was not kept
    # A listener that stops after the first piece (its generator is closed).
    long = "One sentence. " * 3 + "Then a much longer sentence follows it, and another."
    partly = speaker.speak(long, "en", None, Cancel())
    await partly.__anext__()
    await partly.aclose()
    whole = await said(speaker, long)
    assert synthesized.count(long) == 2
    # Played again as it was said, to the 16 bits it is kept in.
    replayed = await said(speaker, long)
    assert replayed.shape == whole.shape and np.abs(replayed - whole).max() <= 2 / 32768
    assert synthesized.count(long) == 2


async def test_the_least_recently_said_go_first_and_none_are_kept_at_zero(
        service: TtsService, synthesized: list[str]) -> None:
    speaker = LocalSpeaker(service, cache_size=2)
    for text in ("One.", "Two.", "One.", "Three.", "One.", "Two."):
        await said(speaker, text)
    # "Two." went when "Three." came ("One." had been said since); it is made again.
    assert synthesized == ["One.", "Two.", "Three.", "Two."]
    off = LocalSpeaker(service, cache_size=0)
    await said(off, "Four.")
    await said(off, "Four.")
    assert synthesized[-2:] == ["Four.", "Four."]
