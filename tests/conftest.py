from __future__ import annotations

import faulthandler
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from secretary.catalog import ModelStore
from secretary.config import Settings
from secretary.stt.whisper import WhisperEngine
from tests.calendar.support import CalendarServer


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """A crash (the native libraries: PJSIP, onnxruntime, CTranslate2) prints the thread it
    happened on, not all of them: a log cut to its start and end still shows it."""
    try:  # pytest's own plugin keeps the stream it writes crashes to here
        from _pytest.faulthandler import fault_handler_stderr_fd_key
    except ImportError:
        return
    fd = config.stash.get(fault_handler_stderr_fd_key, None)
    if fd is not None:
        faulthandler.enable(file=fd, all_threads=False)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole run, so the packaged base model is assembled once.
    SECRETARY_TEST_CACHE_DIR reuses a cache across runs."""
    configured = os.environ.get("SECRETARY_TEST_CACHE_DIR")
    cache = Path(configured) if configured else tmp_path_factory.mktemp("secretary-cache")
    _take_end_of_turn_model(cache / "models")
    return cache


def _take_end_of_turn_model(models: Path) -> None:
    """Smart Turn comes out of a wheel from the package index: scripts/test.sh pulls it into
    the user's cache once, and each run's cache takes a copy of that (or fetches it)."""
    from secretary.errors import ModelUnavailableError
    from secretary.turns.models import SmartTurnModels

    if SmartTurnModels(models).locate_smart_turn() is not None:
        return
    try:
        source = SmartTurnModels(Settings(_env_file=None).models_dir).smart_turn_path()
    except ModelUnavailableError:
        return  # only the tests that need it fail, each saying what to run
    target = models / "smart-turn" / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests build their own settings: the developer's SECRETARY_* variables and .env file
    must not leak in, nor the tests' calendar and notes into the user's data folder. The
    conversation reads the transcript back unless a test asks for the skills (servers
    started as subprocesses inherit this)."""
    for name in list(os.environ):
        if name.startswith("SECRETARY_") and name != "SECRETARY_TEST_CACHE_DIR":
            del os.environ[name]
    os.environ["SECRETARY_DATA_DIR"] = str(tmp_path_factory.mktemp("secretary-data"))
    os.environ["SECRETARY_CONVERSATION_BRAIN"] = "echo"


def make_settings(cache_dir: Path, **overrides: object) -> Settings:
    return Settings(_env_file=None, cache_dir=cache_dir, **overrides)


def same_speech_every_run(settings: Settings) -> Settings:
    """Piper without its noise (phoneme lengths and audio): the same text gives the same
    samples on every run, so a Whisper judge hears the same words each time."""
    settings.tts.piper_noise_w = 0.0
    settings.tts.piper_noise_scale = 0.0
    return settings


@pytest.fixture(scope="module")
def calendar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CalendarServer]:
    """A real CalDAV server, the project's calendar service, of the test module's own: in a
    child process that a test may kill and start again."""
    with CalendarServer(tmp_path_factory.mktemp("calendar") / "data") as server:
        yield server


@pytest.fixture(scope="session")
def judge(cache_dir: Path) -> WhisperEngine:
    """Whisper base in float32 to hear speech back (deterministic across CPUs): what the
    realtime service and the telephone said, transcribed."""
    settings = make_settings(cache_dir)
    settings.stt.compute_type = "float32"
    engine = WhisperEngine(settings.stt, ModelStore(settings.models_dir))
    engine.load()
    return engine


@pytest.fixture
def settings(cache_dir: Path) -> Settings:
    """Default settings with the shared model cache."""
    return make_settings(cache_dir)
