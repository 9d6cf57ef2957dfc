"""The services ``secretary serve`` knows, by name.

Each entry names the module and factory that builds the service's app from ``Settings``;
modules are imported only when their service is started, so a replica that runs one
service never loads the others' engines.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from secretary.config import Settings


@dataclass(frozen=True)
class Listener:
    """One address a service answers on; with a certificate and key it speaks HTTPS."""

    host: str
    port: int
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_certfile else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    description: str
    port: Callable[[Settings], int]
    # Name of a function in ``module`` that returns the service's listeners (TLS, extra
    # ports); without one the service gets one plain-HTTP listener on host:port.
    listeners: str | None = None

    def create_app(self, settings: Settings) -> FastAPI:
        return importlib.import_module(self.module).create_app(settings)

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
    )
}
