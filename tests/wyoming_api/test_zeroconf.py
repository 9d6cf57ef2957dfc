"""Zeroconf: off by default, refused on loopback, and when on, both servers are found
over real mDNS (``_wyoming._tcp``) the way Home Assistant finds them, and withdrawn when
the service stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from zeroconf.asyncio import AsyncZeroconf

from secretary.errors import ModelUnavailableError
from secretary.stt.whisper import WhisperEngine
from secretary.tts.espeak import EspeakEngine
from secretary.tts.piper import PiperEngine
from secretary.wyoming.server import WyomingServers
from secretary.wyoming.service import WyomingService
from tests.conftest import make_settings
from tests.helpers import needs
from tests.wyoming_api.conftest import Wyoming, wyoming_server

SERVICE_TYPE = "_wyoming._tcp.local."


def _network_address() -> str | None:
    """This machine's address on its default route, if it has one besides loopback."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("224.0.0.251", 5353))
        address = probe.getsockname()[0]
        return None if address.startswith("127.") else address
    return None


ADDRESS = _network_address()


def test_off_by_default(wyoming: Wyoming) -> None:
    assert wyoming.settings.wyoming.zeroconf is False
    assert wyoming.settings.host == "127.0.0.1"


def test_refused_on_loopback(cache_dir: Path) -> None:
    settings = make_settings(cache_dir)
    settings.wyoming.zeroconf = True
    servers = WyomingServers(WyomingService(settings, None, None))
    with pytest.raises(ModelUnavailableError, match="listen on loopback"):
        servers.announce_address()
    settings.wyoming.zeroconf_address = "not-an-address"
    with pytest.raises(ModelUnavailableError, match="IPv4 address"):
        servers.announce_address()


async def _lookup(name: str, timeout_ms: int = 3000) -> object:
    browser = AsyncZeroconf()
    try:
        return await browser.async_get_service_info(SERVICE_TYPE, f"{name}.{SERVICE_TYPE}",
                                                     timeout=timeout_ms)
    finally:
        await browser.async_close()


async def _describe(address: str, port: int) -> Info:
    async with AsyncTcpClient(address, port, connect_timeout=10, read_timeout=60) as c:
        await c.write_event(Describe().event())
        event = await c.read_event()
        assert event is not None
        return Info.from_event(event)


@needs(ADDRESS is not None, "a network interface besides loopback")
def test_announced_and_withdrawn(cache_dir: Path, whisper_engine: WhisperEngine,
                                 piper_engine: PiperEngine,
                                 espeak_engine: EspeakEngine) -> None:
    assert ADDRESS is not None
    name = f"secretary-test-{os.getpid()}"
    with wyoming_server(cache_dir, whisper_engine, piper_engine, espeak_engine,
                        host=ADDRESS, zeroconf=True, zeroconf_name=name) as server:
        found = {}
        for kind, port in (("stt", server.stt_port), ("tts", server.tts_port)):
            info = asyncio.run(_lookup(f"{name}-{kind}"))
            assert info is not None, f"{name}-{kind} was not found over mDNS"
            assert info.port == port  # type: ignore[attr-defined]
            found[kind] = info.parsed_addresses()  # type: ignore[attr-defined]
            assert found[kind] == [ADDRESS]
        # What Home Assistant does next: connect to the announced address and describe.
        assert asyncio.run(_describe(ADDRESS, server.stt_port)).asr
        assert asyncio.run(_describe(ADDRESS, server.tts_port)).tts
    assert asyncio.run(_lookup(f"{name}-stt", 1500)) is None
