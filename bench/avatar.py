"""Avatar speed: rendering and talking vs the landmark analysis, at 256 and 512 pixels.

    python bench/avatar.py [--frames 100] [--repeats 5]
    python bench/avatar.py --engine liveportrait [--weights DIR] [--device cuda] [--frames 50]

Prints, side by side in one process and on one core (OpenCV and x264 at one thread):
- analysis: the Face Landmarker on the photo (what per-frame landmark tracking would cost),
  and the whole first-time preparation of a new photo (decode, landmarks, mesh, bases);
- first render of a new photo (preparation plus the first frame at that size);
- render: frames per second for cached photos, cycling through expressions, mouth shapes
  and head motion;
- animate: frames per second of the whole talking pipeline (audio analysis, render,
  H.264 + AAC encoding) on a real speech clip.
Ratios are against the landmark analysis: how many frames fit in the time one analysis
takes. The target is 30 fps or more at 512 once a photo is cached.

Times are CPU seconds of this process (``time.process_time``), so that other work on a
shared machine does not count; the wall-clock render rate is printed beside it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from secretary import audio
from secretary.avatar.engine import EXPRESSIONS, Pose
from secretary.avatar.meshwarp import MeshWarpEngine, decode_image
from secretary.avatar.service import animation, encode_image
from secretary.catalog import ModelStore
from secretary.config import AvatarSettings

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
PHOTOS = ("astronaut_eileen_collins.png", "pexels_woman_neutral.jpg")
CLIP = DATA / "speech" / "en_vosk_digits.wav"
SIZES = (256, 512)


def poses() -> list[Pose]:
    out = []
    for i, expression in enumerate(EXPRESSIONS):
        for j, viseme in enumerate(("closed", "open", "wide", "round")):
            out.append(Pose(expression, 1.0, viseme, 0.25 * (i + j) % 1.0,
                            yaw=(i - 2) * 1.5, pitch=j - 1.5, roll=0.5 * (i - j)))
    return out


def timed(fn, repeat: int) -> float:
    """CPU seconds per call, best of three rounds."""
    return timed_both(fn, repeat)[0]


def timed_both(fn, repeat: int) -> tuple[float, float]:
    """CPU and wall-clock seconds per call, each the best of three rounds."""
    best_cpu = best_wall = float("inf")
    for _ in range(3):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(repeat):
            fn()
        best_cpu = min(best_cpu, (time.process_time() - cpu) / repeat)
        best_wall = min(best_wall, (time.perf_counter() - wall) / repeat)
    return best_cpu, best_wall


def bench_liveportrait(args: argparse.Namespace) -> None:
    """LivePortrait: ms per frame for render and for talking at 256 and 512 px, cached and
    uncached photo, beside the original setup's 80 ms and the authors' 12.8 ms (RTX 4090).
    Without ``--weights``, randomly initialised networks of the published size: the same
    work per frame as the real weights."""
    import torch

    from secretary.avatar.liveportrait.engine import LivePortraitEngine
    from secretary.avatar.liveportrait.networks import Architecture, Networks

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = AvatarSettings(_env_file=None, engine="liveportrait", liveportrait_device=device,
                              liveportrait_model=str(args.weights or "KwaiVGI/LivePortrait"))
    networks = None
    if args.weights is None:
        torch.manual_seed(0)
        networks = Networks.build(Architecture())
        networks.generator.fold_spectral_norm()
        networks.eval()

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as cache:
        engine = LivePortraitEngine(settings, ModelStore(Path(cache)), networks)
        engine.load()
        clip = audio.decode(CLIP, 24000)
        weights = (f"weights in {args.weights}" if networks is None
                   else "random weights, published size")
        print(f"LivePortrait on {device} ({weights}), fp16 {engine.describe()['fp16']}, "
              f"batch {engine.batch_frames}; {args.frames} frames per figure; wall-clock ms "
              "per frame; beside: the original setup 80 ms, the authors' 12.8 ms (RTX 4090)\n")
        header = (f"{'photo':32} {'size':>5} {'prepare ms':>10} {'first ms':>9} "
                  f"{'render ms':>9} {'batch ms':>9} {'talk ms':>8} {'talk fps':>8}")
        print(header)
        print("-" * len(header))
        cycle = poses()
        for name in PHOTOS:
            data = (DATA / "faces" / name).read_bytes()
            for size in SIZES:
                engine._sources.clear()
                started = time.perf_counter()
                info = engine.prepare(data)
                sync()
                prepare = time.perf_counter() - started
                engine.render(info.key, Pose(), size)
                sync()
                first = time.perf_counter() - started
                started = time.perf_counter()
                for i in range(args.frames):
                    engine.render(info.key, cycle[i % len(cycle)], size)
                sync()
                single = (time.perf_counter() - started) / args.frames
                batch = [cycle[i % len(cycle)] for i in range(engine.batch_frames)]
                rounds = max(1, args.frames // len(batch))
                started = time.perf_counter()
                for _ in range(rounds):
                    engine.render_many(info.key, batch, size)
                sync()
                batched = (time.perf_counter() - started) / (rounds * len(batch))
                seconds = min(clip.duration, args.frames / 25)
                samples = clip.samples[: int(seconds * clip.sample_rate)]
                started = time.perf_counter()
                for _ in animation(engine, data, samples, clip.sample_rate, 25, size):
                    pass
                talk = (time.perf_counter() - started) / int(np.ceil(seconds * 25))
                print(f"{name:32} {size:5d} {prepare * 1e3:10.1f} {first * 1e3:9.1f} "
                      f"{single * 1e3:9.1f} {batched * 1e3:9.1f} {talk * 1e3:8.1f} "
                      f"{1 / talk:8.1f}")
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=100, help="frames per render timing")
    parser.add_argument("--repeats", type=int, default=1,
                        help="whole runs; each figure is then shown as median [range]")
    parser.add_argument("--engine", choices=("meshwarp", "liveportrait"), default="meshwarp")
    parser.add_argument("--weights", type=Path, help="LivePortrait weights folder "
                        "(default: random weights of the published size)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="LivePortrait device")
    args = parser.parse_args()
    if args.engine == "liveportrait":
        bench_liveportrait(args)
        return

    cv2.setNumThreads(1)
    settings = AvatarSettings(_env_file=None, cv_threads=1)
    with tempfile.TemporaryDirectory() as cache:
        engine = MeshWarpEngine(settings, ModelStore(Path(cache)))
        engine.load()
        clip = audio.decode(CLIP, 24000)
        print(f"one core (CPU time); {args.frames} frames per render timing; clip {CLIP.name} "
              f"({clip.duration:.1f} s); {args.repeats} run(s): median [lowest-highest]\n")
        runs = []
        for _ in range(args.repeats):
            runs.append(measure_meshwarp(engine, settings, clip, args.frames))
        engine.close()
    columns = ("landmarks ms", "prepare ms", "first ms", "render fps", "(wall)", "x landm.",
               "+jpeg fps", "animate fps")
    print(f"{'photo':28} {'size':>4} " + " ".join(f"{c:>17}" for c in columns))
    for row in runs[0]:
        cells = []
        for column in columns:
            values = sorted(run[row][column] for run in runs)
            median = float(np.median(values))
            cells.append(f"{_fig(median)} [{_fig(values[0])}-{_fig(values[-1])}]"
                         if len(values) > 1 else _fig(median))
        print(f"{row[0]:28} {row[1]:4d} " + " ".join(f"{c:>17}" for c in cells))


def _fig(value: float) -> str:
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def measure_meshwarp(engine: MeshWarpEngine, settings: AvatarSettings,
                     clip: audio.DecodedAudio, frames_per_timing: int
                     ) -> dict[tuple[str, int], dict[str, float]]:
    """One run of every figure, for each photo and size."""
    landmarker = engine._landmarker
    assert landmarker is not None
    found: dict[tuple[str, int], dict[str, float]] = {}
    for name in PHOTOS:
        data = (DATA / "faces" / name).read_bytes()
        image = decode_image(data, settings.max_side)
        landmark_s = timed(lambda image=image: landmarker.detect(image), 10)
        for size in SIZES:
            engine._sources.clear()
            started = time.process_time()
            info = engine.prepare(data)
            prepare_s = time.process_time() - started
            engine.render(info.key, Pose(), size)
            first_s = time.process_time() - started
            cycle = poses()
            counter = iter(range(10**9))

            def one(cycle=cycle, counter=counter, key=info.key, size=size):
                return engine.render(key, cycle[next(counter) % len(cycle)], size)

            render_s, render_wall_s = timed_both(one, frames_per_timing)
            jpeg_s = timed(lambda one=one: encode_image(one(), "jpeg"), frames_per_timing)
            started = time.process_time()
            for _ in animation(engine, data, clip.samples, clip.sample_rate, 25, size):
                pass
            frames = int(np.ceil(clip.duration * 25))
            found[(name, size)] = {
                "landmarks ms": landmark_s * 1e3, "prepare ms": prepare_s * 1e3,
                "first ms": first_s * 1e3, "render fps": 1 / render_s,
                "(wall)": 1 / render_wall_s, "x landm.": landmark_s / render_s,
                "+jpeg fps": 1 / jpeg_s,
                "animate fps": frames / (time.process_time() - started),
            }
    return found


if __name__ == "__main__":
    main()
