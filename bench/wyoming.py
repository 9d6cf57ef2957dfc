"""Wyoming latency, side by side with the servers Home Assistant users run, in one run.

    python bench/wyoming.py [--rounds 3]

Three servers, each in its own process, on the same models: ``secretary serve --only
wyoming`` (the real command), ``wyoming-faster-whisper`` on the Whisper base folder
Secretary assembles (same compute type, beam 5, Silero VAD, as many CPU threads as
cores) and ``wyoming-piper`` on the packaged ``en_US-joe-medium`` files (0.2 s between
sentences, as Secretary's default). Each is sent what Home Assistant sends, over the
``wyoming`` package's client:
  1. speech-to-text: 16 kHz 16-bit mono speech clips in 1024-sample chunks; the time from
     audio-stop to the transcript,
  2. text-to-speech: a four-sentence paragraph as one ``synthesize`` and as a streamed
     one (synthesize-start, synthesize-chunk..., synthesize-stop); the time to the
     first audio chunk and to the end of the audio (streamed: a word per chunk, as a chat
     model writes its reply).
Requests alternate between the servers (ours first, then theirs, then the other way
round), so machine noise hits all alike; medians over rounds. Target: no slower than
either reference.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# This script's own folder first on the path would make it the ``wyoming`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from tests.helpers import SPEECH, free_port  # noqa: E402
from tests.wyoming_api.client import (  # noqa: E402
    pcm16,
    synthesize,
    synthesize_streaming,
    transcribe,
)
from tests.wyoming_api.reference import (  # noqa: E402
    faster_whisper_server,
    piper_server,
    wait_for_port,
)

from secretary.catalog import ModelStore  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.stt.whisper import ctranslate2_device, resolve_compute_type  # noqa: E402

CLIPS = ["en_jfk_ask_not.flac", "en_cmu_arctic_aew_a0003.wav", "de_thorsten_plan_geklappt.wav",
         "fr_cheetah_mer_jaune.wav"]
PARAGRAPH = ("Good morning, this is your secretary speaking. You have three new messages "
             "waiting for you. The first one is from your dentist about next week. "
             "Shall I read them to you now, or later today?")


@contextlib.contextmanager
def secretary_server(settings: Settings) -> Iterator[tuple[int, int]]:
    """``secretary serve --only wyoming`` in its own process; yields (stt, tts) ports."""
    stt_port, tts_port = free_port(), free_port()
    env = os.environ | {
        "PYTHONPATH": str(ROOT / "src"),
        "SECRETARY_CACHE_DIR": str(settings.cache_dir),
        "SECRETARY_WYOMING_PORT": str(free_port()),
        "SECRETARY_WYOMING_STT_PORT": str(stt_port),
        "SECRETARY_WYOMING_TTS_PORT": str(tts_port),
    }
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "secretary.log"
        with open(log, "w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "secretary", "serve", "--only", "wyoming"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=scratch)
        try:
            wait_for_port(process, stt_port, log, 300)
            wait_for_port(process, tts_port, log, 300)
            yield stt_port, tts_port
        finally:
            process.terminate()
            process.wait(30)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def alternate(rounds: int, servers: dict[str, int], measure: Callable[[int], dict[str, float]]
              ) -> dict[str, dict[str, float]]:
    """Medians of ``measure(port)`` per server, the order reversed every round."""
    found: dict[str, dict[str, list[float]]] = {name: {} for name in servers}
    names = list(servers)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            for key, value in measure(servers[name]).items():
                found[name].setdefault(key, []).append(value)
    return {name: {k: _median(v) for k, v in values.items()} for name, values in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    settings = Settings()  # the user's settings and model cache: SECRETARY_* apply
    folder = ModelStore(settings.models_dir).whisper_path(settings.stt.model)
    compute_type = resolve_compute_type(settings.stt.compute_type,
                                        ctranslate2_device(settings.stt.device))
    clips = {name: pcm16(SPEECH / name) for name in CLIPS}
    speech_seconds = sum(len(p) for p in clips.values()) / 32000
    # Streamed as a chat model writes a reply: a word at a time.
    words = PARAGRAPH.split(" ")
    pieces = [w + " " for w in words[:-1]] + words[-1:]

    with secretary_server(settings) as (stt_port, tts_port), \
            faster_whisper_server(folder, compute_type, cpu_threads=os.cpu_count()) as fw, \
            piper_server(noise=True) as piper:
        # Warm up: first requests load what is loaded lazily.
        for port in (stt_port, fw):
            asyncio.run(transcribe(port, clips[CLIPS[0]]))
        for port in (tts_port, piper):
            asyncio.run(synthesize(port, "Hello."))

        def stt(port: int) -> dict[str, float]:
            return {name: asyncio.run(transcribe(port, pcm)).seconds
                    for name, pcm in clips.items()}

        def tts(port: int) -> dict[str, float]:
            started = time.perf_counter()
            whole = asyncio.run(synthesize(port, PARAGRAPH))
            end = time.perf_counter() - started
            started = time.perf_counter()
            streamed, _ = asyncio.run(synthesize_streaming(port, pieces))
            return {"first": whole.first_chunk or float("nan"), "end": end,
                    "stream first": streamed.first_chunk or float("nan"),
                    "stream end": time.perf_counter() - started,
                    "audio": len(whole.pcm) / 2 / whole.rate}

        print(f"{args.rounds} rounds, medians; Whisper {settings.stt.model} {compute_type}, "
              f"Piper en_US-joe-medium; {os.cpu_count()} CPU cores\n")
        stt_runs = alternate(args.rounds, {"secretary": stt_port, "wyoming-faster-whisper": fw},
                             stt)
        print(f"speech-to-text: audio-stop -> transcript, s ({len(CLIPS)} clips, "
              f"{speech_seconds:.1f} s of speech)")
        header = f"{'server':24} " + " ".join(f"{n[:22]:>22}" for n in CLIPS) + f" {'sum':>6}"
        print(header)
        print("-" * len(header))
        for name, values in stt_runs.items():
            print(f"{name:24} " + " ".join(f"{values[n]:22.3f}" for n in CLIPS)
                  + f" {sum(values.values()):6.2f}")
        ratio = sum(stt_runs["secretary"].values()) / sum(
            stt_runs["wyoming-faster-whisper"].values())
        print(f"secretary / wyoming-faster-whisper: {ratio:.2f}\n")

        tts_runs = alternate(args.rounds, {"secretary": tts_port, "wyoming-piper": piper}, tts)
        print("text-to-speech: a four-sentence paragraph, s")
        keys = ["first", "end", "stream first", "stream end", "audio"]
        header = f"{'server':24} " + " ".join(f"{k:>12}" for k in keys)
        print(header)
        print("-" * len(header))
        for name, values in tts_runs.items():
            print(f"{name:24} " + " ".join(f"{values[k]:12.3f}" for k in keys))
        for key in ("first", "stream first"):
            ratio = tts_runs["secretary"][key] / tts_runs["wyoming-piper"][key]
            print(f"secretary / wyoming-piper, {key} chunk: {ratio:.2f}")


if __name__ == "__main__":
    main()
