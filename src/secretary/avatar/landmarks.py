"""Face landmarks and blendshapes from mediapipe's Face Landmarker (Tasks API).

One landmarker per engine, guarded by a lock: a mediapipe task graph is not meant to be
called from several threads at once, and analysis happens once per source photo, so
serialising it costs little.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from secretary.errors import ModelUnavailableError


@dataclass(frozen=True)
class FaceLandmarks:
    """One face: ``points`` (478, 3) in pixels of the analysed image (z in the same scale
    as x, negative towards the camera) and the 52 blendshape scores by name."""

    points: np.ndarray
    blendshapes: dict[str, float]


class Landmarker:
    def __init__(self, model_path: Path) -> None:
        self.model_path = Path(model_path)
        self._lock = threading.Lock()
        self._task = None

    @property
    def loaded(self) -> bool:
        return self._task is not None

    def load(self) -> None:
        with self._lock:
            if self._task is not None:
                return
            from mediapipe.tasks.python import BaseOptions, vision

            options = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(self.model_path)),
                running_mode=vision.RunningMode.IMAGE,
                num_faces=1,
                output_face_blendshapes=True,
                min_face_detection_confidence=0.5,
            )
            try:
                self._task = vision.FaceLandmarker.create_from_options(options)
            except (RuntimeError, ValueError) as exc:
                raise ModelUnavailableError(
                    f"the face landmark model {self.model_path} could not be loaded: {exc}"
                ) from exc

    def detect(self, bgr: np.ndarray) -> FaceLandmarks | None:
        """The most prominent face in a BGR image, or None when there is none."""
        import mediapipe as mp

        self.load()
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        with self._lock:
            result = self._task.detect(image)  # type: ignore[union-attr]
        if not result.face_landmarks:
            return None
        height, width = bgr.shape[:2]
        points = np.array(
            [(p.x * width, p.y * height, p.z * width) for p in result.face_landmarks[0]],
            dtype=np.float32,
        )
        scores = {c.category_name: float(c.score) for c in result.face_blendshapes[0]}
        return FaceLandmarks(points, scores)

    def close(self) -> None:
        with self._lock:
            if self._task is not None:
                self._task.close()
                self._task = None
