"""Run the LivePortrait renderer on a GPU and print milliseconds per frame per module.

Needs only torch and numpy (the networks, the checkpoint loader and the renderer import
nothing else), so it runs on a bare CUDA machine from a checkout:

    PYTHONPATH=src python3 scripts/check_liveportrait.py [--weights DIR] [--device cuda]

It times, on a fixed synthetic face crop (no face detection): F and M once per photo, then
per frame the keypoint step (retargeting and stitching MLPs), W and G, and a whole frame
(keypoints, W, G and the copy back to the host), at batch sizes 1 and 8, in float32 and
under float16 autocast. Models: a tiny one (a smoke test of the code path), the published
architecture with random weights (the real speed), and the published weights where
``--weights`` names a folder holding them (``liveportrait/base_models/...``), or where the
model cache already has them. It also checks that a batch renders what single frames do
and that fp16 output stays finite and close to fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from secretary.avatar.liveportrait.checkpoint import load_networks  # noqa: E402
from secretary.avatar.liveportrait.files import find_root, missing_files  # noqa: E402
from secretary.avatar.liveportrait.networks import Architecture, Networks  # noqa: E402
from secretary.avatar.liveportrait.renderer import Motion, Renderer  # noqa: E402

TINY = Architecture(
    input_size=32, block_expansion=4, max_features=16, volume_channels=4, volume_depth=4,
    volume_resblocks=1, convnext_depths=(1, 1, 1, 1), convnext_dims=(8, 8, 16, 16),
    motion_expansion=4, motion_max_features=16, motion_blocks=2, motion_compress=1,
    spade_hidden=8, stitching_hidden=(16,), lip_hidden=(16,), eye_hidden=(16,))


def synthetic_crop(size: int) -> np.ndarray:
    """A smooth face-sized blob on a gradient: deterministic, no image files needed."""
    y, x = np.mgrid[0:size, 0:size] / size
    blob = np.exp(-(((x - 0.5) / 0.22) ** 2 + ((y - 0.45) / 0.3) ** 2))
    rgb = np.stack([0.3 + 0.6 * blob, 0.25 + 0.5 * blob, 0.2 + 0.4 * blob + 0.2 * y], -1)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def random_networks(arch: Architecture, device: str) -> Networks:
    torch.manual_seed(0)
    networks = Networks.build(arch)
    networks.generator.fold_spectral_norm()
    return networks.eval().to(device)


def cached_weights() -> Path | None:
    configured = os.environ.get("SECRETARY_AVATAR_LIVEPORTRAIT_MODEL")
    if configured and Path(configured).is_dir():
        return Path(configured)
    base = Path(os.environ.get("SECRETARY_CACHE_DIR") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "secretary")
    for snapshot in sorted((base / "models/hub/models--KwaiVGI--LivePortrait/snapshots").glob("*")):
        if not missing_files(find_root(snapshot)):
            return snapshot
    return None


def timed(fn, device: str, repeat: int) -> float:
    """Median milliseconds of ``fn()`` over ``repeat`` runs, after warm-up."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def motions(count: int) -> list[Motion]:
    rng = np.random.default_rng(0)
    return [Motion(yaw=float(rng.uniform(-5, 5)), pitch=float(rng.uniform(-3, 3)),
                   offsets=rng.normal(0, 0.005, (21, 3)).astype(np.float32),
                   eye_open=float(rng.uniform(0, 0.4)), lip_open=float(rng.uniform(0, 0.45)))
            for _ in range(count)]


