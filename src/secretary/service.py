"""What every HTTP service shares: the app skeleton, the request size limit, the bounded
work queue in front of an engine, and Prometheus metrics.

Each capability builds its app with ``create_service_app`` and adds its own router; the
routers stay thin because everything here is done once.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secretary.errors import ServiceBusyError, error_body, install_error_handlers

log = logging.getLogger(__name__)

T = TypeVar("T")


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413, before they are buffered.

    Checks ``Content-Length`` up front and counts bytes as they arrive, so a chunked upload
    that lies about (or omits) its length is stopped too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return

        received = 0
        response_started = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused, response_started
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not refused:
                    # Answer now: frameworks turn an exception raised while parsing a form
                    # into their own 400, which would hide the real reason.
                    refused = True
                    if not response_started:
                        response_started = True
                        await self._refuse(send)
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if refused:
                return  # the 413 went out already; drop the app's own answer
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        with suppress(_TooLarge):
            await self.app(scope, counting_receive, tracking_send)

    async def _refuse(self, send: Send) -> None:
        limit_mb = self.max_bytes / (1024 * 1024)
        body = error_body(
            "payload_too_large", f"request body is larger than the limit of {limit_mb:g} MB"
        )
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class _TooLarge(Exception):
    pass


class WorkQueue:
    """A bounded queue in front of a blocking engine.

    ``max_concurrency`` jobs run at once on a thread pool of that size; up to ``max_queue``
    more wait in order. Past that, ``ServiceBusyError`` (503 with ``Retry-After``) is
    raised at once instead of letting requests pile up. A job that was accepted always
    runs to completion, even if its client goes away.
    """

    def __init__(
        self, name: str, max_concurrency: int, max_queue: int, *, retry_after: int = 2
    ) -> None:
        self.name = name
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.retry_after = retry_after
        self._slots = asyncio.Semaphore(max_concurrency)
        self._admitted = 0
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix=f"{name}-engine")

    @property
    def admitted(self) -> int:
        """Jobs running or waiting."""
        return self._admitted

    @property
    def capacity(self) -> int:
        return self.max_concurrency + self.max_queue

    def ensure_capacity(self) -> None:
        """Raise 503 now if a job would be refused. For streamed answers: the check runs
        before the response starts, the admission itself inside the stream, so a stream
        that never starts (client gone) holds no place."""
        if self._admitted >= self.capacity:
            raise ServiceBusyError(
                f"the {self.name} service is busy ({self._admitted} requests in progress or "
                "waiting); try again shortly",
                retry_after=self.retry_after,
            )

    def admit(self) -> _Admission:
        self.ensure_capacity()
        self._admitted += 1
        return _Admission(self)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Admit, wait for a slot, run ``fn`` in the engine's thread pool."""
        async with self.admit() as admission:
            return await admission.call(fn, *args)

    def stream(self, make_iterator: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """A streamed answer from a blocking iterator, run in the engine pool.

        Capacity is checked now, so a full queue still gets a 503 before the response
        starts; the place is taken when the stream starts and given back when it ends or
        the client leaves, so a stream that never starts holds nothing.
        """
        self.ensure_capacity()

        async def items() -> AsyncIterator[T]:
            async with self.admit() as slot:
                iterator = make_iterator()
                try:
                    async for item in slot.iterate(iterator):
                        yield item
                finally:
                    close = getattr(iterator, "close", None)
                    if close is not None:
                        close()

        return items()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=False)


_END: Any = object()


class _Admission:
    """A place in the queue; holds a run slot while inside ``async with``."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    async def __aenter__(self) -> _Admission:
        try:
            await self._queue._slots.acquire()
        except BaseException:
            self._queue._admitted -= 1
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._queue._slots.release()
        self._queue._admitted -= 1

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._queue._executor, fn, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The client went away. The engine call cannot be interrupted, so keep the slot
            # until it ends: the next job must never overlap a running one.
            await asyncio.wait([future])
            raise

    async def iterate(self, iterator: Iterator[T]) -> AsyncIterator[T]:
        """Pull items from a blocking iterator (a lazy engine result) in the engine pool."""
        while True:
            item = await self.call(next, iterator, _END)
            if item is _END:
                return
            yield item


class Metrics:
    """Per-app Prometheus metrics (each app has its own registry: several run in one
    process under ``secretary serve``)."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "secretary_http_requests_total",
            "HTTP requests by route and status.",
            ["service", "route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "secretary_http_request_seconds",
            "Time to the end of the response, by route.",
            ["service", "route"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
        )
        self.in_progress = Gauge(
            "secretary_engine_jobs",
            "Engine jobs running or waiting.",
            ["service"],
            registry=self.registry,
        )
        self.service = service

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def create_service_app(
    name: str,
    *,
    title: str,
    max_upload_bytes: int,
    queue: WorkQueue | None = None,
    on_startup: Callable[[], Any] | None = None,
    on_shutdown: Callable[[], Any] | None = None,
) -> FastAPI:
    """The common skeleton: error handlers, size limit, metrics, lifespan hooks.

    ``on_startup`` may be a blocking callable (a model load); it runs in a thread so the
    event loop and other services in the same process keep going.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if on_startup is not None:
            await asyncio.to_thread(on_startup)
        try:
            yield
        finally:
            if on_shutdown is not None:
                result = on_shutdown()
                if inspect.isawaitable(result):  # an async close (an HTTP client's)
                    await result
            if queue is not None:
                queue.shutdown()

    app = FastAPI(title=title, lifespan=lifespan)
    install_error_handlers(app)
    metrics = Metrics(name)
    app.state.metrics = metrics
    app.state.queue = queue

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.requests.labels(name, path, request.method, str(response.status_code)).inc()
        metrics.latency.labels(name, path).observe(time.perf_counter() - started)
        if queue is not None:
            metrics.in_progress.labels(name).set(queue.admitted)
        return response

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        if queue is not None:
            metrics.in_progress.labels(name).set(queue.admitted)
        return metrics.render()

    app.add_middleware(BodySizeLimit, max_bytes=max_upload_bytes)
    return app
