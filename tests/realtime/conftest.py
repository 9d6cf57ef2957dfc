from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from secretary.config import Settings
from secretary.realtime.app import create_app
from secretary.realtime.service import RealtimeService
from tests.conftest import make_settings, same_speech_every_run
from tests.helpers import running_server


def realtime_settings(cache_dir: Path, **realtime: object) -> Settings:
    settings = make_settings(cache_dir)
    same_speech_every_run(settings)
    settings.conversation.avatar = False  # the WebSocket carries no face
    for key, value in realtime.items():
        setattr(settings.realtime, key, value)
    return settings


@pytest.fixture(scope="session")
def service(cache_dir: Path) -> RealtimeService:
    """One loaded service for the WebSocket and WebRTC tests (two sessions at most)."""
    service = RealtimeService(realtime_settings(cache_dir, max_sessions=2))
    service.load()
    return service


@pytest.fixture(scope="session")
def url(service: RealtimeService) -> Iterator[str]:
    with running_server(create_app(service=service)) as base:
        yield base


