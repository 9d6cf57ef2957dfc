"""The face mesh and the piecewise-affine warp that renders it.

The mesh is mediapipe's own face tessellation (852 triangles over the 468 surface
landmarks), with the holes it leaves closed by triangle strips: one across each eye, one
across the mouth, so that blinking squeezes the eye and an opening mouth stretches a strip
that is then painted over as the mouth's inside. Two rings of vertices around the face
oval carry the deformation out to zero: the outer ring never moves, so the warped region
joins the untouched photo without a seam, and everything outside it is the source itself.

Rendering one frame: move the vertices, rasterise the moved triangles into an id map (one
``fillConvexPoly`` per triangle, at half resolution), look up each pixel's triangle affine
map back into the source, scale the maps up and ``cv2.remap`` the face's bounding region
only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

N_LANDMARKS = 478

# Landmark indices of mediapipe's face mesh (image left is the subject's right side).
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109]
UPPER_INNER_LIP = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LOWER_INNER_LIP = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
UPPER_OUTER_LIP = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291]
LOWER_OUTER_LIP = [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291]
EYE_UPPER = ([33, 246, 161, 160, 159, 158, 157, 173, 133],
             [263, 466, 388, 387, 386, 385, 384, 398, 362])
EYE_LOWER = ([33, 7, 163, 144, 145, 153, 154, 155, 133],
             [263, 249, 390, 373, 374, 380, 381, 382, 362])
BROWS = ([70, 63, 105, 66, 107, 46, 53, 52, 65, 55],
         [300, 293, 334, 296, 336, 276, 283, 282, 295, 285])
INNER_BROWS = ([107, 55, 66, 65], [336, 285, 296, 295])
MOUTH_CORNERS = (61, 291)

# Scale of the two rings around the oval, from the oval's centre, and how much of the
# oval's movement the inner ring follows. The outer ring is fixed.
RING_SCALES = (1.3, 1.75)
INNER_RING_FOLLOW = 0.35
N_RING = len(FACE_OVAL)
N_VERTICES = N_LANDMARKS + 2 * N_RING


def _strip(upper: list[int], lower: list[int]) -> list[tuple[int, int, int]]:
    """Triangles between two contours that share their end points."""
    triangles = []
    for i in range(len(upper) - 1):
        a, b, c, d = upper[i], upper[i + 1], lower[i], lower[i + 1]
        if a == c:
            triangles.append((a, b, d))
        elif b == d:
            triangles.append((a, b, c))
        else:
            triangles += [(a, b, c), (b, d, c)]
    return triangles


def _ring_strip(inner: list[int], outer: list[int]) -> list[tuple[int, int, int]]:
    n = len(inner)
    triangles = []
    for i in range(n):
        j = (i + 1) % n
        triangles += [(inner[i], inner[j], outer[i]), (inner[j], outer[j], outer[i])]
    return triangles


@cache
def triangles() -> np.ndarray:
    """(T, 3) vertex indices in drawing order: the two rings, the eye and mouth fills, the
    tessellation. Where triangles overlap (a fold on a strong pose) the later one wins, so
    the face's own surface is drawn last, over what lies behind it."""
    from mediapipe.tasks.python.vision.face_landmarker import FaceLandmarksConnections

    edges = FaceLandmarksConnections.FACE_LANDMARKS_TESSELATION
    # The tessellation lists each triangle as its three edges in a row.
    faces = {(edges[i].start, edges[i + 1].start, edges[i + 2].start)
             for i in range(0, len(edges), 3)}
    ring1 = list(range(N_LANDMARKS, N_LANDMARKS + N_RING))
    ring2 = list(range(N_LANDMARKS + N_RING, N_VERTICES))
    mesh = _ring_strip(ring1, ring2) + _ring_strip(FACE_OVAL, ring1)
    mesh += _strip(UPPER_INNER_LIP, LOWER_INNER_LIP)
    for upper, lower in zip(EYE_UPPER, EYE_LOWER, strict=True):
        mesh += _strip(upper, lower)
    mesh += sorted(faces)
    return np.array(mesh, dtype=np.int32)


