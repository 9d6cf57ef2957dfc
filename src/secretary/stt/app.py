"""The speech-to-text HTTP service (port 8083).

Thin on purpose: parse and validate the request, decode the upload with the shared audio
module, run the engine through the work queue, format the answer. Two APIs over one
engine: ``POST /transcribe`` and the OpenAI audio API under ``/v1``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from secretary.config import Settings
from secretary.errors import InvalidRequestError, NotFoundError, ServiceBusyError
from secretary.models import WHISPER_HUB_IDS, ModelStore
from secretary.service import WorkQueue, create_service_app
from secretary.stt import formats
from secretary.stt.engine import (
    SttEngine,
    Task,
    Transcription,
    TranscriptionOptions,
    collect,
)
from secretary.stt.whisper import WhisperEngine
from secretary.uploads import read_audio

# OpenAI model names that clients send by habit; they all mean "the model served here".
OPENAI_MODEL_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")


class SttService:
    """The engine with its queue and the validation rules that depend on it."""

    def __init__(self, settings: Settings, engine: SttEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.queue = WorkQueue(
            "stt", settings.stt.max_concurrency, settings.stt.max_queue, retry_after=2
        )
        self.created = int(time.time())

    @property
    def model_name(self) -> str:
        return self.settings.stt.model

    def check_model(self, requested: str | None) -> None:
        if not requested:
            return
        served = {self.model_name, WHISPER_HUB_IDS.get(self.model_name, ""), *OPENAI_MODEL_ALIASES}
        if requested not in served:
            raise InvalidRequestError(
                f"model {requested!r} is not served here; this service runs "
                f"{self.model_name!r} (also answers to {', '.join(OPENAI_MODEL_ALIASES)})",
                param="model",
            )

    def check_language(self, language: str | None) -> str | None:
        if language is None or language.strip() == "":
            return None
        code = language.strip().lower()
        if not self.engine.loaded:
            raise ServiceBusyError("the speech model is still loading; try again shortly")
        if code not in self.engine.languages():
            raise InvalidRequestError(
                f"unknown language code {language!r}; use an ISO 639-1 code such as "
                "'en', 'de', 'fr' or 'es', or leave it out to detect the language",
                param="language",
            )
        return code

    async def ensure_loaded(self) -> None:
        if not self.engine.loaded:
            # First use when preloading is off: load in the engine pool, like any job.
            await self.queue.run(self.engine.load)

    async def transcribe(self, file: UploadFile | None, options: TranscriptionOptions
                         ) -> Transcription:
        decoded = await read_audio(file, "file", max_seconds=self.settings.stt.max_audio_seconds)
        async with self.queue.admit() as slot:
            return await slot.call(lambda: collect(self.engine.transcribe(decoded.samples,
                                                                           options)))


def _parse_task(task: str) -> Task:
    if task not in ("transcribe", "translate"):
        raise InvalidRequestError(
            f"task must be 'transcribe' or 'translate', not {task!r}", param="task"
        )
    return task  # type: ignore[return-value]


def _parse_temperature(value: float | None) -> float | None:
    if value is None:
        return None
    if not 0.0 <= value <= 1.0:
        raise InvalidRequestError("temperature must be between 0 and 1", param="temperature")
    return value


def _transcribe_json(result: Transcription, task: str, words: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "text": result.text,
        "language": result.info.language,
        "language_probability": round(result.info.language_probability, 4),
        "duration": round(result.info.duration, 3),
        "task": task,
        "segments": [
            {"id": s.id, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text.strip()}
            | ({"words": [
                {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3),
                 "probability": round(w.probability, 4)} for w in (s.words or [])
            ]} if words else {})
            for s in result.segments
        ],
    }
    return body


def _openai_response(result: Transcription, response_format: str, task: str,
                     granularities: list[str]) -> Response:
    if response_format == "text":
        return PlainTextResponse(result.text + "\n" if result.text else "")
    if response_format == "srt":
        return PlainTextResponse(formats.to_srt(result.segments))
    if response_format == "vtt":
        return PlainTextResponse(formats.to_vtt(result.segments), media_type="text/vtt")
    if response_format == "verbose_json":
        body = formats.verbose_json(
            result, task, words="word" in granularities,
            segments="segment" in granularities or not granularities,
        )
        return JSONResponse(body)
    return JSONResponse({"text": result.text})


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def build_router(service: SttService) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "service": "stt",
            **service.engine.describe(),
            "queue": {"in_progress": service.queue.admitted, "capacity": service.queue.capacity},
        }

    @router.post("/transcribe")
    async def transcribe(
        file: Annotated[UploadFile | None, File()] = None,
        language: Annotated[str | None, Form()] = None,
        task: Annotated[str, Form()] = "transcribe",
        timestamps: Annotated[str, Form()] = "segment",
        vad_filter: Annotated[bool | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
        await service.ensure_loaded()
        if timestamps not in ("segment", "word"):
            raise InvalidRequestError(
                f"timestamps must be 'segment' or 'word', not {timestamps!r}", param="timestamps"
            )
        parsed_task = _parse_task(task)
        options = TranscriptionOptions(
            language=service.check_language(language),
            task=parsed_task,
            word_timestamps=timestamps == "word",
            initial_prompt=prompt,
            vad_filter=vad_filter,
        )
        result = await service.transcribe(file, options)
        return JSONResponse(_transcribe_json(result, parsed_task, timestamps == "word"))

    async def openai_endpoint(
        request: Request,
        task: Task,
        file: UploadFile | None,
        model: str | None,
        language: str | None,
        prompt: str | None,
        temperature: float | None,
        response_format: str,
        granularities: list[str] | None,
        stream: bool,
        vad_filter: bool | None,
    ) -> Response:
        await service.ensure_loaded()
        service.check_model(model)
        if response_format not in formats.RESPONSE_FORMATS:
            raise InvalidRequestError(
                f"response_format must be one of {', '.join(formats.RESPONSE_FORMATS)}, "
                f"not {response_format!r}",
                param="response_format",
            )
        granularities = granularities or []
        for g in granularities:
            if g not in ("word", "segment"):
                raise InvalidRequestError(
                    f"timestamp_granularities[] takes 'word' and 'segment', not {g!r}",
                    param="timestamp_granularities[]",
                )
        options = TranscriptionOptions(
            language=service.check_language(language) if task == "transcribe" else None,
            task=task,
            word_timestamps="word" in granularities,
            initial_prompt=prompt,
            temperature=_parse_temperature(temperature),
            vad_filter=vad_filter,
        )
        if stream:
            return await _stream(file, options)
        result = await service.transcribe(file, options)
        return _openai_response(result, response_format, task, granularities)

    async def _stream(file: UploadFile | None, options: TranscriptionOptions) -> Response:
        decoded = await read_audio(file, "file", max_seconds=service.settings.stt.max_audio_seconds)
        service.queue.ensure_capacity()  # 503 now, before the stream starts

        async def events() -> AsyncIterator[bytes]:
            texts: list[str] = []
            try:
                admission = service.queue.admit()
            except ServiceBusyError as exc:  # filled up in the meantime: say so in-stream
                yield _sse({"type": "error", "error": {"code": exc.code, "message": exc.message}})
                return
            async with admission as slot:
                _, segments = await slot.call(service.engine.transcribe, decoded.samples, options)
                async for segment in slot.iterate(segments):
                    texts.append(segment.text)
                    yield _sse({"type": "transcript.text.delta", "delta": segment.text})
            yield _sse({"type": "transcript.text.done", "text": "".join(texts).strip()})

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @router.post("/v1/audio/transcriptions")
    async def transcriptions(
        request: Request,
        file: Annotated[UploadFile | None, File()] = None,
        model: Annotated[str | None, Form()] = None,
        language: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        temperature: Annotated[float | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        timestamp_granularities: Annotated[
            list[str] | None, Form(alias="timestamp_granularities[]")
        ] = None,
        stream: Annotated[bool, Form()] = False,
        vad_filter: Annotated[bool | None, Form()] = None,
    ) -> Response:
        return await openai_endpoint(request, "transcribe", file, model, language, prompt,
                                     temperature, response_format, timestamp_granularities,
                                     stream, vad_filter)

    @router.post("/v1/audio/translations")
    async def translations(
        request: Request,
        file: Annotated[UploadFile | None, File()] = None,
        model: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        temperature: Annotated[float | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        vad_filter: Annotated[bool | None, Form()] = None,
    ) -> Response:
        return await openai_endpoint(request, "translate", file, model, None, prompt,
                                     temperature, response_format, None, False, vad_filter)

    def model_card(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": service.created,
                "owned_by": "secretary"}

    @router.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        ids = [service.model_name, *OPENAI_MODEL_ALIASES]
        return {"object": "list", "data": [model_card(i) for i in ids]}

    @router.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        if model_id not in (service.model_name, *OPENAI_MODEL_ALIASES):
            raise NotFoundError(f"model {model_id!r} is not served here", param="model")
        return model_card(model_id)

    return router


def create_app(settings: Settings | None = None, engine: SttEngine | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = engine or WhisperEngine(settings.stt, ModelStore(settings.models_dir))
    service = SttService(settings, engine)
    app = create_service_app(
        "stt",
        title="Secretary speech-to-text",
        max_upload_bytes=settings.max_upload_bytes,
        queue=service.queue,
        on_startup=engine.load if settings.stt.preload else None,
    )
    app.state.service = service
    app.include_router(build_router(service))
    return app
