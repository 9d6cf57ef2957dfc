"""The Wyoming TCP servers (speech-to-text, text-to-speech, the conversation agent), their
connection limit, metrics and the optional zeroconf announcement."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from wyoming.error import Error
from wyoming.event import async_write_event
from wyoming.server import AsyncEventHandler, AsyncTcpServer

from secretary.errors import ModelUnavailableError
from secretary.wyoming.handle import HandleConnection
from secretary.wyoming.handlers import Observer, SttConnection, TtsConnection, _Connection
from secretary.wyoming.protocol import HEADER_LIMIT
from secretary.wyoming.service import WyomingService

log = logging.getLogger(__name__)


class WyomingMetrics(Observer):
    def __init__(self, registry: CollectorRegistry | None) -> None:
        registry = registry or CollectorRegistry()
        self.outcomes = Counter("secretary_wyoming_requests_total",
                                "Wyoming requests answered, by server and outcome.",
                                ["kind", "outcome"], registry=registry)
        self.requests = Histogram(
            "secretary_wyoming_request_seconds",
            "Wyoming requests: audio-stop to transcript, synthesize to audio-stop, "
            "transcript to handled.",
            ["kind"], registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
        )
        self.first = Histogram(
            "secretary_wyoming_first_audio_seconds",
            "Wyoming synthesis: request to the first audio chunk.", registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
        )
        self.errors = Counter("secretary_wyoming_errors_total",
                              "Error events sent, by server and code.", ["kind", "code"],
                              registry=registry)
        self.open = Gauge("secretary_wyoming_connections", "Open Wyoming connections.",
                          ["kind"], registry=registry)

    def request(self, kind: str, seconds: float, outcome: str) -> None:
        self.requests.labels(kind).observe(seconds)
        self.outcomes.labels(kind, outcome).inc()

    def first_audio(self, seconds: float) -> None:
        self.first.observe(seconds)

    def error(self, kind: str, code: str) -> None:
        self.errors.labels(kind, code).inc()


class _Refused(AsyncEventHandler):
    """The answer past ``max_connections``: one error event, then the connection closes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 limit: int) -> None:
        super().__init__(reader, writer)
        self.limit = limit

    async def run(self) -> None:
        with contextlib.suppress(ConnectionError):
            await async_write_event(Error(
                text=f"the server has {self.limit} connections open; try again shortly",
                code="busy").event(), self.writer)
        self.writer.close()

    async def handle_event(self, event: Any) -> bool:
        return False


class _Server(AsyncTcpServer):
    """The ``wyoming`` package's TCP server with a bounded header line."""

    async def start(self, handler_factory: Callable[..., AsyncEventHandler]) -> None:
        self._server = await asyncio.start_server(
            lambda r, w: self._handler_callback(handler_factory, r, w),
            host=self.host, port=self.port, limit=HEADER_LIMIT)
        await self._server.start_serving()

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]


class WyomingServers:
    """The servers of a ``WyomingService``; ``start`` binds, ``stop`` closes."""

    def __init__(self, service: WyomingService, registry: CollectorRegistry | None = None
                 ) -> None:
        self.service = service
        self.settings = service.settings
        self.metrics = WyomingMetrics(registry)
        self._servers: list[_Server] = []
        self._zeroconf: Any = None

    @property
    def host(self) -> str:
        return self.settings.wyoming.host or self.settings.host

    async def start(self) -> None:
        wyoming = self.settings.wyoming
        sides: list[tuple[str, int, type[_Connection]]] = []
        if self.service.stt is not None and wyoming.stt_port:
            sides.append(("stt", wyoming.stt_port, SttConnection))
        if self.service.tts is not None and wyoming.tts_port:
            sides.append(("tts", wyoming.tts_port, TtsConnection))
        if self.service.brain is not None and wyoming.handle_port:
            sides.append(("handle", wyoming.handle_port, HandleConnection))
        for kind, port, connection in sides:
            server = _Server(self.host, port)
            await server.start(self._factory(kind, connection))
            self._servers.append(server)
            self.service.ports[kind] = server.bound_port
            log.info("wyoming %s on tcp://%s:%d", kind, self.host, server.bound_port)
        if wyoming.zeroconf:
            await self._announce()

    def _factory(self, kind: str, connection: type[_Connection]
                 ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], AsyncEventHandler]:
        limit = self.settings.wyoming.max_connections
        counts = self.service.connections
        gauge = self.metrics.open.labels(kind)

        def make(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                 ) -> AsyncEventHandler:
            if counts.get(kind, 0) >= limit:
                return _Refused(reader, writer, limit)
            counts[kind] = counts.get(kind, 0) + 1
            gauge.inc()
            handler = connection(reader, writer, self.service, self.metrics)
            original = handler.disconnect

            async def disconnect() -> None:
                counts[kind] -= 1
                gauge.dec()
                await original()

            handler.disconnect = disconnect  # type: ignore[method-assign]
            return handler

        return make

    async def stop(self) -> None:
        if self._zeroconf is not None:
            with contextlib.suppress(Exception):
                await self._zeroconf.async_unregister_all_services()
                await self._zeroconf.async_close()
            self._zeroconf = None
        for server in self._servers:
            await server.stop()
        self._servers.clear()

    # ------------------------------------------------------------------ zeroconf
    def announce_address(self) -> str:
        wyoming = self.settings.wyoming
        address = wyoming.zeroconf_address or self.host
        if address in ("0.0.0.0", "", "::"):
            # The address of the default route: what the rest of the network reaches.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(("224.0.0.251", 5353))
                address = probe.getsockname()[0]
        try:
            parsed = ipaddress.IPv4Address(address)
        except ValueError as exc:
            raise ModelUnavailableError(
                f"SECRETARY_WYOMING_ZEROCONF announces an IPv4 address; {address!r} is not "
                "one (set SECRETARY_WYOMING_ZEROCONF_ADDRESS)") from exc
        if parsed.is_loopback:
            raise ModelUnavailableError(
                "SECRETARY_WYOMING_ZEROCONF: the servers listen on loopback, where Home "
                "Assistant on another machine cannot reach them; set SECRETARY_WYOMING_HOST "
                "(or SECRETARY_HOST) to 0.0.0.0 or this machine's address")
        return str(parsed)

    async def _announce(self) -> None:
        from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

        address = self.announce_address()
        name = self.settings.wyoming.zeroconf_name
        self._zeroconf = AsyncZeroconf()
        for kind, port in self.service.ports.items():
            info = AsyncServiceInfo(
                "_wyoming._tcp.local.", f"{name}-{kind}._wyoming._tcp.local.",
                addresses=[socket.inet_aton(address)], port=port,
                server=f"{name}-{kind}.local.")
            await self._zeroconf.async_register_service(info)
            log.info("announced %s-%s at %s:%d over zeroconf", name, kind, address, port)
