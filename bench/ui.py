"""What the UI server's forwarding costs, measured side by side in one run.

    python bench/ui.py [--rounds 5]

For the same requests, sent straight to a service (the baseline) and through the UI
server's ``/api/<service>/...`` gateway:
  1. ``GET /health`` (the raw cost of one forwarded request, in milliseconds),
  2. ``POST /transcribe`` of a short speech clip (STT, Whisper base),
  3. ``POST /synthesize`` of one sentence as WAV (TTS, Piper).
Runs alternate (direct, forwarded, direct, ...) so machine noise hits both alike; the
medians over rounds are reported with the ratio forwarded / direct.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import SPEECH, running_server  # noqa: E402

from secretary.config import Settings  # noqa: E402
from secretary.stt.app import create_app as create_stt_app  # noqa: E402
from secretary.tts.app import create_app as create_tts_app  # noqa: E402
from secretary.ui.app import create_app as create_ui_app  # noqa: E402

CLIP = SPEECH / "en_cmu_arctic_aew_a0003.wav"
SENTENCE = "Your first meeting starts at nine thirty in the small conference room."


def _timed(send: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    answer = send()
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--health-requests", type=int, default=50)
    args = parser.parse_args()

    settings = Settings()
    settings.conversation.speech_cache = 0  # every reply synthesized, as the first time
    clip = CLIP.read_bytes()
    with running_server(create_stt_app(settings)) as stt, \
            running_server(create_tts_app(settings)) as tts:
        settings.ui = settings.ui.model_copy(update={"stt_url": stt, "tts_url": tts})
        with running_server(create_ui_app(settings)) as ui, httpx.Client(timeout=300) as client:
            cases: dict[str, tuple[Callable[[], httpx.Response], Callable[[], httpx.Response]]]
            cases = {
                "health": (
                    lambda: client.get(f"{stt}/health"),
                    lambda: client.get(f"{ui}/api/stt/health"),
                ),
                "transcribe": (
                    lambda: client.post(f"{stt}/transcribe",
                                        files={"file": (CLIP.name, clip, "audio/wav")}),
                    lambda: client.post(f"{ui}/api/stt/transcribe",
                                        files={"file": (CLIP.name, clip, "audio/wav")}),
                ),
                "synthesize": (
                    lambda: client.post(f"{tts}/synthesize",
                                        json={"text": SENTENCE, "language": "en"}),
                    lambda: client.post(f"{ui}/api/tts/synthesize",
                                        json={"text": SENTENCE, "language": "en"}),
                ),
            }
            for direct, forwarded in cases.values():  # warm up both paths
                _timed(direct)
                _timed(forwarded)
            results: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in cases}
            for _ in range(args.rounds):
                for name, (direct, forwarded) in cases.items():
                    repeat = args.health_requests if name == "health" else 1
                    for target, send in zip(results[name], (direct, forwarded), strict=True):
                        target.append(sum(_timed(send) for _ in range(repeat)) / repeat)

    print(f"UI gateway overhead, median of {args.rounds} rounds "
          f"(health: mean of {args.health_requests} requests per round)")
    print(f"{'request':<12} {'direct ms':>10} {'via UI ms':>10} {'added ms':>9} {'ratio':>6}")
    for name, (direct_times, forwarded_times) in results.items():
        d = statistics.median(direct_times) * 1000
        f = statistics.median(forwarded_times) * 1000
        print(f"{name:<12} {d:>10.1f} {f:>10.1f} {f - d:>9.1f} {f / d:>6.2f}")


if __name__ == "__main__":
    main()
