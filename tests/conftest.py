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


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment() -> None:
    """Tests build their own settings: the developer's SECRETARY_* variables and .env file
    must not leak in."""
    for name in list(os.environ):
        if name.startswith("SECRETARY_") and name != "SECRETARY_TEST_CACHE_DIR":
            del os.environ[name]


def make_settings(cache_dir: Path, **overrides: object) -> Settings:
    return Settings(_env_file=None, cache_dir=cache_dir, **overrides)


@pytest.fixture
def settings(cache_dir: Path) -> Settings:
    """Default settings with the shared model cache."""
    return make_settings(cache_dir)
