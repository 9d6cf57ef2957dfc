"""Where LivePortrait looks: the face crop from Face Landmarker points, and the paste-back.

The crop follows the published recipe's geometry: its vertical axis runs from the middle
of the eyes to the middle of the mouth (so a tilted head is straightened), it is square,
2.3 times the size of the face's landmark extent, and shifted up by an eighth of its size
to take in the forehead. The extent is measured on the points a 2D face-alignment model
would give (jaw line below the brows, brows, eyes, nose, lips), not on the mesh's
forehead, so the face fills the crop the way the networks were trained on.

The animated crop goes back into the photo through the inverse transform, blended with a
mask that fades out towards the crop's border; only the mask's bounding box is written,
so every pixel outside it stays the photo's own.

The open ratios the retargeting modules take (eye: lid gap over eye width; lips: inner-lip
gap over mouth width) are measured on the same landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CROP_SCALE = 2.3
CROP_SHIFT_UP = 0.125
# The mask is 0 on the outer MASK_EDGE of the crop and 1 inside MASK_EDGE + MASK_FADE.
MASK_EDGE = 0.03
MASK_FADE = 0.12

# Face Landmarker indices (478-point mesh).
_EYE_A = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
_EYE_B = (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398)
_BROWS = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 336, 296, 334, 293, 300, 285, 295, 282,
          283, 276)
_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
         377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
         109)
_NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327)
_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181,
         91, 146)
_INNER_LIP_TOP, _INNER_LIP_BOTTOM, _MOUTH_A, _MOUTH_B = 13, 14, 61, 291
# Upper lid, lower lid, corners of each eye.
_LIDS_A, _CORNERS_A = (159, 145), (33, 133)
_LIDS_B, _CORNERS_B = (386, 374), (362, 263)


@dataclass(frozen=True)
class Crop:
    """A square crop of side ``size`` and the 3x3 transform from photo pixels into it."""

    size: int
    to_crop: np.ndarray  # (3, 3) float64

    @property
    def to_photo(self) -> np.ndarray:
        return np.linalg.inv(self.to_crop)


def face_crop(points: np.ndarray, size: int, scale: float = CROP_SCALE,
              shift_up: float = CROP_SHIFT_UP) -> Crop:
    """The crop for 478 landmarks (pixels of the photo), ``size`` pixels square."""
    xy = points[:, :2].astype(np.float64)
    eyes = (xy[list(_EYE_A)].mean(axis=0) + xy[list(_EYE_B)].mean(axis=0)) / 2
    mouth = xy[list(_LIPS)].mean(axis=0)
    down = mouth - eyes
    length = float(np.linalg.norm(down))
    down = down / length if length > 1e-3 else np.array([0.0, 1.0])
    right = np.array([down[1], -down[0]])
    frame = np.stack([right, down])  # rows: the crop's x and y axes in photo pixels

    local = (xy - eyes) @ frame.T
    brow_line = local[list(_BROWS), 1].min()
    oval = np.array(_OVAL)
    lower_oval = oval[local[oval, 1] >= brow_line]
    chosen = np.concatenate([lower_oval, _BROWS, _EYE_A, _EYE_B, _NOSE, _LIPS])
    low, high = local[chosen].min(axis=0), local[chosen].max(axis=0)
    side = float((high - low).max()) * scale
    centre_local = (low + high) / 2 - np.array([0.0, shift_up * side])
    centre = eyes + centre_local @ frame

    factor = size / side
    to_crop = np.eye(3)
    to_crop[:2, :2] = factor * frame
    to_crop[:2, 2] = size / 2 - factor * frame @ centre
    return Crop(size, to_crop)


def cut(image: np.ndarray, crop: Crop) -> np.ndarray:
    """The crop's pixels (same channel order as ``image``); black outside the photo, as
    the published pipeline pads its crops."""
    return cv2.warpAffine(image, crop.to_crop[:2], (crop.size, crop.size),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def open_ratios(points: np.ndarray) -> tuple[tuple[float, float], float]:
    """((eye A, eye B), lips) open ratios of a face's landmarks."""
    xy = points[:, :2].astype(np.float64)

    def ratio(pair: tuple[int, int], across: tuple[int, int]) -> float:
        gap = np.linalg.norm(xy[pair[0]] - xy[pair[1]])
        return float(gap / (np.linalg.norm(xy[across[0]] - xy[across[1]]) + 1e-6))

    eyes = (ratio(_LIDS_A, _CORNERS_A), ratio(_LIDS_B, _CORNERS_B))
    return eyes, ratio((_INNER_LIP_TOP, _INNER_LIP_BOTTOM), (_MOUTH_A, _MOUTH_B))


