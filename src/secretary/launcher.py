"""The launcher: the services ``secretary serve`` knows, and running them in one process.

Each entry of the registry names the module and factory that builds the service's app from
``Settings``; modules are imported only when their service is started, so a replica that
runs one service never loads the others' engines. One asyncio loop drives one uvicorn
server per listener: a laptop runs the whole stack with one command, and a replica runs any
subset (``--only stt``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from secretary.config import Settings
from secretary.errors import InvalidRequestError
from secretary.web.listeners import Listener

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    description: str
    port: Callable[[Settings], int]
    # Name of a function in ``module`` that returns the service's listeners (TLS, extra
    # ports); without one the service gets one plain-HTTP listener on host:port.
    listeners: str | None = None
    factory: str = "create_app"  # the function in ``module`` that builds the app
    # Started by a plain ``secretary serve``; the others only when named in --only.
    default: bool = True

    def create_app(self, settings: Settings) -> FastAPI:
        return getattr(importlib.import_module(self.module), self.factory)(settings)

    def bind(self, settings: Settings) -> list[Listener]:
        if self.listeners is None:
            return [Listener(settings.host, self.port(settings))]
        return getattr(importlib.import_module(self.module), self.listeners)(settings)


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("stt", "secretary.stt.app", "speech-to-text", lambda s: s.stt.port),
        ServiceSpec("tts", "secretary.tts.app", "text-to-speech", lambda s: s.tts.port),
        ServiceSpec("avatar", "secretary.avatar.app", "talking avatar", lambda s: s.avatar.port),
        ServiceSpec("ui", "secretary.ui.app", "browser UI", lambda s: s.ui.port,
                    listeners="listeners"),
        # A second speech-to-text with the same APIs, for GPU boxes with secretary[canary].
        ServiceSpec("canary", "secretary.stt.app", "speech-to-text (NVIDIA Canary)",
                    lambda s: s.canary.port, factory="create_canary_app", default=False),
        # Home Assistant's Wyoming protocol: TCP servers beside an HTTP /health and /metrics.
        ServiceSpec("wyoming", "secretary.wyoming.app", "Wyoming speech-to-text and "
                    "text-to-speech", lambda s: s.wyoming.port, default=False),
    )
}


def select_services(only: str | None) -> list[ServiceSpec]:
    """The services named in ``only`` (comma-separated), or the default set."""
    if not only:
        return [spec for spec in SERVICES.values() if spec.default]
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise InvalidRequestError(
            f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}"
        )
    return [SERVICES[n] for n in names]


async def serve(settings: Settings, specs: list[ServiceSpec]) -> None:
    servers = []
    for spec in specs:
        app = spec.create_app(settings)
        for index, listener in enumerate(spec.bind(settings)):
            config = uvicorn.Config(
                app,
                host=listener.host,
                port=listener.port,
                ssl_certfile=listener.ssl_certfile,
                ssl_keyfile=listener.ssl_keyfile,
                log_level=settings.log_level,
                # The app starts and stops once, with its first listener.
                lifespan="auto" if index == 0 else "off",
                # Keep-alive connections of a closed browser tab must not hold shutdown.
                timeout_graceful_shutdown=5,
            )
            server = uvicorn.Server(config)
            # One handler for the process (below), not one per server.
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            servers.append((spec, listener, server))

    loop = asyncio.get_running_loop()

    def stop() -> None:
        for _, _, server in servers:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)

    for spec, listener, _ in servers:
        log.info("starting %s on %s", spec.name, listener.url)
    results = await asyncio.gather(*(s.serve() for _, _, s in servers), return_exceptions=True)
    failed = [(spec.name, r) for (spec, _, _), r in zip(servers, results, strict=True)
              if isinstance(r, BaseException)]
    for name, error in failed:
        log.error("service %s stopped with an error: %s", name, error)
    if failed or any(not s.started for _, _, s in servers):
        raise SystemExit(1)
