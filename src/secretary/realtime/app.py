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
from secretary.errors import SecretaryError
from secretary.realtime.protocol import ProtocolError, error_event
from secretary.realtime.service import RealtimeService
from secretary.web.app import create_service_app

log = logging.getLogger(__name__)


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
            await send(error_event(ProtocolError(exc.message, code="session_limit_reached",
                                                 type="server_error")))
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
                    await send(error_event(ProtocolError(
                        watcher.result(), code="session_expired", type="server_error")))
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

    @router.post("/v1/realtime")
    async def offer(request: Request) -> Response:
        return await _webrtc(service, request)

    @router.post("/v1/realtime/calls")
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
        text = sdp if isinstance(sdp, str) else (await sdp.read()).decode() if sdp else ""
        config = json.loads(session) if isinstance(session, str) and session else None
    else:
        text = body.decode("utf-8", "replace")
        config = None
    params = request.query_params
    answer, call_id = await webrtc.answer(service, text, model=params.get("model"),
                                          intent=params.get("intent"), config=config)
    return Response(answer, status_code=201, media_type="application/sdp",
                    headers={"Location": f"/v1/realtime/calls/{call_id}"})


def create_app(settings: Settings | None = None,
               service: RealtimeService | None = None) -> FastAPI:
    if service is None:
        service = RealtimeService(settings or Settings())
    app = create_service_app(service, build_router)
    app.state.metrics.include(service.metrics.registry)
    return app
