"""The realtime service's HTTP layer (port 8086): the OpenAI Realtime API over WebSocket
(``GET /v1/realtime``) and WebRTC (an SDP offer to ``POST /v1/realtime`` or
``POST /v1/realtime/calls``). Thin: the session logic is ``session.py``, the limits are
``service.py``, the peer connection is ``webrtc.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response

from secretary.config import Settings
from secretary.errors import InvalidRequestError, SecretaryError
from secretary.realtime.protocol import ProtocolError
from secretary.realtime.server_events import ErrorEvent
from secretary.realtime.service import RealtimeService
from secretary.web.app import create_service_app

log = logging.getLogger(__name__)


# What the WebRTC offer routes take and give, for the OpenAPI document (the routes read
# the body themselves: an SDP offer as it is, or a form with the offer and a session).
_OFFER: dict[str, Any] = {
    "parameters": [
        {"name": "model", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "intent", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "'transcription' for a transcription-only session"}],
    "requestBody": {"required": True, "content": {
        "application/sdp": {"schema": {"type": "string"}},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["sdp"],
            "properties": {
                "sdp": {"type": "string", "description": "The SDP offer"},
                "session": {"type": "string",
                            "description": "The session's configuration, a JSON object "
                                           "as session.update takes it"}}}}}},
}
_ANSWER: dict[int | str, dict[str, Any]] = {201: {
    "description": "The SDP answer; Location names the call (for its hangup)",
    "content": {"application/sdp": {"schema": {"type": "string"}}},
    "headers": {"Location": {"schema": {"type": "string"}}}}}


def build_router(service: RealtimeService) -> APIRouter:
    router = APIRouter()

    @router.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket) -> None:
        await websocket.accept()
        params = websocket.query_params
        beta = "realtime=v1" in (websocket.headers.get("openai-beta") or "")
        lock = asyncio.Lock()

        async def send(event: dict[str, Any]) -> None:
            async with lock:
                await websocket.send_text(json.dumps(event, ensure_ascii=False))

        try:
            lease = await service.open(send, model=params.get("model"),
                                       intent=params.get("intent"), beta=beta)
        except SecretaryError as exc:
            # Over the limit: say why in the protocol's own terms, then close (1013: try
            # again later).
            await send(ErrorEvent.of(ProtocolError(exc.message, code="session_limit_reached",
                                                   type="server_error")).as_json())
            await websocket.close(code=1013, reason="too many sessions")
            return
        session = lease.session
        watcher = asyncio.create_task(service.watch(lease))
        try:
            while True:
                receiver = asyncio.create_task(websocket.receive())
                done, _ = await asyncio.wait({receiver, watcher},
                                             return_when=asyncio.FIRST_COMPLETED)
                if watcher in done:
                    receiver.cancel()
                    await send(ErrorEvent.of(ProtocolError(
                        watcher.result(), code="session_expired", type="server_error")).as_json())
                    await websocket.close(code=1000, reason="session ended")
                    return
                message = receiver.result()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                await session.handle(data)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            watcher.cancel()
            await service.release(lease)

    @router.post("/v1/realtime", response_class=Response, status_code=201,
                 responses=_ANSWER, openapi_extra=_OFFER)
    async def offer(request: Request) -> Response:
        return await _webrtc(service, request)

    @router.post("/v1/realtime/calls", response_class=Response, status_code=201,
                 responses=_ANSWER, openapi_extra=_OFFER)
    async def calls(request: Request) -> Response:
        return await _webrtc(service, request)

    @router.post("/v1/realtime/calls/{call_id}/hangup")
    async def hangup(call_id: str) -> dict[str, Any]:
        from secretary.realtime import webrtc

        await webrtc.hang_up(call_id)
        return {"id": call_id, "status": "ended"}

    return router


async def _webrtc(service: RealtimeService, request: Request) -> Response:
    from secretary.realtime import webrtc

    content_type = request.headers.get("content-type", "")
    body = await request.body()
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        sdp = form.get("sdp")
        session = form.get("session")
        if isinstance(sdp, str):
            text = sdp
        else:  # a file part: decoded as the raw body is, so bytes that are not UTF-8 get a 400
            text = (await sdp.read() if sdp is not None else b"").decode("utf-8", "replace")
        config = _session_field(session) if isinstance(session, str) and session else None
    else:
        text = body.decode("utf-8", "replace")
        config = None
    params = request.query_params
    answer, call_id = await webrtc.answer(service, text, model=params.get("model"),
                                          intent=params.get("intent"), config=config)
    return Response(answer, status_code=201, media_type="application/sdp",
                    headers={"Location": f"/v1/realtime/calls/{call_id}"})


def _session_field(text: str) -> dict[str, Any]:
    """The multipart offer's ``session`` field: a JSON object, or a 400 that says so."""
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidRequestError("the session field is not valid JSON",
                                  param="session") from None
    if not isinstance(config, dict):
        raise InvalidRequestError("the session field must be a JSON object", param="session")
    return config


def create_app(settings: Settings | None = None,
               service: RealtimeService | None = None) -> FastAPI:
    if service is None:
        service = RealtimeService(settings or Settings())
    app = create_service_app(service, build_router)
    app.state.metrics.include(service.metrics.registry)
    return app
