"""The five LivePortrait networks, written from the paper and the published configuration.

LivePortrait (Guo et al., 2024, arXiv:2407.03168) animates a portrait through 21 implicit 3D
keypoints. ``F`` (``AppearanceExtractor``) lifts the source crop to a feature volume; ``M``
(``MotionExtractor``, a ConvNeXt V2) predicts canonical keypoints, head pose, expression
offsets, scale and translation; ``W`` (``WarpingModule``) turns source and driving keypoints
into a dense 3D flow and an occlusion map and warps the volume; ``G`` (``SpadeGenerator``)
decodes the warped features to the image; ``S`` (three small MLPs) stitches the face back
into the photo and retargets eyes and lips.

Attribute names follow the published checkpoints' state-dict keys exactly (they are the
only contract with those files; ``layout.json`` lists every key and shape), so
``load_state_dict`` needs no renaming. Everything else is this project's own code.
``Architecture`` holds the published hyper-parameters (``models.yaml`` of the official
repository); tests build the same networks far smaller.

Only torch is imported here, so a GPU check can run these without the service's
dependencies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

NUM_KEYPOINTS = 21


@dataclass(frozen=True)
class Architecture:
    """Hyper-parameters; the defaults are the published human model's."""

    input_size: int = 256  # the square crop F and M see
    num_kp: int = NUM_KEYPOINTS
    # F: 2D encoder, then a (channels x depth) volume refined by 3D residual blocks.
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    volume_channels: int = 32
    volume_depth: int = 16
    volume_resblocks: int = 6
    # M: ConvNeXt V2 "tiny" and the pose bins (66 bins of 3 degrees).
    convnext_depths: tuple[int, ...] = (3, 3, 9, 3)
    convnext_dims: tuple[int, ...] = (96, 192, 384, 768)
    pose_bins: int = 66
    # W: the dense-motion hourglass.
    motion_expansion: int = 32
    motion_max_features: int = 1024
    motion_blocks: int = 5
    motion_compress: int = 4
    # G: SPADE decoder; its output is ``upscale`` times the feature map's 4x.
    upscale: int = 2
    spade_hidden: int = 128
    # S: hidden layer widths of the stitching, lip and eye MLPs.
    stitching_hidden: tuple[int, ...] = (128, 128, 64)
    lip_hidden: tuple[int, ...] = (128, 128, 64)
    eye_hidden: tuple[int, ...] = (256, 256, 128, 128, 64)

    @property
    def output_size(self) -> int:
        return self.input_size * self.upscale

    def to_dict(self) -> dict[str, object]:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> Architecture:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown architecture fields: {', '.join(sorted(unknown))}")
        return cls(**{key: tuple(value) if isinstance(value, list) else value  # type: ignore[arg-type]
                      for key, value in values.items()})


# ---------------------------------------------------------------------------- building blocks
class ConvNormAct(nn.Module):
    """Convolution, batch norm, activation; optionally halving the resolution after."""

    def __init__(self, dims: int, cin: int, cout: int, *, pool: bool = False,
                 leaky: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.conv = conv(cin, cout, kernel_size=3, padding=1)
        self.norm = norm(cout, affine=True)
        self.dims, self.pool, self.leaky = dims, pool, leaky

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        x = F.leaky_relu(x) if self.leaky else F.relu(x)
        if self.pool:  # 3D volumes keep their depth
            x = F.avg_pool2d(x, 2) if self.dims == 2 else F.avg_pool3d(x, (1, 2, 2))
        return x


class VolumeResBlock(nn.Module):
    """Pre-activation 3D residual block."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm3d(channels, affine=True)
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.norm2 = nn.BatchNorm3d(channels, affine=True)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(h)))


class VolumeUpBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=(1, 2, 2))
        return F.relu(self.norm(self.conv(x)))


def _width(expansion: int, level: int, cap: int) -> int:
    return min(cap, expansion * 2 ** level)


# ---------------------------------------------------------------------------- F
class AppearanceExtractor(nn.Module):
    """Source crop (B, 3, S, S) in 0..1 -> feature volume (B, C, D, S/4, S/4)."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        e, cap = arch.block_expansion, arch.max_features
        self.first = ConvNormAct(2, 3, e)
        self.down_blocks = nn.ModuleList(
            ConvNormAct(2, _width(e, i, cap), _width(e, i + 1, cap), pool=True)
            for i in range(arch.num_down_blocks))
        self.second = nn.Conv2d(_width(e, arch.num_down_blocks, cap), cap, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(arch.volume_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", VolumeResBlock(arch.volume_channels))
        self.volume = (arch.volume_channels, arch.volume_depth)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.first(image)
        for block in self.down_blocks:
            x = block(x)
        x = self.second(x)
        b, _, h, w = x.shape
        return self.resblocks_3d(x.view(b, *self.volume, h, w))


# ---------------------------------------------------------------------------- M
class ChannelsFirstNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt V2's GRN on channels-last tensors."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In float32: a sum of squares over the whole map overflows float16.
        energy = torch.linalg.vector_norm(x.float(), dim=(1, 2), keepdim=True)
        relative = (energy / (energy.mean(dim=-1, keepdim=True) + 1e-6)).to(x.dtype)
        return x + self.gamma * (x * relative) + self.beta


class ConvNextBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).permute(0, 2, 3, 1)
        h = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(h)))))
        return x + h.permute(0, 3, 1, 2)


