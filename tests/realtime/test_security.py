"""Who may use the live service: the Origin check on the WebSocket handshake, the API key on
the WebSocket (the ``openai`` package's realtime client) and on WebRTC offers (a real
aiortc peer's SDP), the Host allow-list on the handshake, and offers that cannot be
answered costing no session.

The service here is a real one whose conversation stages are remote, at an address with
nothing behind it: nothing is said in these tests, so no model needs loading, and a session
that opens (``session.created``, an SDP answer) is the proof of having been let in.

A refused WebSocket is refused at the handshake with the HTTP answer any request gets (401
for a key, 400 for a host name, 403 for another site) and its JSON error, so no session
ever opens.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from aiortc import RTCPeerConnection
from openai import AsyncOpenAI

from secretary.realtime.app import create_app
from secretary.realtime.service import RealtimeService
from secretary.web.security import LOOPBACK_HOSTS
from tests.conftest import make_settings
from tests.helpers import free_port, running_server

KEY = "live-key-0123456789"
PATH = "/v1/realtime?model=secretary-realtime"


@contextmanager
def live_service(cache_dir: Path, **settings: Any) -> Iterator[tuple[str, RealtimeService]]:
    """A running realtime service with ``settings``; its stages are remote and unreachable
    (no model is loaded), so only who gets in is tested."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    service = RealtimeService(make_settings(
        cache_dir, **settings, conversation={"stages": "remote", "avatar": False},
        realtime={"face": False, "max_sessions": 2},
        ui={"stt_url": nowhere, "tts_url": nowhere, "avatar_url": nowhere}))
    with running_server(create_app(service=service)) as url:
        yield url, service


@pytest.fixture(scope="module")
def open_service(cache_dir: Path) -> Iterator[tuple[str, RealtimeService]]:
    with live_service(cache_dir) as running:
        yield running


@pytest.fixture(scope="module")
def keyed_service(cache_dir: Path) -> Iterator[tuple[str, RealtimeService]]:
    with live_service(cache_dir, api_key=f"{KEY},other-key-9876543210") as running:
        yield running


@asynccontextmanager
async def handshake(url: str, *, host: str | None = None, **options: Any
                    ) -> AsyncIterator[websockets.ClientConnection]:
    """A WebSocket to the service at ``url``, naming ``host`` in its Host header (the
    connection still goes to the server's own address)."""
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port)) if host else None
    uri = f"ws://{host or '127.0.0.1'}:{port}{PATH}"
    async with websockets.connect(uri, sock=sock, open_timeout=30, **options) as ws:
        yield ws


async def first_event(ws: websockets.ClientConnection) -> str:
    return json.loads(await ws.recv())["type"]


async def refused(url: str, **options: Any) -> int:
    """The HTTP status a WebSocket handshake is refused with (fails if it is let in)."""
    with pytest.raises(websockets.InvalidStatus) as caught:
        async with handshake(url, **options):
            pass
    return caught.value.response.status_code


async def post_offer(url: str, headers: dict[str, str]) -> httpx.Response:
    """A real aiortc peer's SDP offer posted to ``/v1/realtime/calls`` with ``headers``."""
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(timeout=60) as client:
            return await client.post(f"{url}/v1/realtime/calls",
                                     content=pc.localDescription.sdp,
                                     headers={"Content-Type": "application/sdp", **headers})
    finally:
        await pc.close()


async def test_cross_site_websocket_is_refused_and_same_site_is_let_in(
        open_service: tuple[str, RealtimeService]) -> None:
    url, service = open_service
    port = url.rsplit(":", 1)[1]
    for origin in ("http://attacker.example", "null", "http://127.0.0.1.attacker.example",
                   f"http://attacker.example:{port}"):
        assert await refused(url, origin=origin) == 403, origin
        assert not service.leases, origin  # no session was opened for it
    # A browser's page on this host (any port: the UI's page calls it directly).
    for origin in (url, "http://127.0.0.1:8085", "https://127.0.0.1"):
        async with handshake(url, origin=origin) as ws:
            assert await first_event(ws) == "session.created", origin
    async with handshake(url) as ws:  # not a browser: no Origin at all
        assert await first_event(ws) == "session.created"


async def test_cross_site_webrtc_offer_is_refused(
        open_service: tuple[str, RealtimeService]) -> None:
    url, service = open_service
    answer = await post_offer(url, {"Origin": "http://attacker.example"})
    assert answer.status_code == 403, (answer.status_code, answer.text[:80])
    assert answer.json()["error"]["code"] == "cross_origin"
    assert not service.leases


async def _offer(*, audio: bool = True) -> str:
    """A real aiortc peer's offer: a microphone (or none) and the events' data channel."""
    pc = RTCPeerConnection()
    if audio:
        pc.addTransceiver("audio")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    return pc.localDescription.sdp


# Offers that aiortc reads but cannot use, each as a fuzzer found one: every one was a 500,
# and "no direction" left its session holding a place. (microphone?, how it is broken)
_BROKEN_OFFERS: dict[str, tuple[bool, Callable[[str], str]]] = {
    "no direction": (True, lambda sdp: sdp.replace("a=sendrecv\r\n", "")),
    "fmtp of no codec": (True, lambda sdp: sdp.replace(
        "a=rtpmap:96 opus/48000/2\r\n", "a=rtpmap:96 opus/48000/2\r\na=fmtp:123 x=1\r\n")),
    "no setup": (True, lambda sdp: sdp.replace("a=setup:actpass\r\n", "")),
    "bundle led by no section": (True, lambda sdp: sdp.replace("a=group:BUNDLE 0 1",
                                                                "a=group:BUNDLE 9 0 1")),
    # Refused for having no microphone; aiortc then fails to close what it set up.
    "no microphone, bundle led by no section": (False, lambda sdp: sdp.replace(
        "a=group:BUNDLE 0", "a=group:BUNDLE 9 0")),
}


