"""The telephone: how soon a caller hears the answer, and what a call costs the endpoint.

    python bench/phone.py [--rounds 2] [--clips 4] [--concurrent 4]
                          [--turn-detection semantic_vad|server_vad]

A real telephone service in this process (the SIP endpoint on loopback, the reply read
back: ``SECRETARY_CONVERSATION_BRAIN=echo``, English Piper, Whisper base; turns ended by
Smart Turn as by default, or by 500 ms of silence with ``--turn-detection server_vad``)
called by the tests' caller (``tests/phone/caller.py``, a second PJSUA2 endpoint in a
process of its own per call), over loopback SIP and RTP, in PCMU (8 kHz) and in G.722
(16 kHz):

  - end of speech -> answer: the caller plays a WAV that starts with ``--lead`` seconds of
    silence (the greeting is said and over by then; a call whose greeting was still heard
    within 0.3 s of the speech is not counted) and then a speech clip; the clip's voiced
    end (Silero over the clip) is a known point of the caller's recording, and the answer
    is the first 20 ms of the recording after it louder than -45 dBFS. So it is what the
    caller hears: both jitter buffers, both codecs, Whisper, the reply's first sentence
    spoken. p50 and p95;
  - the endpoint's CPU per call: this process's CPU time (user + system: PJSIP, the
    sessions, Whisper, Piper) over the calls' window, divided by the seconds of call
    (each call's recorded duration, summed);

with one call at a time (the baseline) and with ``--concurrent`` calls at once (started
together, the round's clips of the single calls), in each round; then each clip's answer
times alone. The issue's target: p50 <= 500 ms with 4 simultaneous calls on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import running_server  # noqa: E402
from tests.realtime.support import voiced  # noqa: E402

from secretary import audio  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.phone.app import create_app  # noqa: E402
from secretary.phone.service import PhoneService  # noqa: E402

CALLER = ROOT / "tests" / "phone" / "caller.py"
SPEECH = ROOT / "tests" / "data" / "speech"
CLIPS = ("en_cmu_arctic_aew_a0003.wav", "en_cmu_arctic_axb_a0004.wav",
         "en_cmu_arctic_axb_a0006.wav", "en_cheetah_platforms.wav",
         "en_librispeech_1272-128104-0000_quilter.wav")
CODECS = {"PCMU": 8000, "G722": 16000}  # what the caller plays at (the codec's own rate)
FRAME = 0.02
LOUD_DBFS = -45.0  # a frame of the recording louder than this is sound
TAIL = 4.0  # seconds of the call after the clip: the answer is heard in them


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    """A port free for SIP on UDP and TCP alike."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp.bind(("127.0.0.1", port))
        return port


@dataclass
class Clip:
    name: str
    rate: int
    path: Path  # lead silence + the clip + TAIL of silence, 16-bit mono WAV
    speech_start: float  # seconds into the WAV
    speech_end: float
    length: float  # of the whole WAV


def make_clip(folder: Path, name: str, rate: int, lead: float) -> Clip:
    samples = audio.decode((SPEECH / name).read_bytes(), rate).samples
    start, end = voiced(samples, rate)
    whole = np.concatenate([np.zeros(int(lead * rate), np.float32), samples,
                            np.zeros(int(TAIL * rate), np.float32)])
    data = audio.to_pcm16(whole)
    path = folder / f"{Path(name).stem}-{rate}.wav"
    path.write_bytes(audio.wav_header(rate, len(data)) + data)
    return Clip(name, rate, path, lead + start, lead + end, len(whole) / rate)