class KeypointDetector(nn.Module):
    """ConvNeXt V2 backbone with the seven regression heads of LivePortrait's M."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        dims, k, bins = arch.convnext_dims, arch.num_kp, arch.pose_bins
        self.downsample_layers = nn.ModuleList([nn.Sequential(
            nn.Conv2d(3, dims[0], 4, stride=4), ChannelsFirstNorm(dims[0], eps=1e-6))])
        for i in range(len(dims) - 1):
            self.downsample_layers.append(nn.Sequential(
                ChannelsFirstNorm(dims[i], eps=1e-6), nn.Conv2d(dims[i], dims[i + 1], 2, stride=2)))
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNextBlock(dim) for _ in range(depth)))
            for dim, depth in zip(dims, arch.convnext_depths, strict=True))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        last = dims[-1]
        self.fc_kp = nn.Linear(last, 3 * k)
        self.fc_scale = nn.Linear(last, 1)
        self.fc_pitch = nn.Linear(last, bins)
        self.fc_yaw = nn.Linear(last, bins)
        self.fc_roll = nn.Linear(last, bins)
        self.fc_t = nn.Linear(last, 3)
        self.fc_exp = nn.Linear(last, 3 * k)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        for down, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(down(x))
        x = self.norm(x.mean(dim=(-2, -1)))
        return {"kp": self.fc_kp(x), "exp": self.fc_exp(x), "scale": self.fc_scale(x),
                "t": self.fc_t(x), "pitch": self.fc_pitch(x), "yaw": self.fc_yaw(x),
                "roll": self.fc_roll(x)}


class MotionExtractor(nn.Module):
    """Crop (B, 3, S, S) in 0..1 -> keypoint, pose and expression predictions (raw)."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.detector = KeypointDetector(arch)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.detector(image)


