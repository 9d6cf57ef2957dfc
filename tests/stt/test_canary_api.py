"""The Canary service (port 8084): the same two APIs as the Whisper service, over a tiny
randomly initialised Canary built by the test and loaded by name from the hub cache, and
the service's behaviour when the weights are missing."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from secretary import audio
from secretary.config import CanarySettings, Settings
from secretary.stt.app import create_canary_app
from secretary.stt.canary import CanaryEngine
from secretary.stt.engine import TranscriptionOptions, collect
from secretary.stt.models import CanaryModels
from tests.conftest import make_settings
from tests.helpers import SPEECH, needs, running_server
from tests.stt import canary_model
from tests.stt.test_canary import prompts

NEMO_INSTALLED = importlib.util.find_spec("nemo") is not None
needs_nemo = needs(NEMO_INSTALLED, "the canary extra: pip install '.[canary]'")

GERMAN = SPEECH / "de_thorsten_plan_geklappt.wav"
DIRECTIONS = "de->en, en->de, en->es, en->fr, es->en, fr->en"


def canary_service_settings(cache: Path, model: str = "canary-1b") -> Settings:
    return make_settings(cache, canary=CanarySettings(_env_file=None, model=model,
                                                      device="cpu"))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    cache = tmp_path_factory.mktemp("canary-service")
    archive = canary_model.build(tmp_path_factory.mktemp("canary-build"))
    settings = canary_service_settings(cache)
    canary_model.place_in_hub_cache(archive, settings.models_dir, "nvidia/canary-1b")
    return settings


@pytest.fixture(scope="module")
def engine(settings: Settings) -> CanaryEngine:
    return CanaryEngine(settings.canary, CanaryModels(settings.models_dir))


@pytest.fixture(scope="module")
def url(settings: Settings, engine: CanaryEngine) -> Iterator[str]:
    with running_server(create_canary_app(settings, engine)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="not-needed", max_retries=0)


@pytest.fixture(scope="module")
def expected(engine: CanaryEngine) -> str:
    """What the engine itself decodes for the German clip (the model is deterministic)."""
    clip = audio.decode(GERMAN).samples
    text = collect(engine.transcribe(clip, TranscriptionOptions(language="de"))).text
    assert text, "the tiny model should write something for the comparisons to mean anything"
    return text


def post(url: str, path: str, **data: Any) -> httpx.Response:
    with open(GERMAN, "rb") as f:
        return httpx.post(f"{url}{path}", files={"file": (GERMAN.name, f)}, data=data,
                          timeout=120)


@needs_nemo
def test_health_names_the_engine_model_and_languages(url: str) -> None:
    body = httpx.get(f"{url}/health").json()
    assert body["status"] == "ok" and body["service"] == "canary"
    assert body["engine"] == "canary" and body["model"] == "canary-1b"
    assert body["loaded"] is True and body["languages"] == ["de", "en", "es", "fr"]
    models = httpx.get(f"{url}/v1/models").json()
    assert "canary-1b" in [m["id"] for m in models["data"]]


@needs_nemo
def test_transcribe_endpoint(url: str, expected: str) -> None:
    response = post(url, "/transcribe", language="de")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == "de" and body["task"] == "transcribe"
    assert body["text"] == expected
    assert body["duration"] == pytest.approx(2.04, abs=0.01)
    assert [(s["start"], s["end"]) for s in body["segments"]] == [(0.0, 2.04)]
    # The spoken language reaches the decoder: another prompt, other (random) text.
    assert post(url, "/transcribe", language="en").json()["text"] != expected


@needs_nemo
def test_openai_client_transcriptions(client: openai.OpenAI, expected: str) -> None:
    with open(GERMAN, "rb") as f:
        result = client.audio.transcriptions.create(model="canary-1b", file=f, language="de")
    assert result.text == expected
    with open(GERMAN, "rb") as f:
        verbose = client.audio.transcriptions.create(
            model="nvidia/canary-1b", file=f, language="de", response_format="verbose_json")
    assert verbose.language in ("de", "german") and verbose.text == expected
    assert len(verbose.segments) == 1


@needs_nemo
def test_translations_reach_the_decoder_as_canary_prompts(
        url: str, client: openai.OpenAI, engine: CanaryEngine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen = prompts(engine, monkeypatch)
    with open(GERMAN, "rb") as f:  # OpenAI's translations: into English; the source named
        client.audio.translations.create(model="canary-1b", file=f,
                                         extra_body={"language": "de"})
    response = post(url, "/transcribe", language="en", task="translate", target_language="es")
    assert response.status_code == 200, response.text
    assert [p[1:4] for p in seen] == [["<|de|>", "<|translate|>", "<|en|>"],
                                      ["<|en|>", "<|translate|>", "<|es|>"]]


@needs_nemo
@pytest.mark.parametrize(("data", "param", "says"), [
    ({"language": "de", "task": "translate", "target_language": "fr"}, "target_language",
     DIRECTIONS),
    ({"language": "it"}, "language", "de, en, es, fr"),
    ({"language": "en", "timestamps": "word"}, "timestamp_granularities[]",
     "no word timestamps"),
])
def test_requests_it_cannot_serve_get_a_4xx_saying_what_it_supports(
        url: str, data: dict[str, str], param: str, says: str) -> None:
    response = post(url, "/transcribe", **data)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and says in error["message"]


@needs_nemo
def test_openai_word_timestamps_are_refused_clearly(client: openai.OpenAI) -> None:
    with open(GERMAN, "rb") as f, pytest.raises(openai.BadRequestError) as info:
        client.audio.transcriptions.create(
            model="canary-1b", file=f, language="de", response_format="verbose_json",
            timestamp_granularities=["word"])
    assert "no word timestamps" in str(info.value)


def test_without_weights_it_starts_says_so_and_names_the_pull_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = canary_service_settings(tmp_path, model="canary-1b-flash")
    with running_server(create_canary_app(settings)) as base:
        health = httpx.get(f"{base}/health").json()
        assert health["status"] == "model_unavailable" and health["loaded"] is False
        fix = ("secretary models pull canary-1b-flash" if NEMO_INSTALLED
               else "pip install 'secretary[canary]'")
        assert fix in health["error"]
        response = post(base, "/transcribe", language="en")
        assert response.status_code == 503
        assert fix in response.json()["error"]["message"]
        with open(GERMAN, "rb") as f:
            files = {"file": (GERMAN.name, f)}
            openai_answer = httpx.post(f"{base}/v1/audio/transcriptions", files=files,
                                       data={"model": "canary-1b-flash"}, timeout=60)
        assert openai_answer.status_code == 503
        assert fix in openai_answer.json()["error"]["message"]


@needs_nemo
def test_silence_and_empty_requests_still_get_clear_errors(url: str) -> None:
    response = httpx.post(f"{url}/transcribe", data={"language": "en"}, timeout=30)
    assert response.status_code == 400
    wav = audio.encode(np.zeros(16000, dtype=np.float32), 16000, "wav")
    response = httpx.post(f"{url}/transcribe", files={"file": ("silence.wav", wav)},
                          data={"language": "en"}, timeout=120)
    assert response.status_code == 200
