"""The browser UI (port 8085): a static page plus a same-origin gateway to the services.

The page is plain HTML, CSS and JavaScript from ``static/`` (no build step). Everything it
needs from the services goes through ``/api/<service>/<path>`` on this server, which
forwards to the addresses in ``UiSettings``; ``/api/status`` sums up their ``/health`` for
the badges. The conversation's routes (``secretary.conversation.app``: ``/api/reply``, the
turns, portraits, end of speech) are served here too, and Live mode's WebRTC offer is
passed on to the realtime service.

HTTPS: ``listeners`` serves the main port with the configured certificate or a self-signed
one kept in the cache dir, plus plain HTTP on 127.0.0.1 (browsers treat
``http://localhost`` as secure, so the microphone works there too).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from secretary import tls
from secretary.config import Settings
from secretary.conversation.app import build_router as conversation_router
from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.service import ConversationService
from secretary.errors import NotFoundError
from secretary.skills.app import build_router as skills_router
from secretary.ui.service import UiService
from secretary.web.app import create_service_app
from secretary.web.listeners import Listener

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
DEFAULT_PORTRAIT = "portrait.png"

# The page loads nothing from elsewhere and sends nothing elsewhere.
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
)


def build_router(ui: UiService) -> APIRouter:
    router = APIRouter()
    settings, forwarder, conversation = ui.settings, ui.forwarder, ui.conversation

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(
            STATIC / "index.html",
            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
        )

    @router.get("/api/config")
    async def config() -> dict[str, Any]:
        """What the page needs to start. ``ice_servers``: Live mode's STUN and TURN servers
        (SECRETARY_REALTIME_ICE_SERVERS) as a browser's ``iceServers``, TURN credentials
        included: this route is behind the API key where there is one, as Live mode is."""
        return {
            "poll_seconds": settings.ui.status_poll_seconds,
            "reply": conversation.describe_reply(),
            "portrait": f"/static/{DEFAULT_PORTRAIT}",
            "services": {n: u.label for n, u in forwarder.services.items()},
            "turn": conversation.turn_options(),
            "ice_servers": [s.as_browser() for s in settings.realtime.ice_servers],
        }

    @router.get("/api/status")
    async def status() -> dict[str, Any]:
        return await ui.status()

    # The conversation's own routes, in this place of the API document, and the skills'.
    router.include_router(conversation_router(conversation))
    router.include_router(skills_router(
        lambda: getattr(conversation.pipeline.brain, "secretary", None),
        settings.calendar.reminder_poll_s))

    @router.get("/api/calls")
    async def calls(limit: int = Query(20, ge=1, le=200)) -> dict[str, Any]:
        """The latest telephone calls, newest first (the page's Calls panel): the telephone
        service's ``/api/calls``; ``phone`` says whether it answered (``down``: ``detail``
        says why, and ``data`` holds the calls kept in this machine's data folder)."""
        return await ui.calls(limit)

    @router.post("/api/realtime/calls", response_class=Response, status_code=201, responses={
        201: {"description": "The realtime service's SDP answer",
              "content": {"application/sdp": {"schema": {"type": "string"}}}}})
    async def live_call(request: Request) -> Response:
        """Live mode's WebRTC signalling: the page's SDP offer goes to the realtime service
        and its answer comes back, so the page talks only to this origin (media then flows
        peer to peer)."""
        status, media_type, body, headers = await ui.live_offer(
            await request.body(), request.headers.get("content-type", "application/sdp"),
            request.url.query)
        return Response(body, status_code=status, media_type=media_type, headers=headers)

    relayed = {200: {"description": "The service's answer, as it sent it",
                     "content": {"*/*": {}}}}

    # One route per method, so each has its own OpenAPI operation id.
    @router.get("/api/{service}/{path:path}", response_class=Response, responses=relayed,
                operation_id="forward_get")
    @router.post("/api/{service}/{path:path}", response_class=Response, responses=relayed,
                 operation_id="forward_post")
    async def forward(service: str, path: str, request: Request) -> Response:
        return await forwarder.forward(service, path, request)

    @router.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "DELETE"],
                      include_in_schema=False)
    async def unknown(rest: str) -> Response:
        raise NotFoundError(f"no API at /api/{rest}")

    return router


def create_app(settings: Settings | None = None,
               conversation: ConversationService | None = None) -> FastAPI:
    settings = settings or Settings()
    conversation = conversation or ConversationService(
        settings, TurnMetrics(), (STATIC / DEFAULT_PORTRAIT).read_bytes())
    app = create_service_app(UiService(settings, conversation), build_router)
    # The turn metrics are served with the app's own on /metrics.
    app.state.metrics.include(conversation.metrics.registry)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if settings.mcp.http:  # the skills as an MCP server for other agents, behind the guard
        from secretary.mcp.server import http_router as mcp_router

        app.include_router(mcp_router(
            settings, lambda: getattr(conversation.pipeline.brain, "secretary", None)))
    return app


def listeners(settings: Settings) -> list[Listener]:
    """HTTPS on host:port (the user's certificate or a kept self-signed one), plus plain
    HTTP on 127.0.0.1:http_port for local use; plain HTTP only when TLS is off."""
    ui = settings.ui
    if not ui.tls:
        return [Listener(settings.host, ui.port)]
    if ui.tls_certfile and ui.tls_keyfile:
        for path in (ui.tls_certfile, ui.tls_keyfile):
            if not path.is_file():
                raise NotFoundError(f"TLS file {path} does not exist (SECRETARY_UI_TLS_*)")
        cert, key = ui.tls_certfile, ui.tls_keyfile
    else:
        cert, key = tls.ensure_self_signed(
            settings.cache_dir / "ui-tls", tls.certificate_names(settings.host)
        )
    found = [Listener(settings.host, ui.port, ssl_certfile=cert, ssl_keyfile=key)]
    if ui.http_port:
        found.append(Listener("127.0.0.1", ui.http_port))
    log.info("browser UI: %s (certificate %s; a self-signed one needs a one-time exception "
             "in the browser)%s", found[0].url, cert,
             f", or {found[1].url} on this machine" if len(found) > 1 else "")
    return found
