"""Expressions and mouth shapes as landmark displacements.

Each expression, mouth shape and the blink is a displacement of the 478 landmarks per unit
of intensity, written in face units (``facemesh.FaceFrame``: one unit is the distance between
the eyes, v points down the face), so the same recipe fits any face size and tilt. They
are computed once per source photo; a pose is then a weighted sum of them plus a small
rigid head rotation, which keeps per-frame cost to a few array operations.

The recipes follow the facial action units the blendshapes measure: a smile pulls the
mouth corners up and out and lifts the cheeks (AU6+12), sadness lowers the corners and
raises the inner brows (AU1+15), surprise raises the brows, opens the lids and drops the
jaw (AU1+2+5+26), anger lowers and knits the brows and narrows the lids (AU4+7+23).
"""

from __future__ import annotations

import numpy as np

from secretary.avatar import facemesh

# How far the jaw drops at full openness, in face units.
JAW_DROP = 0.32


def _gauss(uv: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((uv - centre) ** 2).sum(axis=1)
    return np.exp(-d2 / (2 * sigma * sigma))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class Deformations:
    """Per-source displacement bases, in face units, shape (478, 2) each."""

    def __init__(self, uv: np.ndarray) -> None:
        self.uv = uv
        n = len(uv)
        self._lower_lip = np.zeros(n, dtype=bool)
        self._lower_lip[facemesh.LOWER_INNER_LIP[1:-1] + facemesh.LOWER_OUTER_LIP[1:-1]] = True
        self._upper_lip = np.zeros(n, dtype=bool)
        self._upper_lip[facemesh.UPPER_INNER_LIP[1:-1] + facemesh.UPPER_OUTER_LIP[1:-1]] = True
        corners = uv[list(facemesh.MOUTH_CORNERS)]
        self.mouth_centre = corners.mean(axis=0)
        self.mouth_half_width = max(float(abs(corners[1, 0] - corners[0, 0])) / 2, 0.2)
        self.bases: dict[str, np.ndarray] = {
            "jaw": self._jaw(),
            "happy": self._happy(),
            "sad": self._sad(),
            "surprised": self._surprised(),
            "angry": self._angry(),
            "blink": self._blink(),
        }
        self.bases["open"] = self.bases["jaw"] + self._upper_lip_raise(0.04)
        self.bases["wide"] = 0.45 * self.bases["jaw"] + self._spread(0.10)
        self.bases["round"] = 0.55 * self.bases["jaw"] + self._spread(-0.13) \
            + self._upper_lip_raise(0.03)
        self.bases["closed"] = np.zeros_like(uv)

    # ------------------------------------------------------------------ pieces
    def _jaw_weight(self) -> np.ndarray:
        """How much each landmark follows the lower jaw (1 at the chin and lower lip)."""
        u, v = self.uv[:, 0], self.uv[:, 1]
        du = np.abs(u - self.mouth_centre[0])
        below = _smoothstep((v - self.mouth_centre[1] + 0.05) / 0.35)
        lateral = 1.0 - _smoothstep((du - 0.35) / 0.6)
        weight = below * lateral
        # The lower lip moves with the jaw, a little less towards the corners.
        along = np.clip(du / self.mouth_half_width, 0.0, 1.0)
        lip = 1.0 - 0.5 * along**2
        weight = np.where(self._lower_lip, np.maximum(weight, lip), weight)
        weight = np.where(self._upper_lip, 0.0, weight)
        weight[list(facemesh.MOUTH_CORNERS)] = 0.35
        weight[[78, 308]] = 0.4
        return weight

    def _jaw(self) -> np.ndarray:
        out = np.zeros_like(self.uv)
        out[:, 1] = JAW_DROP * self._jaw_weight()
        return out

    def _upper_lip_raise(self, amount: float) -> np.ndarray:
        out = np.zeros_like(self.uv)
        du = np.abs(self.uv[:, 0] - self.mouth_centre[0]) / self.mouth_half_width
        weight = np.where(self._upper_lip, 1.0 - 0.6 * np.clip(du, 0, 1) ** 2, 0.0)
        out[:, 1] = -amount * weight
        return out

    def _spread(self, amount: float) -> np.ndarray:
        """Lips pulled sideways (positive) or gathered towards the middle (negative)."""
        rel = (self.uv[:, 0] - self.mouth_centre[0]) / self.mouth_half_width
        near = _gauss(self.uv, self.mouth_centre, 0.45)
        out = np.zeros_like(self.uv)
        out[:, 0] = amount * np.clip(rel, -1.3, 1.3) * near
        return out

    def _at_corners(self, du: float, dv: float, sigma: float) -> np.ndarray:
        """A pull at both mouth corners, mirrored: ``du`` outwards, ``dv`` down."""
        out = np.zeros_like(self.uv)
        for corner, side in zip(facemesh.MOUTH_CORNERS, (-1.0, 1.0), strict=True):
            w = _gauss(self.uv, self.uv[corner], sigma)
            out[:, 0] += side * du * w
            out[:, 1] += dv * w
        return out

    def _brows(self, dv: float, inner_dv: float, inner_du: float = 0.0) -> np.ndarray:
        """Brows up (negative ``dv``) or down, inner ends by ``inner_dv`` more and pulled
        towards the middle by ``inner_du``; the forehead and lids follow partly."""
        out = np.zeros_like(self.uv)
        pairs = zip(facemesh.BROWS, facemesh.INNER_BROWS, strict=True)
        for side, (brow, inner) in enumerate(pairs):
            sign = -1.0 if side == 0 else 1.0
            centre = self.uv[brow].mean(axis=0)
            inner_centre = self.uv[inner].mean(axis=0)
            w = _gauss(self.uv, centre, 0.22)
            wi = _gauss(self.uv, inner_centre, 0.13)
            out[:, 1] += dv * w + inner_dv * wi
            out[:, 0] += -sign * inner_du * wi
        # Keep the eyes themselves out of it; the lids have their own pieces.
        out[self._eye_mask()] *= 0.2
        return out

    def _eye_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.uv), dtype=bool)
        for contour in (*facemesh.EYE_UPPER, *facemesh.EYE_LOWER):
            mask[contour] = True
        return mask

    def _lids(self, upper_dv: float, lower_dv: float) -> np.ndarray:
        """Upper lids down (positive) or up, lower lids up (negative) or down, as a fraction
        of each eye's opening."""
        out = np.zeros_like(self.uv)
        for upper, lower in zip(facemesh.EYE_UPPER, facemesh.EYE_LOWER, strict=True):
            gap = np.maximum(self.uv[lower[1:-1], 1] - self.uv[upper[1:-1], 1], 0.02)
            out[upper[1:-1], 1] += upper_dv * gap
            out[lower[1:-1], 1] += lower_dv * gap
            # The skin above the upper lid stretches with it, less with distance.
            eye_centre = self.uv[upper + lower].mean(axis=0)
            lid_top = self.uv[upper, 1].min()
            above = (self.uv[:, 1] < lid_top) & (np.abs(self.uv[:, 0] - eye_centre[0]) < 0.3)
            fade = np.exp(-((lid_top - self.uv[:, 1]) / 0.08) ** 2)
            gap_mean = float(gap.mean())
            out[above, 1] += upper_dv * gap_mean * fade[above] * 0.7
        return out

    # ------------------------------------------------------------------ expressions
    def _happy(self) -> np.ndarray:
        # Lips part a little, as in most smiles, so the teeth show.
        out = self._at_corners(0.11, -0.10, 0.16)
        out += self._upper_lip_raise(0.035) + 0.12 * self._jaw()
        for side in (-1.0, 1.0):
            cheek = self.mouth_centre + np.array([side * 0.42, -0.45])
            out[:, 1] -= 0.05 * _gauss(self.uv, cheek, 0.18)
        out += self._lids(0.0, -0.15)
        return out

    def _sad(self) -> np.ndarray:
        # Corners down and slightly apart (the lips' arch turns over), the lower lip's
        # middle pushed up by the chin.
        out = self._at_corners(0.05, 0.15, 0.2)
        lower = np.zeros_like(self.uv)
        du = np.abs(self.uv[:, 0] - self.mouth_centre[0]) / self.mouth_half_width
        lower[:, 1] = np.where(self._lower_lip, -0.03 * np.clip(1 - du, 0, 1), 0.0)
        out += lower
        out += self._brows(0.02, -0.09, 0.015)
        out += self._lids(0.15, 0.0)
        return out

    def _surprised(self) -> np.ndarray:
        out = self._brows(-0.11, -0.05)
        out += self._lids(-0.35, 0.05)
        out += 0.55 * self._jaw()
        out += self._spread(-0.04)
        return out

    def _angry(self) -> np.ndarray:
        out = self._brows(0.09, 0.08, 0.06)
        out += self._lids(0.22, -0.15)
        out += self._at_corners(-0.01, 0.025, 0.12)
        return out

    def _blink(self) -> np.ndarray:
        """Upper lids all the way down to the lower lids. The skin between lid and crease
        comes down almost as one piece, so the stretch lands on the smooth skin under the
        brow rather than on the lashes."""
        out = np.zeros_like(self.uv)
        brows = np.zeros(len(self.uv), dtype=bool)
        for brow in facemesh.BROWS:
            brows[brow] = True
        for upper, lower in zip(facemesh.EYE_UPPER, facemesh.EYE_LOWER, strict=True):
            gap = np.maximum(self.uv[lower[1:-1], 1] - self.uv[upper[1:-1], 1], 0.0)
            out[upper[1:-1], 1] += 0.9 * gap
            out[lower[1:-1], 1] -= 0.1 * gap
            eye_centre = self.uv[upper + lower].mean(axis=0)
            half_width = 0.5 * float(np.ptp(self.uv[upper, 0]))
            lid_top = self.uv[upper, 1].min()
            depth = lid_top - self.uv[:, 1]
            lateral = 1.0 - _smoothstep((np.abs(self.uv[:, 0] - eye_centre[0]) - half_width)
                                        / 0.15)
            above = (depth > 0) & (lateral > 0) & ~brows
            weight = (1.0 - _smoothstep((depth - 0.05) / 0.2)) * lateral
            out[above, 1] += 0.85 * float(gap.mean()) * weight[above]
        return out
