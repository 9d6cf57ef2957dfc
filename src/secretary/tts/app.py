"""The text-to-speech HTTP service (port 8082).

Thin on purpose: parse and validate, route the request to an engine and voice, run the
synthesis through the work queue, send the file whole or as it is made. Two APIs over the
same engines: ``POST /synthesize`` (+ voice cloning) and the OpenAI ``POST /v1/audio/speech``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, UploadFile
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from secretary import audio
from secretary.config import Settings
from secretary.errors import InvalidRequestError
from secretary.tts.engine import TtsEngine
from secretary.tts.routing import OPENAI_VOICES
from secretary.tts.service import (
    MAX_SPEED,
    MIN_SPEED,
    OPENAI_MODELS,
    Job,
    TtsService,
    output_rate,
)
from secretary.web.app import binary_response, create_service_app
from secretary.web.queue import Ticket
from secretary.web.uploads import read_upload

OPENAI_INPUT_LIMIT = 4096
OPENAI_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
# OpenAI documents its pcm output as 24 kHz; clients play it at that rate without asking.
OPENAI_PCM_RATE = 24000

Speed = Annotated[float, Field(ge=MIN_SPEED, le=MAX_SPEED)]


class SynthesizeBody(BaseModel):
    # Fields other clients of this API send (and we do not use) are ignored, not refused.
    model_config = ConfigDict(extra="ignore")

    text: str
    language: str | None = None
    voice: str | None = None
    speaker: str | None = Field(default=None, description="Another name for voice.")
    speed: Speed = 1.0
    format: str = "wav"
    stream: bool = False


class SpeechBody(BaseModel):
    """OpenAI's speech request, plus ``language`` for voices that speak several."""

    model: str
    input: str
    voice: str
    response_format: str = "mp3"
    speed: Speed = 1.0
    instructions: str | None = None  # gpt-4o-mini-tts style prompts: not used here
    stream_format: str | None = None
    language: str | None = None


def _headers(job: Job, fmt: str, rate: int | None = None) -> dict[str, str]:
    return {
        "X-Sample-Rate": str(output_rate(fmt, job, rate)),
        "X-Engine": job.route.engine,
        "X-Voice": job.route.voice or "default",
        "X-Language": job.route.language,
    }


async def _respond(service: TtsService, job: Job, fmt: str, *, stream: bool,
                   rate: int | None = None, ticket: Ticket | None = None) -> Response:
    headers = _headers(job, fmt, rate)
    media_type = audio.MEDIA_TYPES[fmt]
    if not stream:
        data = await service.queue.run(service.render, job, fmt, rate, ticket=ticket)
        return Response(data, media_type=media_type, headers=headers)
    # The place is taken here, before the 200 goes out: a full queue is a 503, never an
    # empty 200.
    pieces = service.queue.stream(lambda: service.stream(job, fmt, rate), ticket=ticket)
    return StreamingResponse(pieces, media_type=media_type,
                             headers=headers | {"Cache-Control": "no-cache"})


def build_router(service: TtsService) -> APIRouter:
    router = APIRouter()
    tts = service.settings.tts

    @router.get("/voices")
    async def voices() -> dict[str, Any]:
        catalog = await service.catalog()
        return {
            "voices": [
                {"id": v.id, "engine": v.engine, "languages": list(v.languages),
                 "clones": v.clones, "description": v.description}
                for engine_voices in catalog.values() for v in engine_voices
            ],
            "openai_voices": {
                name: str(service.router.openai_voices.get(name, "default for the language"))
                for name in OPENAI_VOICES
            },
            "routes": service.health()["routes"],
        }

    @router.post("/synthesize", response_class=Response,
                 responses=binary_response(list(audio.MEDIA_TYPES.values()), "The speech"))
    async def synthesize(body: SynthesizeBody) -> Response:
        sentences = service.sentences(body.text, "text")
        fmt = service.check_format(body.format, "format")
        route = await service.route(body.language or tts.default_language,
                                    body.voice or body.speaker)
        job = service.job(route, sentences, body.speed)
        return await _respond(service, job, fmt, stream=body.stream)

    @router.post("/synthesize-with-voice-clone", response_class=Response,
                 responses=binary_response(list(audio.MEDIA_TYPES.values()), "The speech"))
    async def synthesize_with_voice_clone(
        text: Annotated[str, Form()],
        speaker_audio: Annotated[UploadFile | None, File()] = None,
        language: Annotated[str | None, Form()] = None,
        speed: Annotated[float, Form()] = 1.0,
        format: Annotated[str, Form()] = "wav",
        stream: Annotated[bool, Form()] = False,
    ) -> Response:
        sentences = service.sentences(text, "text")
        service.check_speed(speed)
        fmt = service.check_format(format, "format")
        upload = await read_upload(speaker_audio, "speaker_audio")
        ticket = service.queue.admit()  # before decoding: a full queue decodes nothing
        try:
            reference = await service.reference(ticket, upload, "speaker_audio")
            route = await service.cloning_route(language or tts.default_language)
            job = service.job(route, sentences, speed, reference)
        except BaseException:
            ticket.release()
            raise
        return await _respond(service, job, fmt, stream=stream, ticket=ticket)

    @router.post("/v1/audio/speech", response_class=Response,
                 responses=binary_response(list(audio.MEDIA_TYPES.values()), "The speech"))
    async def speech(body: SpeechBody) -> Response:
        if body.model not in OPENAI_MODELS:
            raise InvalidRequestError(
                f"model {body.model!r} is not served here; use one of {', '.join(OPENAI_MODELS)}",
                param="model")
        if len(body.input) > OPENAI_INPUT_LIMIT:
            raise InvalidRequestError(
                f"input has {len(body.input)} characters, more than the limit of "
                f"{OPENAI_INPUT_LIMIT}", param="input")
        if body.response_format not in OPENAI_FORMATS:
            raise InvalidRequestError(
                f"response_format must be one of {', '.join(OPENAI_FORMATS)}, not "
                f"{body.response_format!r}", param="response_format")
        if body.stream_format not in (None, "audio"):
            raise InvalidRequestError(
                "stream_format 'audio' is the only one served here", param="stream_format")
        sentences = service.sentences(body.input, "input")
        language = body.language or await service.language_of_voice(body.voice)
        route = await service.route(language, body.voice)
        job = service.job(route, sentences, body.speed)
        rate = OPENAI_PCM_RATE if body.response_format == "pcm" else None
        return await _respond(service, job, body.response_format, stream=True, rate=rate)

    return router


def create_app(settings: Settings | None = None,
               engines: dict[str, TtsEngine] | None = None) -> FastAPI:
    settings = settings or Settings()
    return create_service_app(TtsService(settings, engines), build_router)
