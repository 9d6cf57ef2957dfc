"""Serve's own error answers in the services' error shape.

The services answer every error as JSON (``{"error": {"code", "message", "type"}}``). Serve's
proxy has answers of its own, in plain text or none at all: a replica that died during a
request (no answer: its server sends a bare 500), requests held past their time (408),
more requests than the replicas and their queue take (503). Installed in every proxy
(``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=secretary.scale.proxy:middlewares``; the
command and the Kubernetes manifests set it), this middleware gives those the same shape,
so a client always sees a status and a reason, never an empty answer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secretary.errors import error_body

log = logging.getLogger(__name__)

CALLBACK = "secretary.scale.proxy:middlewares"
ENVIRONMENT = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"

# Statuses the proxy itself answers with, as (code, what the client should know).
_OWN = {
    408: ("request_timeout", "the request took longer than the cluster's time limit"),
    500: ("replica_failed", "the replica serving this request stopped before it finished "
          "(it is being replaced); try again"),
    503: ("service_unavailable", "every replica of this service is busy or starting; try "
          "again shortly"),
}


def middlewares() -> list[Middleware]:
    """The proxy callback (Serve calls it in each proxy at start)."""
    return [Middleware(JsonErrors)]


class JsonErrors:
    """ASGI: the proxy's plain-text (or missing) error answers as JSON errors. Answers of
    the services themselves (JSON, or anything that is not one of the proxy's statuses in
    plain text) pass unchanged, streamed as they come."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        held: Message | None = None  # a plain-text error's start, until its body is read
        body = b""

        async def checked_send(message: Message) -> None:
            nonlocal started, held, body
            if message["type"] == "http.response.start":
                started = True
                if message["status"] in _OWN and _plain(message):
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                body += message.get("body", b"")
                if not message.get("more_body", False):
                    await _send_error(send, held["status"], body.decode("utf-8", "replace"),
                                      _header(held, b"retry-after"))
                return
            await send(message)

        try:
            await self.app(scope, receive, checked_send)
        except Exception as exc:  # the proxy failed before answering
            if started:
                raise
            log.warning("%s %s failed in the proxy: %s", scope.get("method"),
                        scope.get("path"), exc)
            await _send_error(send, 500, str(exc) or type(exc).__name__, None)
            return
        if not started:  # a replica died: the proxy has no answer to give
            await _send_error(send, 500, "", None)


def _plain(message: Message) -> bool:
    kind = _header(message, b"content-type") or ""
    return not kind or kind.startswith("text/plain")


def _header(message: Message, name: bytes) -> str | None:
    for key, value in message.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _send_error(send: Send, status: int, detail: str, retry_after: str | None) -> None:
    code, meaning = _OWN.get(status, ("server_error", "the cluster could not answer"))
    detail = " ".join(detail.split())[:300]
    message = f"{meaning} ({detail})" if detail else meaning
    payload = json.dumps(error_body(code, message, error_type="server_error")).encode()
    headers: list[Any] = [(b"content-type", b"application/json"),
                          (b"content-length", str(len(payload)).encode())]
    if status == 503:
        headers.append((b"retry-after", (retry_after or "2").encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