@dataclass(frozen=True)
class FaceFrame:
    """A face-aligned frame: origin between the eyes, ``ex`` from the image-left eye to the
    other, ``ey`` downwards, one unit = the distance between the eyes."""

    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    scale: float

    @classmethod
    def from_points(cls, points: np.ndarray) -> FaceFrame:
        xy = points[:, :2].astype(np.float64)
        right = xy[EYE_UPPER[0] + EYE_LOWER[0]].mean(axis=0)
        left = xy[EYE_UPPER[1] + EYE_LOWER[1]].mean(axis=0)
        axis = left - right
        scale = float(np.linalg.norm(axis))
        ex = axis / max(scale, 1e-6)
        ey = np.array([-ex[1], ex[0]])
        return cls((right + left) / 2, ex, ey, max(scale, 1e-6))

    def to_uv(self, xy: np.ndarray) -> np.ndarray:
        rel = xy - self.origin
        return np.stack([rel @ self.ex, rel @ self.ey], axis=1) / self.scale

    def to_pixels(self, duv: np.ndarray) -> np.ndarray:
        """A displacement in face units as a displacement in pixels."""
        return self.scale * (duv[:, :1] * self.ex + duv[:, 1:2] * self.ey)


def ring_vertices(points: np.ndarray) -> np.ndarray:
    """(2 * N_RING, 2) positions of the two rings around the oval."""
    oval = points[FACE_OVAL, :2].astype(np.float64)
    centre = oval.mean(axis=0)
    return np.concatenate([centre + s * (oval - centre) for s in RING_SCALES])


def extend_to_rings(displacement: np.ndarray) -> np.ndarray:
    """Landmark displacements (478, 2) -> all vertices: the inner ring follows the oval
    partly, the outer ring stays put."""
    out = np.zeros((N_VERTICES, 2), dtype=np.float32)
    out[:N_LANDMARKS] = displacement
    out[N_LANDMARKS:N_LANDMARKS + N_RING] = INNER_RING_FOLLOW * displacement[FACE_OVAL]
    return out


