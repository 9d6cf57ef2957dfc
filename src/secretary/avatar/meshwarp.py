"""The CPU engine: mediapipe landmarks once per photo, then mesh warps per frame.

Analysis (decode, landmarks, mesh, displacement bases) is the expensive part and happens
once per distinct photo: results are kept in memory under the photo's SHA-256, in an LRU
of bounded size. Each output size gets its own resized image and warper, kept with the
source. A render is then a weighted sum of precomputed displacements, one rasterised id
map and one ``cv2.remap`` over the face's bounding region.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from secretary.avatar import eyes, facemesh, mouth
from secretary.avatar.deform import Deformations
from secretary.avatar.engine import (
    EXPRESSIONS,
    VISEMES,
    FaceBox,
    Pose,
    Rendered,
    SourceInfo,
)
from secretary.avatar.landmarks import Landmarker
from secretary.avatar.models import FaceLandmarkerModel
from secretary.avatar.variants import (
    cached_source,
    cached_variant,
    find_face,
    remember,
    remembered,
)
from secretary.config import AvatarSettings
from secretary.errors import (
    InvalidRequestError,
    UnsupportedMediaError,
)


@dataclass
class _Variant:
    """A source at one output size."""

    image: np.ndarray
    points: np.ndarray  # (478, 3) landmarks in this size's pixels
    warper: facemesh.MeshWarper
    factor: float  # this size / the working size
    source_opening: float
    colour: tuple[float, np.ndarray]  # mouth.colourfulness of the photo


@dataclass
class _Source:
    info: SourceInfo
    image: np.ndarray  # BGR at the working size
    points: np.ndarray  # (478, 3)
    frame: facemesh.FaceFrame
    bases: dict[str, np.ndarray]  # name -> (478, 2) pixel displacement per unit
    variants: OrderedDict[int, _Variant] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def decode_image(data: bytes, max_side: int) -> np.ndarray:
    """BGR uint8 from image bytes, downscaled so its longest side is at most ``max_side``."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if len(buffer) else None
    except cv2.error:  # a header OpenCV refuses (absurd sizes): not a usable image
        image = None
    if image is None or image.size == 0:
        raise UnsupportedMediaError(
            "source_image: not an image that can be read (send a JPEG, PNG or WebP photo)",
            param="source_image",
        )
    longest = max(image.shape[:2])
    if longest > max_side:
        factor = max_side / longest
        size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


