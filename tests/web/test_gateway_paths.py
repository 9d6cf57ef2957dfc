"""The UI gateway keeps forwarded paths inside the service's base path, and paths with
control characters are a 4xx, not a 500."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Request

from secretary.ui.app import create_app
from tests.conftest import make_settings
from tests.helpers import running_server


@pytest.fixture(scope="module")
def gateway(cache_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """The UI in front of a service configured at ``/base``; yields the UI's URL and the
    paths the service was asked for."""
    seen: list[str] = []
    upstream = FastAPI()

    @upstream.api_route("/{anything:path}", methods=["GET", "POST"])
    async def record(anything: str, request: Request) -> dict:
        seen.append(request.url.path)
        return {"path": request.url.path}

    with running_server(upstream) as service_url:
        settings = make_settings(cache_dir)
        settings.ui = settings.ui.model_copy(update={"tts_url": f"{service_url}/base"})
        with running_server(create_app(settings)) as ui_url:
            yield ui_url, seen


def _raw_get(url: str, target: str) -> tuple[int, bytes]:
    """Send ``target`` exactly as written (clients normalise dot segments away)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                     .encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("target", ["/api/tts/%01", "/api/tts/%00", "/api/tts/%0D",
                                    "/api/tts/%7F", "/api/tts/a%0Ab", "/api/tts/%C2%85"])
def test_control_characters_are_a_4xx(gateway: tuple[str, list[str]], target: str) -> None:
    status, body = _raw_get(gateway[0], target)
    assert 400 <= status < 500, (status, body)
    assert b'"error"' in body


@pytest.mark.parametrize("target", [
    "/api/tts/../x", "/api/tts/%2e%2e/x", "/api/tts/%2E%2E/x", "/api/tts/.%2e/x",
    "/api/tts/a/%2e%2e/%2e%2e/x", "/api/tts/..%2fx", "/api/tts/%2e%2e%2fx",
    "/api/tts/..%5cx", "/api/tts/./x"])
def test_dot_segments_cannot_leave_the_base_path(gateway: tuple[str, list[str]],
                                                 target: str) -> None:
    url, seen = gateway
    before = len(seen)
    status, body = _raw_get(url, target)
    assert all(p.startswith("/base/") for p in seen[before:]), seen[before:]
    assert status in (400, 404), (status, body)


def test_ordinary_paths_still_reach_the_service(gateway: tuple[str, list[str]]) -> None:
    status, body = _raw_get(gateway[0], "/api/tts/voices?x=1")
    assert status == 200 and b'"/base/voices"' in body
