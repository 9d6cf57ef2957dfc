"""The Canary engine on tiny randomly initialised Canary models that the test builds.

The published checkpoints cannot be downloaded here, so ``canary_model`` builds models of
the same family (NeMo's multitask encoder-decoder with Canary's tokenizer and prompt
formats: canary-1b's and the flash models'), saves them as ``.nemo`` archives, and the
engine loads them by name from the hub cache through NeMo's ``restore_from``, as it loads
the published ones. Their text is noise, so the tests check what the engine controls: the
decoder prompt it builds for each language and direction, what it refuses and how it says
so, windows of long audio, determinism and the offline behaviour.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from secretary import audio
from secretary.config import CanarySettings
from secretary.errors import InvalidRequestError, ModelUnavailableError
from secretary.stt.canary import CanaryEngine
from secretary.stt.engine import TranscriptionOptions, collect
from secretary.stt.models import CanaryModels
from tests.helpers import SPEECH, needs
from tests.stt import canary_model

NEMO_INSTALLED = importlib.util.find_spec("nemo") is not None
pytestmark = needs(NEMO_INSTALLED, "the canary extra: pip install '.[canary]'")

GERMAN = SPEECH / "de_thorsten_plan_geklappt.wav"


def canary_settings(model: str, **overrides: Any) -> CanarySettings:
    return CanarySettings(_env_file=None, **{"model": model, "device": "cpu", **overrides})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both prompt formats, built before any is restored (NeMo keeps restore state)."""
    folder = tmp_path_factory.mktemp("canary-models")
    return {fmt: canary_model.build(folder / fmt, prompt_format=fmt)
            for fmt in ("canary", "canary2")}


@pytest.fixture(scope="module")
def hub_cache(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache holding the tiny models where downloads of the published names go."""
    root = tmp_path_factory.mktemp("canary-cache")
    canary_model.place_in_hub_cache(models["canary"], root, "nvidia/canary-1b")
    canary_model.place_in_hub_cache(models["canary2"], root, "nvidia/canary-1b-flash")
    return root


@pytest.fixture(scope="module")
def engine(hub_cache: Path) -> CanaryEngine:
    engine = CanaryEngine(canary_settings("nvidia/canary-1b"), CanaryModels(hub_cache))
    engine.load()
    return engine


@pytest.fixture(scope="module")
def flash(hub_cache: Path) -> CanaryEngine:
    engine = CanaryEngine(canary_settings("canary-1b-flash"), CanaryModels(hub_cache))
    engine.load()
    return engine


def prompts(engine: CanaryEngine, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record the prompt tokens the decoder is given, one list per decoded window."""
    seen: list[list[str]] = []
    decoding = engine.model.decoding
    original = decoding.decode_predictions_tensor

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(engine.model.tokenizer.ids_to_tokens(kwargs["decoder_input_ids"][0].tolist()))
        return original(*args, **kwargs)

    monkeypatch.setattr(decoding, "decode_predictions_tensor", spy)
    return seen


@pytest.fixture(scope="module")
def german() -> np.ndarray:
    return audio.decode(GERMAN).samples


def run(engine: CanaryEngine, samples: np.ndarray, **options: Any) -> Any:
    return collect(engine.transcribe(samples, TranscriptionOptions(**options)))


# ---------------------------------------------------------------------- loading
def test_loads_the_published_name_from_the_hub_cache(engine: CanaryEngine) -> None:
    assert engine.loaded and type(engine.model).__name__ == "EncDecMultiTaskModel"
    assert engine.languages() == {"en", "de", "fr", "es"}
    assert engine.directions() == ["de->en", "en->de", "en->es", "en->fr", "es->en", "fr->en"]
    health = engine.describe()
    assert health["model"] == "nvidia/canary-1b" and health["device"] == "cpu"
    assert "error" not in health
    assert not engine.model.training  # inference mode: no dropout


def test_short_name_finds_the_same_archive(hub_cache: Path, engine: CanaryEngine) -> None:
    store = CanaryModels(hub_cache)
    assert store.canary_file("canary-1b", download=False) == store.canary_file(
        "nvidia/canary-1b", download=False)
    assert store.canary_file("canary-1b", download=False).name == "canary-1b.nemo"


def test_missing_weights_offline_name_the_pull_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = CanaryEngine(canary_settings("canary-180m-flash"), CanaryModels(tmp_path))
    with pytest.raises(ModelUnavailableError) as info:
        engine.load()
    assert "secretary models pull canary-180m-flash" in info.value.message
    assert "nvidia/canary-180m-flash" in info.value.message
    assert not engine.loaded
    assert "secretary models pull" in engine.describe()["error"]


def test_unknown_name_and_wrong_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="canary-1b-flash"):
        CanaryEngine(canary_settings("canary-huge"), CanaryModels(tmp_path)).load()
    bogus = tmp_path / "broken.nemo"
    bogus.write_bytes(b"not a tar archive")
    with pytest.raises(ModelUnavailableError, match="could not load the Canary model"):
        CanaryEngine(canary_settings(str(bogus)), CanaryModels(tmp_path)).load()


