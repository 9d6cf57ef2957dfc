"""The one app factory every HTTP service is built with: the request size limit,
Prometheus metrics, the lifespan (preload, shutdown), ``/health`` and ``/v1/models``.

Each capability hands it its service (plain Python, see ``Service``) and its own router;
the routers stay thin because everything here is done once.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secretary.errors import NotFoundError, error_body, install_error_handlers
from secretary.web.service_base import Service

log = logging.getLogger(__name__)


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
            if int(declared) <= self.max_bytes + _DRAIN_BYTES:
                await _drain(receive)
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
                    if message.get("more_body", False):
                        await _drain(receive)
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


# How much of a refused body is still read (and dropped) before the 413 goes out, and how
# long a pause in it is waited for.
_DRAIN_BYTES = 64 * 1024 * 1024
_DRAIN_IDLE_SECONDS = 5.0


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a refused body, up to ``_DRAIN_BYTES``. The server closes
    the connection once the 413 is sent; with the body unread that resets it, and a client
    still sending (the UI's gateway forwarding an upload) sees a broken connection instead
    of the 413. A client that stops sending gets its 413 after ``_DRAIN_IDLE_SECONDS``."""
    drained = 0
    while drained <= _DRAIN_BYTES:
        try:
            message = await asyncio.wait_for(receive(), _DRAIN_IDLE_SECONDS)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


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


S = TypeVar("S", bound=Service)


def create_service_app(service: S, build_router: Callable[[S], APIRouter]) -> FastAPI:
    """The one skeleton of every service: error handlers, size limit, metrics, lifespan
    (preload, shutdown), ``GET /health``, the OpenAI ``/v1/models`` routes, then the
    capability's own router.

    Preloading runs ``service.load`` in a thread, so the event loop and other services in
    the same process keep going while a model loads.
    """
    name = service.name
    queue = service.queue

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if service.preload:
            await asyncio.to_thread(service.load)
        try:
            yield
        finally:
            result = service.close()
            if inspect.isawaitable(result):  # an async close (an HTTP client's)
                await result
            if queue is not None:
                queue.shutdown()

    app = FastAPI(title=service.title, lifespan=lifespan)
    install_error_handlers(app)
    metrics = Metrics(name)
    app.state.metrics = metrics
    app.state.queue = queue
    app.state.service = service

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

    app.include_router(_common_router(service))
    app.include_router(build_router(service))
    app.add_middleware(BodySizeLimit, max_bytes=service.settings.max_upload_bytes)
    return app


def _common_router(service: Service) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, Any]:
        return service.health()

    if not service.model_ids():
        return router

    def card(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": service.created,
                "owned_by": "secretary"}

    @router.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [card(i) for i in service.model_ids()]}

    @router.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id not in service.model_ids():
            raise NotFoundError(f"model {model_id!r} is not served here", param="model")
        return card(model_id)

    return router
