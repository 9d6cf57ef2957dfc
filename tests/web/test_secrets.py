"""Upstream errors reach the page without credentials: a chat model that echoes the
request's Authorization header, and URLs written with user:password."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from secretary.errors import redact_url, scrub
from secretary.ui.app import create_app
from tests.conftest import make_settings
from tests.helpers import free_port, running_server

CHAT_KEY = "sk-very-secret-chat-key-42"
PASSWORD = "hunter2-password"


def _echoing_chat() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def refuse(request: Request) -> JSONResponse:
        echoed = request.headers.get("authorization")
        return JSONResponse(status_code=401, content={"error": {
            "message": f"Incorrect API key provided: {echoed}; headers were "
                       f"{dict(request.headers)}", "type": "invalid_request_error"}})

    return app


def _assert_clean(text: str) -> None:
    for secret in (CHAT_KEY, PASSWORD, "alice:"):
        assert secret not in text, text


def test_a_chat_model_echoing_the_key_does_not_leak_it(cache_dir: Path) -> None:
    with running_server(_echoing_chat()) as chat:
        host = chat.removeprefix("http://")
        settings = make_settings(cache_dir)
        settings.ui = settings.ui.model_copy(update={
            "chat_url": f"http://alice:{PASSWORD}@{host}/v1", "chat_model": "m",
            "chat_api_key": SecretStr(CHAT_KEY)})
        with running_server(create_app(settings)) as url:
            answer = httpx.post(f"{url}/api/reply", json={"text": "hello"})
            assert answer.status_code == 502
            assert "HTTP 401" in answer.json()["error"]["message"]
            _assert_clean(answer.text)
            assert "***@" in answer.text  # the URL is still named, without its password


def test_unreachable_urls_with_passwords_are_not_printed(cache_dir: Path) -> None:
    closed = f"alice:{PASSWORD}@127.0.0.1:{free_port()}"
    settings = make_settings(cache_dir)
    settings.ui = settings.ui.model_copy(update={
        "chat_url": f"http://{closed}/v1", "chat_model": "m",
        "tts_url": f"http://{closed}"})
    with running_server(create_app(settings)) as url:
        reply = httpx.post(f"{url}/api/reply", json={"text": "hello"})
        assert reply.status_code == 503
        forwarded = httpx.get(f"{url}/api/tts/voices")
        assert forwarded.status_code == 503
        status = httpx.get(f"{url}/api/status")
        for answer in (reply, forwarded, status):
            _assert_clean(answer.text)


def test_redaction_helpers() -> None:
    assert redact_url("https://u:p@example.org:8443/v1?x=1") == "https://***@example.org:8443/v1?x=1"
    assert redact_url("http://127.0.0.1:8083") == "http://127.0.0.1:8083"
    text = scrub("Authorization: Bearer abc.def-123, cookie=xyz; key k3y-value",
                 ("k3y-value",))
    assert "abc.def-123" not in text and "xyz" not in text and "k3y-value" not in text
