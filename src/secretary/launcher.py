"""The launcher: the services ``secretary serve`` knows, and running them.

Each entry of the registry names the module and factory that builds the service's app from
``Settings``; modules are imported only when their service is started, so a replica that
runs one service never loads the others' engines.

By default every service runs in its own process under a supervisor (``supervise``): a
service that crashes is restarted (and logged) while the others keep serving, and one
service busy on its event loop never delays another's answers. ``--single-process`` runs
them all on one asyncio loop instead (``serve``), one uvicorn server per listener: for
tests and tiny machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from secretary.config import Settings
from secretary.errors import InvalidRequestError
from secretary.web.listeners import Listener
from secretary.web.server import server_config

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
        ServiceSpec("realtime", "secretary.realtime.app", "live conversation (OpenAI Realtime "
                    "API over WebSocket and WebRTC)", lambda s: s.realtime.port),
        # The secretary's calendar and to-dos: Radicale, a real CalDAV server, unless
        # SECRETARY_CALENDAR_URL names the user's own.
        ServiceSpec("calendar", "secretary.calendar.app", "calendar and to-dos (CalDAV, "
                    "Radicale)", lambda s: s.calendar.port),
        # A second speech-to-text with the same APIs, for GPU boxes with secretary[canary].
        ServiceSpec("canary", "secretary.stt.app", "speech-to-text (NVIDIA Canary)",
                    lambda s: s.canary.port, factory="create_canary_app", default=False),
        # Home Assistant's Wyoming protocol: TCP servers beside an HTTP /health and /metrics.
        ServiceSpec("wyoming", "secretary.wyoming.app", "Wyoming speech-to-text and "
                    "text-to-speech", lambda s: s.wyoming.port, default=False),
        # The telephone: a SIP endpoint (secretary[phone]) beside an HTTP /health.
        ServiceSpec("phone", "secretary.phone.app", "the telephone (SIP)",
                    lambda s: s.phone.http_port, default=False),
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


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def warn_if_open(settings: Settings) -> None:
    """Say it loudly when the services answer the network with no key."""
    if settings.api_keys or is_loopback(settings.host):
        return
    bar = "!" * 78
    log.warning("\n%s\n!! The services listen on %s with NO API KEY: anyone who can reach "
                "this\n!! machine can use them. Set SECRETARY_API_KEY=<a long random key> "
                "(clients send\n!! 'Authorization: Bearer <key>'; the browser UI asks for it "
                "once).\n%s", bar, settings.host, bar)


async def serve(settings: Settings, specs: list[ServiceSpec]) -> None:
    """Every service of ``specs`` in this process, on this event loop."""
    servers = []
    for spec in specs:
        app = spec.create_app(settings)
        for index, listener in enumerate(spec.bind(settings)):
            # The app starts and stops once, with its first listener.
            config = server_config(app, listener, header_timeout=settings.header_timeout,
                                   log_level=settings.log_level,
                                   lifespan="auto" if index == 0 else "off")
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


# --------------------------------------------------------------------------- supervisor

RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_SECONDS = 60.0  # a child up this long has its restart delay reset
STOP_SECONDS = 10.0


@dataclass
class _Child:
    spec: ServiceSpec
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    restart_at: float = 0.0


def child_command(spec: ServiceSpec, host: str | None) -> list[str]:
    command = [sys.executable, "-m", "secretary", "serve", "--only", spec.name,
               "--single-process", "--supervised"]
    return command + (["--host", host] if host else [])


def supervise(specs: list[ServiceSpec], host: str | None = None,
              poll_seconds: float = 0.2) -> int:
    """Run each service in its own process and restart any that exits until told to stop
    (SIGINT/SIGTERM, passed on to the children). Children inherit the environment (the
    settings) and this process's output."""
    children = [_Child(spec, child_command(spec, host)) for spec in specs]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping:
            now = time.monotonic()
            for child in children:
                process = child.process
                if process is None:
                    if now >= child.restart_at:
                        child.process = subprocess.Popen(child.command)
                        child.started = now
                        log.info("started %s (pid %d)", child.spec.name, child.process.pid)
                    continue
                code = process.poll()
                if code is None:
                    if now - child.started > STABLE_SECONDS:
                        child.failures = 0
                    continue
                if code == 2:  # a setting it cannot serve with: restarting will not help
                    log.error("service %s cannot start (see above); stopping every service",
                              child.spec.name)
                    child.process = None
                    return 2
                delay = RESTART_DELAYS[min(child.failures, len(RESTART_DELAYS) - 1)]
                child.failures += 1
                child.process = None
                child.restart_at = now + delay
                log.error("service %s (pid %d) exited with %s; restarting it in %g s",
                          child.spec.name, process.pid, _exit_reason(code), delay)
            time.sleep(poll_seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_children([c.process for c in children if c.process is not None])
    return 0


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def _stop_children(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("service process %d did not stop in time; killing it", process.pid)
            process.kill()
            process.wait()
