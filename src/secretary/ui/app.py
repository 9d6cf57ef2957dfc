"""The browser UI (port 8085): a static page plus a same-origin gateway to the services.

The page is plain HTML, CSS and JavaScript from ``static/`` (no build step). Everything it
needs from the services goes through ``/api/<service>/<path>`` on this server, which
forwards to the addresses in ``UiSettings``; ``/api/status`` sums up their ``/health`` for
the badges, and ``/api/reply`` turns a transcript into the secretary's answer.

HTTPS: ``listeners`` serves the main port with the configured certificate or a self-signed
one kept in the cache dir, plus plain HTTP on 127.0.0.1 (browsers treat
``http://localhost`` as secure, so the microphone works there too).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from secretary.config import Settings
from secretary.conversation import endpointing
from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.service import DEFAULT_PORTRAIT as DEFAULT_PORTRAIT_KEY
from secretary.conversation.service import ConversationService
from secretary.errors import NotFoundError
from secretary.ui import tls
from secretary.ui.engine import ReplyEngine, Turn
from secretary.ui.service import MAX_REPLY_INPUT_CHARS, UiService
from secretary.web.app import create_service_app
from secretary.web.listeners import Listener
from secretary.web.uploads import read_upload

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
DEFAULT_PORTRAIT = "portrait.png"

# The page loads nothing from elsewhere and sends nothing elsewhere.
_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
)


class TurnIn(BaseModel):
    role: str = Field(pattern="^(user|assistant)$")
    content: str = Field(max_length=MAX_REPLY_INPUT_CHARS)


class ReplyRequest(BaseModel):
    text: str = Field(description="What the user said (the transcript).")
    language: str | None = Field(default=None, max_length=16)
    history: list[TurnIn] = Field(default_factory=list, description="Earlier turns, oldest first.")


class InterruptRequest(BaseModel):
    played: float | None = Field(
        default=None, ge=0, description="Seconds of the reply audio the listener heard.")


def build_router(ui: UiService) -> APIRouter:
    router = APIRouter()
    settings, forwarder, replies = ui.settings, ui.forwarder, ui.replies
    conversation = ui.conversation

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(
            STATIC / "index.html",
            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
        )

    @router.get("/api/config")
    async def config() -> dict[str, Any]:
        return {
            "poll_seconds": settings.ui.status_poll_seconds,
            "reply": replies.describe(),
            "portrait": f"/static/{DEFAULT_PORTRAIT}",
            "services": {n: u.label for n, u in forwarder.services.items()},
            "turn": {"avatar": conversation.pipeline.animator is not None,
                     "fps": settings.conversation.avatar_fps,
                     "end_of_speech_seconds": settings.conversation.end_of_speech_ms / 1000},
        }

    @router.get("/api/status")
    async def status() -> dict[str, Any]:
        return await ui.status()

    @router.post("/api/reply")
    async def reply(request: Annotated[ReplyRequest, Body()]) -> dict[str, Any]:
        history = [Turn(t.role, t.content) for t in request.history]
        answer = await ui.reply(request.text, request.language, history)
        return {"text": answer.text, "source": answer.source, "model": answer.model}

    @router.post("/api/portrait")
    async def portrait(image: Annotated[UploadFile | None, File()] = None) -> dict[str, Any]:
        """Upload the avatar's portrait once per page session; turns name its key."""
        return await conversation.add_portrait(await read_upload(image, "image"))

    @router.post("/api/turn", response_class=StreamingResponse, responses={200: {
        "description": "The turn's events, one JSON object a line, as they happen",
        "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
        404: {"description": "The portrait key is not known here: upload it again",
              "content": {"application/json": {
                  "schema": {"$ref": "#/components/schemas/Error"}}}}})
    async def turn(
        audio: Annotated[UploadFile | None, File()] = None,
        session: Annotated[str, Form()] = "default",
        portrait: Annotated[str | None, Form()] = DEFAULT_PORTRAIT_KEY,
        expression: Annotated[str, Form()] = "neutral",
        intensity: Annotated[float, Form()] = 1.0,
        language: Annotated[str | None, Form()] = None,
        voice: Annotated[str | None, Form()] = None,
    ) -> StreamingResponse:
        """One spoken turn, streamed: newline-delimited JSON events as they happen."""
        recording = await read_upload(audio, "audio")
        started = await conversation.start_turn(
            recording, session=session, portrait=portrait or None, expression=expression,
            intensity=intensity, language=language, voice=voice)
        return StreamingResponse(
            conversation.ndjson(started), media_type="application/x-ndjson",
            headers={"Cache-Control": "no-cache", "X-Turn-Id": started.id})

    @router.post("/api/vad")
    async def vad(request: Request) -> dict[str, Any]:
        """Silero VAD over the last second of the microphone (16 kHz 16-bit PCM): how much
        is speech, and how long the silence at its end; Talk mode stops on it."""
        samples = endpointing.pcm16(await request.body())
        return (await asyncio.to_thread(endpointing.endpoint, samples)).as_json()

    @router.post("/api/turn/{turn_id}/interrupt")
    async def interrupt(turn_id: str,
                        request: Annotated[InterruptRequest | None, Body()] = None
                        ) -> dict[str, Any]:
        played = request.played if request is not None else None
        return conversation.interrupt(turn_id, played)

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


def create_app(settings: Settings | None = None, replies: ReplyEngine | None = None,
               conversation: ConversationService | None = None) -> FastAPI:
    settings = settings or Settings()
    conversation = conversation or ConversationService(
        settings, TurnMetrics(), (STATIC / DEFAULT_PORTRAIT).read_bytes())
    app = create_service_app(UiService(settings, conversation, replies), build_router)
    # The turn metrics are served with the app's own on /metrics.
    app.state.metrics.include(conversation.metrics.registry)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
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
