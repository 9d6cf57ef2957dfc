"""What the app factory needs from a capability's service, and the common part of a
service over one engine. Plain Python: no web framework here, so services stay free of it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from secretary.config import ServiceSettings, Settings
from secretary.web.queue import WorkQueue


class Service(Protocol):
    """What the app factory needs from a capability's service (plain Python, no HTTP)."""

    name: str
    title: str  # of the OpenAPI page
    settings: Settings
    preload: bool  # load at start-up rather than on first use
    queue: WorkQueue | None
    created: int  # when the models went up, for /v1/models

    def health(self) -> dict[str, Any]: ...

    def load(self) -> None:
        """Blocking start-up work (a model load), run in a thread when preloading."""

    def close(self) -> Any:
        """Release what the service holds; may return an awaitable."""

    def model_ids(self) -> Sequence[str]:
        """The ids ``/v1/models`` lists (and answers for); empty: no such route."""


class EngineService:
    """The common part of a service over one engine: its work queue, its lifecycle and its
    ``/health`` answer. Subclasses add the validation and the work."""

    title = "Secretary"

    def __init__(self, name: str, settings: Settings, engine: Any,
                 limits: ServiceSettings) -> None:
        self.name = name
        self.settings = settings
        self.engine = engine
        self.preload = bool(getattr(limits, "preload", False))
        self.queue: WorkQueue = WorkQueue(name, limits.max_concurrency, limits.max_queue,
                                          retry_after=2)
        self.created = int(time.time())

    def load(self) -> None:
        self.engine.load()

    def close(self) -> Any:
        return None

    def status(self) -> str:
        return "ok"

    def health(self) -> dict[str, Any]:
        return {"status": self.status(), "service": self.name, **self.engine.describe(),
                "queue": queue_health(self.queue)}

    def model_ids(self) -> Sequence[str]:
        return ()


def queue_health(queue: WorkQueue) -> dict[str, int]:
    """The ``queue`` block of a ``/health`` answer."""
    return {"in_progress": queue.admitted, "capacity": queue.capacity}
