"""The services ``secretary serve`` knows, by name.

Each entry names the module and factory that builds the service's app from ``Settings``;
modules are imported only when their service is started, so a replica that runs one
service never loads the others' engines.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI

from secretary.config import Settings


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    module: str
    description: str
    port: Callable[[Settings], int]

    def create_app(self, settings: Settings) -> FastAPI:
        return importlib.import_module(self.module).create_app(settings)


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("stt", "secretary.stt.app", "speech-to-text", lambda s: s.stt.port),
    )
}
