"""The inside of an opening mouth: a dark cavity with a hint of teeth and tongue.

When the jaw drops, the warp stretches the thin strip between the lips; painting over it
keeps the lips looking like lips. The paint fades in with how far the mouth opened beyond
the photo's own opening (a photo that already shows teeth keeps them while it stays as
it is), and its edge is feathered so it sits inside the lips without a hard outline.
"""

from __future__ import annotations

import cv2
import numpy as np

from secretary.avatar import facemesh

_CAVITY = np.array([30, 34, 80], dtype=np.float32)  # BGR: dark red-brown
_THROAT = np.array([12, 12, 30], dtype=np.float32)
_TEETH = np.array([178, 190, 202], dtype=np.float32)
_TONGUE = np.array([88, 86, 160], dtype=np.float32)


def opening(points: np.ndarray, ey: np.ndarray) -> float:
    """Mean distance between the inner lips, in pixels, along the face's down axis."""
    upper = points[facemesh.UPPER_INNER_LIP[3:8]]
    lower = points[facemesh.LOWER_INNER_LIP[3:8]]
    return float(((lower - upper) @ ey).mean())


def colourfulness(image: np.ndarray, points: np.ndarray) -> tuple[float, np.ndarray]:
    """How colourful the face is (0 for a black-and-white or toned photo, 1 for ordinary
    colour) and its tone (mean BGR over mean grey): the painted inside must not be red in
    a sepia picture."""
    x0, y0 = np.floor(points[facemesh.FACE_OVAL, :2].min(axis=0)).astype(int).clip(0)
    x1, y1 = np.ceil(points[facemesh.FACE_OVAL, :2].max(axis=0)).astype(int)
    face = image[y0:y1, x0:x1]
    if face.size == 0:
        return 1.0, np.ones(3, dtype=np.float32)
    saturation = float(np.median(cv2.cvtColor(face, cv2.COLOR_BGR2HSV)[..., 1])) / 255.0
    mean = face.reshape(-1, 3).mean(axis=0).astype(np.float32)
    tone = mean / max(float(mean.mean()), 1.0)
    return float(np.clip((saturation - 0.18) / 0.1, 0.0, 1.0)), tone


def paint_interior(region: np.ndarray, origin: tuple[int, int], points: np.ndarray,
                   ey: np.ndarray, source_opening: float, face_scale: float,
                   colour: tuple[float, np.ndarray] | None = None) -> None:
    """Paint the mouth's inside into ``region`` (a BGR view whose top-left pixel is at
    ``origin`` in image coordinates), in place. ``points`` are the moved vertices;
    ``colour`` is the photo's ``colourfulness``."""
    gap = opening(points, ey)
    extra = gap - max(source_opening, 0.0)
    strength = float(np.clip(extra / (0.025 * face_scale), 0.0, 1.0))
    if strength <= 0.0 or gap < 1.0:
        return
    upper = points[facemesh.UPPER_INNER_LIP] - origin
    lower = points[facemesh.LOWER_INNER_LIP] - origin
    outline = np.concatenate([upper, lower[-2:0:-1]])
    x0, y0 = np.floor(outline.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(outline.max(axis=0)).astype(int) + 3
    height, width = region.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    box = region[y0:y1, x0:x1]
    shape = box.shape[:2]
    local = (outline - (x0, y0)) * 16

    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(local).astype(np.int32)], 255, cv2.LINE_AA, 4)
    alpha = cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32) * (strength / 255.0)

    # Cavity: darker towards the middle, where the throat is.
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    centre = outline.mean(axis=0) - (x0, y0)
    half = np.maximum((outline.max(axis=0) - outline.min(axis=0)) / 2, 1.0)
    radial = np.clip(((xs - centre[0]) / half[0]) ** 2 + ((ys - centre[1]) / half[1]) ** 2,
                     0.0, 1.0)[..., None]
    paint = _THROAT + (_CAVITY - _THROAT) * radial

    # Teeth: a light band under the upper lip and a fainter one over the lower lip,
    # between the corners, as tall as the opening allows.
    teeth_height = min(0.22 * gap, 0.06 * face_scale)
    shift = ey * teeth_height
    up_mid = upper[2:-2] - (x0, y0)
    low_mid = lower[2:-2] - (x0, y0)
    teeth = np.zeros(shape, dtype=np.uint8)
    band = np.concatenate([up_mid, (up_mid + shift)[::-1]])
    cv2.fillPoly(teeth, [np.round(band * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    lower_band = np.concatenate([low_mid, (low_mid - 0.6 * shift)[::-1]])
    cv2.fillPoly(teeth, [np.round(lower_band * 16).astype(np.int32)], 110, cv2.LINE_AA, 4)
    teeth_alpha = cv2.GaussianBlur(teeth, (3, 3), 0).astype(np.float32)[..., None] / 255.0
    # Shade the teeth towards the corners, where they turn away from the light.
    side = np.clip(np.abs(xs - centre[0]) / half[0], 0.0, 1.0)[..., None]
    teeth_colour = _TEETH * (1.0 - 0.45 * side)
    paint = paint * (1 - teeth_alpha) + teeth_colour * teeth_alpha

    # Tongue: a soft reddish mound at the bottom of a wide opening.
    if gap > 0.12 * face_scale:
        tongue = np.zeros(shape, dtype=np.uint8)
        bottom = lower[3:8].mean(axis=0) - (x0, y0) - ey * 0.2 * gap
        axes = (max(int(half[0] * 0.55), 1), max(int(0.22 * gap), 1))
        cv2.ellipse(tongue, (int(bottom[0]), int(bottom[1])), axes, 0, 180, 360, 140, -1,
                    cv2.LINE_AA)
        tongue_alpha = cv2.GaussianBlur(tongue, (5, 5), 0).astype(np.float32)[..., None]
        tongue_alpha *= (1 - teeth_alpha) / 255.0
        paint = paint * (1 - tongue_alpha) + _TONGUE * tongue_alpha

    if colour is not None and colour[0] < 1.0:
        amount, tone = colour
        grey = 0.7 * paint.mean(axis=-1, keepdims=True) * tone
        paint = grey + (paint - grey) * amount
    a = alpha[..., None]
    box[:] = np.clip(box.astype(np.float32) * (1 - a) + paint * a, 0, 255).astype(np.uint8)
