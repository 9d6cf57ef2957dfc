from __future__ import annotations

import os
from pathlib import Path

import pytest

from secretary.config import Settings


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole run, so the packaged base model is assembled once.
    SECRETARY_TEST_CACHE_DIR reuses a cache across runs."""
    configured = os.environ.get("SECRETARY_TEST_CACHE_DIR")
    if configured:
        return Path(configured)
    return tmp_path_factory.mktemp("secretary-cache")


@pytest.fixture
def settings(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Default settings, isolated from the developer's environment and .env file."""
    for name in list(os.environ):
        if name.startswith("SECRETARY_") and name != "SECRETARY_TEST_CACHE_DIR":
            monkeypatch.delenv(name)
    return Settings(_env_file=None, cache_dir=cache_dir)
