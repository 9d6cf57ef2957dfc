"""Schemathesis against every service's OpenAPI document: every check, real speech clips
and photos sent for file fields, real WebRTC offers (an aiortc peer's SDP, whole and
mangled) for the realtime service's offers, no 5xx, and answers that match what the
document says (status codes, media types, JSON shapes). The UI's gateway is fuzzed with
the names of the services it really forwards to, and real services behind it, so the
forwarding itself is exercised.

Bounded: a few examples per operation, generated deterministically, so each service's run
takes about a minute. ``positive_data_acceptance`` is left out: a document cannot say which
voice names or languages exist, so valid-looking values are rightly refused with 400. Any
5xx fails, but for a 501 ``not_implemented`` (cloning asked of an engine that cannot).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from secretary.avatar.app import create_app as create_avatar_app
from secretary.avatar.meshwarp import MeshWarpEngine
from secretary.avatar.models import FaceLandmarkerModel
from secretary.catalog import ModelStore
from secretary.realtime.app import create_app as create_realtime_app
from secretary.realtime.service import RealtimeService
from secretary.stt.app import create_app as create_stt_app
from secretary.stt.app import create_canary_app
from secretary.stt.whisper import WhisperEngine
from secretary.tts.app import create_app as create_tts_app
from secretary.tts.espeak import EspeakEngine
from secretary.ui.app import create_app as create_ui_app
from tests.conftest import make_settings
from tests.helpers import FACES, SPEECH, free_port, running_server
from tests.stt import canary_model
from tests.stt.test_canary_api import canary_service_settings, needs_nemo

EXAMPLES = 15  # per operation; about a minute for the four services on 2 cores

_SPEECH = [(SPEECH / n).read_bytes() for n in ("en_cmu_arctic_aew_a0001.wav",
                                               "de_thorsten_plan_geklappt.wav")]
_PHOTOS = [(FACES / n).read_bytes() for n in ("pexels_woman_neutral.jpg",
                                              "noface_rocket_launch.jpg")]
schemathesis.openapi.media_type("audio/wav", st.sampled_from(_SPEECH))
schemathesis.openapi.media_type("image/jpeg", st.sampled_from(_PHOTOS))

# Real SDP offers of an aiortc peer (filled in by the realtime fixture, before any case is
# drawn): as they are, with one line replaced by anything, or not SDP at all.
_OFFERS: list[str] = []


def _mangled(offer: str, line: int, text: str, keep: int) -> str:
    """``offer`` with one line's value (after its first ``keep`` characters, such as
    ``a=`` or ``m=audio``) replaced by ``text``."""
    lines = offer.split("\r\n")
    index = line % len(lines)
    lines[index] = lines[index][:keep] + text
    return "\r\n".join(lines)


def _sdp_texts() -> st.SearchStrategy[str]:
    real = st.sampled_from(_OFFERS)
    value = st.one_of(st.text(max_size=40), st.from_regex(r"[0-9a-z :/.=-]{0,30}", fullmatch=True))
    return st.one_of(real, st.builds(_mangled, real, st.integers(0, 60), value,
                                     st.sampled_from([0, 2, 8])),
                     st.text(max_size=200))


def _sdp_bodies() -> st.SearchStrategy[bytes]:
    # surrogatepass: a lone surrogate becomes bytes that are not UTF-8 at all.
    return st.one_of(_sdp_texts().map(lambda t: t.encode("utf-8", "surrogatepass")),
                     st.binary(max_size=200))


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
_SESSIONS = st.one_of(
    st.sampled_from([{"type": "realtime", "instructions": "Be brief."},
                     {"type": "transcription"}, {"output_modalities": ["text"]},
                     {"audio": {"input": {"turn_detection": {"type": "server_vad",
                                                             "threshold": 7}}}}]),
    st.dictionaries(st.sampled_from(["type", "instructions", "audio", "voice", "tools",
                                     "output_modalities", "x"]), _JSON, max_size=4),
).map(json.dumps) | st.text(max_size=60)
schemathesis.openapi.media_type("application/sdp", st.deferred(_sdp_bodies))
schemathesis.openapi.format("sdp", st.deferred(_sdp_texts))
schemathesis.openapi.format("realtime-session", _SESSIONS)

_AUDIO_FIELDS = ("file", "audio", "speaker_audio")
_IMAGE_FIELDS = ("source_image",)


def _with_real_files(document: dict[str, Any]) -> dict[str, Any]:
    """Say which media type each upload field takes, so that real files are sent, and that
    the offers' form fields are SDP and a session configuration."""
    for operations in document["paths"].values():
        for operation in operations.values():
            form = (operation.get("requestBody", {}).get("content", {})
                    .get("multipart/form-data"))
            if not form:
                continue
            schema = form["schema"]
            if "$ref" in schema:
                schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            fields = schema.get("properties", {})
            for name, string_format in (("sdp", "sdp"), ("session", "realtime-session")):
                if fields.get(name, {}).get("type") == "string":
                    fields[name]["format"] = string_format
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


