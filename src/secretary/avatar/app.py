"""The avatar HTTP service (port 8081).

Thin on purpose: parse and validate the form, hand it to the service (``service.py``),
return the image or the video. Photos are analysed once and cached by content hash, so a
client that renders many poses of one photo pays for the landmarks once.

``POST /api/render`` answers with an ``X-Face-Box: x,y,width,height`` header: the only
region of the output that may differ from the (resized) photo.

Streaming (``POST /api/animate`` with ``stream=true``) sends fragmented MP4, H.264 and AAC
together, as frames are rendered: a browser ``<video>`` plays it progressively and the
sound stays in sync, which a stream of JPEG frames could not do.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, UploadFile
from fastapi.responses import Response, StreamingResponse

from secretary.avatar import video
from secretary.avatar.engine import (
    EXPRESSIONS,
    MAX_HEAD_DEGREES,
    MAX_INTENSITY,
    VISEMES,
    AvatarEngine,
    Pose,
)
from secretary.avatar.meshwarp import MeshWarpEngine
from secretary.avatar.models import FaceLandmarkerModel
from secretary.avatar.service import IMAGE_FORMATS, MIN_SIZE, AvatarService
from secretary.config import Settings
from secretary.errors import InvalidRequestError
from secretary.web.app import binary_response, create_service_app
from secretary.web.uploads import read_upload


def _range(name: str, value: float, low: float, high: float) -> float:
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be between {low:g} and {high:g}, not {value:g}",
                                  param=name)
    return value


def build_router(service: AvatarService) -> APIRouter:
    router = APIRouter()

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
            "formats": list(IMAGE_FORMATS),
            "size": {"min": MIN_SIZE, "max": service.settings.avatar.max_size},
        }

    @router.post("/api/render", response_class=Response, responses=binary_response(
        [t for t, _ in IMAGE_FORMATS.values()], "The rendered image"))
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
        if format not in IMAGE_FORMATS:
            raise InvalidRequestError(
                f"format must be one of {', '.join(IMAGE_FORMATS)}, not {format!r}",
                param="format",
            )
        data = await read_upload(source_image, "source_image")
        pose = Pose(expression=expression, intensity=intensity, viseme=viseme or "closed",
                    mouth_open=mouth_open, yaw=yaw, pitch=pitch, roll=roll)
        body, face_box = await service.render(data, pose, size, format)
        return Response(body, media_type=IMAGE_FORMATS[format][0],
                        headers={"X-Face-Box": face_box})

    @router.post("/api/animate", response_class=Response,
                 responses=binary_response([video.MEDIA_TYPE], "The MP4 video"))
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
        sound = await read_upload(audio, "audio")
        headers = {"X-Fps": str(fps)}
        result = await service.animate(data, sound, fps, size, expression, intensity,
                                       stream=stream)
        if isinstance(result, bytes):
            return Response(result, media_type=video.MEDIA_TYPE, headers=headers)
        return StreamingResponse(result, media_type=video.MEDIA_TYPE,
                                 headers={**headers, "Cache-Control": "no-cache"})

    return router


def create_engine(settings: Settings) -> AvatarEngine:
    """The engine ``SECRETARY_AVATAR_ENGINE`` names."""
    if settings.avatar.engine == "liveportrait":
        from secretary.avatar.liveportrait.engine import LivePortraitEngine
        from secretary.avatar.liveportrait.models import LivePortraitModels

        return LivePortraitEngine(settings.avatar, LivePortraitModels(settings.models_dir))
    return MeshWarpEngine(settings.avatar, FaceLandmarkerModel(settings.models_dir))


def create_app(settings: Settings | None = None, engine: AvatarEngine | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = engine or create_engine(settings)
    return create_service_app(AvatarService(settings, engine), build_router)
