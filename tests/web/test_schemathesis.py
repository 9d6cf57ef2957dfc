"""Schemathesis against every service's OpenAPI document: every check, real speech clips
and photos sent for file fields, no 5xx, and answers that match what the document says
(status codes, media types, JSON shapes).

Bounded: a few examples per operation, generated deterministically, so the whole file runs
in about a minute. ``positive_data_acceptance`` is left out: a document cannot say which
voice names or languages exist, so valid-looking values are rightly refused with 400. Any
5xx fails, but for a 501 ``not_implemented`` (cloning asked of an engine that cannot).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from secretary.avatar.app import create_app as create_avatar_app
from secretary.avatar.meshwarp import MeshWarpEngine
from secretary.avatar.models import FaceLandmarkerModel
from secretary.catalog import ModelStore
from secretary.stt.app import create_app as create_stt_app
from secretary.stt.whisper import WhisperEngine
from secretary.tts.app import create_app as create_tts_app
from secretary.tts.espeak import EspeakEngine
from secretary.ui.app import create_app as create_ui_app
from tests.conftest import make_settings
from tests.helpers import FACES, SPEECH, free_port, running_server

EXAMPLES = 15  # per operation; about a minute for the four services on 2 cores

_SPEECH = [(SPEECH / n).read_bytes() for n in ("en_cmu_arctic_aew_a0001.wav",
                                               "de_thorsten_plan_geklappt.wav")]
_PHOTOS = [(FACES / n).read_bytes() for n in ("pexels_woman_neutral.jpg",
                                              "noface_rocket_launch.jpg")]
schemathesis.openapi.media_type("audio/wav", st.sampled_from(_SPEECH))
schemathesis.openapi.media_type("image/jpeg", st.sampled_from(_PHOTOS))

_AUDIO_FIELDS = ("file", "audio", "speaker_audio")
_IMAGE_FIELDS = ("source_image",)


def _with_real_files(document: dict[str, Any]) -> dict[str, Any]:
    """Say which media type each upload field takes, so that real files are sent."""
    for operations in document["paths"].values():
        for operation in operations.values():
            form = (operation.get("requestBody", {}).get("content", {})
                    .get("multipart/form-data"))
            if not form:
                continue
            schema = form["schema"]
            if "$ref" in schema:
                schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            encoding = form.setdefault("encoding", {})
            required = schema.setdefault("required", [])
            for name in schema.get("properties", {}):
                kind = ("audio/wav" if name in _AUDIO_FIELDS
                        else "image/jpeg" if name in _IMAGE_FIELDS else None)
                if kind:
                    encoding[name] = {"contentType": kind}
                    schema["properties"][name] = {"type": "string", "format": "binary"}
                    # Optional in the signature only so that the service words the 400
                    # itself; a case without the file tests nothing past that check.
                    if name not in required:
                        required.append(name)
    return document


def _schema(url: str) -> Any:
    document = httpx.get(f"{url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(_with_real_files(document))
    schema.config.update(base_url=url)
    return schema


@pytest.fixture(scope="module")
def tts_schema(cache_dir: Path) -> Iterator[Any]:
    settings_ = make_settings(cache_dir, tts={"routes": "*=espeak", "max_text_chars": 300})
    engine = EspeakEngine()
    engine.load()
    with running_server(create_tts_app(settings_, {"espeak": engine})) as url:
        yield _schema(url)


@pytest.fixture(scope="module")
def stt_schema(cache_dir: Path) -> Iterator[Any]:
    settings_ = make_settings(cache_dir, stt={"beam_size": 1, "max_audio_seconds": 30})
    engine = WhisperEngine(settings_.stt, ModelStore(settings_.models_dir))
    with running_server(create_stt_app(settings_, engine)) as url:
        yield _schema(url)


@pytest.fixture(scope="module")
def avatar_schema(cache_dir: Path) -> Iterator[Any]:
    settings_ = make_settings(cache_dir, avatar={"max_size": 192, "max_audio_seconds": 10})
    engine = MeshWarpEngine(settings_.avatar, FaceLandmarkerModel(settings_.models_dir))
    with running_server(create_avatar_app(settings_, engine)) as url:
        yield _schema(url)


@pytest.fixture(scope="module")
def ui_schema(cache_dir: Path) -> Iterator[Any]:
    settings_ = make_settings(cache_dir)
    closed = f"http://127.0.0.1:{free_port()}"  # upstreams down: 503s, quickly
    settings_.ui = settings_.ui.model_copy(update={
        "stt_url": closed, "tts_url": closed, "avatar_url": closed})
    with running_server(create_ui_app(settings_)) as url:
        yield _schema(url)


_BOUNDED = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck), database=None)


@schemathesis.check
def no_unplanned_server_error(ctx: Any, response: Any, case: Any) -> None:
    """Like ``not_a_server_error``, but a 501 that says the engine cannot do this (voice
    cloning with no cloning engine configured) is a documented answer, not a fault."""
    if response.status_code < 500:
        return
    if response.status_code == 501 and response.json()["error"]["code"] == "not_implemented":
        return
    raise AssertionError(f"server error {response.status_code}: {response.text[:300]}")


def _check(case: Any) -> int:
    response = case.call_and_validate(
        checks=list(schemathesis.checks.CHECKS.get_all()),
        excluded_checks=[positive_data_acceptance, not_a_server_error], timeout=120)
    return response.status_code


def _fuzz(schema: Any) -> None:
    """Every operation, a few cases each; all failures reported together."""
    failures: list[str] = []
    calls: dict[str, list[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @_BOUNDED
        def run(case: Any) -> None:
            calls.setdefault(case.operation.label, []).append(_check(case))

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collected, then reported together
            failures.append(f"{operation.label}: {exc}")
    print({label: sorted(set(statuses)) for label, statuses in calls.items()})
    assert not failures, "\n\n".join(failures)
    assert len(calls) == len(list(schema.get_all_operations()))


def test_tts(tts_schema: Any) -> None:
    _fuzz(tts_schema)


def test_stt(stt_schema: Any) -> None:
    _fuzz(stt_schema)


def test_avatar(avatar_schema: Any) -> None:
    _fuzz(avatar_schema)


def test_ui(ui_schema: Any) -> None:
    _fuzz(ui_schema)
