from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from secretary.catalog import ModelStore
from secretary.config import Settings
from secretary.stt.app import create_app
from secretary.stt.whisper import WhisperEngine
from tests.conftest import make_settings
from tests.helpers import running_server


@pytest.fixture(scope="session")
def stt_settings(cache_dir: Path) -> Settings:
    return make_settings(cache_dir)


@pytest.fixture(scope="session")
def whisper_engine(stt_settings: Settings) -> WhisperEngine:
    """One loaded model for the whole run, shared by the servers the tests start."""
    engine = WhisperEngine(stt_settings.stt, ModelStore(stt_settings.models_dir))
    engine.load()
    return engine


@pytest.fixture(scope="session")
def stt_url(stt_settings: Settings, whisper_engine: WhisperEngine) -> Iterator[str]:
    with running_server(create_app(stt_settings, whisper_engine)) as url:
        yield url
