"""A face crop in, animated face crops out: LivePortrait's inference on loaded networks.

A source crop is analysed once (``analyse``: the appearance volume from F, the keypoint
decomposition from M) and then driven by ``Motion``s, one per output frame:

    x_d = s * (x_c R_d + δ_s + Δ) + t          (Eq. 2 of the paper, tz left out)

where ``x_c`` are the source's canonical keypoints, ``R_d`` its head rotation plus the
asked-for turn, ``δ_s`` its own expression offsets, ``Δ`` what the motion adds, and ``s``,
``t`` its scale and translation. Eyes and lips are then moved by the retargeting modules
towards target open ratios, and the stitching module corrects the keypoints so the
crop's border stays where the photo has it (what makes the paste-back seamless). W and G
turn the source volume and both keypoint sets into the output crop. Frames are rendered in
batches; on CUDA under fp16 autocast.

Retargeting is applied as a difference, ``R(x_s, c_s, c_target) - R(x_s, c_s, c_s)``, so a
target equal to the photo's own ratio changes nothing and small targets move smoothly.

torch and numpy only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from secretary.avatar.liveportrait.networks import Networks


@dataclass(frozen=True)
class Motion:
    """One frame, relative to the source photo."""

    pitch: float = 0.0  # degrees added to the photo's head pose
    yaw: float = 0.0
    roll: float = 0.0
    offsets: np.ndarray | None = None  # (K, 3) added to the expression offsets
    eye_open: float | None = None  # target eye-open ratio; None keeps the photo's
    lip_open: float | None = None  # target lip-open ratio; None keeps the photo's


@dataclass
class SourceState:
    """What a source crop is analysed into; all tensors stay on the renderer's device."""

    volume: torch.Tensor  # (1, C, D, H, W) appearance features
    canonical: torch.Tensor  # (1, K, 3)
    angles: torch.Tensor  # (1, 3) pitch, yaw, roll in degrees
    expression: torch.Tensor  # (1, K, 3)
    scale: torch.Tensor  # (1, 1)
    translation: torch.Tensor  # (1, 3)
    keypoints: torch.Tensor  # (1, K, 3) the source's own driven keypoints, x_s
    eye_ratio: torch.Tensor  # (1, 2) left, right eye-open ratio of the photo
    lip_ratio: torch.Tensor  # (1, 1) lip-open ratio of the photo
    # The same as numbers, so driving never waits on the device to read them.
    mean_eye_ratio: float
    mean_lip_ratio: float

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in vars(self).values()
                   if isinstance(t, torch.Tensor))


def bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """Head angle from M's bins of 3 degrees: the expected bin, centred so the middle of
    the range is 0 (66 bins: -97.5 .. 97.5 degrees)."""
    bins = logits.shape[-1]
    index = torch.arange(bins, dtype=torch.float32, device=logits.device)
    expected = (F.softmax(logits.float(), dim=-1) * index).sum(-1)
    return 3.0 * expected - 1.5 * (bins - 1)