def _schema(url: str, adapt: Callable[[dict[str, Any]], dict[str, Any]] = lambda d: d
            ) -> Any:
    document = httpx.get(f"{url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(adapt(_with_real_files(document)))
    schema.config.update(base_url=url)
    return schema


# The services run once for the module: fuzzed themselves, and behind the UI's gateway.
@pytest.fixture(scope="module")
def tts_url(cache_dir: Path) -> Iterator[str]:
    settings_ = make_settings(cache_dir, tts={"routes": "*=espeak", "max_text_chars": 300})
    engine = EspeakEngine()
    engine.load()
    with running_server(create_tts_app(settings_, {"espeak": engine})) as url:
        yield url


@pytest.fixture(scope="module")
def stt_url(cache_dir: Path) -> Iterator[str]:
    settings_ = make_settings(cache_dir, stt={"beam_size": 1, "max_audio_seconds": 30})
    engine = WhisperEngine(settings_.stt, ModelStore(settings_.models_dir))
    with running_server(create_stt_app(settings_, engine)) as url:
        yield url


@pytest.fixture(scope="module")
def avatar_url(cache_dir: Path) -> Iterator[str]:
    settings_ = make_settings(cache_dir, avatar={"max_size": 192, "max_audio_seconds": 10})
    engine = MeshWarpEngine(settings_.avatar, FaceLandmarkerModel(settings_.models_dir))
    with running_server(create_avatar_app(settings_, engine)) as url:
        yield url


@pytest.fixture(scope="module")
def canary_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Canary service over the tiny randomly initialised Canary the Canary tests build
    (the published weights are not downloaded)."""
    settings_ = canary_service_settings(tmp_path_factory.mktemp("canary-fuzz"))
    settings_.canary.max_audio_seconds = 30
    archive = canary_model.build(tmp_path_factory.mktemp("canary-fuzz-build"))
    canary_model.place_in_hub_cache(archive, settings_.models_dir, "nvidia/canary-1b")
    with running_server(create_canary_app(settings_)) as url:
        yield url


async def _real_offers() -> list[str]:
    """What browsers and the OpenAI clients offer: audio (with the events' data channel),
    audio and video, and video alone (which has no microphone to hear)."""
    offers = []
    for kinds, channel in ((("audio",), True), (("audio", "video"), False), (("video",), False)):
        pc = RTCPeerConnection()
        for kind in kinds:
            pc.addTransceiver(kind)
        if channel:
            pc.createDataChannel("oai-events")
        await pc.setLocalDescription(await pc.createOffer())
        offers.append(pc.localDescription.sdp)
        await pc.close()
    return offers


@pytest.fixture(scope="module")
def realtime_url(cache_dir: Path) -> Iterator[str]:
    """The realtime service with its stages remote and unreachable: the offers open real
    sessions and peer connections, and nothing needs a model (no case says anything)."""
    if not _OFFERS:
        _OFFERS.extend(asyncio.run(_real_offers()))
    nowhere = f"http://127.0.0.1:{free_port()}"
    service = RealtimeService(make_settings(
        cache_dir, conversation={"stages": "remote", "avatar": False},
        realtime={"face": False, "max_sessions": 4},
        ui={"stt_url": nowhere, "tts_url": nowhere, "avatar_url": nowhere}))
    with running_server(create_realtime_app(service=service)) as url:
        yield url


@pytest.fixture(scope="module")
def ui_url(cache_dir: Path, stt_url: str, tts_url: str, avatar_url: str) -> Iterator[str]:
    settings_ = make_settings(cache_dir)
    settings_.ui = settings_.ui.model_copy(update={
        "stt_url": stt_url, "tts_url": tts_url, "avatar_url": avatar_url})
    with running_server(create_ui_app(settings_)) as url:
        yield url


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


def _check(case: Any) -> Any:
    return case.call_and_validate(
        checks=list(schemathesis.checks.CHECKS.get_all()),
        excluded_checks=[positive_data_acceptance, not_a_server_error], timeout=120)


def _fuzz(schema: Any, after: Callable[[Any], None] = lambda response: None,
          examples: int = EXAMPLES) -> dict[str, list[int]]:
    """Every operation, a few cases each; all failures reported together. ``after`` sees
    each response (to end what a case started). Returns the statuses by operation."""
    failures: list[str] = []
    calls: dict[str, list[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(_BOUNDED, max_examples=examples)
        def run(case: Any) -> None:
            response = _check(case)
            after(response)
            calls.setdefault(case.operation.label, []).append(response.status_code)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - collected, then reported together
            failures.append(f"{operation.label}: {exc}")
    print({label: sorted(set(statuses)) for label, statuses in calls.items()})
    assert not failures, "\n\n".join(failures)
    assert len(calls) == len(list(schema.get_all_operations()))
    return calls


def test_tts(tts_url: str) -> None:
    _fuzz(_schema(tts_url))


def test_stt(stt_url: str) -> None:
    _fuzz(_schema(stt_url))


def test_avatar(avatar_url: str) -> None:
    _fuzz(_schema(avatar_url))


@needs_nemo
def test_canary(canary_url: str) -> None:
    calls = _fuzz(_schema(canary_url))
    # Real clips reached the model: some transcriptions were answered.
    assert 200 in calls["POST /v1/audio/transcriptions"], calls


def test_realtime(realtime_url: str) -> None:
    def hang_up(response: Any) -> None:
        """Each call a case opened ends at once, so the sessions never run out."""
        if response.status_code == 201:
            call = response.headers["location"][0]
            assert httpx.post(f"{realtime_url}{call}/hangup").status_code == 200

    def offer_as_a_file(document: dict[str, Any]) -> dict[str, Any]:
        """Clients send the form's offer as a plain field or as a file; one route gets
        each (both run the same code)."""
        form = document["paths"]["/v1/realtime"]["post"]["requestBody"]["content"][
            "multipart/form-data"]
        form["schema"]["properties"]["sdp"] = {"type": "string", "format": "binary"}
        form["encoding"] = {"sdp": {"contentType": "application/sdp"}}
        return document

    # More cases than elsewhere: they are cheap, and the SDP parser has many corners.
    calls = _fuzz(_schema(realtime_url, offer_as_a_file), after=hang_up, examples=60)
    for offer in ("POST /v1/realtime", "POST /v1/realtime/calls"):
        # Offers were answered (real ones) and refused (broken ones), never a 5xx.
        assert {201, 400} <= set(calls[offer]), calls
    assert httpx.get(f"{realtime_url}/health").json()["sessions"] == 0


def _forwarded(metrics: str) -> float:
    """Requests a service counted on its own routes (not what the UI's status polls)."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("secretary_http_requests_total{"):
            route = re.search(r'route="([^"]*)"', line)
            if route and route.group(1) not in ("/health", "/metrics"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _routes(url: str) -> dict[str, list[str]]:
    """A service's own routes without parameters, by method, as paths under the gateway."""
    found: dict[str, list[str]] = {}
    for path, operations in httpx.get(f"{url}/openapi.json").json()["paths"].items():
        if "{" not in path:
            for method in operations:
                found.setdefault(method, []).append(path.lstrip("/"))
    return found


def test_ui(ui_url: str, stt_url: str, tts_url: str, avatar_url: str) -> None:
    services = list(httpx.get(f"{ui_url}/api/config").json()["services"])
    upstreams = {"stt": stt_url, "tts": tts_url, "avatar": avatar_url}
    assert sorted(services) == sorted(upstreams)
    routes = {name: _routes(url) for name, url in upstreams.items()}

    def gateway_to(names: list[str], *, only_gateway: bool = False
                   ) -> Callable[[dict[str, Any]], dict[str, Any]]:
        """The gateway's service names as the server knows them (a made-up name stops at
        the gateway's 404 and never reaches the forwarding), and paths that are the
        services' routes as well as anything at all."""
        def adapt(document: dict[str, Any]) -> dict[str, Any]:
            if only_gateway:
                document["paths"] = {"/api/{service}/{path}":
                                     document["paths"]["/api/{service}/{path}"]}
            for operations in document["paths"].values():
                for method, operation in operations.items():
                    for parameter in operation.get("parameters", []):
                        if parameter["in"] != "path":
                            continue
                        if parameter["name"] == "service":
                            parameter["schema"] = {"type": "string", "enum": names}
                        elif parameter["name"] == "path":
                            known = sorted({r for n in names for r in routes[n].get(method, [])})
                            # A format of its own: an anyOf of an enum and any string is
                            # drawn as any string, so the routes would never come up.
                            paths = f"gateway-{method}-{'-'.join(names)}"
                            schemathesis.openapi.format(paths, st.one_of(
                                st.sampled_from(known), st.text()) if known else st.text())
                            parameter["schema"] = {"type": "string", "format": paths}
            return document
        return adapt

    _fuzz(_schema(ui_url, gateway_to(services)))  # the whole UI
    for name in services:  # and the gateway to each service in turn
        metrics = f"{upstreams[name]}/metrics"
        before = _forwarded(httpx.get(metrics).text)
        calls = _fuzz(_schema(ui_url, gateway_to([name], only_gateway=True)))
        # Reached through it, and answered through it (its voices, models, health).
        assert _forwarded(httpx.get(metrics).text) > before, (name, calls)
        assert 200 in calls["GET /api/{service}/{path}"], (name, calls)
