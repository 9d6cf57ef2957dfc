"""Side by side with the servers Home Assistant users run today, on the same models:
``wyoming-faster-whisper`` on the Whisper base folder Secretary assembles, and
``wyoming-piper`` on the packaged ``en_US-joe-medium`` files, both started here offline.
The same input must give the same transcript, and comparable audio (same format, same
length within a tenth, the same words heard back)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from secretary.catalog import ModelStore
from secretary.stt.whisper import WhisperEngine
from tests.helpers import SPEECH, wer
from tests.stt.test_accuracy import WER_CEILING, clip_wer
from tests.tts.test_api import ENGLISH, PARAGRAPH
from tests.wyoming_api.client import pcm16, run, synthesize, synthesize_streaming, transcribe
from tests.wyoming_api.conftest import Wyoming
from tests.wyoming_api.reference import faster_whisper_server, piper_server
from tests.wyoming_api.test_tts import hear

CLIPS = ["en_jfk_ask_not.flac", "en_cmu_arctic_axb_a0006.wav", "de_thorsten_schoko_bonbons.wav",
         "fr_sr_dictee.flac", "es_leopard_arenas.wav"]


@pytest.fixture(scope="module")
def reference_whisper(wyoming: Wyoming, whisper_engine: WhisperEngine) -> Iterator[int]:
    folder = ModelStore(wyoming.settings.models_dir).whisper_path("base")
    with faster_whisper_server(folder, whisper_engine.compute_type) as port:
        yield port


@pytest.fixture(scope="module")
def reference_piper() -> Iterator[int]:
    with piper_server() as port:
        yield port


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name", CLIPS)
def test_same_transcript_as_wyoming_faster_whisper(name: str, wyoming: Wyoming,
                                                   reference_whisper: int) -> None:
    clip = SPEECH / name
    pcm = pcm16(clip)
    ours = run(transcribe(wyoming.stt_port, pcm))
    theirs = run(transcribe(reference_whisper, pcm))
    assert ours.event.type == theirs.event.type == "transcript"
    # The reference joins segments with a space and keeps Whisper's leading one.
    assert ours.event.data["text"] == _words(theirs.event.data["text"])
    assert clip_wer(clip, ours.event.data["text"]) <= WER_CEILING[name]


def _trimmed(samples: np.ndarray, rate: int) -> np.ndarray:
    """Without the silence before the first and after the last sound."""
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    return samples[loud[0]:loud[-1] + 1] if len(loud) else samples[:0]


@pytest.mark.parametrize("text", [ENGLISH, PARAGRAPH], ids=["two-sentences", "paragraph"])
def test_comparable_audio_to_wyoming_piper(text: str, wyoming: Wyoming, reference_piper: int,
                                           whisper: WhisperEngine) -> None:
    ours = run(synthesize(wyoming.tts_port, text))
    theirs = run(synthesize(reference_piper, text))
    assert ours.types == theirs.types == ["audio-start", "audio-stop"]
    assert ours.events[0].data == theirs.events[0].data  # 22050 Hz, 16-bit, mono
    length = len(_trimmed(ours.samples, ours.rate)) / len(_trimmed(theirs.samples, theirs.rate))
    assert 0.9 <= length <= 1.1, f"length ratio {length:.3f}"
    heard_ours = hear(whisper, ours.samples, ours.rate, "en")
    heard_theirs = hear(whisper, theirs.samples, theirs.rate, "en")
    assert wer(text, heard_ours, "en") <= 0.1, heard_ours
    assert wer(heard_theirs, heard_ours, "en") <= 0.1, (heard_ours, heard_theirs)


def test_streaming_synthesis_events_match_wyoming_piper(wyoming: Wyoming,
                                                        reference_piper: int) -> None:
    """The same event sequence for Home Assistant's streaming client: audio for the first
    sentence before the text ends, the rest after synthesize-stop, synthesize-stopped."""
    chunks = ["The quick brown fox jum", "ps over the lazy dog. Please", " call me back ",
              "tomorrow morning."]
    ours, ours_early = run(synthesize_streaming(wyoming.tts_port, chunks, wait_after=2))
    theirs, theirs_early = run(synthesize_streaming(reference_piper, chunks, wait_after=2))
    assert ours.types == theirs.types
    assert ours_early > 2 and theirs_early > 2


def test_reference_is_offline_on_the_packaged_files() -> None:
    """Nothing was downloaded: the voice's folder holds just the packaged files."""
    from tests.wyoming_api.reference import joe_voice_folder

    names = {p.name for p in Path(joe_voice_folder()).iterdir() if p.is_file()}
    assert {"en_US-joe-medium.onnx", "en_US-joe-medium.onnx.json"} <= names
    assert "voices.json" not in names