@pytest.mark.parametrize("broken", list(_BROKEN_OFFERS))
async def test_offers_that_cannot_be_answered_are_a_400_and_hold_no_place(
        open_service: tuple[str, RealtimeService], broken: str) -> None:
    url, service = open_service
    audio, spoil = _BROKEN_OFFERS[broken]
    offer = await _offer(audio=audio)
    sdp = spoil(offer)
    assert sdp != offer
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for _ in range(3):  # more than the two places: a place kept would show as a 503
            answer = await client.post("/v1/realtime/calls", content=sdp,
                                       headers={"Content-Type": "application/sdp"})
            assert answer.status_code == 400, (answer.status_code, answer.text[:200])
            assert answer.json()["error"]["param"] == "sdp"
        assert not service.leases
        answered = await client.post("/v1/realtime/calls", content=await _offer(),
                                     headers={"Content-Type": "application/sdp"})
        assert answered.status_code == 201, answered.text
        await client.post(f"{answered.headers['location']}/hangup")


def _client(url: str, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


async def test_websocket_needs_the_key(keyed_service: tuple[str, RealtimeService]) -> None:
    url, service = keyed_service
    for key in ("wrong-key", KEY[:-1], f"{KEY}x"):
        with pytest.raises(websockets.InvalidStatus) as caught:
            async with _client(url, key).realtime.connect(model="secretary-realtime"):
                pass
        assert caught.value.response.status_code == 401, key
        error = json.loads(caught.value.response.body)["error"]
        assert error["code"] == "unauthorized" and "API key" in error["message"], error
    assert await refused(url) == 401  # no Authorization header at all
    # The browsers' form (the key in a subprotocol) is not taken: only the header is.
    assert await refused(url, subprotocols=[
        websockets.Subprotocol("realtime"),
        websockets.Subprotocol(f"openai-insecure-api-key.{KEY}")]) == 401
    assert not service.leases
    for key in (KEY, "other-key-9876543210"):
        async with _client(url, key).realtime.connect(model="secretary-realtime") as live:
            event = await live.recv()
            assert event.type == "session.created", key


async def test_webrtc_offer_needs_the_key(keyed_service: tuple[str, RealtimeService]) -> None:
    url, service = keyed_service
    for headers in ({}, {"Authorization": "Bearer wrong-key"},
                    {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY}):
        answer = await post_offer(url, headers)
        assert answer.status_code == 401, (headers, answer.status_code, answer.text[:80])
        assert answer.json()["error"]["code"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
    assert not service.leases
    auth = {"Authorization": f"Bearer {KEY}"}
    answer = await post_offer(url, auth)
    assert answer.status_code == 201, answer.text
    assert answer.text.startswith("v=0") and "m=audio" in answer.text
    call = answer.headers["location"]
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        # Hanging up is a state change too: it needs the key.
        assert (await client.post(f"{call}/hangup")).status_code == 401
        hung_up = await client.post(f"{call}/hangup", headers=auth)
        assert hung_up.status_code == 200 and hung_up.json()["status"] == "ended"
        # What a load balancer polls stays open.
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 401


def _machine() -> str:
    name = socket.gethostname().lower()
    assert name not in LOOPBACK_HOSTS, "the test needs a machine name that is not loopback"
    return name


@pytest.mark.parametrize(("settings", "allowed", "refused_names"), [
    # SECRETARY_HOST names the service; a service on a named address is on the network,
    # so the machine's name is fine too.
    ({"host": "secretary.lan"}, ["secretary.lan", "SECRETARY.lan", "{machine}"],
     ["attacker.example", "secretary.lan.attacker.example"]),
    # Listening everywhere: the machine's name (and its mDNS form) reach it.
    ({"host": "0.0.0.0"}, ["{machine}", "{machine}.local", "localhost"],
     ["attacker.example", "0.0.0.0.attacker.example"]),
    # Loopback only: nobody else can use the machine's name to reach it.
    ({"host": "127.0.0.1"}, ["localhost", "127.0.0.1"], ["{machine}", "{machine}.local"]),
    ({"allowed_hosts": "rt.internal,live.example"}, ["rt.internal", "live.example"],
     ["other.internal", "{machine}"]),
    ({"allowed_hosts": "*"}, ["attacker.example", "{machine}", "anything.at.all"], []),
], ids=["host", "any-address", "loopback", "allowed-hosts", "star"])
async def test_host_allow_list_on_the_handshake(cache_dir: Path, settings: dict[str, str],
                                                allowed: list[str],
                                                refused_names: list[str]) -> None:
    machine = _machine()
    with live_service(cache_dir, **settings) as (url, service):
        for name in refused_names:
            assert await refused(url, host=name.format(machine=machine)) == 400, name
            # The HTTP routes answer a rebound name with the JSON 400.
            async with httpx.AsyncClient() as client:
                health = await client.get(f"{url}/health",
                                          headers={"host": name.format(machine=machine)})
            assert health.status_code == 400, name
            assert health.json()["error"]["code"] == "host_not_allowed"
        assert not service.leases  # a refused name never got a session
        for name in allowed:
            async with handshake(url, host=name.format(machine=machine)) as ws:
                assert await first_event(ws) == "session.created", name
