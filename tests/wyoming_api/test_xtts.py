"""XTTS v2 over Wyoming, as on a GPU box: its built-in speakers are voices in ``info``, a
language routed to XTTS is spoken by it, and ``speaker`` picks another of its speakers.
XTTS runs on the tiny randomly initialised model ``tests/tts/test_xtts`` builds, so its
audio is noise: these tests check what the service controls (which engine speaks, the
format, lengths within the token cap), not words. They run where the xtts extra is
installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from wyoming.tts import SynthesizeVoice

from secretary.stt.whisper import WhisperEngine
from secretary.tts.espeak import EspeakEngine
from secretary.tts.piper import PiperEngine
from tests.helpers import needs
from tests.tts.test_xtts import BUILT_IN, CAP, XTTS_INSTALLED, build_tiny_checkpoint
from tests.wyoming_api.client import describe, run, synthesize
from tests.wyoming_api.conftest import Wyoming, wyoming_server

pytestmark = needs(XTTS_INSTALLED, "the xtts extra: pip install '.[xtts]'")

XTTS_RATE = 24000  # Piper's and eSpeak NG's voices here speak at 22050 Hz
# The most audio one sentence can give: CAP GPT tokens of 1024 samples at 22.05 kHz.
MAX_SECONDS_PER_SENTENCE = CAP * 1024 / 22050 + 0.2


@pytest.fixture(scope="module")
def xtts_wyoming(cache_dir: Path, whisper_engine: WhisperEngine, piper_engine: PiperEngine,
                 espeak_engine: EspeakEngine, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Wyoming]:
    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("xtts-tiny"))
    tts = {"routes": "en=piper:en_US-joe-medium,de=xtts,*=xtts|espeak",
           "xtts_model": str(checkpoint), "xtts_device": "cpu", "xtts_max_mel_tokens": CAP,
           "xtts_stream_chunk_size": 4}
    with wyoming_server(cache_dir, whisper_engine, piper_engine, espeak_engine,
                        tts=tts) as server:
        yield server


def test_xtts_speakers_are_voices(xtts_wyoming: Wyoming) -> None:
    voices = {v.name: v for v in run(describe(xtts_wyoming.tts_port)).tts[0].voices}
    for name in BUILT_IN:
        assert voices[name].attribution.name == "Coqui XTTS v2"
        assert {"en", "de", "es", "zh-CN", "ja"} <= set(voices[name].languages)
    assert "en_US-joe-medium" in voices and "de" in voices  # the other engines stay


def _seconds(spoken: object) -> float:
    return len(spoken.pcm) / 2 / spoken.rate  # type: ignore[attr-defined]


@pytest.mark.parametrize("voice", [{"language": "de"}, SynthesizeVoice(name=BUILT_IN[0]),
                                   SynthesizeVoice(name=BUILT_IN[0], speaker=BUILT_IN[1])],
                         ids=["language", "name", "speaker"])
def test_spoken_by_xtts(voice: object, xtts_wyoming: Wyoming) -> None:
    spoken = run(synthesize(xtts_wyoming.tts_port, "Eins. Zwei.", voice))  # type: ignore[arg-type]
    assert spoken.types == ["audio-start", "audio-stop"], spoken.events[-1]
    assert spoken.rate == XTTS_RATE
    assert 0 < _seconds(spoken) <= 2 * MAX_SECONDS_PER_SENTENCE + 0.5


def test_english_still_goes_to_piper(xtts_wyoming: Wyoming) -> None:
    spoken = run(synthesize(xtts_wyoming.tts_port, "Hello there.", {"language": "en"}))
    assert spoken.rate == 22050
