"""SECRETARY_RAY_*: parsing, one-line errors, what each deployment is given; the two ASGI
pieces (open paths under a prefix, the proxy's errors as JSON). No cluster needed."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from starlette.responses import PlainTextResponse, Response

from secretary.config import Settings, describe_invalid
from secretary.scale.deployments import OpenPaths, deployment_options, replica_settings
from secretary.scale.proxy import JsonErrors
from secretary.scale.settings import RaySettings
from tests.conftest import make_settings


def test_per_service_numbers_with_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETARY_RAY_MAX_REPLICAS", "stt=8, tts=3,*=2")
    monkeypatch.setenv("SECRETARY_RAY_GPUS", "stt=0.25")
    settings = RaySettings(_env_file=None)
    assert settings.replicas("stt") == (1, 8)
    assert settings.replicas("calendar") == (1, 2)
    assert settings.resources("stt") == (0.5, 0.25)
    assert settings.resources("ui") == (0.1, 0.0)
    assert settings.target("stt") is None  # derived


@pytest.mark.parametrize(("variable", "value", "said"), [
    ("SECRETARY_RAY_MAX_REPLICAS", "sst=2", "unknown service 'sst'"),
    ("SECRETARY_RAY_CPUS", "stt=lots", "'lots' in 'stt=lots' is not a number"),
    ("SECRETARY_RAY_GPUS", "stt", "'stt' is not 'service=number'"),
    ("SECRETARY_RAY_MIN_REPLICAS", "stt=5", "MIN_REPLICAS of stt (5) is above"),
    ("SECRETARY_RAY_MAX_REPLICAS", "tts=1.5", "MAX_REPLICAS of tts must be a whole number"),
    ("SECRETARY_RAY_TARGET_ONGOING_REQUESTS", "stt=0", "must be above 0"),
    ("SECRETARY_RAY_UI_PREFIX", "ui", "SECRETARY_RAY_UI_PREFIX"),
])
def test_a_wrong_value_is_one_line_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as error:
        Settings(_env_file=None)
    line = describe_invalid(error.value)
    assert said in line and "\n" not in line, line


def test_each_deployment_takes_what_its_service_takes(cache_dir: Path) -> None:
    settings = make_settings(cache_dir)
    settings.stt.max_concurrency, settings.stt.max_queue = 2, 8
    settings.realtime.max_sessions = 4
    settings.ray.gpus = "stt=0.5"
    stt = deployment_options(settings, "stt")
    assert stt["max_ongoing_requests"] == 10  # its queue's capacity: past it, a 503
    assert stt["autoscaling_config"]["target_ongoing_requests"] == 2
    assert stt["ray_actor_options"]["num_gpus"] == 0.5
    realtime = deployment_options(settings, "realtime")
    # Its sessions plus one, which it refuses as the single machine does.
    assert realtime["max_ongoing_requests"] == 5
    assert realtime["autoscaling_config"]["target_ongoing_requests"] == 3
    assert "num_gpus" not in realtime["ray_actor_options"]
    settings.ray.target_ongoing_requests = "stt=1"
    settings.ray.stt_batch_size = 8
    stt = deployment_options(settings, "stt")
    assert stt["autoscaling_config"]["target_ongoing_requests"] == 1
    assert stt["max_ongoing_requests"] == 16  # 8 at once, so that a batch can form


def test_the_conversation_calls_the_deployed_stages_through_the_proxy(
        cache_dir: Path) -> None:
    settings = make_settings(cache_dir)
    settings.ui.avatar_url = "http://gpu-box:8081"  # chosen: kept
    proxy = "http://127.0.0.1:8000"
    ui = replica_settings(settings, "ui", ["stt", "tts", "avatar", "ui", "realtime"], proxy)
    assert ui.ui.stt_url == "http://127.0.0.1:8000/stt"
    assert ui.ui.tts_url == "http://127.0.0.1:8000/tts"
    assert ui.ui.realtime_url == "http://127.0.0.1:8000/realtime"
    assert ui.ui.avatar_url == "http://gpu-box:8081"
    assert ui.conversation.stage("stt") == ui.conversation.stage("tts") == "remote"
    assert settings.ui.stt_url is None  # the original is untouched
    alone = replica_settings(settings, "realtime", ["realtime", "tts"], proxy)
    assert alone.conversation.stage("stt") == "local"  # not deployed: in the replica
    assert alone.conversation.stage("tts") == "remote"
    settings.conversation.stages = "local"  # chosen: every stage in the replica
    assert replica_settings(settings, "ui", ["stt", "ui"], proxy).conversation.stage(
        "stt") == "local"


async def _app_seeing_path(scope, receive, send) -> None:
    await PlainTextResponse(scope["path"])(scope, receive, send)


async def test_health_and_metrics_keep_their_own_paths_under_a_prefix() -> None:
    transport = httpx.ASGITransport(app=OpenPaths(_app_seeing_path), root_path="/stt")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/stt/health")).text == "/health"
        assert (await client.get("/stt/metrics")).text == "/metrics"
        assert (await client.get("/stt/v1/models")).text == "/stt/v1/models"


def _answering(status: int, body: str, media_type: str | None = "text/plain",
               raise_error: bool = False, silent: bool = False):
    async def app(scope, receive, send) -> None:
        if raise_error:
            raise RuntimeError("lost the replica")
        if silent:
            return
        await Response(body, status_code=status, media_type=media_type)(scope, receive, send)
    return app


@pytest.mark.parametrize(("app", "status", "code"), [
    (_answering(0, "", silent=True), 500, "replica_failed"),
    (_answering(0, "", raise_error=True), 500, "replica_failed"),
    (_answering(503, "Request dropped due to backpressure"), 503, "service_unavailable"),
    (_answering(408, "Request timed out after 60s."), 408, "request_timeout"),
])
async def test_the_proxys_own_errors_become_json(app, status: int, code: str) -> None:
    transport = httpx.ASGITransport(app=JsonErrors(app), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/stt/v1/models")
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == code and error["type"] == "server_error" and error["message"]
    if status == 503:
        assert answer.headers["retry-after"]


async def test_the_services_own_answers_pass_unchanged() -> None:
    body = json.dumps({"error": {"code": "busy", "message": "full", "type": "server_error"}})
    for app, status, text in (
            (_answering(503, body, "application/json"), 503, body),
            (_answering(200, "hello"), 200, "hello"),
            (_answering(404, "Not Found"), 404, "Not Found")):
        transport = httpx.ASGITransport(app=JsonErrors(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.get("/x")
        assert (answer.status_code, answer.text) == (status, text)
