"""Overload and a short soak: nothing is lost, and memory does not creep.

    python bench/overload.py [--burst 48] [--soak 500] [--concurrency 6]

Starts ``secretary serve --only tts,stt --single-process`` (default queues: text-to-speech
1 running + 8 waiting, speech-to-text 2 + 8) as a separate process, then:

1. Overload: ``--burst`` requests at once to each of the OpenAI speech endpoint (streamed
   WAV), ``/synthesize`` (whole MP3) and streamed transcription. Every answer is counted
   as served (a 200 whose whole body decodes), refused (503 with Retry-After) or lost
   (anything else: an empty or cut 200, a 5xx, a dropped connection). Lost must be 0.
2. Soak: ``--soak`` speech requests, ``--concurrency`` at a time, with the server's RSS
   read after each 100; prints the growth per 100 requests after the first 100 (warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from secretary import audio  # noqa: E402

SENTENCE = "Good morning, this is your secretary. You have three new messages."
CLIP = ROOT / "tests" / "data" / "speech" / "en_cmu_arctic_aew_a0001.wav"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tts_port: int, stt_port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, SECRETARY_TTS_PORT=str(tts_port), SECRETARY_STT_PORT=str(stt_port),
               PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen([sys.executable, "-m", "secretary", "serve", "--only", "tts,stt",
                             "--single-process"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_ready(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).json().get("status") == "ok":
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not come up")


class Tally:
    def __init__(self) -> None:
        self.served = self.refused = self.lost = 0
        self.reasons: list[str] = []

    def count(self, answer: httpx.Response | BaseException, whole) -> None:
        if isinstance(answer, BaseException):
            self.lost += 1
            self.reasons.append(f"{type(answer).__name__}: {answer}")
        elif answer.status_code == 200:
            try:
                whole(answer.content)
                self.served += 1
            except Exception as exc:  # noqa: BLE001 - a cut or empty body
                self.lost += 1
                self.reasons.append(f"200 with a broken body ({len(answer.content)} bytes): "
                                    f"{exc}")
        elif answer.status_code == 503 and answer.headers.get("retry-after"):
            self.refused += 1
        else:
            self.lost += 1
            self.reasons.append(f"HTTP {answer.status_code}: {answer.text[:120]}")


def speech_whole(body: bytes) -> None:
    if audio.decode(body).duration < 2.0:
        raise ValueError("shorter than the sentence")


def transcript_whole(body: bytes) -> None:
    if b"transcript.text.done" not in body:
        raise ValueError("no final event")


async def burst(requests: list, whole) -> Tally:
    tally = Tally()
    async with httpx.AsyncClient(timeout=600) as client:
        answers = await asyncio.gather(*(r(client) for r in requests), return_exceptions=True)
    for answer in answers:
        tally.count(answer, whole)
    return tally


def speech_request(url: str):
    return lambda client: client.post(f"{url}/v1/audio/speech", json={
        "model": "tts-1", "voice": "alloy", "input": SENTENCE, "response_format": "wav"})


def synthesize_request(url: str):
    return lambda client: client.post(f"{url}/synthesize", json={
        "text": SENTENCE, "format": "mp3"})


def transcribe_request(url: str, clip: bytes):
    return lambda client: client.post(f"{url}/v1/audio/transcriptions", data={
        "stream": "true", "language": "en"}, files={"file": ("a.wav", clip, "audio/wav")})


async def soak(url: str, total: int, concurrency: int, server: psutil.Process) -> None:
    tally = Tally()
    rss: list[float] = []
    async with httpx.AsyncClient(timeout=600) as client:
        done = 0
        while done < total:
            wave = min(concurrency, total - done)
            answers = await asyncio.gather(*(speech_request(url)(client) for _ in range(wave)),
                                           return_exceptions=True)
            for answer in answers:
                tally.count(answer, speech_whole)
            before, done = done, done + wave
            if done // 100 > before // 100:
                rss.append(server.memory_info().rss / 2**20)
                print(f"  {done:5d} requests: server RSS {rss[-1]:.0f} MB", flush=True)
    print(f"soak: served {tally.served}, refused {tally.refused}, lost {tally.lost}")
    if len(rss) >= 3:
        per_100 = (rss[-1] - rss[0]) / (len(rss) - 1)
        print(f"soak: memory growth {per_100:+.1f} MB per 100 requests after the first 100 "
              f"({rss[0]:.0f} -> {rss[-1]:.0f} MB)")
    for reason in tally.reasons[:5]:
        print("   lost:", reason)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=48)
    parser.add_argument("--soak", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=6)
    args = parser.parse_args()

    tts_port, stt_port = free_port(), free_port()
    process = start_server(tts_port, stt_port)
    tts, stt = f"http://127.0.0.1:{tts_port}", f"http://127.0.0.1:{stt_port}"
    try:
        wait_ready(tts)
        wait_ready(stt)
        server = psutil.Process(process.pid)
        clip = CLIP.read_bytes()
        lost = 0
        for name, requests, whole in (
            ("POST /v1/audio/speech (streamed wav)",
             [speech_request(tts)] * args.burst, speech_whole),
            ("POST /synthesize (whole mp3)", [synthesize_request(tts)] * args.burst,
             speech_whole),
            ("POST /v1/audio/transcriptions (stream)",
             [transcribe_request(stt, clip)] * args.burst, transcript_whole),
        ):
            started = time.perf_counter()
            tally = asyncio.run(burst(requests, whole))
            lost += tally.lost
            print(f"overload {name}: {args.burst} at once -> served {tally.served}, refused "
                  f"{tally.refused}, lost {tally.lost} ({time.perf_counter() - started:.1f} s)")
            for reason in tally.reasons[:5]:
                print("   lost:", reason)
        if args.soak:
            asyncio.run(soak(tts, args.soak, args.concurrency, server))
        if lost:
            raise SystemExit(f"{lost} answers lost under overload")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
