"""From the avatar's ``Pose`` to a LivePortrait ``Motion``.

An expression is three things at intensity 1: offsets of implicit keypoints (added to the
photo's own expression offsets, scaled by the intensity), a factor on the eyes' open ratio
and an extra lip opening, both reached through the retargeting modules. Which keypoints
carry which part of the face is a property of the published model (its authors' demo
edits brows through keypoints 1 and 2, eyes through 11, 13, 15 and 16, mouth corners and
lips through 14, 17, 19 and 20, cheeks through 3 and 7); the amounts here are this
project's, chosen to read clearly at 1 and stay plausible at 2.

Talking drives the lips through the lip retargeting module: the openness per frame (from
the reply audio, ``secretary.avatar.poses``) becomes a target lip-open ratio, 0 closed
to ``TALK_LIP_OPEN``. Blinks set the eyes' target ratio towards 0. Mouth shapes other than
the opening (spread, rounded) are keypoint offsets like expressions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from secretary.avatar.engine import EXPRESSIONS, VISEMES, Pose
from secretary.avatar.liveportrait.networks import NUM_KEYPOINTS
from secretary.avatar.liveportrait.renderer import Motion

# Lip-open ratio (inner-lip gap over mouth width) of a wide-open talking mouth; the
# published demo's slider reaches 0.8 for a gaping one.
TALK_LIP_OPEN = 0.45
# Lip-open ratio an open viseme on a still render reaches at mouth_open 1.
RENDER_LIP_OPEN = 0.5


@dataclass(frozen=True)
class Shape:
    """A facial movement at intensity 1."""

    offsets: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    eye_factor: float = 1.0  # multiplies the photo's eye-open ratio
    lip_open: float = 0.0  # added to the target lip-open ratio


SHAPES: dict[str, Shape] = {
    "neutral": Shape(),
    "happy": Shape({14: (0.0, -0.018, 0.0), 20: (0.0, -0.009, 0.0), 17: (0.0, 0.006, 0.003),
                    13: (0.0, -0.003, 0.0), 16: (0.0, -0.003, 0.0), 3: (0.0, -0.004, 0.0),
                    7: (0.0, -0.004, 0.0)}, eye_factor=0.85),
    "sad": Shape({14: (0.0, 0.010, 0.0), 20: (0.0, 0.005, 0.0), 17: (0.0, -0.003, 0.0),
                  1: (0.0, 0.008, 0.0), 2: (0.0, -0.008, 0.0)}, eye_factor=0.9),
    "surprised": Shape({1: (0.0, 0.020, 0.0), 2: (0.0, -0.020, 0.0)}, eye_factor=1.3,
                       lip_open=0.3),
    "angry": Shape({1: (0.015, -0.005, 0.0), 2: (-0.015, 0.005, 0.0),
                    14: (0.0, 0.004, 0.0), 17: (0.0, -0.002, -0.002)}, eye_factor=0.75),
    "blink": Shape(),  # the eyes close through ``closure``
}

VISEME_SHAPES: dict[str, Shape] = {
    "closed": Shape(),
    "open": Shape(),
    "wide": Shape({14: (0.0, -0.008, 0.0), 20: (0.0, -0.004, 0.0)}),
    "round": Shape({19: (0.03, 0.0, 0.0), 14: (0.0, 0.004, 0.0)}),
}

assert set(SHAPES) == set(EXPRESSIONS) and set(VISEME_SHAPES) == set(VISEMES)


def offsets_array(shape: Shape, amount: float) -> np.ndarray:
    out = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    for index, delta in shape.offsets.items():
        out[index] += np.float32(amount) * np.asarray(delta, dtype=np.float32)
    return out


def closure(pose: Pose) -> float:
    """Eye closure 0..1: the blink expression plus talking blinks."""
    blink = pose.intensity if pose.expression == "blink" else 0.0
    return float(min(max(blink + pose.blink, 0.0), 1.0))


def motion_for(pose: Pose, eye_ratio: float) -> Motion:
    """The motion for ``pose`` on a photo whose mean eye-open ratio is ``eye_ratio``."""
    shape = SHAPES[pose.expression]
    amount = pose.intensity if pose.expression not in ("neutral", "blink") else 0.0
    offsets = offsets_array(shape, amount)

    weights = pose.viseme_weights or {pose.viseme: 1.0}
    talking = pose.viseme_weights is not None
    for name, weight in weights.items():
        if weight > 0 and pose.mouth_open > 0:
            offsets += offsets_array(VISEME_SHAPES[name], pose.mouth_open * weight)

    # The "closed" shape keeps the lips together however far the mouth is asked to open.
    opening = pose.mouth_open * sum(w for name, w in weights.items() if name != "closed")
    lip_open = None
    extra = shape.lip_open * amount
    if talking:
        lip_open = TALK_LIP_OPEN * opening + extra
    elif opening > 0 or extra > 0:
        lip_open = RENDER_LIP_OPEN * opening + extra

    eye_factor = 1.0 + (shape.eye_factor - 1.0) * amount
    shut = closure(pose)
    eye_open = None
    if eye_factor != 1.0 or shut > 0:
        eye_open = max(eye_ratio * eye_factor * (1.0 - shut), 0.0)

    return Motion(pitch=pose.pitch, yaw=pose.yaw, roll=pose.roll,
                  offsets=offsets if offsets.any() else None,
                  eye_open=eye_open, lip_open=lip_open)
