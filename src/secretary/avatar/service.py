"""The avatar service layer: the engine with its work queue and the validation rules that
depend on the settings; encoding a rendered image, and turning a photo plus speech into
MP4 bytes.

Plain Python: it takes photo and audio bytes and returns image or video bytes (or an
iterator of MP4 pieces); the HTTP layer (``app.py``) only parses forms.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterator

import cv2
import numpy as np

from secretary import audio
from secretary.avatar.engine import EXPRESSIONS, MAX_INTENSITY, AvatarEngine, Pose, Rendered
from secretary.avatar.poses import talking_poses
from secretary.avatar.video import Mp4Writer
from secretary.config import Settings
from secretary.errors import InvalidRequestError, ModelUnavailableError, NotFoundError
from secretary.images import check_image
from secretary.web.queue import check_cancelled
from secretary.web.service_base import EngineService

log = logging.getLogger(__name__)

IMAGE_FORMATS = {"jpeg": ("image/jpeg", ".jpg"), "png": ("image/png", ".png")}
JPEG_QUALITY = 92
# AAC's rate for the output track; speech loses nothing that matters above 12 kHz.
AUDIO_RATE = 24000
MIN_SIZE = 64
DEFAULT_ANIMATE_SIZE = 512


class AvatarService(EngineService):
    """The engine with its queue (the engine keeps the analysed photos)."""

    title = "Secretary avatar"
    engine: AvatarEngine

    def __init__(self, settings: Settings, engine: AvatarEngine) -> None:
        super().__init__("avatar", settings, engine, settings.avatar)

    def load(self) -> None:
        # Missing weights must not stop the service: /health says why and requests get a
        # 503 that says how to fetch them.
        try:
            self.engine.load()
        except ModelUnavailableError as exc:
            log.warning("avatar engine %s is unavailable: %s", self.engine.name, exc.message)

    def close(self) -> None:
        self.engine.close()

    def status(self) -> str:
        if self.engine.loaded:
            return "ok"
        return "unavailable" if getattr(self.engine, "error", None) else "loading"

    # ------------------------------------------------------------------ validation
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

    # ------------------------------------------------------------------ work
    def check_photo(self, photo: bytes, field: str = "source_image") -> None:
        """Refuse a photo whose header is not an image's or claims too many pixels, before
        any decoder sees it."""
        check_image(photo, field, self.settings.avatar.max_pixels)

    async def render(self, photo: bytes, pose: Pose, size: int | None, fmt: str
                     ) -> tuple[bytes, str]:
        """The encoded image and its ``x,y,width,height`` face box."""
        self.check_photo(photo)

        def job() -> tuple[bytes, str]:
            rendered = render_photo(self.engine, photo, pose, size)
            return encode_image(rendered, fmt), rendered.face_box.as_header()

        return await self.queue.run(job)

    async def animate(self, photo: bytes, sound: bytes, fps: int,
                      size: int | None, expression: str, intensity: float, *, stream: bool
                      ) -> bytes | AsyncIterator[bytes]:
        """The whole MP4, or (``stream``) its fragments as frames are rendered. The
        queue's place is taken before the speech is decoded, so a full queue raises 503
        before any work (and before any response starts)."""
        self.check_photo(photo)
        ticket = self.queue.admit()
        try:
            speech = await ticket.decode(audio.decode_field, sound, "audio", AUDIO_RATE,
                                         self.settings.avatar.max_audio_seconds)
            async with ticket.slot():
                info = await ticket.call(self.engine.prepare, photo)
        except BaseException:
            ticket.release()
            raise
        out_size = size or min(max(info.width, info.height), DEFAULT_ANIMATE_SIZE)

        def pieces(fragmented: bool) -> Iterator[bytes]:
            return animation(self.engine, photo, speech.samples, speech.sample_rate, fps,
                             out_size, expression, intensity, fragmented=fragmented)

        if not stream:
            return await self.queue.run(lambda: b"".join(pieces(False)), ticket=ticket)
        return self.queue.stream(lambda: pieces(True), ticket=ticket)


def encode_image(rendered: Rendered, fmt: str) -> bytes:
    extension = IMAGE_FORMATS[fmt][1]
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == "jpeg" else []
    ok, buffer = cv2.imencode(extension, rendered.image, params)
    if not ok:  # pragma: no cover - OpenCV encodes any 8-bit BGR image
        raise RuntimeError(f"could not encode a {fmt} image")
    return buffer.tobytes()


def render_photo(engine: AvatarEngine, photo: bytes, pose: Pose, size: int | None
                 ) -> Rendered:
    return _render(engine, photo, engine.prepare(photo).key, pose, size)[1]


def _render(engine: AvatarEngine, photo: bytes, key: str, pose: Pose, size: int | None
            ) -> tuple[str, Rendered]:
    """Render a prepared photo, analysing it again if the cache no longer holds it (a busy
    service may evict a photo between two frames of a long animation). Returns the key
    to use next, so frames do not hash the photo again."""
    try:
        return key, engine.render(key, pose, size)
    except NotFoundError:
        key = engine.prepare(photo).key
        return key, engine.render(key, pose, size)


def animation(engine: AvatarEngine, photo: bytes, samples: np.ndarray, sample_rate: int,
              fps: int, size: int | None, expression: str = "neutral", intensity: float = 1.0,
              *, fragmented: bool = False) -> Iterator[bytes]:
    """MP4 bytes for the face in ``photo`` speaking ``samples``.

    With ``fragmented`` the file comes in pieces as frames are rendered; otherwise the
    whole file is yielded once at the end.
    """
    writer: Mp4Writer | None = None
    finished = False
    key = engine.prepare(photo).key
    try:
        for rendered in _frames(engine, photo, key,
                                talking_poses(samples, sample_rate, fps, expression, intensity),
                                size):
            check_cancelled()  # a client that left stops the work between frames
            frame = rendered.image
            if writer is None:
                height, width = frame.shape[:2]
                writer = Mp4Writer(width, height, fps, samples, sample_rate,
                                   fragmented=fragmented)
            chunk = writer.add(frame)
            if chunk:
                yield chunk
        assert writer is not None  # talking_poses yields at least one frame
        tail = writer.close()
        finished = True
        if tail:
            yield tail
    finally:
        if writer is not None and not finished:
            writer.abort()


def _frames(engine: AvatarEngine, photo: bytes, key: str, poses: Iterator[Pose],
            size: int | None) -> Iterator[Rendered]:
    """Rendered frames in order; an engine with ``render_many`` (a GPU engine) gets them
    ``batch_frames`` at a time, which keeps the device busy."""
    batch = int(getattr(engine, "batch_frames", 1))
    render_many = getattr(engine, "render_many", None)
    if batch <= 1 or render_many is None:
        for pose in poses:
            key, rendered = _render(engine, photo, key, pose, size)
            yield rendered
        return
    pending = list(itertools.islice(poses, batch))
    while pending:
        try:
            yield from render_many(key, pending, size)
        except NotFoundError:
            key = engine.prepare(photo).key
            yield from render_many(key, pending, size)
        pending = list(itertools.islice(poses, batch))
