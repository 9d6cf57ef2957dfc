"""The UI's gateway between the page and the services: a slow service is a 504, a body
too large (for the gateway or for the service behind it) a 413 in the services' error
shape, and the gateway's own metrics count what it forwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from fastapi import FastAPI

from secretary.catalog import ModelStore
from secretary.stt.app import create_app as create_stt_app
from secretary.stt.whisper import WhisperEngine
from secretary.ui.app import create_app
from tests.conftest import make_settings
from tests.helpers import SPEECH, free_port, requests_counted, running_server
from tests.ui.support import ui_settings

JFK = SPEECH / "en_jfk_ask_not.flac"  # 1.1 MB


def _slow_service(seconds: float) -> FastAPI:
    """A service that answers its health check at once and its work after ``seconds``."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/transcribe")
    async def transcribe() -> dict:
        await asyncio.sleep(seconds)
        return {"text": "too late"}

    return app


def test_a_service_that_does_not_answer_in_time_is_a_504(cache_dir: Path) -> None:
    with running_server(_slow_service(5.0)) as slow:
        settings = ui_settings(cache_dir, stt_url=slow, upstream_timeout=0.5)
        with running_server(create_app(settings)) as url:
            answer = httpx.post(f"{url}/api/stt/transcribe", timeout=30,
                                files={"file": ("a.wav", b"RIFF")})
            assert answer.status_code == 504
            error = answer.json()["error"]
            assert error["code"] == "upstream_timeout" and error["param"] == "stt"
            assert slow in error["message"] and "in time" in error["message"]
            # The gateway keeps serving, and the service still counts as up.
            assert httpx.get(f"{url}/api/status").json()["services"]["stt"]["state"] == "up"


def test_a_body_too_large_for_the_service_is_relayed_as_its_413(cache_dir: Path) -> None:
    stt = make_settings(cache_dir, max_upload_mb=0.5)
    stt.stt.preload = False  # the size limit answers before any model is needed
    engine = WhisperEngine(stt.stt, ModelStore(stt.models_dir))
    with running_server(create_stt_app(stt, engine)) as stt_url:
        direct = httpx.post(f"{stt_url}/transcribe", files={"file": ("big.flac",
                                                                     JFK.read_bytes())})
        settings = ui_settings(cache_dir, stt_url=stt_url)
        with running_server(create_app(settings)) as url:
            relayed = httpx.post(f"{url}/api/stt/transcribe",
                                 files={"file": ("big.flac", JFK.read_bytes())})
    assert direct.status_code == 413
    assert relayed.status_code == 413
    assert relayed.headers["content-type"] == "application/json"
    assert relayed.json() == direct.json()
    assert relayed.json()["error"]["code"] == "payload_too_large"
    assert not engine.loaded


def test_a_body_too_large_for_the_gateway_is_its_own_413(cache_dir: Path) -> None:
    # Nothing listens behind it: a 413 proves the gateway refused the body itself.
    settings = make_settings(cache_dir, max_upload_mb=0.5)
    settings.ui = settings.ui.model_copy(update={"stt_url": f"http://127.0.0.1:{free_port()}"})
    with running_server(create_app(settings)) as url:
        answer = httpx.post(f"{url}/api/stt/transcribe",
                            files={"file": ("big.flac", JFK.read_bytes())})
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "payload_too_large"
        small = httpx.post(f"{url}/api/stt/transcribe", files={"file": ("a.wav", b"RIFF")})
        assert small.status_code == 503  # forwarded, to nobody


def test_metrics_count_requests(cache_dir: Path) -> None:
    with running_server(create_app(ui_settings(cache_dir))) as url:
        before = httpx.get(f"{url}/metrics").text
        for text in ("Call the dentist.", "Book a table."):
            assert httpx.post(f"{url}/api/reply", json={"text": text}).status_code == 200
        assert httpx.post(f"{url}/api/reply", json={"text": " "}).status_code == 400
        after = httpx.get(f"{url}/metrics").text
    assert (requests_counted(after, "/api/reply", "200")
            - requests_counted(before, "/api/reply", "200")) == 2
    assert (requests_counted(after, "/api/reply", "400")
            - requests_counted(before, "/api/reply", "400")) == 1


def test_a_refused_body_that_stalls_still_gets_its_413(cache_dir: Path) -> None:
    """The service reads a refused body on (so a sender such as the gateway gets the 413
    rather than a reset), but not forever: a client that stops sending is answered."""
    import socket

    stt = make_settings(cache_dir, max_upload_mb=0.5)
    stt.stt.preload = False
    engine = WhisperEngine(stt.stt, ModelStore(stt.models_dir))
    with running_server(create_stt_app(stt, engine)) as stt_url:
        port = int(stt_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"POST /transcribe HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000"
                         b"\r\nContent-Type: multipart/form-data; boundary=b\r\n\r\n"
                         + b"x" * 1000)  # then nothing more
            answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
