"""Speech-to-text service overhead and concurrency, measured side by side in one run.

    python bench/stt.py [--rounds 3] [--clips 8] [--num-workers 1,2]

Prints, for the same clips and the same model settings:
  1. direct faster-whisper calls, one at a time (the baseline),
  2. the HTTP service, one request at a time (overhead = service / direct),
  3. the HTTP service with 4 requests in flight (throughput vs 2),
  4. with --num-workers, 3. again for each SECRETARY_STT_NUM_WORKERS value listed (its own
     server and model), to see what running transcriptions in parallel brings.
Runs alternate (direct, service, concurrent, direct, ...) so machine noise hits all three
alike; the medians over rounds are reported.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faster_whisper import WhisperModel  # noqa: E402
from tests.helpers import running_server, speech_clips  # noqa: E402

from secretary.catalog import ModelStore  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.stt.app import create_app  # noqa: E402
from secretary.stt.whisper import WhisperEngine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--model", default=None, help="default: SECRETARY_STT_MODEL or base")
    parser.add_argument("--num-workers", default="",
                        help="comma-separated NUM_WORKERS values to compare in flight")
    args = parser.parse_args()

    settings = Settings()
    if args.model:
        settings.stt.model = args.model
    clips = [c for c in speech_clips() if "cheetah_homenaje" not in c.name][: args.clips]
    payloads = [(c.name, c.read_bytes()) for c in clips]
    audio_seconds = sum(_duration(c) for c in clips)

    store = ModelStore(settings.models_dir)
    engine = WhisperEngine(settings.stt, store)
    engine.load()
    path = store.whisper_path(settings.stt.model)
    direct = WhisperModel(str(path), device=engine.device, compute_type=engine.compute_type,
                          cpu_threads=settings.stt.cpu_threads)
    options = {"beam_size": settings.stt.beam_size, "vad_filter": settings.stt.vad_filter}

    def run_direct() -> float:
        started = time.perf_counter()
        for _, data in payloads:
            with tempfile.NamedTemporaryFile(suffix=".audio") as f:
                f.write(data)
                f.flush()
                segments, _ = direct.transcribe(f.name, **options)
                "".join(s.text for s in segments)
        return time.perf_counter() - started

    print(f"model {settings.stt.model} on {engine.device}/{engine.compute_type}, "
          f"{len(clips)} clips, {audio_seconds:.1f} s of audio, {args.rounds} rounds")
    workers = [int(n) for n in args.num_workers.split(",") if n.strip()]
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(running_server(create_app(settings, engine)))
        http = stack.enter_context(httpx.Client(timeout=600))
        varied = {}
        for n in workers:
            other = Settings()
            other.stt = settings.stt.model_copy(update={"num_workers": n})
            other_engine = WhisperEngine(other.stt, store)
            other_engine.load()
            varied[n] = stack.enter_context(running_server(create_app(other, other_engine)))

        def post(item: tuple[str, bytes], url: str = url) -> None:
            response = http.post(f"{url}/transcribe", files={"file": item})
            response.raise_for_status()

        def run_service() -> float:
            started = time.perf_counter()
            for item in payloads:
                post(item)
            return time.perf_counter() - started

        def run_concurrent() -> float:
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(post, payloads))
            return time.perf_counter() - started

        def run_varied(n: int) -> float:
            started = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                list(pool.map(lambda item: post(item, varied[n]), payloads))
            return time.perf_counter() - started

        run_service()  # warm-up: first requests pay for thread pools and caches
        run_direct()
        for n in workers:
            run_varied(n)
        times: dict[str, list[float]] = {"direct": [], "service": [], "concurrent": []}
        for _ in range(args.rounds):
            times["direct"].append(run_direct())
            times["service"].append(run_service())
            times["concurrent"].append(run_concurrent())
            for n in workers:
                times.setdefault(f"workers {n}", []).append(run_varied(n))

    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(clips)
    print(f"{'run':<34}{'median s':>10}{'per clip s':>12}{'[range]':>14}{'x realtime':>12}")
    for key, label in (("direct", "direct faster-whisper, sequential"),
                       ("service", "service, 1 request at a time"),
                       ("concurrent", f"service, {args.concurrency} in flight")):
        low, high = min(times[key]) / n, max(times[key]) / n
        print(f"{label:<34}{med[key]:>10.2f}{med[key] / n:>12.3f}"
              f"{f'[{low:.2f}-{high:.2f}]':>14}{audio_seconds / med[key]:>12.1f}")
    print(f"service overhead at 1 request: {100 * (med['service'] / med['direct'] - 1):+.1f}% "
          f"(target < 5%)")
    print(f"throughput, {args.concurrency} in flight vs sequential service: "
          f"{med['service'] / med['concurrent']:.2f}x")
    for n in workers:
        runs = sorted(times[f"workers {n}"])
        print(f"NUM_WORKERS={n}, {args.concurrency} in flight: median {med[f'workers {n}']:.2f} s "
              f"[{runs[0]:.2f}-{runs[-1]:.2f}], throughput vs sequential service "
              f"{med['service'] / med[f'workers {n}']:.2f}x")


def _duration(path: Path) -> float:
    from secretary.audio import decode

    return decode(path).duration


if __name__ == "__main__":
    main()