def rotation(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) matrices for (B, 3) pitch, yaw, roll in degrees, roll applied last; to be
    used on row vectors as ``x @ R``."""
    pitch, yaw, roll = torch.deg2rad(angles.float()).unbind(-1)
    one, zero = torch.ones_like(pitch), torch.zeros_like(pitch)

    def stack(rows: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        return torch.stack([torch.stack(list(r), dim=-1) for r in rows], dim=-2)

    cx, sx, cy, sy, cz, sz = (pitch.cos(), pitch.sin(), yaw.cos(), yaw.sin(), roll.cos(),
                              roll.sin())
    around_x = stack([[one, zero, zero], [zero, cx, -sx], [zero, sx, cx]])
    around_y = stack([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
    around_z = stack([[cz, -sz, zero], [sz, cz, zero], [zero, zero, one]])
    return (around_z @ around_y @ around_x).transpose(-1, -2)


def drive(canonical: torch.Tensor, angles: torch.Tensor, expression: torch.Tensor,
          scale: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """Eq. 2: canonical keypoints (B, K, 3) posed, deformed, scaled and shifted in x, y."""
    moved = canonical @ rotation(angles) + expression
    shift = torch.cat([translation[:, :2], torch.zeros_like(translation[:, 2:])], dim=-1)
    return moved * scale[:, :, None] + shift[:, None, :]


class Renderer:
    """LivePortrait inference on loaded networks (not thread-safe; the service runs one
    engine call at a time)."""

    def __init__(self, networks: Networks, device: torch.device | str = "cpu",
                 half: bool = True) -> None:
        self.networks = networks
        self.device = torch.device(device)
        # fp16 only where it is fast and supported: autocast on CUDA.
        self.half = half and self.device.type == "cuda"
        self.arch = networks.arch

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.half:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ source
    def image_tensor(self, crops: np.ndarray) -> torch.Tensor:
        """RGB uint8 (S, S, 3) or (B, S, S, 3) -> (B, 3, input, input) in 0..1."""
        batch = crops[None] if crops.ndim == 3 else crops
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        size = self.arch.input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            # Area averaging, as the published pipeline shrinks its 512-pixel crop.
            x = F.interpolate(x, size=(size, size), mode="area")
        return x

    @torch.inference_mode()
    def appearance(self, image: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            return self.networks.appearance(image)

    @torch.inference_mode()
    def analyse(self, crop: np.ndarray, eye_ratio: Sequence[float], lip_ratio: float
                ) -> SourceState:
        """F and M on one source crop (RGB uint8, square) with its landmark ratios."""
        image = self.image_tensor(crop)
        volume = self.appearance(image)
        with self.autocast():
            raw = self.networks.motion(image)
        raw = {key: value.float() for key, value in raw.items()}
        k = self.arch.num_kp
        angles = torch.stack([bins_to_degrees(raw[name]) for name in ("pitch", "yaw", "roll")],
                             dim=-1)
        canonical = raw["kp"].view(1, k, 3)
        expression = raw["exp"].view(1, k, 3)
        scale, translation = raw["scale"], raw["t"]
        return SourceState(
            volume=volume, canonical=canonical, angles=angles, expression=expression,
            scale=scale, translation=translation,
            keypoints=drive(canonical, angles, expression, scale, translation),
            eye_ratio=torch.tensor([list(eye_ratio)], dtype=torch.float32, device=self.device),
            lip_ratio=torch.tensor([[lip_ratio]], dtype=torch.float32, device=self.device),
            mean_eye_ratio=float(np.mean(eye_ratio)), mean_lip_ratio=float(lip_ratio),
        )

    # ------------------------------------------------------------------ driving
    @torch.inference_mode()
    def keypoints(self, source: SourceState, motions: Sequence[Motion],
                  stitch: bool = True) -> torch.Tensor:
        """(B, K, 3) driving keypoints for ``motions``: pose, offsets, retargeting,
        stitching."""
        b, k = len(motions), self.arch.num_kp
        dev = self.device
        turn = torch.tensor([[m.pitch, m.yaw, m.roll] for m in motions], dtype=torch.float32,
                            device=dev)
        offsets = torch.from_numpy(np.stack([
            np.zeros((k, 3), np.float32) if m.offsets is None else
            np.asarray(m.offsets, np.float32) for m in motions])).to(dev)
        x_s = source.keypoints.expand(b, k, 3)
        driven = drive(source.canonical.expand(b, k, 3), source.angles + turn,
                       source.expression + offsets, source.scale.expand(b, 1),
                       source.translation.expand(b, 3))
        driven = driven + self._retarget(source, motions, "eye") + self._retarget(
            source, motions, "lip")
        if stitch:
            correction = self.networks.stitching(torch.cat([x_s.reshape(b, -1),
                                                            driven.reshape(b, -1)], dim=1))
            shift = torch.zeros_like(driven)
            shift[..., :2] = correction[:, 3 * k:3 * k + 2].view(b, 1, 2)
            driven = driven + correction[:, :3 * k].view(b, k, 3) + shift
        return driven

    def _retarget(self, source: SourceState, motions: Sequence[Motion], part: str
                  ) -> torch.Tensor | float:
        targets = [m.eye_open if part == "eye" else m.lip_open for m in motions]
        if all(t is None for t in targets):
            return 0.0
        own = source.eye_ratio if part == "eye" else source.lip_ratio  # (1, 2) or (1, 1)
        mean = source.mean_eye_ratio if part == "eye" else source.mean_lip_ratio
        wanted = torch.tensor([[mean if t is None else t] for t in targets],
                              dtype=torch.float32, device=self.device)
        same = torch.tensor([[mean]], dtype=torch.float32, device=self.device)
        b, k = len(motions), self.arch.num_kp
        x_s = source.keypoints.reshape(1, -1).expand(b, -1)
        own_b = own.expand(b, -1)
        network = self.networks.eye if part == "eye" else self.networks.lip
        moved = network(torch.cat([x_s, own_b, wanted], dim=1))
        still = network(torch.cat([x_s[:1], own, same], dim=1))
        return (moved - still).view(b, k, 3)

    # ------------------------------------------------------------------ decoding
    @torch.inference_mode()
    def decode(self, source: SourceState, driving: torch.Tensor) -> torch.Tensor:
        """W and G: (B, 3, out, out) in 0..1 for driving keypoints (B, K, 3)."""
        b = driving.shape[0]
        volume = source.volume.expand(b, *source.volume.shape[1:])
        with self.autocast():
            features = self.networks.warping(volume, driving, source.keypoints.expand(b, -1, -1))
            return self.networks.generator(features).float()

    def render(self, source: SourceState, motions: Sequence[Motion]) -> np.ndarray:
        """(B, out, out, 3) RGB uint8 crops."""
        images = self.decode(source, self.keypoints(source, motions))
        return to_uint8(images)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    out = (images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
    return out.permute(0, 2, 3, 1).cpu().numpy()