class MeshWarpEngine:
    name = "meshwarp"

    def __init__(self, settings: AvatarSettings, store: FaceLandmarkerModel) -> None:
        self.settings = settings
        self.store = store
        self._landmarker: Landmarker | None = None
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    @property
    def loaded(self) -> bool:
        return self._landmarker is not None and self._landmarker.loaded

    def load(self) -> None:
        with self._load_lock:
            if self.loaded:
                return
            if self.settings.cv_threads > 0:
                cv2.setNumThreads(self.settings.cv_threads)
            path = self.store.face_landmarker_path(self.settings.landmarker_path)
            landmarker = Landmarker(path)
            landmarker.load()
            facemesh.triangles()  # build the topology now, not on the first request
            self._landmarker = landmarker

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()

    def describe(self) -> dict[str, Any]:
        model: Path | None = self._landmarker.model_path if self._landmarker else None
        return {
            "engine": self.name,
            "landmarker": str(model.name) if model else None,
            "cached_sources": len(self._sources),
            "cache_size": self.settings.cache_size,
        }

    # ------------------------------------------------------------------ analysis
    def prepare(self, image_bytes: bytes) -> SourceInfo:
        key = hashlib.sha256(image_bytes).hexdigest()
        cached = remembered(self._sources, self._lock, key)
        if cached is not None:
            return cached.info
        self.load()
        started = time.perf_counter()
        image = decode_image(image_bytes, self.settings.max_side)
        found = find_face(self._landmarker, image)  # type: ignore[arg-type]
        points = found.points
        frame = facemesh.FaceFrame.from_points(points)
        uv = frame.to_uv(points[:, :2].astype(np.float64))
        deformations = Deformations(uv)
        bases = {name: frame.to_pixels(d).astype(np.float32)
                 for name, d in deformations.bases.items()}
        height, width = image.shape[:2]
        variant = self._make_variant(image, points, 1.0, frame)
        x0, y0, x1, y1 = variant.warper.roi
        info = SourceInfo(
            key=key, width=width, height=height,
            face_box=FaceBox(x0, y0, x1 - x0, y1 - y0),
            blendshapes=found.blendshapes,
            analysis_seconds=time.perf_counter() - started,
        )
        source = _Source(info, image, points, frame, bases)
        source.variants[max(width, height)] = variant
        remember(self._sources, self._lock, key, source, self.settings.cache_size)
        return info

    @staticmethod
    def _make_variant(image: np.ndarray, points: np.ndarray, factor: float,
                      frame: facemesh.FaceFrame) -> _Variant:
        vertices = np.concatenate([points[:, :2], facemesh.ring_vertices(points)])
        return _Variant(
            image, points, facemesh.MeshWarper(image, vertices.astype(np.float32)), factor,
            mouth.opening(points[:, :2], frame.ey), mouth.colourfulness(image, points),
        )

    def _source(self, key: str) -> _Source:
        return cached_source(self._sources, self._lock, key)

    def _variant(self, source: _Source, size: int | None) -> _Variant:
        return cached_variant(
            source.image, source.variants, source.lock, size,
            lambda image, factor, _dims: self._make_variant(
                image, source.points * np.float32(factor), factor, source.frame))

    # ------------------------------------------------------------------ rendering
    def displacement(self, source: _Source, pose: Pose) -> np.ndarray:
        """(478, 2) landmark displacement in working-size pixels for ``pose``."""
        if pose.expression not in EXPRESSIONS:
            raise InvalidRequestError(f"unknown expression {pose.expression!r}",
                                      param="expression")
        bases = source.bases
        total = np.zeros((facemesh.N_LANDMARKS, 2), dtype=np.float32)
        if pose.expression not in ("neutral", "blink"):
            total += np.float32(pose.intensity) * bases[pose.expression]
        closure = self.closure(pose)
        if closure > 0:
            total += np.float32(closure) * bases["blink"]
        weights = pose.viseme_weights or {pose.viseme: 1.0}
        if pose.mouth_open > 0:
            for viseme, weight in weights.items():
                if viseme not in VISEMES:
                    raise InvalidRequestError(f"unknown viseme {viseme!r}", param="viseme")
                if weight > 0:
                    total += np.float32(pose.mouth_open * weight) * bases[viseme]
        if pose.yaw or pose.pitch or pose.roll:
            total += self._head_motion(source, pose)
        return total

    @staticmethod
    def closure(pose: Pose) -> float:
        """How far the eyes are closed, 0..1: the blink expression plus talking blinks."""
        blink = pose.intensity if pose.expression == "blink" else 0.0
        return float(min(max(blink + pose.blink, 0.0), 1.0))

    @staticmethod
    def _head_motion(source: _Source, pose: Pose) -> np.ndarray:
        """A small rigid rotation of the face about the middle of the head, projected
        orthographically (the landmarks carry depth)."""
        yaw, pitch, roll = np.radians([pose.yaw, pose.pitch, pose.roll])
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        cr, sr = np.cos(roll), np.sin(roll)
        r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
        rotation = r_roll @ r_pitch @ r_yaw
        points = source.points.astype(np.float64)
        pivot = np.array([*points[facemesh.FACE_OVAL, :2].mean(axis=0),
                          points[:, 2].mean() + 0.7 * source.frame.scale])
        moved = (points - pivot) @ rotation.T + pivot
        return (moved[:, :2] - points[:, :2]).astype(np.float32)

    def render(self, key: str, pose: Pose, size: int | None = None) -> Rendered:
        source = self._source(key)
        variant = self._variant(source, size)
        shift = self.displacement(source, pose) * np.float32(variant.factor)
        vertices = variant.warper.vertices
        moved = vertices + facemesh.extend_to_rings(shift)
        warper = variant.warper
        region = warper.warp(moved)
        origin = (warper.x0, warper.y0)
        landmarks = moved[: facemesh.N_LANDMARKS]
        mouth.paint_interior(region, origin, landmarks, source.frame.ey,
                             variant.source_opening, source.frame.scale * variant.factor,
                             variant.colour)
        eyes.paint_closed_lids(region, origin, landmarks, variant.points[:, :2],
                               source.frame.ey, self.closure(pose))
        out = variant.image.copy()
        out[warper.y0:warper.y1, warper.x0:warper.x1] = region
        x0, y0, x1, y1 = warper.roi
        return Rendered(out, FaceBox(x0, y0, x1 - x0, y1 - y0))
