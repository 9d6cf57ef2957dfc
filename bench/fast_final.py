"""The fast final transcript against the full 30 s window, on every clip in tests/data.

    python bench/fast_final.py [--min-window 15] [--beam-size 5]

For each language: WER of the full window and of the fitted window (with its loop guard),
and the median time per clip of each, decoded deterministically (temperature 0) by the
same loaded model, alternating so machine noise hits both alike. The fast path is kept
for finals only where its WER is within 0.01 absolute of the full window's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jiwer  # noqa: E402
from tests.helpers import (  # noqa: E402
    clip_language,
    normalize,
    reference_text,
    speech_clips,
    wer,
)

from secretary import audio  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.stt.engine import TranscriptionOptions, collect  # noqa: E402
from secretary.stt.fastfinal import (  # noqa: E402
    FastFinalPolicy,
    final_transcript,
)
from secretary.stt.models import WhisperModels  # noqa: E402
from secretary.stt.whisper import WhisperEngine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-window", type=int, default=15)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--margin", type=float, default=1.0)
    parser.add_argument("--lang", default=None, help="only this language's clips")
    args = parser.parse_args()

    settings = Settings()
    engine = WhisperEngine(settings.stt, WhisperModels(settings.models_dir))
    engine.load()
    policy = replace(FastFinalPolicy(), min_window=args.min_window, margin=args.margin)
    options = TranscriptionOptions(temperature=0.0, beam_size=args.beam_size)

    rows: dict[str, dict[str, list[float]]] = {}
    fallbacks = 0
    for clip in speech_clips(args.lang):
        lang = clip_language(clip)
        samples = audio.decode(clip).samples
        reference = reference_text(clip)
        started = time.perf_counter()
        full = collect(engine.transcribe(samples, options))
        full_s = time.perf_counter() - started
        started = time.perf_counter()
        fast = final_transcript(engine, samples, options, policy)
        fast_s = time.perf_counter() - started
        fallbacks += fast.fell_back
        row = rows.setdefault(lang, {"full_wer": [], "fast_wer": [], "full_s": [], "fast_s": [],
                                     "audio_s": [], "ref": [], "full": [], "fast": []})
        row["ref"].append(normalize(reference, lang))
        row["full"].append(normalize(full.text, lang))
        row["fast"].append(normalize(fast.transcription.text, lang))
        row["full_wer"].append(wer(reference, full.text, lang))
        row["fast_wer"].append(wer(reference, fast.transcription.text, lang))
        row["full_s"].append(full_s)
        row["fast_s"].append(fast_s)
        row["audio_s"].append(len(samples) / audio.WHISPER_SAMPLE_RATE)
        print(f"{clip.name:48s} {len(samples) / 16000:5.1f} s  window {fast.window:2d}"
              f"{' (fell back)' if fast.fell_back else ''}  full {full_s:.2f} s  "
              f"fast {fast_s:.2f} s  WER {row['full_wer'][-1]:.3f} -> "
              f"{row['fast_wer'][-1]:.3f}", flush=True)
        if row["full"][-1] != row["fast"][-1]:
            print(f"    full: {full.text}\n    fast: {fast.transcription.text}")

    print(f"\nmin window {policy.min_window} s, beam {args.beam_size}, "
          f"{fallbacks} fallback(s)\n")
    # WER over all of a language's words together (one clip's few words do not dominate).
    print("| language | clips | WER full window | WER fitted window | difference | "
          "median s full | median s fitted |")
    print("|---|---|---|---|---|---|---|")
    for lang, row in sorted(rows.items()):
        full_wer = jiwer.wer(row["ref"], row["full"])
        fast_wer = jiwer.wer(row["ref"], row["fast"])
        print(f"| {lang} | {len(row['full_wer'])} | {full_wer:.3f} | {fast_wer:.3f} | "
              f"{fast_wer - full_wer:+.3f} | {statistics.median(row['full_s']):.2f} | "
              f"{statistics.median(row['fast_s']):.2f} |")


if __name__ == "__main__":
    main()