# ---------------------------------------------------------------------------- W
def volume_grid(depth: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(D, H, W, 3) coordinates (x, y, z) spanning -1..1 corner to corner on each axis, the
    frame the keypoints live in."""
    axes = [torch.linspace(-1.0, 1.0, n, dtype=like.dtype, device=like.device)
            for n in (depth, height, width)]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([x, y, z], dim=-1)


class Hourglass3d(nn.Module):
    """U-Net over a volume; the output concatenates the decoder's features and the input."""

    def __init__(self, expansion: int, cin: int, blocks: int, cap: int) -> None:
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.down_blocks = nn.ModuleList(
            ConvNormAct(3, cin if i == 0 else _width(expansion, i, cap),
                        _width(expansion, i + 1, cap), pool=True)
            for i in range(blocks))
        self.decoder = nn.Module()
        self.decoder.up_blocks = nn.ModuleList(
            VolumeUpBlock((1 if i == blocks - 1 else 2) * _width(expansion, i + 1, cap),
                          _width(expansion, i, cap))
            for i in reversed(range(blocks)))
        self.out_channels = expansion + cin
        self.decoder.conv = nn.Conv3d(self.out_channels, self.out_channels, 3, padding=1)
        self.decoder.norm = nn.BatchNorm3d(self.out_channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.encoder.down_blocks:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.decoder.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return F.relu(self.decoder.norm(self.decoder.conv(out)))


class DenseMotion(nn.Module):
    """Sparse keypoint motion -> dense 3D flow (B, D, H, W, 3) and occlusion (B, 1, H, W)."""

    variance = 0.01  # of the Gaussian around each keypoint, in grid units squared

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        k, c = arch.num_kp, arch.motion_compress
        self.num_kp = k
        self.hourglass = Hourglass3d(arch.motion_expansion, (k + 1) * (c + 1),
                                     arch.motion_blocks, arch.motion_max_features)
        out = self.hourglass.out_channels
        self.mask = nn.Conv3d(out, k + 1, 7, padding=3)
        self.compress = nn.Conv3d(arch.volume_channels, c, 1)
        self.norm = nn.BatchNorm3d(c, affine=True)
        self.occlusion = nn.Conv2d(out * arch.volume_depth, 1, 7, padding=3)

    def forward(self, volume: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, d, h, w = volume.shape
        k = self.num_kp
        small = F.relu(self.norm(self.compress(volume)))
        grid = volume_grid(d, h, w, kp_source)  # (D, H, W, 3)
        # Where each output point samples the source if it moved with keypoint k; the first
        # "keypoint" is the background, which stays still.
        shift = (kp_source - kp_driving).view(b, k, 1, 1, 1, 3)
        motions = torch.cat([grid.expand(b, 1, d, h, w, 3), grid + shift], dim=1)
        c = small.shape[1]
        repeated = small.unsqueeze(1).expand(b, k + 1, c, d, h, w).reshape(b * (k + 1), c, d, h, w)
        moved = F.grid_sample(repeated, motions.reshape(b * (k + 1), d, h, w, 3),
                              align_corners=False).view(b, k + 1, c, d, h, w)
        heat = self._gaussians(grid, kp_driving) - self._gaussians(grid, kp_source)
        heat = torch.cat([heat.new_zeros(b, 1, d, h, w), heat], dim=1).unsqueeze(2)
        features = torch.cat([heat, moved], dim=2).view(b, -1, d, h, w)
        hidden = self.hourglass(features)
        weights = F.softmax(self.mask(hidden), dim=1).unsqueeze(-1)  # (B, K+1, D, H, W, 1)
        flow = (motions * weights).sum(dim=1)
        occlusion = torch.sigmoid(self.occlusion(hidden.reshape(b, -1, h, w)))
        return flow, occlusion

    def _gaussians(self, grid: torch.Tensor, kp: torch.Tensor) -> torch.Tensor:
        diff = grid.unsqueeze(0).unsqueeze(0) - kp[:, :, None, None, None, :]
        return torch.exp(-0.5 * (diff ** 2).sum(-1) / self.variance)


class WarpingModule(nn.Module):
    """Warps the source volume by the keypoint motion -> 2D features (B, C', H, W)."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        channels = arch.block_expansion * 2 ** arch.num_down_blocks
        self.dense_motion_network = DenseMotion(arch)
        self.third = ConvNormAct(2, arch.max_features, channels, leaky=True)
        self.fourth = nn.Conv2d(channels, channels, 1)

    def forward(self, volume: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
                ) -> torch.Tensor:
        flow, occlusion = self.dense_motion_network(volume, kp_driving, kp_source)
        warped = F.grid_sample(volume, flow, align_corners=False)
        b, c, d, h, w = warped.shape
        return self.fourth(self.third(warped.reshape(b, c * d, h, w))) * occlusion


# ---------------------------------------------------------------------------- G
class Spade(nn.Module):
    """Instance norm modulated per pixel by a map computed from the warped features."""

    def __init__(self, channels: int, label_channels: int, hidden: int) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, padding=1),
                                        nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        label = F.interpolate(label, size=x.shape[2:], mode="nearest")
        shared = self.mlp_shared(label)
        normalised = F.instance_norm(x)
        return normalised * (1 + self.mlp_gamma(shared)) + self.mlp_beta(shared)


class SpadeResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, label_channels: int, hidden: int) -> None:
        super().__init__()
        middle = min(cin, cout)
        self.conv_0 = spectral_norm(nn.Conv2d(cin, middle, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(middle, cout, 3, padding=1))
        self.norm_0 = Spade(cin, label_channels, hidden)
        self.norm_1 = Spade(middle, label_channels, hidden)
        self.learned_shortcut = cin != cout
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(cin, cout, 1, bias=False))
            self.norm_s = Spade(cin, label_channels, hidden)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        skip = self.conv_s(self.norm_s(x, label)) if self.learned_shortcut else x
        h = self.conv_0(F.leaky_relu(self.norm_0(x, label), 0.2))
        h = self.conv_1(F.leaky_relu(self.norm_1(h, label), 0.2))
        return skip + h


class SpadeGenerator(nn.Module):
    """Warped features (B, C', H, W) -> image (B, 3, 4*upscale*H, 4*upscale*W) in 0..1."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        label = _width(arch.block_expansion, arch.num_down_blocks, arch.max_features)
        wide, hidden = 2 * label, arch.spade_hidden
        self.fc = nn.Conv2d(label, wide, 3, padding=1)
        for i in range(6):
            self.add_module(f"G_middle_{i}", SpadeResBlock(wide, wide, label, hidden))
        self.up_0 = SpadeResBlock(wide, label, label, hidden)
        self.up_1 = SpadeResBlock(label, arch.block_expansion, label, hidden)
        self.upscale = arch.upscale
        if arch.upscale > 1:
            self.conv_img = nn.Sequential(
                nn.Conv2d(arch.block_expansion, 3 * arch.upscale ** 2, 3, padding=1),
                nn.PixelShuffle(arch.upscale))
        else:
            self.conv_img = nn.Conv2d(arch.block_expansion, 3, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.fc(features)
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, features)
        x = self.up_0(F.interpolate(x, scale_factor=2), features)
        x = self.up_1(F.interpolate(x, scale_factor=2), features)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))

    def fold_spectral_norm(self) -> None:
        """Bake the normalised weights in (inference only): the stored singular vectors
        give the same weight on every call, so recomputing it per frame is wasted work."""
        for module in self.modules():
            if hasattr(module, "weight_orig"):
                torch.nn.utils.remove_spectral_norm(module)


# ---------------------------------------------------------------------------- S
class Mlp(nn.Module):
    """Linear layers with ReLU between them (the stitching and retargeting modules)."""

    def __init__(self, cin: int, hidden: tuple[int, ...], cout: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(cin, width), nn.ReLU()]
            cin = width
        layers.append(nn.Linear(cin, cout))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


@dataclass
class Networks:
    """The human model: F, M, W, G and S (stitching, lip and eye retargeting)."""

    arch: Architecture
    appearance: AppearanceExtractor
    motion: MotionExtractor
    warping: WarpingModule
    generator: SpadeGenerator
    stitching: Mlp
    lip: Mlp
    eye: Mlp
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def build(cls, arch: Architecture | None = None) -> Networks:
        arch = arch or Architecture()
        k3 = 3 * arch.num_kp
        return cls(
            arch, AppearanceExtractor(arch), MotionExtractor(arch), WarpingModule(arch),
            SpadeGenerator(arch),
            # stitching: source and driving keypoints -> keypoint offsets and a 2D shift
            Mlp(2 * k3, arch.stitching_hidden, k3 + 2),
            # lip: keypoints, source and target lip-open ratio -> offsets
            Mlp(k3 + 2, arch.lip_hidden, k3),
            # eyes: keypoints, the source's two eye-open ratios and the target -> offsets
            Mlp(k3 + 3, arch.eye_hidden, k3),
        )

    def modules(self) -> dict[str, nn.Module]:
        return {"appearance": self.appearance, "motion": self.motion, "warping": self.warping,
                "generator": self.generator, "stitching": self.stitching, "lip": self.lip,
                "eye": self.eye}

    def to(self, device: torch.device | str) -> Networks:
        for module in self.modules().values():
            module.to(device)
        return self

    def eval(self) -> Networks:
        for module in self.modules().values():
            module.eval().requires_grad_(False)
        return self
