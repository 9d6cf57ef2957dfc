"""The uvicorn server every service runs on, with a deadline for request headers.

uvicorn closes idle keep-alive connections but waits forever for the headers of a request
that has begun: a few hundred clients dripping one header line a minute would hold their
connections (and file descriptors) for good. ``header_timeout`` closes a connection whose
request line and headers are not complete in time.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

import uvicorn

from secretary.web.listeners import Listener

try:  # uvicorn[standard] brings httptools; plain uvicorn has h11 only
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]


class _HeaderDeadline(_Base):  # type: ignore[misc, valid-type]
    header_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and getattr(self, "cycle", None) is not None \
                and self.cycle.response_complete:
            self._arm()  # the next request on a kept-alive connection begins
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


@cache
def header_deadline_protocol(seconds: float) -> type:
    """An HTTP protocol class that closes connections whose headers take over ``seconds``."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadline,), {"header_timeout": seconds})


def server_config(app: Any, listener: Listener, *, header_timeout: float = 10.0,
                  log_level: str = "info", lifespan: str = "auto") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        ssl_certfile=listener.ssl_certfile,
        ssl_keyfile=listener.ssl_keyfile,
        log_level=log_level,
        lifespan=lifespan,
        http=header_deadline_protocol(header_timeout),
        # Keep-alive connections of a closed browser tab must not hold shutdown.
        timeout_graceful_shutdown=5,
    )
