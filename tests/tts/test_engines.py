"""The engines on their own: voices by path and by name, eSpeak's thread safety, the
optional XTTS engine's import, and the service registry."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from secretary.catalog import ModelStore
from secretary.config import Settings
from secretary.errors import ModelUnavailableError, NotImplementedByEngineError
from secretary.launcher import SERVICES
from secretary.tts.engine import SpeakerReference, SynthesisRequest
from secretary.tts.espeak import EspeakEngine
from secretary.tts.models import PIPER_PACKAGED_VOICE
from secretary.tts.piper import PiperEngine
from secretary.tts.service import TtsService, create_engine
from tests.conftest import make_settings


def _audio(engine, request: SynthesisRequest) -> np.ndarray:
    return np.concatenate(list(engine.synthesize(request)))


def test_espeak_serializes_concurrent_calls(espeak_engine: EspeakEngine) -> None:
    # Utterances of clearly different lengths, so a mixed-up or merged call shows.
    requests = [SynthesisRequest("Ja.", "de"),
                SynthesisRequest("Good morning, how are you?", "en"),
                SynthesisRequest("Bonjour, comment allez-vous aujourd'hui, mon cher ami?", "fr"),
                SynthesisRequest("Buenos días, ¿cómo estás? Hace mucho tiempo que no te veo, "
                                 "y tengo muchas cosas que contarte.", "es")] * 3
    alone = [len(_audio(espeak_engine, r)) for r in requests]
    assert all(b - a > 10_000 for a, b in zip(alone[:3], alone[1:4], strict=True)), alone
    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda r: len(_audio(espeak_engine, r)), requests))
    # A mixed-up or merged call changes a length by over 10,000 samples (asserted above);
    # eSpeak's own run-to-run jitter measured up to 200 samples, so 2,000 is a 10x margin.
    assert all(abs(a - b) < 2_000 for a, b in zip(alone, together, strict=True)), (
        alone, together)


def test_engines_refuse_a_reference_clip(piper_engine: PiperEngine,
                                         espeak_engine: EspeakEngine) -> None:
    reference = SpeakerReference(np.zeros(22050, np.float32), 22050, "silence")
    for engine, language in ((piper_engine, "en"), (espeak_engine, "de")):
        with pytest.raises(NotImplementedByEngineError):
            list(engine.synthesize(SynthesisRequest("Hello.", language, reference=reference)))


def test_piper_voice_from_a_local_path(tts_settings: Settings, tmp_path: Path) -> None:
    store = ModelStore(tts_settings.models_dir)
    model, config = store.piper_voice(PIPER_PACKAGED_VOICE)
    (tmp_path / "en_GB-copy-medium.onnx").symlink_to(model)
    (tmp_path / "en_GB-copy-medium.onnx.json").symlink_to(config)
    settings = make_settings(tts_settings.cache_dir)
    # Routed by path: the voice is then known by its file name.
    settings.tts.routes = f"en=piper:{tmp_path / 'en_GB-copy-medium.onnx'},*=espeak"
    settings.tts.piper_voices = PIPER_PACKAGED_VOICE
    service = TtsService(settings)
    service.load_all()
    engine = service.engine("piper")
    assert [v.id for v in engine.voices()] == ["en_GB-copy-medium", PIPER_PACKAGED_VOICE]
    route = asyncio.run(service.route("en", None))
    assert (route.engine, route.voice) == ("piper", "en_GB-copy-medium")
    samples = _audio(engine, SynthesisRequest("Hello from a file.", "en", voice=route.voice))
    assert 0.5 < len(samples) / engine.sample_rate < 3.0


def test_a_missing_piper_voice_leaves_the_others_speaking(tts_settings: Settings,
                                                          tmp_path: Path) -> None:
    settings = make_settings(tts_settings.cache_dir)
    missing = tmp_path / "de_DE-missing-medium.onnx"
    settings.tts.routes = f"en=piper:{PIPER_PACKAGED_VOICE},de=piper:{missing}|espeak"
    service = TtsService(settings)
    service.load_all()
    assert asyncio.run(service.route("de", None)).engine == "espeak"  # the fallback
    assert asyncio.run(service.route("en", None)).engine == "piper"
    failed = service.health()["engines"]["piper"]["failed_voices"]
    assert len(failed) == 1 and "de_DE-missing-medium" in failed[0]


def test_piper_voice_by_name_offline_says_what_to_do(tts_settings: Settings,
                                                     tmp_path: Path) -> None:
    store = ModelStore(tts_settings.models_dir)
    with pytest.raises(ModelUnavailableError) as caught:
        store.piper_voice("de_DE-thorsten-medium", download=False)
    assert "rhasspy/piper-voices" in caught.value.message
    assert "SECRETARY_TTS_PIPER_VOICES" in caught.value.message
    with pytest.raises(ModelUnavailableError, match="unknown Piper voice"):
        store.piper_voice("thorsten")
    (tmp_path / "lonely.onnx").write_bytes(b"")
    with pytest.raises(ModelUnavailableError, match="need both"):
        store.piper_voice(str(tmp_path / "lonely.onnx"))


def test_piper_speed_is_length_scale(piper_engine: PiperEngine) -> None:
    text = "Speed changes how long every sound lasts."
    normal = np.mean([len(_audio(piper_engine, SynthesisRequest(text, "en")))
                      for _ in range(2)])
    fast = np.mean([len(_audio(piper_engine, SynthesisRequest(text, "en", speed=2.0)))
                    for _ in range(2)])
    assert 0.35 < fast / normal < 0.65


def test_xtts_without_its_extra_names_the_extra(settings: Settings,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "secretary.tts.xtts", None)  # import fails
    with pytest.raises(ModelUnavailableError, match=r"secretary\[xtts\]"):
        create_engine("xtts", settings, ModelStore(settings.models_dir), [])


def test_serve_knows_the_tts_service(settings: Settings) -> None:
    spec = SERVICES["tts"]
    assert spec.port(settings) == 8082
    settings.tts.preload = False
    app = spec.create_app(settings)
    paths = set(app.openapi()["paths"])
    assert {"/synthesize", "/synthesize-with-voice-clone", "/voices", "/health",
            "/v1/audio/speech", "/v1/models"} <= paths
