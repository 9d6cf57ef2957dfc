"""The UI gateway keeps forwarded paths inside the service's base path, hands each service
exactly the path the page asked for (decoded once, whatever it holds), and paths with
control characters are a 4xx, not a 500. Fuzzed over the names of the services the gateway
really forwards to, with a real HTTP server behind it that records what it is asked."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI, Request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secretary.ui.app import create_app
from tests.conftest import make_settings
from tests.helpers import running_server

Gateway = tuple[str, list[str], list[str]]


@pytest.fixture(scope="module")
def gateway(cache_dir: Path) -> Iterator[Gateway]:
    """The UI in front of one recording server, each service at its own base path (tts at
    ``/base``); yields the UI's URL, the paths the server was asked for (as its routing
    saw them: decoded) and the service names the UI forwards to."""
    seen: list[str] = []
    upstream = FastAPI()

    @upstream.api_route("/{anything:path}", methods=["GET", "POST"])
    async def record(anything: str, request: Request) -> dict:
        seen.append(request.scope["path"])
        return {"path": request.scope["path"]}

    with running_server(upstream) as service_url:
        # Only the gateway is used here: the turn's engines need not load.
        settings_ = make_settings(cache_dir, conversation={"preload": False})
        settings_.ui = settings_.ui.model_copy(update={
            "tts_url": f"{service_url}/base", "stt_url": f"{service_url}/stt-base",
            "avatar_url": f"{service_url}/avatar-base/"})
        with running_server(create_app(settings_)) as ui_url:
            names = list(httpx.get(f"{ui_url}/api/config").json()["services"])
            yield ui_url, seen, names


def _raw_request(url: str, target: str, method: str = "GET") -> tuple[int, bytes]:
    """Send ``target`` exactly as written (clients normalise dot segments away)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _raw_get(url: str, target: str) -> tuple[int, bytes]:
    return _raw_request(url, target)


@pytest.mark.parametrize("target", ["/api/tts/%01", "/api/tts/%00", "/api/tts/%0D", "/api/tts/x%0A",
                                    "/api/tts/%7F", "/api/tts/a%0Ab", "/api/tts/%C2%85"])
def test_control_characters_are_a_4xx(gateway: Gateway, target: str) -> None:
    status, body = _raw_get(gateway[0], target)
    assert 400 <= status < 500, (status, body)
    assert b'"error"' in body


@pytest.mark.parametrize("target", [
    "/api/tts/../x", "/api/tts/%2e%2e/x", "/api/tts/%2E%2E/x", "/api/tts/.%2e/x",
    "/api/tts/a/%2e%2e/%2e%2e/x", "/api/tts/..%2fx", "/api/tts/%2e%2e%2fx",
    "/api/tts/..%5cx", "/api/tts/./x"])
def test_dot_segments_cannot_leave_the_base_path(gateway: Gateway, target: str) -> None:
    url, seen, _ = gateway
    before = len(seen)
    status, body = _raw_get(url, target)
    assert all(p.startswith("/base/") for p in seen[before:]), seen[before:]
    assert status in (400, 404), (status, body)


def test_ordinary_paths_still_reach_the_service(gateway: Gateway) -> None:
    status, body = _raw_get(gateway[0], "/api/tts/voices?x=1")
    assert status == 200 and b'"/base/voices"' in body


@pytest.mark.parametrize(("target", "arrives"), [
    ("/api/tts/a%23b", "/base/a#b"),  # '#' and '?' are part of the segment, not the URL's
    ("/api/tts/a%3Fb?x=1", "/base/a?b"),
    ("/api/tts/%252e%252e/x", "/base/%2e%2e/x"),  # an escaped escape is not '..'
    ("/api/tts/a%2525b", "/base/a%25b"),
    ("/api/tts/a%25b", "/base/a%b"),
    ("/api/tts/caf%C3%A9%20au%20lait", "/base/café au lait"),
    ("/api/stt/v1/models/org%2Fname:tag", "/stt-base/v1/models/org/name:tag"),
    ("/api/avatar//health", "/avatar-base/health"),
])
def test_the_service_gets_exactly_the_decoded_path(gateway: Gateway, target: str,
                                                   arrives: str) -> None:
    url, seen, _ = gateway
    before = len(seen)
    status, body = _raw_get(url, target)
    assert status == 200, (status, body)
    assert seen[before:] == [arrives]


# Segments of any characters, weighted towards those a URL treats specially once decoded.
_SEGMENT = st.lists(st.one_of(
    st.sampled_from(["#", "?", "%", "%2e", "%25", "%2F", ".", "..", "/", "\\", " ", ";", "é"]),
    st.characters(exclude_categories=["Cs"])), max_size=6).map("".join)


def _refused(decoded: str) -> bool:
    """What the gateway refuses (4xx): control characters, and '.' or '..' segments."""
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in decoded):
        return True
    return any(s in (".", "..") for s in decoded.replace("\\", "/").split("/"))


@given(index=st.integers(0, 2), segments=st.lists(_SEGMENT, max_size=4),
       method=st.sampled_from(["GET", "POST"]))
@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_fuzzed_paths_reach_each_service_exactly(gateway: Gateway, index: int,
                                                 segments: list[str], method: str) -> None:
    """Any path under a real service name: a 4xx from the gateway for what it refuses,
    otherwise the service (the recording server) is asked for exactly that path, decoded,
    under the service's base path; never a 5xx."""
    url, seen, names = gateway
    name = names[index]
    decoded = "/".join(segments)
    target = f"/api/{name}/" + "/".join(quote(s, safe="") for s in segments)
    before = len(seen)
    status, body = _raw_request(url, target, method)
    if _refused(decoded):
        assert 400 <= status < 500 and b'"error"' in body, (target, status, body)
        assert seen[before:] == []
        return
    assert status == 200, (target, status, body)
    base = {"tts": "/base", "stt": "/stt-base", "avatar": "/avatar-base"}[name]
    parts = [p for p in decoded.replace("\\", "/").split("/") if p]
    assert seen[before:] == [base + "/" + "/".join(parts)], target
