"""Piper's first audio of a sentence: Piper's own call (the whole sentence at once, the
baseline) against Secretary's engine (the sentence in pieces), side by side in one run.

    python bench/tts_first_audio.py [--rounds 7]

For sentences of four lengths, prints the seconds to the first audio and to the whole
sentence for each, and the ratios engine / baseline. Runs alternate, so machine noise hits
both alike; medians over rounds. The live conversation waits for the first audio of its
reply's first sentence (the README's realtime section), so that column is the one that
counts there; the whole time is the engine's cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from secretary.config import Settings  # noqa: E402
from secretary.tts.engine import SynthesisRequest  # noqa: E402
from secretary.tts.models import PiperVoices  # noqa: E402
from secretary.tts.piper import PiperEngine  # noqa: E402

SENTENCES = [
    "Sure, I can do that.",
    "Your meeting with Anna is on Friday at three.",
    "I have put lunch with Anna on Friday at noon, and I will remind you an hour before.",
    "The dentist called about next week: your appointment moved from Tuesday morning to "
    "Wednesday at four in the afternoon, and they ask you to call back if that is a problem.",
]


def timed(chunks) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    first = None
    for _ in chunks:
        if first is None:
            first = time.perf_counter() - started
    return first or float("nan"), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--voice", default="en_US-joe-medium")
    args = parser.parse_args()
    from piper import PiperVoice

    store = PiperVoices(Settings().models_dir)
    engine = PiperEngine([args.voice], store)
    engine.load()
    baseline = PiperVoice.load(*store.piper_voice(args.voice))
    pieces = engine.graph().pieces
    print(f"{args.voice}: {'in pieces' if pieces else 'run whole (the graph was not cut)'}; "
          f"{args.rounds} rounds, medians\n")
    header = (f"{'chars':>5} {'audio s':>7} {'first: piper':>12} {'engine':>7} {'ratio':>6} "
              f"{'whole: piper':>12} {'engine':>7} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for text in SENTENCES:
        request = SynthesisRequest(text, "en")
        audio = sum(len(c) for c in engine.synthesize(request)) / engine.sample_rate
        runs: dict[str, list[float]] = {k: [] for k in ("pf", "pw", "ef", "ew")}
        for _ in range(args.rounds):
            first, whole = timed(baseline.synthesize(text))
            runs["pf"].append(first)
            runs["pw"].append(whole)
            first, whole = timed(engine.synthesize(request))
            runs["ef"].append(first)
            runs["ew"].append(whole)
        m = {k: statistics.median(v) for k, v in runs.items()}
        print(f"{len(text):5} {audio:7.2f} {m['pf']:12.3f} {m['ef']:7.3f} "
              f"{m['ef'] / m['pf']:6.2f} {m['pw']:12.3f} {m['ew']:7.3f} "
              f"{m['ew'] / m['pw']:6.2f}")


if __name__ == "__main__":
    main()
