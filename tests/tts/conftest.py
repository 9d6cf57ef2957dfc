from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from secretary.catalog import ModelStore
from secretary.config import Settings
from secretary.stt.whisper import WhisperEngine
from secretary.tts.app import create_app
from secretary.tts.espeak import EspeakEngine
from secretary.tts.models import PIPER_PACKAGED_VOICE
from secretary.tts.piper import PiperEngine
from tests.conftest import make_settings
from tests.helpers import running_server


@pytest.fixture(scope="session")
def tts_settings(cache_dir: Path) -> Settings:
    return make_settings(cache_dir)


@pytest.fixture(scope="session")
def piper_engine(tts_settings: Settings) -> PiperEngine:
    """The packaged voice, loaded once and shared by the servers the tests start. Its
    noise is off, so a text always gives the same samples and the judge hears the same."""
    engine = PiperEngine([PIPER_PACKAGED_VOICE], ModelStore(tts_settings.models_dir),
                         noise_w=0.0, noise_scale=0.0)
    engine.load()
    return engine


@pytest.fixture(scope="session")
def espeak_engine() -> EspeakEngine:
    engine = EspeakEngine()
    engine.load()
    return engine


@pytest.fixture(scope="session")
def tts_url(tts_settings: Settings, piper_engine: PiperEngine,
            espeak_engine: EspeakEngine) -> Iterator[str]:
    """The service with its default settings and routes (English Piper, the rest eSpeak)."""
    app = create_app(tts_settings, {"piper": piper_engine, "espeak": espeak_engine})
    with running_server(app) as url:
        yield url


@pytest.fixture(scope="session")
def whisper(cache_dir: Path) -> WhisperEngine:
    """The project's speech-to-text engine (Whisper base) to hear what was synthesized. In
    float32: int8 kernels differ more between CPUs, and a judge should not."""
    settings = make_settings(cache_dir)
    settings.stt.compute_type = "float32"
    engine = WhisperEngine(settings.stt, ModelStore(settings.models_dir))
    engine.load()
    return engine
