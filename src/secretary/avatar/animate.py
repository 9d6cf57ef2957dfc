"""What the avatar service does per request, between the HTTP layer and the engine:
encode a rendered image, and turn a photo plus speech into MP4 bytes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import cv2
import numpy as np

from secretary.avatar.engine import AvatarEngine, Pose, Rendered
from secretary.avatar.talking import talking_poses
from secretary.avatar.video import Mp4Writer
from secretary.errors import NotFoundError

IMAGE_FORMATS = {"jpeg": ("image/jpeg", ".jpg"), "png": ("image/png", ".png")}
JPEG_QUALITY = 92


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
