"""The telephone: how soon a caller hears the answer, and what a call costs the endpoint.

    python bench/phone.py [--rounds 2] [--clips 4] [--concurrent 4]
                          [--turn-detection semantic_vad|server_vad] [--baseline SETTINGS]

A real telephone service in a process of its own (``secretary serve --only phone``: the
SIP endpoint on loopback, the reply read back: ``SECRETARY_CONVERSATION_BRAIN=echo``,
English Piper, Whisper base; turns ended as by default, G.722 calls' by Smart Turn and
PCMU calls' by 500 ms of silence, or all by silence with ``--turn-detection server_vad``)
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
  - the endpoint's CPU per call: its process's CPU time (user + system: PJSIP, the
    sessions, Whisper, Piper) over the calls' window, divided by the seconds of call
    (each call's recorded duration, summed);

with one call at a time (the baseline) and with ``--concurrent`` calls at once (started
together, the round's clips of the single calls), in each round; then each clip's answer
times alone. The issue's target: p50 <= 500 ms with 4 simultaneous calls on 2 cores.

With ``--baseline``, a second endpoint with some settings changed takes the same calls right
after the first, every time, and the ratios of the two p50s are printed: this machine's
load changes from minute to minute, so only calls made side by side compare.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

from tests.phone.process import PhoneProcess, read_back_settings  # noqa: E402
from tests.realtime.support import voiced  # noqa: E402

from secretary import audio  # noqa: E402

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


def run_calls(endpoint: Endpoint, codec: str, clips: list[Clip], folder: Path,
              known: set[str]) -> tuple[list[dict[str, Any]], float, float, set[str]]:
    """``clips`` called at once: (each call's outcome, the endpoint's CPU seconds, call
    seconds, ids)."""
    cpu = endpoint.cpu_seconds()
    recordings = [folder / f"heard-{codec}-{i}-{time.monotonic_ns()}.wav"
                  for i in range(len(clips))]
    processes = [start_call(endpoint.uri, codec, clip, path)
                 for clip, path in zip(clips, recordings, strict=True)]
    results = [finish_call(p, clip, path) for p, clip, path in zip(
        processes, clips, recordings, strict=True)]
    seconds, known = call_seconds(endpoint.url, known, len(clips))
    return results, endpoint.cpu_seconds() - cpu, seconds, known


@dataclass
class Endpoint:
    """A telephone service in a process of its own, and whom to call there."""

    phone: PhoneProcess
    uri: str  # SIP

    @property
    def url(self) -> str:  # HTTP: /api/calls, /metrics
        return self.phone.url

    def cpu_seconds(self) -> float:
        return self.phone.cpu_seconds()

    def counted(self) -> str:
        """The endpoint's counts of replies made ahead and end-of-turn verdicts."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        counts = [f"{name.split('_total')[0].split('realtime_')[1]} {labels}: {float(value):g}"
                  for name, labels, value in re.findall(
                      r'^(secretary_realtime_(?:replies_ahead|end_of_turn)_total)'
                      r'\{\w+="(\w+)"\} (\S+)$', text, re.M)]
        return "; ".join(counts) or "none"


