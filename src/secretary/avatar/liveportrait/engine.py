"""The LivePortrait avatar engine: the published human model behind ``AvatarEngine``.

Per photo (once, cached by content hash in a bounded LRU that keeps its tensors on the
device): decode, the Face Landmarker's points, the face crop, its eye and lip open ratios,
and F and M on the crop. Per frame: the pose becomes a keypoint motion
(``expressions``), the renderer drives, stitches, warps and decodes (batched when
animating), and the crop is pasted back into the photo at the asked size.

torch is imported when the engine loads, so the service starts without the
``liveportrait`` extra; without it, or without the weights, ``/health`` says why and every
request gets a 503 that names the fix.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from secretary.avatar.engine import EXPRESSIONS, VISEMES, FaceBox, Pose, Rendered, SourceInfo
from secretary.avatar.landmarks import Landmarker
from secretary.avatar.liveportrait import crop as cropping
from secretary.avatar.liveportrait.models import LivePortraitModels
from secretary.avatar.meshwarp import decode_image
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
    ModelUnavailableError,
)

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'secretary[liveportrait]'"
# A failed load is not retried on every request (each retry may wait on the network).
_RETRY_SECONDS = 30.0


@dataclass
class _Variant:
    """A source at one output size."""

    paste: cropping.PasteBack
    face_box: FaceBox


@dataclass
class _Source:
    info: SourceInfo
    image: np.ndarray  # BGR at the working size
    to_photo: np.ndarray  # (3, 3) animated-crop pixels -> working-size pixels
    state: Any  # renderer.SourceState, on the device
    variants: OrderedDict[int, _Variant] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LivePortraitEngine:
    name = "liveportrait"

    def __init__(self, settings: AvatarSettings, store: LivePortraitModels, networks: Any = None
                 ) -> None:
        """``networks``: already built ``networks.Networks`` to use instead of loading the
        weights (benchmarks time randomly initialised ones at the published size)."""
        self.settings = settings
        self.store = store
        self._networks = networks
        self._renderer: Any = None  # renderer.Renderer once loaded
        self._landmarker: Landmarker | None = None
        self._weights: Path | None = None
        self._error: ModelUnavailableError | None = None
        self._failed_at = 0.0
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    @property
    def batch_frames(self) -> int:
        """Frames rendered together when animating."""
        return self.settings.liveportrait_batch

    # ------------------------------------------------------------------ lifecycle
    @property
    def loaded(self) -> bool:
        return self._renderer is not None and self._landmarker is not None

    @property
    def error(self) -> str | None:
        return None if self._error is None else self._error.message

    def load(self) -> None:
        with self._load_lock:
            if self.loaded:
                return
            if self._error is not None and time.monotonic() - self._failed_at < _RETRY_SECONDS:
                raise self._error
            try:
                self._load()
            except ModelUnavailableError as exc:
                self._error, self._failed_at = exc, time.monotonic()
                raise
            self._error = None

    def _load(self) -> None:
        try:
            import torch
        except ImportError:
            raise ModelUnavailableError(
                f"the LivePortrait engine needs PyTorch: {INSTALL_HINT}") from None
        from secretary.avatar.liveportrait.checkpoint import CheckpointError, load_networks
        from secretary.avatar.liveportrait.renderer import Renderer

        device = self._device()
        if device == "cuda":
            # Shapes repeat (one crop size, a few batch sizes): let cuDNN pick its fastest
            # convolution algorithms once.
            torch.backends.cudnn.benchmark = True
        started = time.perf_counter()
        if self._networks is not None:
            folder, networks = None, self._networks.to(device)
        else:
            folder = self.store.liveportrait_weights(self.settings.liveportrait_model)
            try:
                networks = load_networks(folder, device)
            except CheckpointError as exc:
                raise ModelUnavailableError(
                    f"the LivePortrait weights could not be loaded: {exc}") from exc
        landmarker = Landmarker(self.store.face_landmarker_path(self.settings.landmarker_path))
        landmarker.load()
        self._landmarker = landmarker
        self._weights = folder
        self._renderer = Renderer(networks, device, half=self.settings.liveportrait_fp16)
        log.info("LivePortrait loaded from %s on %s in %.1f s", folder or "memory", device,
                 time.perf_counter() - started)

    def _device(self) -> str:
        import torch

        wanted = self.settings.liveportrait_device
        if wanted == "cuda" and not torch.cuda.is_available():
            raise ModelUnavailableError(
                "SECRETARY_AVATAR_LIVEPORTRAIT_DEVICE is cuda but PyTorch sees no CUDA device")
        if wanted == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return wanted

    def close(self) -> None:
        with self._lock:
            self._sources.clear()
        if self._landmarker is not None:
            self._landmarker.close()
        self._renderer = None

    def describe(self) -> dict[str, Any]:
        renderer = self._renderer
        return {
            "engine": self.name,
            "model": self.settings.liveportrait_model,
            "weights": str(self._weights) if self._weights else None,
            "device": str(renderer.device) if renderer else None,
            "fp16": bool(renderer.half) if renderer else None,
            "error": self.error,
            "landmarker": self._landmarker.model_path.name if self._landmarker else None,
            "cached_sources": len(self._sources),
            "cached_bytes": sum(source.state.nbytes for source in list(self._sources.values())),
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
        renderer = self._renderer
        crop = cropping.face_crop(found.points, renderer.arch.output_size)
        pixels = cropping.cut(image, crop)
        eyes, lips = cropping.open_ratios(found.points)
        state = renderer.analyse(np.ascontiguousarray(pixels[:, :, ::-1]), eyes, lips)
        height, width = image.shape[:2]
        variant = self._make_variant(image, crop.to_photo)
        info = SourceInfo(key=key, width=width, height=height, face_box=variant.face_box,
                          blendshapes=found.blendshapes,
                          analysis_seconds=time.perf_counter() - started)
        source = _Source(info, image, crop.to_photo, state)
        source.variants[max(width, height)] = variant
        remember(self._sources, self._lock, key, source, self.settings.cache_size)
        return info

    def _make_variant(self, image: np.ndarray, to_photo: np.ndarray) -> _Variant:
        paste = cropping.PasteBack.build(image, to_photo, self._renderer.arch.output_size)
        x0, y0, x1, y1 = paste.box
        return _Variant(paste, FaceBox(x0, y0, x1 - x0, y1 - y0))

    def _source(self, key: str) -> _Source:
        return cached_source(self._sources, self._lock, key)

    def _variant(self, source: _Source, size: int | None) -> _Variant:
        height, width = source.image.shape[:2]
        return cached_variant(
            source.image, source.variants, source.lock, size,
            lambda image, _factor, dims: self._make_variant(
                image, cropping.resize_matrix(width, height, *dims) @ source.to_photo))

    # ------------------------------------------------------------------ rendering
    def render(self, key: str, pose: Pose, size: int | None = None) -> Rendered:
        return self.render_many(key, [pose], size)[0]

    def render_many(self, key: str, poses: Sequence[Pose], size: int | None = None
                    ) -> list[Rendered]:
        """Several poses of one source, run through the networks as one batch."""
        from secretary.avatar.liveportrait.expressions import motion_for

        for pose in poses:
            _check_pose(pose)
        source = self._source(key)
        variant = self._variant(source, size)
        motions = [motion_for(pose, source.state.mean_eye_ratio) for pose in poses]
        crops = self._renderer.render(source.state, motions)
        return [Rendered(variant.paste.paste(np.ascontiguousarray(c[:, :, ::-1])),
                         variant.face_box) for c in crops]


def _check_pose(pose: Pose) -> None:
    if pose.expression not in EXPRESSIONS:
        raise InvalidRequestError(f"unknown expression {pose.expression!r}", param="expression")
    for viseme in (pose.viseme_weights or {pose.viseme: 1.0}):
        if viseme not in VISEMES:
            raise InvalidRequestError(f"unknown viseme {viseme!r}", param="viseme")
