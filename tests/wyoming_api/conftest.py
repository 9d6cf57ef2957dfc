from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from secretary.config import Settings
from secretary.stt.whisper import WhisperEngine
from secretary.tts.espeak import EspeakEngine
from secretary.tts.piper import PiperEngine
from secretary.wyoming.app import create_app
from tests.conftest import make_settings
from tests.helpers import free_port, running_server

# The speech services' engines (loaded once per run), the TTS HTTP server and the judge.
from tests.stt.conftest import stt_settings, stt_url, whisper_engine  # noqa: F401
from tests.tts.conftest import (  # noqa: F401
    espeak_engine,
    piper_engine,
    tts_settings,
    tts_url,
    whisper,
)


@dataclass(frozen=True)
class Wyoming:
    """A running Wyoming service: its TCP ports and its HTTP URL (/health, /metrics)."""

    stt_port: int
    tts_port: int
    url: str
    settings: Settings


@contextlib.contextmanager
def wyoming_server(cache_dir: Path, stt: WhisperEngine, piper: PiperEngine,
                   espeak: EspeakEngine, stt_limits: tuple[int, int] | None = None,
                   tts: dict[str, object] | None = None, **wyoming: object
                   ) -> Iterator[Wyoming]:
    """The real service (its app, lifespan and TCP servers) on free ports, over the shared
    engines; ``wyoming`` overrides SECRETARY_WYOMING_* settings, ``tts`` SECRETARY_TTS_*
    ones, ``stt_limits`` the speech-to-text queue's (max_concurrency, max_queue)."""
    settings = make_settings(cache_dir)
    if stt_limits is not None:
        settings.stt.max_concurrency, settings.stt.max_queue = stt_limits
    for key, value in (tts or {}).items():
        setattr(settings.tts, key, value)
    settings.wyoming.stt_port = free_port()
    settings.wyoming.tts_port = free_port()
    settings.wyoming.handle_port = free_port()  # the conversation agent: test_handle.py
    for key, value in wyoming.items():
        setattr(settings.wyoming, key, value)
    app = create_app(settings, stt, {"piper": piper, "espeak": espeak})
    with running_server(app) as url:
        yield Wyoming(settings.wyoming.stt_port, settings.wyoming.tts_port, url, settings)


@pytest.fixture(scope="session")
def wyoming(cache_dir: Path, whisper_engine: WhisperEngine,  # noqa: F811
            piper_engine: PiperEngine, espeak_engine: EspeakEngine  # noqa: F811
            ) -> Iterator[Wyoming]:
    """The service with its default settings."""
    with wyoming_server(cache_dir, whisper_engine, piper_engine, espeak_engine) as server:
        yield server