# ---------------------------------------------------------------------- the prompt
@pytest.mark.parametrize(("options", "expected"), [
    ({"language": "de"}, ["<|de|>", "<|transcribe|>", "<|de|>", "<|pnc|>"]),
    ({}, ["<|en|>", "<|transcribe|>", "<|en|>", "<|pnc|>"]),  # the default language
    ({"language": "de", "task": "translate"}, ["<|de|>", "<|translate|>", "<|en|>", "<|pnc|>"]),
    ({"language": "en", "task": "translate", "target_language": "fr"},
     ["<|en|>", "<|translate|>", "<|fr|>", "<|pnc|>"]),
    ({"language": "es", "task": "translate", "target_language": "es"},
     ["<|es|>", "<|transcribe|>", "<|es|>", "<|pnc|>"]),
])
def test_the_decoder_is_prompted_with_language_task_and_target(
        engine: CanaryEngine, german: np.ndarray, monkeypatch: pytest.MonkeyPatch,
        options: dict[str, Any], expected: list[str]) -> None:
    seen = prompts(engine, monkeypatch)
    result = run(engine, german[: 16000], **options)
    assert seen == [["<|startoftranscript|>", *expected]]
    assert result.info.language == (options.get("language") or "en")


def test_the_flash_prompt_format_has_no_task_slot(
        flash: CanaryEngine, german: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = prompts(flash, monkeypatch)
    run(flash, german[: 16000], language="de", task="translate")
    assert seen == [["<|startofcontext|>", "<|startoftranscript|>", "<|emo:undefined|>",
                     "<|de|>", "<|en|>", "<|pnc|>", "<|noitn|>", "<|notimestamp|>",
                     "<|nodiarize|>"]]


def test_punctuation_can_be_turned_off(hub_cache: Path, german: np.ndarray,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    engine = CanaryEngine(canary_settings("canary-1b", pnc=False), CanaryModels(hub_cache))
    seen = prompts(engine, monkeypatch)
    run(engine, german[: 16000], language="fr")
    assert seen[0][-1] == "<|nopnc|>"


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize(("options", "param", "says"), [
    ({"language": "it"}, "language", "it transcribes de, en, es, fr"),
    ({"language": "de", "task": "translate", "target_language": "fr"}, "target_language",
     "de->en, en->de, en->es, en->fr, es->en, fr->en"),
    ({"language": "en", "task": "translate", "target_language": "ja"}, "target_language",
     "cannot translate en speech into 'ja'"),
    ({"language": "en", "word_timestamps": True}, "timestamp_granularities[]",
     "no word timestamps"),
])
def test_requests_it_cannot_serve_say_what_it_supports(
        engine: CanaryEngine, options: dict[str, Any], param: str, says: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        engine.check(TranscriptionOptions(**options))
    assert info.value.param == param
    assert says in info.value.message


# ---------------------------------------------------------------------- decoding
def test_long_audio_is_decoded_in_windows_lazily_and_deterministically(
        hub_cache: Path, german: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = CanaryEngine(canary_settings("canary-1b", chunk_seconds=1.5), CanaryModels(hub_cache))
    engine.load()
    seen = prompts(engine, monkeypatch)
    clip = np.concatenate([german, german])[: int(3.2 * 16000)]
    info, segments = engine.transcribe(clip, TranscriptionOptions(language="de"))
    assert info.duration == pytest.approx(3.2) and seen == []  # nothing decoded yet
    first = next(segments)
    assert len(seen) == 1 and (first.start, first.end) == (0.0, 1.5)
    rest = list(segments)
    assert [(s.id, s.start, s.end) for s in rest] == [(1, 1.5, 3.0), (2, 3.0, 3.2)]
    again = run(engine, clip, language="de")
    assert [s.text for s in again.segments] == [s.text for s in [first, *rest]]
    assert any(s.text for s in again.segments)
    assert all("<|" not in s.text for s in again.segments)


def test_a_clip_shorter_than_the_encoder_needs_is_padded(engine: CanaryEngine) -> None:
    result = run(engine, np.zeros(800, dtype=np.float32), language="en")
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 0.05)]


@pytest.fixture
def no_nemo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import sys

    monkeypatch.setitem(sys.modules, "nemo.collections.asr.models", None)
    yield


def test_without_nemo_the_error_names_the_extra(tmp_path: Path, no_nemo: None) -> None:
    engine = CanaryEngine(canary_settings("canary-1b"), CanaryModels(tmp_path))
    with pytest.raises(ModelUnavailableError, match=r"secretary\[canary\]"):
        engine.load()
