"""The speech-to-text HTTP service (port 8083 with Whisper, 8084 with Canary).

Thin on purpose: parse and validate the form, hand the upload to the service, format the
answer. Two APIs over one engine: ``POST /transcribe`` and the OpenAI audio API under
``/v1``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from secretary.config import Settings
from secretary.errors import InvalidRequestError, SecretaryError
from secretary.stt import formats
from secretary.stt.engine import SttEngine, Task, Transcription, TranscriptionOptions
from secretary.stt.models import CanaryModels, WhisperModels
from secretary.stt.service import SttService
from secretary.stt.whisper import WhisperEngine
from secretary.validation import check_text
from secretary.web.app import create_service_app
from secretary.web.uploads import read_upload


def _parse_task(task: str) -> Task:
    if task not in ("transcribe", "translate"):
        raise InvalidRequestError(
            f"task must be 'transcribe' or 'translate', not {task!r}", param="task"
        )
    return task  # type: ignore[return-value]


def _language_code(value: str | None) -> str | None:
    return value.strip().lower() or None if value else None


def _parse_temperature(value: float | None) -> float | None:
    if value is None:
        return None
    if not 0.0 <= value <= 1.0:
        raise InvalidRequestError("temperature must be between 0 and 1", param="temperature")
    return value


def _transcribe_json(result: Transcription, task: str, words: bool) -> dict[str, Any]:
    return {
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


def _check_openai_form(response_format: str, granularities: list[str]) -> None:
    if response_format not in formats.RESPONSE_FORMATS:
        raise InvalidRequestError(
            f"response_format must be one of {', '.join(formats.RESPONSE_FORMATS)}, "
            f"not {response_format!r}",
            param="response_format",
        )
    for g in granularities:
        if g not in ("word", "segment"):
            raise InvalidRequestError(
                f"timestamp_granularities[] takes 'word' and 'segment', not {g!r}",
                param="timestamp_granularities[]",
            )


async def _event_stream(texts: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """OpenAI's transcription events: a delta per segment, then the whole text."""
    seen: list[str] = []
    try:
        async for text in texts:
            seen.append(text)
            yield _sse({"type": "transcript.text.delta", "delta": text})
    except SecretaryError as exc:  # the response has started: say so in-stream
        yield _sse({"type": "error", "error": {"code": exc.code, "message": exc.message}})
        return
    yield _sse({"type": "transcript.text.done", "text": "".join(seen).strip()})


def _text_responses(media_types: tuple[str, ...]) -> dict[int | str, dict[str, Any]]:
    """The transcript as JSON, text, subtitles or (streamed) server-sent events."""
    return {200: {"description": "The transcript in the response_format asked for",
                  "content": {m: {} for m in media_types}}}


def build_router(service: SttService) -> APIRouter:
    router = APIRouter()

    @router.post("/transcribe")
    async def transcribe(
        file: Annotated[UploadFile | None, File()] = None,
        language: Annotated[str | None, Form()] = None,
        task: Annotated[str, Form()] = "transcribe",
        timestamps: Annotated[str, Form()] = "segment",
        vad_filter: Annotated[bool | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        target_language: Annotated[str | None, Form()] = None,
        final: Annotated[bool, Form()] = False,
    ) -> JSONResponse:
        await service.ensure_loaded()
        if timestamps not in ("segment", "word"):
            raise InvalidRequestError(
                f"timestamps must be 'segment' or 'word', not {timestamps!r}", param="timestamps"
            )
        parsed_task = _parse_task(task)
        options = service.check_options(TranscriptionOptions(
            language=service.check_language(language),
            task=parsed_task,
            target_language=_language_code(target_language),
            word_timestamps=timestamps == "word",
            initial_prompt=check_text(prompt, "prompt") if prompt else None,
            vad_filter=vad_filter,
        ))
        data = await read_upload(file, "file")
        if final:
            # One spoken turn: a window fitted to it, guarded (one segment, no timings).
            done = await service.transcribe_final(data, options)
            body = _transcribe_json(done.transcription, parsed_task, False)
            return JSONResponse(body | {"window": done.window})
        result = await service.transcribe(data, options)
        return JSONResponse(_transcribe_json(result, parsed_task, timestamps == "word"))

    async def openai_endpoint(
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
        target_language: str | None = None,
    ) -> Response:
        await service.ensure_loaded()
        service.check_model(model)
        granularities = granularities or []
        _check_openai_form(response_format, granularities)
        options = service.check_options(TranscriptionOptions(
            language=service.check_language(language),
            task=task,
            target_language=_language_code(target_language),
            word_timestamps="word" in granularities,
            initial_prompt=check_text(prompt, "prompt") if prompt else None,
            temperature=_parse_temperature(temperature),
            vad_filter=vad_filter,
        ))
        data = await read_upload(file, "file")
        if stream:
            texts = await service.stream_text(data, options)  # 503 here when full
            return StreamingResponse(_event_stream(texts), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        result = await service.transcribe(data, options)
        return _openai_response(result, response_format, task, granularities)

    @router.post("/v1/audio/transcriptions", response_class=Response,
                 responses=_text_responses(("application/json", "text/plain", "text/vtt",
                                            "text/event-stream")))
    async def transcriptions(
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
        return await openai_endpoint("transcribe", file, model, language, prompt, temperature,
                                     response_format, timestamp_granularities, stream,
                                     vad_filter)

    # Beyond OpenAI's form: the spoken language (a hint to Whisper; what Canary translates
    # from) and the language to translate into (English unless the engine does others).

    @router.post("/v1/audio/translations", response_class=Response,
                 responses=_text_responses(("application/json", "text/plain", "text/vtt")))
    async def translations(
        file: Annotated[UploadFile | None, File()] = None,
        model: Annotated[str | None, Form()] = None,
        prompt: Annotated[str | None, Form()] = None,
        temperature: Annotated[float | None, Form()] = None,
        response_format: Annotated[str, Form()] = "json",
        vad_filter: Annotated[bool | None, Form()] = None,
        language: Annotated[str | None, Form()] = None,
        target_language: Annotated[str | None, Form()] = None,
    ) -> Response:
        return await openai_endpoint("translate", file, model, language, prompt, temperature,
                                     response_format, None, False, vad_filter, target_language)

    return router


def create_app(settings: Settings | None = None, engine: SttEngine | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = engine or WhisperEngine(settings.stt, WhisperModels(settings.models_dir))
    return create_service_app(SttService(settings, engine), build_router)


def create_canary_app(settings: Settings | None = None, engine: SttEngine | None = None
                      ) -> FastAPI:
    """The same APIs over NVIDIA Canary (port 8084, ``SECRETARY_CANARY_*``)."""
    from secretary.stt.canary import CanaryEngine

    settings = settings or Settings()
    engine = engine or CanaryEngine(settings.canary, CanaryModels(settings.models_dir))
    return create_service_app(SttService(settings, engine, name="canary"), build_router)
