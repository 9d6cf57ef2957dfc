"""The avatar engine interface and the types every engine shares.

An engine analyses a source photo once (``prepare``) and then renders that face in any
``Pose``: an expression with an intensity, a mouth shape with an openness, a blink and a
small head rotation. Talking is a sequence of poses computed from audio
(``secretary.avatar.poses``), so every engine that renders a pose can talk. The CPU
mesh-warp engine is the embedded default; a GPU engine (LivePortrait) fits behind the same
interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

EXPRESSIONS: dict[str, str] = {
    "neutral": "the face as photographed",
    "happy": "a smile: mouth corners up and out, cheeks raised",
    "sad": "mouth corners down, inner brows raised",
    "surprised": "brows raised, eyes widened, jaw dropped",
    "angry": "brows lowered and drawn together, lids narrowed, lips pressed",
    "blink": "eyes closed (intensity 1 closes them fully)",
}

VISEMES: dict[str, str] = {
    "closed": "lips together (M, B, P, silence)",
    "open": "jaw dropped, as in 'ah'",
    "wide": "lips spread, as in 'ee' and 's'",
    "round": "lips rounded, as in 'oo' and 'w'",
}

MAX_INTENSITY = 2.0
MAX_HEAD_DEGREES = 10.0


@dataclass(frozen=True)
class Pose:
    """What to show. Angles are in degrees; amounts are 0..1 unless said otherwise."""

    expression: str = "neutral"
    intensity: float = 1.0  # 0..2; 1 is a clear everyday expression, 2 exaggerated
    viseme: str = "closed"
    mouth_open: float = 0.0
    # Optional mix of mouth shapes (name -> weight) for talking; overrides ``viseme``.
    viseme_weights: dict[str, float] | None = None
    blink: float = 0.0  # extra eye closure on top of the expression (talking blinks)
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0


@dataclass(frozen=True)
class FaceBox:
    """A rectangle in output pixels: ``x``, ``y`` top-left, ``width``, ``height``."""

    x: int
    y: int
    width: int
    height: int

    def as_header(self) -> str:
        return f"{self.x},{self.y},{self.width},{self.height}"


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # BGR uint8, height x width x 3
    face_box: FaceBox  # the only region that may differ from the source


@dataclass(frozen=True)
class SourceInfo:
    """What the analysis found in a source photo (in the photo's working resolution)."""

    key: str  # content hash
    width: int
    height: int
    face_box: FaceBox
    blendshapes: dict[str, float] = field(default_factory=dict)
    analysis_seconds: float = 0.0


class AvatarEngine(Protocol):
    """Renders one person from one photo. Blocking; the service runs it in its work queue."""

    name: str

    @property
    def loaded(self) -> bool: ...

    def load(self) -> None: ...

    def close(self) -> None:
        """Release the model (at service shutdown)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Engine, model and cache state, for ``/health``."""
        ...

    def prepare(self, image_bytes: bytes) -> SourceInfo:
        """Decode and analyse a photo (cached by content hash). Raises a 4xx error for
        bytes that are not an image and 422 for a photo without a face."""
        ...

    def render(self, key: str, pose: Pose, size: int | None = None) -> Rendered:
        """Render a prepared source (``SourceInfo.key``) in ``pose``; ``size`` is the
        longest side of the output in pixels (None: the working resolution)."""
        ...