def loudness(path: Path) -> np.ndarray:
    """dBFS of each 20 ms frame of a recording."""
    samples = audio.decode(path.read_bytes(), 16000).samples
    step = int(FRAME * 16000)
    frames = samples[: len(samples) // step * step].reshape(-1, step)
    return 20 * np.log10(np.sqrt(np.mean(frames ** 2, axis=1)) + 1e-9)


def start_call(uri: str, codec: str, clip: Clip, recording: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(CALLER), "--to", uri, "--codec", codec, "--play", str(clip.path),
         "--play-after", "0", "--record", str(recording),
         "--hangup-after", f"{clip.length + 0.5:.2f}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_call(process: subprocess.Popen, clip: Clip, recording: Path) -> dict[str, Any]:
    """The caller's outcome: ``latency`` (None: no answer heard), ``greeting_over``."""
    out, err = process.communicate(timeout=clip.length + 60)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    playing = next((e for e in events if e.get("event") == "playing"), None)
    if process.returncode != 0 or playing is None or playing.get("at") is None \
            or not recording.exists():
        raise RuntimeError(f"the call with {clip.name} failed: {events} {err[-2000:]}")
    level = loudness(recording)
    loud = level > LOUD_DBFS
    offset = float(playing["at"])
    start = int((offset + clip.speech_start) / FRAME)
    end = int(np.ceil((offset + clip.speech_end) / FRAME))
    before = np.flatnonzero(loud[:start])
    heard = np.flatnonzero(loud[end:])
    return {
        "clip": clip.name,
        "greeting_heard": bool(before.size),
        # The greeting (all that comes before the speech) was over 0.3 s before it.
        "greeting_over": bool(before.size) and (start - before[-1]) * FRAME >= 0.3,
        "latency": None if not heard.size else heard[0] * FRAME + (
            end * FRAME - (offset + clip.speech_end)),
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def call_seconds(url: str, before: set[str], count: int) -> tuple[float, set[str]]:
    """The recorded duration of the ``count`` calls not in ``before``, waiting until they
    are saved; and every call's id."""
    deadline = time.monotonic() + 30
    while True:
        calls = httpx.get(f"{url}/api/calls", params={"limit": 500}, timeout=10).json()["data"]
        new = [c for c in calls if c["id"] not in before]
        if len(new) >= count or time.monotonic() > deadline:
            return sum(c["duration_s"] for c in new), {c["id"] for c in calls}
        time.sleep(0.2)


def run_calls(uri: str, url: str, codec: str, clips: list[Clip], folder: Path,
              known: set[str]) -> tuple[list[dict[str, Any]], float, float, set[str]]:
    """``clips`` called at once: (each call's outcome, CPU seconds, call seconds, ids)."""
    cpu = cpu_seconds()
    recordings = [folder / f"heard-{codec}-{i}-{time.monotonic_ns()}.wav"
                  for i in range(len(clips))]
    processes = [start_call(uri, codec, clip, path) for clip, path in zip(clips, recordings,
                                                                         strict=True)]
    results = [finish_call(p, clip, path) for p, clip, path in zip(
        processes, clips, recordings, strict=True)]
    seconds, known = call_seconds(url, known, len(clips))
    return results, cpu_seconds() - cpu, seconds, known


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clips", type=int, default=4, help="single calls per codec a round")
    parser.add_argument("--concurrent", type=int, default=4, help="calls at once")
    parser.add_argument("--lead", type=float, default=5.0,
                        help="seconds of silence before the speech (the greeting's time)")
    parser.add_argument("--turn-detection", choices=("semantic_vad", "server_vad"),
                        default="semantic_vad", help="semantic_vad: Smart Turn (the default); "
                        "server_vad: 500 ms of silence ends each turn")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        settings = Settings(_env_file=None, data_dir=folder / "data")
        settings.conversation.brain = "echo"
        settings.conversation.avatar = False
        settings.realtime.face = False
        settings.tts.piper_noise_w = 0.0
        settings.realtime.end_of_turn = args.turn_detection == "semantic_vad"
        port = free_port()
        settings.phone.port = port
        settings.phone.rtp_port = 20000 + port % 20000
        settings.phone.answer_delay_s = 0.2
        settings.phone.max_calls = max(args.concurrent, 1)
        settings.phone.max_invites_per_minute = 1000
        service = PhoneService(settings)
        uri = f"sip:secretary@127.0.0.1:{port}"
        clips = {codec: [make_clip(folder, name, rate, args.lead) for name in CLIPS]
                 for codec, rate in CODECS.items()}
        outcomes: dict[tuple[str, int], list[dict[str, Any]]] = {}
        cost: dict[tuple[str, int], list[float]] = {}  # CPU seconds, call seconds
        with running_server(create_app(service=service)) as url:
            known: set[str] = set()
            # Warm-up (not counted): the first call loads and runs each engine once.
            _, _, _, known = run_calls(uri, url, "PCMU", clips["PCMU"][:1], folder, known)
            idle_cpu = cpu_seconds()
            time.sleep(3.0)
            idle = (cpu_seconds() - idle_cpu) / 3.0
            for round_index in range(args.rounds):
                for codec in CODECS:
                    runs = [[clips[codec][(round_index * args.clips + i) % len(CLIPS)]]
                            for i in range(args.clips)]
                    # The same clips at once as one at a time (answer times differ by clip).
                    runs.append([clips[codec][(round_index * args.clips + i) % len(CLIPS)]
                                 for i in range(args.concurrent)])
                    for chosen in runs:
                        results, cpu, seconds, known = run_calls(uri, url, codec, chosen,
                                                                 folder, known)
                        key = (codec, len(chosen))
                        outcomes.setdefault(key, []).extend(results)
                        totals = cost.setdefault(key, [0.0, 0.0])
                        totals[0] += cpu
                        totals[1] += seconds
                        heard = ", ".join("-" if r["latency"] is None else
                                          f"{r['latency']:.3f}" for r in results)
                        print(f"round {round_index + 1} {codec} x{len(chosen)}: {heard} s",
                              flush=True)
    cores = len(os.sched_getaffinity(0))
    print(f"\n{args.rounds} rounds; {cores} cores; {args.turn_detection}; the endpoint "
          f"idle: {100 * idle:.1f}% of a core\n")
    print("| codec | calls at once | answers timed | end of speech -> answer heard, p50 | "
          "p95 | p50 / 1 call | CPU per call (% of a core) |")
    print("|---|---|---|---|---|---|---|")
    base: dict[str, float] = {}
    for (codec, count), results in sorted(outcomes.items(), key=lambda kv: (
            list(CODECS).index(kv[0][0]), kv[0][1])):
        timed = [r["latency"] for r in results if r["greeting_over"]
                 and r["latency"] is not None]
        skipped = sum(not r["greeting_over"] for r in results)
        silent = sum(r["latency"] is None for r in results)
        if not timed:
            print(f"| {codec} | {count} | 0 of {len(results)} | - | - | - | - |")
            continue
        p50 = statistics.median(timed)
        if count == 1:
            base[codec] = p50
        ratio = f"{p50 / base[codec]:.2f}" if codec in base else "-"
        cpu, seconds = cost[(codec, count)]
        note = "".join([f"; {skipped} greeting not over" if skipped else "",
                        f"; {silent} no answer" if silent else ""])
        print(f"| {codec} | {count} | {len(timed)} of {len(results)}{note} | "
              f"{1000 * p50:.0f} ms | {1000 * pct(timed, 0.95):.0f} ms | {ratio} | "
              f"{100 * cpu / seconds:.1f} |")
    for count in sorted({k[1] for k in outcomes}):
        pcmu = [r["latency"] for r in outcomes.get(("PCMU", count), [])
                if r["greeting_over"] and r["latency"] is not None]
        g722 = [r["latency"] for r in outcomes.get(("G722", count), [])
                if r["greeting_over"] and r["latency"] is not None]
        if pcmu and g722:
            print(f"\n{count} call(s) at once: G.722 / PCMU p50 "
                  f"{statistics.median(g722) / statistics.median(pcmu):.2f}", end="")
    print("\n\nBy clip, one call at a time (median; rounds):\n")
    print("| clip | speech | " + " | ".join(CODECS) + " |")
    print("|---|---|" + "---|" * len(CODECS))
    for index, name in enumerate(CLIPS):
        cells = []
        for codec in CODECS:
            mine = [r["latency"] for r in outcomes.get((codec, 1), [])
                    if r["clip"] == name and r["greeting_over"] and r["latency"] is not None]
            cells.append(f"{1000 * statistics.median(mine):.0f} ms ("
                         + ", ".join(f"{1000 * v:.0f}" for v in mine) + ")" if mine else "-")
        speech = clips["PCMU"][index]
        print(f"| {Path(name).stem} | {speech.speech_end - speech.speech_start:.1f} s | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
