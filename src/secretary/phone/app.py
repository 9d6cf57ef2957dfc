"""The telephone service's HTTP side (``SECRETARY_PHONE_HTTP_PORT``, 8089): /health (the
registration and the calls in progress), /metrics, and ``GET /api/calls`` (the latest
calls, for the page). The SIP endpoint starts and stops with the app's lifespan."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Query

from secretary.config import Settings
from secretary.phone.service import PhoneService
from secretary.web.app import create_service_app


def build_router(service: PhoneService) -> APIRouter:
    router = APIRouter()

    @router.get("/api/calls")
    async def calls(limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        """The latest calls, newest first: caller, times, transcript, summary."""
        import asyncio

        return {"object": "list", "data": await asyncio.to_thread(service.log.list, limit)}

    return router


def create_app(settings: Settings | None = None,
               service: PhoneService | None = None) -> FastAPI:
    service = service or PhoneService(settings or Settings())
    app = create_service_app(service, build_router)
    app.state.phone = service
    # The calls' turns, replies and verdicts (the realtime service's own metrics).
    app.state.metrics.include(service.metrics.registry)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI):
        async with inner(a):
            await service.start()
            try:
                yield
            finally:
                await service.stop()

    app.router.lifespan_context = lifespan
    return app