def start_endpoint(folder: Path, args: argparse.Namespace, changes: str) -> Endpoint:
    """The endpoint with the benchmark's settings, and ``changes`` (group.name=value,...)."""
    port = free_port()
    settings = read_back_settings(port, {
        # Every sentence synthesized: the clips come again, and so would their read-backs
        # (the greeting too, so the CPU per call counts its synthesis: 0.15 CPU-s).
        "conversation.speech_cache": "0",
        "realtime.end_of_turn": str(args.turn_detection == "semantic_vad").lower(),
        "phone.max_calls": str(max(args.concurrent, 1)),
        "phone.max_invites_per_minute": "1000", "data_dir": str(folder / f"data-{port}"),
    })
    for assignment in filter(None, (a.strip() for a in changes.split(","))):
        key, value = assignment.split("=", 1)
        settings[key.strip()] = value
    phone = PhoneProcess(settings, folder, free_port())
    try:
        phone.wait_ready()
    except BaseException:
        phone.stop()
        raise
    return Endpoint(phone, f"sip:secretary@127.0.0.1:{port}")


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
    parser.add_argument("--baseline", default="", metavar="SETTINGS",
                        help="a second endpoint with these settings changed "
                        "(group.name=value,...; e.g. phone.partials=true), called with the "
                        "same clips right after the first each time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder_name:
        folder = Path(folder_name)
        labels = ["endpoint"] + ([f"baseline ({args.baseline})"] if args.baseline else [])
        endpoints: dict[str, Endpoint] = {}
        try:
            for label in labels:
                endpoints[label] = start_endpoint(folder, args,
                                                  args.baseline if endpoints else "")
            measure(args, folder, labels, endpoints)
        finally:
            for endpoint in endpoints.values():
                endpoint.phone.stop()


def measure(args: argparse.Namespace, folder: Path, labels: list[str],
            endpoints: dict[str, Endpoint]) -> None:
    clips = {codec: [make_clip(folder, name, rate, args.lead) for name in CLIPS]
             for codec, rate in CODECS.items()}
    outcomes: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    cost: dict[tuple[str, str, int], list[float]] = {}  # CPU seconds, call seconds
    known: dict[str, set[str]] = {label: set() for label in labels}
    # Warm-up (not counted): the first call loads and runs each engine once.
    for label, endpoint in endpoints.items():
        _, _, _, known[label] = run_calls(endpoint, "PCMU", clips["PCMU"][:1], folder,
                                          known[label])
    idle_cpu = {label: endpoint.cpu_seconds() for label, endpoint in endpoints.items()}
    time.sleep(3.0)
    idle = max((endpoint.cpu_seconds() - idle_cpu[label]) / 3.0
               for label, endpoint in endpoints.items())
    for round_index in range(args.rounds):
        for codec in CODECS:
            runs = [[clips[codec][(round_index * args.clips + i) % len(CLIPS)]]
                    for i in range(args.clips)]
            # The same clips at once as one at a time (answer times differ by clip).
            runs.append([clips[codec][(round_index * args.clips + i) % len(CLIPS)]
                         for i in range(args.concurrent)])
            for chosen in runs:
                for label, endpoint in endpoints.items():
                    results, cpu, seconds, known[label] = run_calls(
                        endpoint, codec, chosen, folder, known[label])
                    key = (label, codec, len(chosen))
                    outcomes.setdefault(key, []).extend(results)
                    totals = cost.setdefault(key, [0.0, 0.0])
                    totals[0] += cpu
                    totals[1] += seconds
                    heard = ", ".join("-" if r["latency"] is None else
                                      f"{r['latency']:.3f}" for r in results)
                    print(f"round {round_index + 1} {label} {codec} x{len(chosen)}: "
                          f"{heard} s", flush=True)
    cores = len(os.sched_getaffinity(0))
    print(f"\n{args.rounds} rounds; {cores} cores; {args.turn_detection}; the endpoint "
          f"idle: {100 * idle:.1f}% of a core\n")
    for label in labels:
        report(label, {key[1:]: value for key, value in outcomes.items() if key[0] == label},
               {key[1:]: value for key, value in cost.items() if key[0] == label},
               clips, len(labels) > 1)
    for label, endpoint in endpoints.items():
        print(f"\n{label}, what the turns cost: {endpoint.counted()}")
    if args.baseline:
        print("\np50 against the baseline (the same clips, one after the other):")
        for codec in CODECS:
            for count in sorted({k[2] for k in outcomes}):
                mine, theirs = (timed(outcomes.get((label, codec, count), []))
                                for label in labels)
                if mine and theirs:
                    print(f"  {codec}, {count} call(s) at once: "
                          f"{statistics.median(mine) / statistics.median(theirs):.2f}x")


def timed(results: list[dict[str, Any]]) -> list[float]:
    return [r["latency"] for r in results if r["greeting_over"] and r["latency"] is not None]


def report(label: str, outcomes: dict[tuple[str, int], list[dict[str, Any]]],
           cost: dict[tuple[str, int], list[float]], clips: dict[str, list[Clip]],
           titled: bool) -> None:
    if titled:
        print(f"\n{label}:\n")
    print("| codec | calls at once | answers timed | end of speech -> answer heard, p50 | "
          "p95 | p50 / 1 call | CPU per call (% of a core) |")
    print("|---|---|---|---|---|---|---|")
    base: dict[str, float] = {}
    for (codec, count), results in sorted(outcomes.items(), key=lambda kv: (
            list(CODECS).index(kv[0][0]), kv[0][1])):
        heard = timed(results)
        skipped = sum(not r["greeting_over"] for r in results)
        silent = sum(r["latency"] is None for r in results)
        if not heard:
            print(f"| {codec} | {count} | 0 of {len(results)} | - | - | - | - |")
            continue
        p50 = statistics.median(heard)
        if count == 1:
            base[codec] = p50
        ratio = f"{p50 / base[codec]:.2f}" if codec in base else "-"
        cpu, seconds = cost[(codec, count)]
        note = "".join([f"; {skipped} greeting not over" if skipped else "",
                        f"; {silent} no answer" if silent else ""])
        print(f"| {codec} | {count} | {len(heard)} of {len(results)}{note} | "
              f"{1000 * p50:.0f} ms | {1000 * pct(heard, 0.95):.0f} ms | {ratio} | "
              f"{100 * cpu / seconds:.1f} |")
    for count in sorted({k[1] for k in outcomes}):
        pcmu = timed(outcomes.get(("PCMU", count), []))
        g722 = timed(outcomes.get(("G722", count), []))
        if pcmu and g722:
            print(f"\n{count} call(s) at once: G.722 / PCMU p50 "
                  f"{statistics.median(g722) / statistics.median(pcmu):.2f}", end="")
    print("\n\nBy clip, one call at a time (median; rounds):\n")
    print("| clip | speech | " + " | ".join(CODECS) + " |")
    print("|---|---|" + "---|" * len(CODECS))
    for index, name in enumerate(CLIPS):
        cells = []
        for codec in CODECS:
            mine = timed([r for r in outcomes.get((codec, 1), []) if r["clip"] == name])
            cells.append(f"{1000 * statistics.median(mine):.0f} ms ("
                         + ", ".join(f"{1000 * v:.0f}" for v in mine) + ")" if mine else "-")
        speech = clips["PCMU"][index]
        print(f"| {Path(name).stem} | {speech.speech_end - speech.speech_start:.1f} s | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
