"""The avatar HTTP service (port 8081).

Thin on purpose: parse and validate the form, run the engine through the work queue,
return the image or the video. Photos are analysed once and cached by content hash, so a
client that renders many poses of one photo pays for the landmarks once.

``POST /api/render`` answers with an ``X-Face-Box: x,y,width,height`` header: the only
region of the output that may differ from the (resized) photo.

Streaming (``POST /api/animate`` with ``stream=true``) sends fragmented MP4, H.264 and AAC
together, as frames are rendered: a browser ``<video>`` plays it progressively and the
sound stays in sync, which a stream of JPEG frames could not do.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, UploadFile
from fastapi.responses import Response, StreamingResponse

from secretary.avatar import animate, video
from secretary.avatar.engine import (
    EXPRESSIONS,
    MAX_HEAD_DEGREES,
    MAX_INTENSITY,
    VISEMES,
    AvatarEngine,
    Pose,
)
from secretary.avatar.meshwarp import MeshWarpEngine
from secretary.config import Settings
from secretary.errors import InvalidRequestError, ModelUnavailableError
from secretary.models import ModelStore
from secretary.service import WorkQueue, create_service_app
from secretary.uploads import read_audio, read_upload

log = logging.getLogger(__name__)

# AAC's rate for the output track; speech loses nothing that matters above 12 kHz.
AUDIO_RATE = 24000
MIN_SIZE = 64
DEFAULT_ANIMATE_SIZE = 512


class AvatarService:
    def __init__(self, settings: Settings, engine: AvatarEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.queue = WorkQueue(
            "avatar", settings.avatar.max_concurrency, settings.avatar.max_queue, retry_after=2
        )

    def check_expression(self, expression: str, intensity: float) -> None:
        if expression not in EXPRESSIONS:
            raise InvalidRequestError(
                f"unknown expression {expression!r}; use one of {', '.join(EXPRESSIONS)}",
                param="expression",
            )
        if not 0.0 <= intensity <= MAX_INTENSITY:
            raise InvalidRequestError(
                f"intensity must be between 0 and {MAX_INTENSITY:g}, not {intensity:g}",
                param="intensity",
            )

    def check_size(self, size: int | None) -> None:
        if size is not None and not MIN_SIZE <= size <= self.settings.avatar.max_size:
            raise InvalidRequestError(
                f"size must be between {MIN_SIZE} and {self.settings.avatar.max_size} pixels "
                f"(the longest side of the output), not {size}",
                param="size",
            )


def _range(name: str, value: float, low: float, high: float) -> float:
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low:g} and {high:g}, not {value:g}",
                                  param=name)
    return value


def build_router(service: AvatarService) -> APIRouter:
    router = APIRouter()
    engine = service.engine

    @router.get("/health")
    async def health() -> dict[str, Any]:
        described = engine.describe()
        status = "ok" if engine.loaded else "unavailable" if described.get("error") else "loading"
        return {
            "status": status,
            "service": "avatar",
            **described,
            "queue": {"in_progress": service.queue.admitted, "capacity": service.queue.capacity},
        }

    @router.get("/expressions")
    async def expressions() -> dict[str, Any]:
        return {
            "expressions": [
                {"name": name, "description": text,
                 "intensity": {"min": 0.0, "max": MAX_INTENSITY, "default": 1.0}}
                for name, text in EXPRESSIONS.items()
            ],
            "visemes": [
                {"name": name, "description": text,
                 "mouth_open": {"min": 0.0, "max": 1.0, "default": 0.0 if name == "closed"
                                else 1.0}}
                for name, text in VISEMES.items()
            ],
            "head": {axis: {"min": -MAX_HEAD_DEGREES, "max": MAX_HEAD_DEGREES, "unit": "degree"}
                     for axis in ("yaw", "pitch", "roll")},
            "formats": list(animate.IMAGE_FORMATS),
            "size": {"min": MIN_SIZE, "max": service.settings.avatar.max_size},
        }

    @router.post("/api/render")
    async def render(
        source_image: Annotated[UploadFile | None, File()] = None,
        expression: Annotated[str, Form()] = "neutral",
        intensity: Annotated[float, Form()] = 1.0,
        viseme: Annotated[str | None, Form()] = None,
        mouth_open: Annotated[float | None, Form()] = None,
        size: Annotated[int | None, Form()] = None,
        format: Annotated[str, Form()] = "jpeg",
        yaw: Annotated[float, Form()] = 0.0,
        pitch: Annotated[float, Form()] = 0.0,
        roll: Annotated[float, Form()] = 0.0,
    ) -> Response:
        service.check_expression(expression, intensity)
        if viseme is not None and viseme not in VISEMES:
            raise InvalidRequestError(
                f"unknown viseme {viseme!r}; use one of {', '.join(VISEMES)}", param="viseme"
            )
        if mouth_open is None:
            mouth_open = 1.0 if viseme not in (None, "closed") else 0.0
        _range("mouth_open", mouth_open, 0.0, 1.0)
        for name, angle in (("yaw", yaw), ("pitch", pitch), ("roll", roll)):
            _range(name, angle, -MAX_HEAD_DEGREES, MAX_HEAD_DEGREES)
        service.check_size(size)
        if format not in animate.IMAGE_FORMATS:
            raise InvalidRequestError(
                f"format must be one of {', '.join(animate.IMAGE_FORMATS)}, not {format!r}",
                param="format",
            )
        data = await read_upload(source_image, "source_image")
        pose = Pose(expression=expression, intensity=intensity, viseme=viseme or "closed",
                    mouth_open=mouth_open, yaw=yaw, pitch=pitch, roll=roll)

        def job() -> tuple[bytes, str]:
            rendered = animate.render_photo(engine, data, pose, size)
            return animate.encode_image(rendered, format), rendered.face_box.as_header()

        body, face_box = await service.queue.run(job)
        return Response(body, media_type=animate.IMAGE_FORMATS[format][0],
                        headers={"X-Face-Box": face_box})

    @router.post("/api/animate")
    async def animate_endpoint(
        source_image: Annotated[UploadFile | None, File()] = None,
        audio: Annotated[UploadFile | None, File()] = None,
        expression: Annotated[str, Form()] = "neutral",
        intensity: Annotated[float, Form()] = 1.0,
        fps: Annotated[int | None, Form()] = None,
        size: Annotated[int | None, Form()] = None,
        stream: Annotated[bool, Form()] = False,
    ) -> Response:
        service.check_expression(expression, intensity)
        fps = service.settings.avatar.default_fps if fps is None else fps
        if not 1 <= fps <= 60:
            raise InvalidRequestError(f"fps must be between 1 and 60, not {fps}", param="fps")
        service.check_size(size)
        data = await read_upload(source_image, "source_image")
        decoded = await read_audio(audio, "audio", sample_rate=AUDIO_RATE,
                                   max_seconds=service.settings.avatar.max_audio_seconds)
        info = await service.queue.run(engine.prepare, data)
        longest = max(info.width, info.height)
        out_size = size or min(longest, DEFAULT_ANIMATE_SIZE)
        headers = {"X-Fps": str(fps)}

        def pieces(fragmented: bool):
            return animate.animation(engine, data, decoded.samples, decoded.sample_rate,
                                     fps, out_size, expression, intensity,
                                     fragmented=fragmented)

        if not stream:
            body = await service.queue.run(lambda: b"".join(pieces(False)))
            return Response(body, media_type=video.MEDIA_TYPE, headers=headers)

        chunks = service.queue.stream(lambda: pieces(True))  # 503 here when full
        return StreamingResponse(chunks, media_type=video.MEDIA_TYPE,
                                 headers={**headers, "Cache-Control": "no-cache"})

    return router


def create_engine(settings: Settings) -> AvatarEngine:
    store = ModelStore(settings.models_dir)
    if settings.avatar.engine == "liveportrait":
        from secretary.avatar.liveportrait.engine import LivePortraitEngine

        return LivePortraitEngine(settings.avatar, store)
    return MeshWarpEngine(settings.avatar, store)


def create_app(settings: Settings | None = None, engine: AvatarEngine | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = engine or create_engine(settings)
    service = AvatarService(settings, engine)

    def preload() -> None:
        # Missing weights must not stop the service: /health reports them and requests get
        # a 503 that says how to fetch them.
        try:
            engine.load()
        except ModelUnavailableError as exc:
            log.warning("avatar engine %s is unavailable: %s", engine.name, exc.message)

    app = create_service_app(
        "avatar",
        title="Secretary avatar",
        max_upload_bytes=settings.max_upload_bytes,
        queue=service.queue,
        on_startup=preload if settings.avatar.preload else None,
        on_shutdown=engine.close,
    )
    app.state.service = service
    app.include_router(build_router(service))
    return app
