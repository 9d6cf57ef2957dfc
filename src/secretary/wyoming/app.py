"""The Wyoming service: Home Assistant's protocol on TCP (speech-to-text on 10300,
text-to-speech on 10200, the secretary as a conversation agent on 10500) and an HTTP
listener with ``/health`` and ``/metrics`` (8088).

Thin on purpose: the speech services are built exactly as the HTTP services build them, the
conversation brain exactly as the UI server builds it, the app is the one app factory's,
and the TCP servers start and stop with its lifespan.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from secretary.config import Settings
from secretary.conversation.stages import Brain
from secretary.stt.engine import SttEngine
from secretary.stt.models import WhisperModels
from secretary.stt.service import SttService
from secretary.stt.whisper import WhisperEngine
from secretary.tts.engine import TtsEngine
from secretary.tts.service import TtsService
from secretary.web.app import create_service_app
from secretary.wyoming.server import WyomingServers
from secretary.wyoming.service import WyomingService


def create_service(settings: Settings, stt_engine: SttEngine | None = None,
                   tts_engines: dict[str, TtsEngine] | None = None,
                   brain: Brain | None = None) -> WyomingService:
    wyoming = settings.wyoming
    stt = None
    if wyoming.stt_port:
        engine = stt_engine or WhisperEngine(settings.stt, WhisperModels(settings.models_dir))
        stt = SttService(settings, engine)
    tts = TtsService(settings, tts_engines) if wyoming.tts_port else None
    if wyoming.handle_port and brain is None:
        from secretary.conversation.build import build_brain

        brain = build_brain(settings)  # one per service: the skills' questions wait in it
    return WyomingService(settings, stt, tts, brain if wyoming.handle_port else None)


def create_app(settings: Settings | None = None, stt_engine: SttEngine | None = None,
               tts_engines: dict[str, TtsEngine] | None = None,
               brain: Brain | None = None) -> FastAPI:
    settings = settings or Settings()
    service = create_service(settings, stt_engine, tts_engines, brain)
    app = create_service_app(service, lambda _: APIRouter())
    servers = WyomingServers(service, app.state.metrics.registry)
    app.state.wyoming = servers
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI):
        # The models load first (the factory's lifespan), so the first client is served.
        async with inner(a):
            await servers.start()
            try:
                yield
            finally:
                await servers.stop()

    app.router.lifespan_context = lifespan
    return app