def crop_mask(size: int) -> np.ndarray:
    """(size, size) float32 weights of the animated crop: 0 at the border, 1 inside."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    edge = np.minimum(t, 1.0 - t)
    ramp = np.clip((edge - MASK_EDGE) / MASK_FADE, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep: no visible seam where it reaches 1
    return np.minimum(ramp[:, None], ramp[None, :])


def resize_matrix(width: int, height: int, new_width: int, new_height: int) -> np.ndarray:
    """(3, 3) from pixels of an image to pixels of it resized by ``cv2.resize``, which maps
    pixel centres, not corners (half a pixel shows when pasting back)."""
    sx, sy = new_width / width, new_height / height
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


@dataclass
class PasteBack:
    """Pastes animated crops into one photo at one output size."""

    photo: np.ndarray  # BGR uint8 at the output size
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in output pixels
    to_box: np.ndarray  # (2, 3) crop pixels (after ``shrink``) -> box pixels
    weights: np.ndarray  # (h, w, 1) float32 mask in the box
    shrink: int = 0  # crop side to area-average down to first (0: none), against aliasing

    @classmethod
    def build(cls, photo: np.ndarray, crop_to_photo: np.ndarray, crop_size: int
              ) -> PasteBack:
        """``crop_to_photo``: (3, 3) from the animated crop's pixels (``crop_size``
        square) to ``photo``'s pixels."""
        height, width = photo.shape[:2]
        inner = crop_size * MASK_EDGE
        corners = np.array([[inner, inner, 1], [crop_size - inner, inner, 1],
                            [crop_size - inner, crop_size - inner, 1],
                            [inner, crop_size - inner, 1]]) @ crop_to_photo.T
        x0 = int(np.clip(np.floor(corners[:, 0].min()), 0, width))
        y0 = int(np.clip(np.floor(corners[:, 1].min()), 0, height))
        x1 = int(np.clip(np.ceil(corners[:, 0].max()) + 1, 0, width))
        y1 = int(np.clip(np.ceil(corners[:, 1].max()) + 1, 0, height))
        if x1 <= x0 or y1 <= y0:  # the face is outside the photo: nothing to paste
            x0, y0, x1, y1 = 0, 0, 0, 0
        shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], dtype=np.float64)
        to_box = shift @ crop_to_photo
        # Bilinear warping skips pixels when it shrinks by more than about 1.5: average
        # the crop down to (about) its size in the photo first.
        scale = float(np.sqrt(abs(np.linalg.det(to_box[:2, :2]))))
        shrink = 0
        if scale < 0.66:
            shrink = max(8, round(crop_size * scale))
            to_box = to_box @ np.linalg.inv(resize_matrix(crop_size, crop_size, shrink, shrink))
        weights = cv2.warpAffine(crop_mask(shrink or crop_size), to_box[:2],
                                 (max(1, x1 - x0), max(1, y1 - y0)), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return cls(photo, (x0, y0, x1, y1), to_box[:2], weights[:, :, None], shrink)

    def paste(self, crop_bgr: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        out = self.photo.copy()
        if x1 <= x0:
            return out
        if self.shrink:
            crop_bgr = cv2.resize(crop_bgr, (self.shrink, self.shrink),
                                  interpolation=cv2.INTER_AREA)
        warped = cv2.warpAffine(crop_bgr, self.to_box, (x1 - x0, y1 - y0),
                                flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        region = out[y0:y1, x0:x1].astype(np.float32)
        blended = region + self.weights * (warped.astype(np.float32) - region)
        out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out