def check_model(name: str, networks: Networks, device: str, repeat: int) -> dict:
    arch = networks.arch
    crop = synthetic_crop(arch.output_size)
    rows: dict = {"model": name, "input": arch.input_size, "output": arch.output_size}
    for half in (False, True):
        if half and not device.startswith("cuda"):
            continue
        renderer = Renderer(networks, device, half=half)
        precision = "fp16" if half else "fp32"
        image = renderer.image_tensor(crop)
        state = renderer.analyse(crop, (0.3, 0.3), 0.05)
        rows[f"{precision} F ms"] = timed(lambda r=renderer, i=image: r.appearance(i),
                                          device, repeat)

        def motion_only(r=renderer, i=image) -> None:
            with torch.inference_mode(), r.autocast():
                r.networks.motion(i)

        rows[f"{precision} M ms"] = timed(motion_only, device, repeat)
        for batch in (1, 8):
            frames = motions(batch)
            kp = renderer.keypoints(state, frames)
            volume = state.volume.expand(batch, *state.volume.shape[1:])
            source = state.keypoints.expand(batch, -1, -1)

            def warp(r=renderer, v=volume, k=kp, s=source):
                with torch.inference_mode(), r.autocast():
                    return r.networks.warping(v, k, s)

            features = warp()

            def generate(r=renderer, f=features):
                with torch.inference_mode(), r.autocast():
                    return r.networks.generator(f)

            tag = f"{precision} b{batch}"
            rows[f"{tag} keypoints ms/frame"] = timed(
                lambda r=renderer, f=frames, s=state: r.keypoints(s, f), device, repeat) / batch
            rows[f"{tag} W ms/frame"] = timed(warp, device, repeat) / batch
            rows[f"{tag} G ms/frame"] = timed(generate, device, repeat) / batch
            total = timed(lambda r=renderer, f=frames, s=state: r.render(s, f), device,
                          repeat) / batch
            rows[f"{tag} frame ms"] = total
            rows[f"{tag} fps"] = 1000.0 / total
        # Checks: batch equals single frames; fp16 finite and close to fp32.
        frames = motions(4)
        together = renderer.render(state, frames).astype(int)
        alone = np.concatenate([renderer.render(state, [f]) for f in frames]).astype(int)
        rows[f"{precision} batch-vs-single max diff"] = int(np.abs(together - alone).max())
        decoded = renderer.decode(state, renderer.keypoints(state, frames))
        rows[f"{precision} finite"] = bool(torch.isfinite(decoded).all())
        if half:
            reference = Renderer(networks, device, half=False)
            ref_state = reference.analyse(crop, (0.3, 0.3), 0.05)
            ref = reference.render(ref_state, frames).astype(int)
            rows["fp16-vs-fp32 mean abs diff (0..255)"] = float(np.abs(ref - together).mean())
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--weights", type=Path, help="folder with the published files")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--skip-full", action="store_true",
                        help="only the tiny model (and the published weights if given)")
    args = parser.parse_args()
    device = args.device
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}",
              flush=True)
    else:
        print(f"device: cpu, torch {torch.__version__} ({torch.get_num_threads()} threads)",
              flush=True)
    models: list[tuple[str, Networks]] = [("tiny-random", random_networks(TINY, device))]
    if not args.skip_full:
        models.append(("published-size-random", random_networks(Architecture(), device)))
    weights = args.weights or cached_weights()
    if weights is not None:
        started = time.perf_counter()
        models.append(("published-weights", load_networks(weights, device)))
        print(f"loaded the published weights from {weights} in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
    else:
        print("no published weights here (pass --weights DIR to time them)", flush=True)
    results = []
    for name, networks in models:
        rows = check_model(name, networks, device, args.repeat)
        results.append(rows)
        print(f"\n== {name} (crop {rows['input']} px in, {rows['output']} px out)")
        for key, value in rows.items():
            if key in ("model", "input", "output"):
                continue
            shown = f"{value:.2f}" if isinstance(value, float) else value
            print(f"  {key:<42} {shown}")
        del networks
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    for rows in results:
        if rows["model"] == "tiny-random":
            continue
        best = max((value, key) for key, value in rows.items() if key.endswith(" fps"))
        print(f"\n{rows['model']}: best {best[0]:.1f} frames/s ({best[1][:-4]}), "
              f"{1000 / best[0]:.1f} ms a frame; authors 12.8 ms (RTX 4090), original setup "
              "80 ms; target at least 40 frames/s on one H100")
    print("\nJSON " + json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
