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

from fastapi import APIRouter, FastAPI, Response
from fastapi.openapi.utils import get_openapi
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secretary.errors import NotFoundError, error_body, install_error_handlers
from secretary.web.queue import WorkQueue
from secretary.web.security import Guard, login_router
from secretary.web.service_base import Service

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Refuse request bodies over their limit with 413, before they are buffered, and
    bodies that stall with 408.

    File uploads (multipart) may be ``max_bytes``; every other body (JSON, small forms)
    ``max_other_bytes``, so a huge JSON document is never read, let alone parsed on the
    event loop. Checks ``Content-Length`` up front and counts bytes as they arrive, so a
    chunked upload that lies about (or omits) its length is stopped too. A body that sends
    nothing for ``idle_timeout`` seconds is cut off (slow clients hold no worker).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_other_bytes: int | None = None,
                 idle_timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_other_bytes = max_other_bytes or max_bytes
        self.idle_timeout = idle_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        upload = headers.get(b"content-type", b"").lower().startswith(b"multipart/")
        limit = self.max_bytes if upload else min(self.max_bytes, self.max_other_bytes)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            if int(declared) <= limit + _DRAIN_BYTES:
                await _drain(receive)
            await self._refuse(send, limit)
            return

        received = 0
        body_done = False
        response_started = False
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused, response_started, body_done
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.idle_timeout)
            except TimeoutError:
                refused = True
                if not response_started:
                    response_started = True
                    await self._refuse(send, limit, timed_out=True)
                raise _TooLarge from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit and not refused:
                    # Answer now: frameworks turn an exception raised while parsing a form
                    # into their own 400, which would hide the real reason.
                    refused = True
                    if message.get("more_body", False):
                        await _drain(receive)
                    if not response_started:
                        response_started = True
                        await self._refuse(send, limit)
                    raise _TooLarge
            else:
                body_done = True
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

    async def _refuse(self, send: Send, limit: int, *, timed_out: bool = False) -> None:
        if timed_out:
            status = 408
            body = error_body("request_timeout", f"the request body stalled for more than "
                              f"{self.idle_timeout:g} s")
        else:
            status = 413
            size = (f"{limit / (1024 * 1024):g} MB" if limit >= 1024 * 1024
                    else f"{limit / 1024:g} KB")
            kind = "" if limit == self.max_bytes else " for a request that is not a file upload"
            body = error_body("payload_too_large",
                              f"request body is larger than the limit of {size}{kind}")
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
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


class CancelOnDisconnect:
    """Cancel a request's work when its client goes away.

    Once the request body has been read, a watcher waits for the client's disconnect; if
    it comes before the response is complete, the request's task is cancelled. The work
    queue turns that into a stop at the job's next step (segment, sentence, frame), so
    nobody's CPU goes to an answer no one will read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        task = asyncio.current_task()
        gone = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        complete = False
        cancelled_by_us = False

        async def watch() -> None:
            nonlocal cancelled_by_us
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()
            if not complete and task is not None:
                cancelled_by_us = True
                task.cancel()

        async def watched_receive() -> Message:
            nonlocal watcher
            if watcher is not None:  # the watcher owns the channel now
                await gone.wait()
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                watcher = asyncio.create_task(watch())
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal complete
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        try:
            await self.app(scope, watched_receive, tracking_send)
        except asyncio.CancelledError:
            if not cancelled_by_us or task is None:
                raise
            task.uncancel()
            log.info("%s %s: the client went away; its work was stopped",
                     scope.get("method"), scope.get("path"))
        finally:
            if watcher is not None:
                watcher.cancel()


class Measure:
    """Prometheus counts and latency per route (pure ASGI: streamed answers are timed to
    their last byte)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, queue: WorkQueue | None) -> None:
        self.app = app
        self.metrics = metrics
        self.queue = queue

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            metrics = self.metrics
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            name = metrics.service
            metrics.requests.labels(name, path, scope.get("method", ""), str(status)).inc()
            metrics.latency.labels(name, path).observe(time.perf_counter() - started)
            if self.queue is not None:
                metrics.in_progress.labels(name).set(self.queue.admitted)


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

    def include(self, registry: CollectorRegistry) -> None:
        """Serve another registry's metrics (a service's own) on this app's /metrics."""
        self.registry.register(_Collected(registry))

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _Collected:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Any:
        return self.registry.collect()


S = TypeVar("S", bound=Service)

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "type"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "type": {"type": "string"},
                       "param": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
    }},
}
_ERRORS = {
    400: "Invalid request: a parameter, the text or the file (the message says which), or "
         "a host name this service does not answer to",
    401: "No API key or a wrong one (when SECRETARY_API_KEY is set)",
    403: "A browser request from another origin",
    404: "No such model, voice or path",
    408: "The request body stalled",
    413: "The body, file, audio length or image size is over its limit",
    415: "The file is not of a kind this route takes (an image sent as audio)",
    422: "Content that cannot be used (a photo with no face)",
    501: "The engine cannot do this",
    503: "Busy (see Retry-After), or a model or upstream service is unavailable",
}
_ALWAYS = (400, 401, 403, 503)
_WITH_BODY = (408, 413, 415, 422, 501)


def binary_response(media_types: list[str] | tuple[str, ...], description: str
                    ) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route whose 200 is a file (audio, image, video), not JSON."""
    schema = {"type": "string", "format": "binary"}
    return {200: {"description": description,
                  "content": {m: {"schema": schema} for m in media_types}}}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error answers every route really gives to an OpenAPI document, in the
    common error shape (FastAPI lists only its own 422, which this project answers as
    400)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = _ERROR_SCHEMA
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            codes = list(_ALWAYS)
            if method in ("post", "put", "patch"):
                codes += _WITH_BODY
            if "{" in path:
                codes.append(404)
            for code in sorted(codes):
                entry: dict[str, Any] = {"description": _ERRORS[code], "content": error}
                if code == 503:
                    entry["headers"] = {"Retry-After": {
                        "description": "Seconds to wait before trying again (when busy)",
                        "schema": {"type": "integer"}}}
                responses.setdefault(str(code), entry)
    for body in components.values():  # uploads: say "a file" the way OpenAPI tools read it
        for field in body.get("properties", {}).values():
            for option in field.get("anyOf", [field]):
                if option.get("contentMediaType") == "application/octet-stream":
                    option["format"] = "binary"
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in components and unused not in json.dumps(schema.get("paths", {})):
            del components[unused]
    return schema


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

    @app.get("/metrics", include_in_schema=False)
    async def _metrics() -> Response:
        if queue is not None:
            metrics.in_progress.labels(name).set(queue.admitted)
        return metrics.render()

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(get_openapi(
                title=app.title, version=app.version, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    settings = service.settings
    browser_login = bool(getattr(service, "browser_login", False))
    app.include_router(_common_router(service))
    if browser_login:
        app.include_router(login_router(settings))
    app.include_router(build_router(service))
    # Added innermost first: a refused caller (Guard) costs nothing, a body is bounded
    # before anything reads it, and work stops when its client leaves.
    app.add_middleware(Measure, metrics=metrics, queue=queue)
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes,
                       max_other_bytes=settings.max_json_bytes,
                       idle_timeout=settings.body_timeout)
    app.add_middleware(Guard, settings=settings, browser_login=browser_login)
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
