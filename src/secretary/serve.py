"""Run several services in one process, each on its own port.

One asyncio loop drives one uvicorn server per service: a laptop runs the whole stack with
one command, and a replica runs any subset (``--only stt``).
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvicorn

from secretary.config import Settings
from secretary.errors import InvalidRequestError
from secretary.services import SERVICES, ServiceSpec

log = logging.getLogger(__name__)


def select_services(only: str | None) -> list[ServiceSpec]:
    if not only:
        return list(SERVICES.values())
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