class MeshWarper:
    """Warps one image by moving the mesh vertices; built once per source and size.

    Only the bounding region of the outer ring is touched. Pixels that no triangle covers
    keep an identity map, and a remap at integer positions returns the source pixel
    exactly, so the rest of the photo stays bit-for-bit the same.
    """

    def __init__(self, image: np.ndarray, vertices: np.ndarray) -> None:
        self.image = image
        self.vertices = vertices.astype(np.float32)
        self.triangles = triangles()
        height, width = image.shape[:2]
        outer = self.vertices[N_LANDMARKS + N_RING:]
        x0, y0 = (max(int(v), 0) for v in np.floor(outer.min(axis=0)))
        x1, y1 = np.ceil(outer.max(axis=0)).astype(int) + 1
        x1, y1 = min(int(x1), width), min(int(y1), height)
        # Even sizes, so the half-resolution maps line up exactly with the full grid. The
        # column or row given up lies outside the outer ring, where nothing moves (or at
        # the photo's edge, where a face cut off by the frame may lose one line).
        self.x0, self.y0 = x0, y0
        self.x1, self.y1 = x1 - (x1 - x0) % 2, y1 - (y1 - y0) % 2
        self.shape = (self.y1 - self.y0, self.x1 - self.x0)
        # The maps are computed at half resolution on the centres of 2x2 pixel blocks and
        # scaled up bilinearly: a piecewise-affine map is continuous, so this costs a
        # fraction of a pixel at triangle edges and a quarter of the work.
        half_rows, half_cols = self.shape[0] // 2, self.shape[1] // 2
        self._half_x = np.tile(self.x0 + 0.5 + 2 * np.arange(half_cols, dtype=np.float32),
                               (half_rows, 1))
        self._half_y = np.tile((self.y0 + 0.5 + 2 * np.arange(half_rows, dtype=np.float32)
                                )[:, None], (1, half_cols))
        src = self.vertices[self.triangles].astype(np.float64)  # (T, 3, 2)
        self._src0, self._f1, self._f2 = src[:, 0], src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]
        self._src_det = self._f1[:, 0] * self._f2[:, 1] - self._f1[:, 1] * self._f2[:, 0]
        self._src_centre = src.mean(axis=1)

    @property
    def roi(self) -> tuple[int, int, int, int]:
        return self.x0, self.y0, self.x1, self.y1

    def source_maps(self, moved: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each pixel of the region, where to read the source; and the (half
        resolution) triangle id map."""
        tris = self.triangles
        count = len(tris)
        dst = moved[tris].astype(np.float64)  # (T, 3, 2)
        # Per triangle, the affine map dst -> src in closed form: src = q0 + M (x - p0)
        # with M = F E^-1, E and F the edge vectors from the first vertex.
        p0, e1, e2 = dst[:, 0], dst[:, 1] - dst[:, 0], dst[:, 2] - dst[:, 0]
        q0, f1, f2 = self._src0, self._f1, self._f2
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        drawn = np.abs(det) > 1e-6
        # A triangle squeezed flat or turned over (a sliver along the jaw on a strong
        # pose) would get a huge inverse that reads pixels from far away: those move
        # their pixels along rigidly instead.
        ok = drawn & (det * self._src_det > 0) & (np.abs(det) > 0.1 * np.abs(self._src_det))
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        # E^-1 = [[e2y, -e2x], [-e1y, e1x]] / det
        i00, i01 = e2[:, 1] * inv, -e2[:, 0] * inv
        i10, i11 = -e1[:, 1] * inv, e1[:, 0] * inv
        m00 = f1[:, 0] * i00 + f2[:, 0] * i10
        m01 = f1[:, 0] * i01 + f2[:, 0] * i11
        m10 = f1[:, 1] * i00 + f2[:, 1] * i10
        m11 = f1[:, 1] * i01 + f2[:, 1] * i11
        coeffs = np.empty((count + 1, 6), dtype=np.float32)
        coeffs[:count, 0], coeffs[:count, 1] = m00, m01
        coeffs[:count, 2] = q0[:, 0] - m00 * p0[:, 0] - m01 * p0[:, 1]
        coeffs[:count, 3], coeffs[:count, 4] = m10, m11
        coeffs[:count, 5] = q0[:, 1] - m10 * p0[:, 0] - m11 * p0[:, 1]
        rigid = ~ok
        shift = self._src_centre[rigid] - dst[rigid].mean(axis=1)
        coeffs[:count][rigid] = np.column_stack([
            np.ones(len(shift)), np.zeros(len(shift)), shift[:, 0],
            np.zeros(len(shift)), np.ones(len(shift)), shift[:, 1]])
        coeffs[count] = (1, 0, 0, 0, 1, 0)  # identity for uncovered pixels

        half_shape = self._half_x.shape
        ids = np.full(half_shape, count, dtype=np.int32)  # per call: renders may overlap
        # Half-resolution pixel (i, j) is centred on full-resolution (x0 + 2j + .5, ...).
        shifted = np.round((dst - (self.x0 + 0.5, self.y0 + 0.5)) * 8).astype(np.int32)
        fill = cv2.fillConvexPoly
        for t in np.flatnonzero(drawn):
            fill(ids, shifted[t], int(t), cv2.LINE_8, 4)
        c = [np.take(coeffs[:, k], ids) for k in range(6)]
        gx, gy = self._half_x, self._half_y
        half_x = c[0] * gx + c[1] * gy + c[2]
        half_y = c[3] * gx + c[4] * gy + c[5]
        # Inside a triangle a pixel moves by a blend of its corners' movements, never
        # further. The rasteriser also colours pixels just beside a sliver, where the
        # affine map extrapolates wildly; those move with the triangle's centre instead.
        moves = (moved - self.vertices).astype(np.float32)
        corner_moves = np.hypot(moves[tris, 0], moves[tris, 1]).max(axis=1)
        bound = np.append(corner_moves + 0.75, 0.75).astype(np.float32)
        centre_move = np.vstack([-moves[tris].mean(axis=1), np.zeros((1, 2), np.float32)])
        off_x, off_y = half_x - gx, half_y - gy
        wild = off_x * off_x + off_y * off_y > np.take(bound, ids) ** 2
        if wild.any():
            wild_ids = ids[wild]
            half_x[wild] = gx[wild] + centre_move[wild_ids, 0]
            half_y[wild] = gy[wild] + centre_move[wild_ids, 1]
        size = (self.shape[1], self.shape[0])
        map_x = cv2.resize(half_x, size, interpolation=cv2.INTER_LINEAR)
        map_y = cv2.resize(half_y, size, interpolation=cv2.INTER_LINEAR)
        for full in (map_x, map_y) if min(self.shape) >= 4 else ():
            # The outermost rows and columns lie half a block beyond the last centres,
            # where resizing repeats the edge value; extend the affine map linearly.
            full[:, 0] = 2 * full[:, 1] - full[:, 2]
            full[:, -1] = 2 * full[:, -2] - full[:, -3]
            full[0] = 2 * full[1] - full[2]
            full[-1] = 2 * full[-2] - full[-3]
        return map_x, map_y, ids

    def warp(self, moved: np.ndarray) -> np.ndarray:
        """The warped bounding region (BGR) for vertices at ``moved``."""
        map_x, map_y, _ = self.source_maps(moved)
        return cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
