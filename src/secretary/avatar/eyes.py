"""Closed eyelids: smooth skin and a lash line where the lids meet.

Warping alone closes an eye by squeezing it, which leaves streaks of lashes and, where
the landmarks sit a little inside the visible eye, specks of white at the corners. From
half closed on, the band around the line where the lids meet is filled from the skin
around it (``cv2.inpaint``) and a soft dark lash line is drawn along it, fading in with
the closure.
"""

from __future__ import annotations

import cv2
import numpy as np

from secretary.avatar import facemesh


def paint_closed_lids(region: np.ndarray, origin: tuple[int, int], moved: np.ndarray,
                      source: np.ndarray, ey: np.ndarray, closure: float) -> None:
    """Paint into ``region`` (BGR view whose top-left pixel is ``origin``), in place.
    ``moved`` and ``source`` are the landmark positions after and before the warp."""
    strength = float(np.clip((closure - 0.5) / 0.4, 0.0, 1.0))
    if strength <= 0.0:
        return
    height, width = region.shape[:2]
    for upper, lower in zip(facemesh.EYE_UPPER, facemesh.EYE_LOWER, strict=True):
        eye_height = float(((source[lower] - source[upper]) @ ey).max())
        if eye_height < 1.0:
            continue
        top = moved[upper] - origin - ey * (0.35 * eye_height + 1.0)
        bottom = moved[lower] - origin + ey * (0.15 * eye_height + 1.0)
        # Reach a little past the corners, where specks of white hide.
        along = top[-1] - top[0]
        reach = along / max(float(np.linalg.norm(along)), 1e-6) * (0.3 * eye_height + 1.0)
        for band in (top, bottom):
            band[0] -= reach
            band[-1] += reach
        outline = np.concatenate([top, bottom[::-1]])
        x0, y0 = np.floor(outline.min(axis=0)).astype(int) - 3
        x1, y1 = np.ceil(outline.max(axis=0)).astype(int) + 4
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        box = region[y0:y1, x0:x1]
        mask = np.zeros(box.shape[:2], dtype=np.uint8)
        cv2.fillPoly(mask, [np.round((outline - (x0, y0)) * 16).astype(np.int32)], 255,
                     cv2.LINE_AA, 4)
        skin = cv2.inpaint(box, (mask > 0).astype(np.uint8), 3, cv2.INPAINT_TELEA)
        # The lash line: along where the lids meet, as dark as the lashes in the photo.
        meet = (moved[upper] + moved[lower]) / 2 - origin - (x0, y0)
        lashes = np.zeros(box.shape[:2], dtype=np.uint8)
        thickness = max(1, round(0.1 * eye_height))
        cv2.polylines(lashes, [np.round(meet * 16).astype(np.int32)], False, 255, thickness,
                      cv2.LINE_AA, 4)
        lash_alpha = cv2.GaussianBlur(lashes, (3, 3), 0).astype(np.float32)[..., None] / 255
        dark = np.percentile(box.reshape(-1, 3), 3, axis=0).astype(np.float32)
        painted = skin.astype(np.float32) * (1 - 0.8 * lash_alpha) + dark * 0.8 * lash_alpha
        alpha = cv2.GaussianBlur(mask, (5, 5), 0).astype(np.float32)[..., None] / 255
        alpha *= strength
        box[:] = np.clip(box * (1 - alpha) + painted * alpha, 0, 255).astype(np.uint8)
