"""Responsiveness around hostile, slow and stuck peers: how soon each refusal, deadline
and clean-up happens, and how quickly a service answers meanwhile. The tests check the
same behaviour by order and counts; the seconds are measured here.

    python bench/responsiveness.py [--rounds 3] [--only bombs,deadlines,freed,supervisor]

1. bombs: the time to the 413 for uploads that would cost gigabytes (four hours of
   silence as FLAC to speech-to-text and to the avatar, a 30000x30000 PNG to the avatar,
   99 MB of JSON to the UI), and the slowest UI ``/health`` answer while the JSON is sent.
2. deadlines, each beside the deadline it should fire at: a stalled body -> 408 (body
   timeout 1 s); a silent service -> the gateway's 504 (upstream timeout 1 s); a service
   that drips its answer -> cut (upstream deadline 2 s); 300 connections dripping their
   headers -> the last one closed (header timeout 2 s); an idle Wyoming connection ->
   closed (idle timeout 1 s).
3. freed: a client that gives up on a long transcription, synthesis or animation -> its
   service's queue free again.
4. supervisor: ``secretary serve --only ui,avatar``: the UI's ``/health`` latency while
   the avatar's process is killed and restarted, and while it is stopped (SIGSTOP) for
   5 s; and how long the avatar takes to answer again after the kill.

Medians and the slowest over ``--rounds`` rounds, in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

ROOT = Path(__file__).resolve().parents[1]
# Not this folder: its wyoming.py would hide the wyoming package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from tests.helpers import FACES, SPEECH, free_port, running_server, silent_hours_flac  # noqa: E402

from secretary import audio  # noqa: E402
from secretary.avatar.app import create_app as create_avatar_app  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.stt.app import create_app as create_stt_app  # noqa: E402
from secretary.tts.app import create_app as create_tts_app  # noqa: E402
from secretary.ui.app import create_app as create_ui_app  # noqa: E402
from secretary.web.listeners import Listener  # noqa: E402
from secretary.web.server import server_config  # noqa: E402
from secretary.wyoming.app import create_app as create_wyoming_app  # noqa: E402

SECTIONS = ("bombs", "deadlines", "freed", "supervisor")
PORTRAIT = FACES / "pexels_woman_neutral.jpg"

Results = dict[str, list[float]]


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# ---------------------------------------------------------------------------- bombs


def huge_png(side: int = 30000) -> bytes:
    """A grayscale PNG of ``side`` x ``side`` black pixels: about 875 KB at 30000."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


@contextlib.contextmanager
def health_poller(url: str) -> Iterator[list[float]]:
    """Polls ``url``/health every 20 ms meanwhile; yields the list of answer times."""
    times: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            times.append(timed(lambda: httpx.get(f"{url}/health", timeout=60)))
            time.sleep(0.02)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        yield times
    finally:
        done.set()
        thread.join()


def bombs(rounds: int, results: Results) -> None:
    flac, png = silent_hours_flac(), huge_png()
    photo = PORTRAIT.read_bytes()
    history = b'{"role": "user", "content": "hi"},' * 3_000_000
    json_body = b'{"text": "hello", "history": [' + history[:-1] + b"]}"
    stt = settings()
    stt.stt.max_audio_seconds = 600
    ui = settings()
    ui.conversation.preload = False
    with running_server(create_stt_app(stt)) as stt_url, \
            running_server(create_avatar_app(settings())) as avatar_url, \
            running_server(create_ui_app(ui)) as ui_url:
        def refused(name: str, send: Callable[[], httpx.Response]) -> None:
            started = time.perf_counter()
            answer = send()
            results.setdefault(f"413: {name}", []).append(time.perf_counter() - started)
            if answer.status_code != 413:
                raise SystemExit(f"{name}: {answer.status_code} {answer.text[:200]}")

        for _ in range(rounds):
            refused("4 h of FLAC to /v1/audio/transcriptions", lambda: httpx.post(
                f"{stt_url}/v1/audio/transcriptions", timeout=120,
                files={"file": ("silence.flac", flac, "audio/flac")}))
            refused("4 h of FLAC to /api/animate", lambda: httpx.post(
                f"{avatar_url}/api/animate", timeout=120, files={
                    "source_image": ("p.jpg", photo, "image/jpeg"),
                    "audio": ("silence.flac", flac, "audio/flac")}))
            refused("30000x30000 PNG to /api/render", lambda: httpx.post(
                f"{avatar_url}/api/render", timeout=120,
                files={"source_image": ("huge.png", png, "image/png")}))
            with health_poller(ui_url) as answers:
                refused("99 MB of JSON to /api/reply", lambda: httpx.post(
                    f"{ui_url}/api/reply", content=json_body, timeout=120,
                    headers={"content-type": "application/json"}))
            results.setdefault("UI /health while the 99 MB JSON is refused (slowest)",
                               []).append(max(answers))


# ---------------------------------------------------------------------------- deadlines


def hung_service() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        await asyncio.sleep(10)
        return {}

    @app.get("/voices")
    async def drip() -> StreamingResponse:
        async def forever():
            while True:
                yield b"x"
                await asyncio.sleep(0.2)

        return StreamingResponse(forever())

    return app


@contextlib.contextmanager
def served_with_header_deadline(app: FastAPI, seconds: float) -> Iterator[int]:
    """The app the way ``secretary serve`` runs it, with a header deadline; its port."""
    port = free_port()
    server = uvicorn.Server(server_config(app, Listener("127.0.0.1", port),
                                          log_level="warning", header_timeout=seconds))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def dripping_headers_closed(port: int, count: int = 300) -> float:
    """Seconds until the last of ``count`` connections that drip headers is closed."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sock.setblocking(False)
        sockets.append(sock)
    started = last_drip = time.perf_counter()
    open_ones = list(sockets)
    try:
        while open_ones and time.perf_counter() - started < 60:
            drip = time.perf_counter() - last_drip >= 0.5  # a header line every 0.5 s
            last_drip = time.perf_counter() if drip else last_drip
            still = []
            for sock in open_ones:
                try:
                    if drip:
                        sock.send(b"X-Drip: 1\r\n")
                    if sock.recv(1) == b"":
                        continue  # closed by the server
                except BlockingIOError:
                    still.append(sock)
                except OSError:
                    continue  # reset by the server
            open_ones = still
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        for sock in sockets:
            sock.close()


def stalled_body_answered(port: int) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(b"POST /api/reply HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                     b'{"text": ')
        started = time.perf_counter()
        answer = sock.recv(65536)
        if b" 408 " not in answer.split(b"\r\n")[0]:
            raise SystemExit(f"not a 408: {answer[:100]!r}")
        return time.perf_counter() - started


def drip_cut(url: str) -> float:
    started = time.perf_counter()
    with contextlib.suppress(httpx.HTTPError), httpx.stream(
            "GET", f"{url}/api/tts/voices", timeout=60) as dripping:
        for _ in dripping.iter_raw():
            pass
    return time.perf_counter() - started


async def idle_wyoming_closed(port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    try:
        if await asyncio.wait_for(reader.read(), 60):
            raise SystemExit("the idle Wyoming connection was sent something")
        return time.perf_counter() - started
    finally:
        writer.close()


def deadlines(rounds: int, results: Results) -> None:
    ui = settings(body_timeout=1.0)
    ui.conversation.preload = False
    wyoming = settings()
    wyoming.stt.preload = wyoming.tts.preload = False  # only connections are timed
    wyoming.wyoming.stt_port, wyoming.wyoming.tts_port = free_port(), free_port()
    wyoming.wyoming.idle_timeout = 1.0
    with running_server(hung_service()) as hung:
        gateway = settings()
        gateway.conversation.preload = False
        gateway.ui = gateway.ui.model_copy(update={
            "tts_url": hung, "upstream_timeout": 1.0, "upstream_deadline": 2.0})
        with running_server(create_ui_app(ui)) as ui_url, \
                running_server(create_ui_app(gateway)) as gateway_url, \
                served_with_header_deadline(create_ui_app(ui), 2.0) as header_port, \
                running_server(create_wyoming_app(wyoming)):
            ui_port = int(ui_url.rsplit(":", 1)[1])
            for _ in range(rounds):
                results.setdefault("408: stalled body (body timeout 1 s)", []).append(
                    stalled_body_answered(ui_port))
                results.setdefault("504: silent service (upstream timeout 1 s)", []).append(
                    timed(lambda: httpx.get(f"{gateway_url}/api/tts/health", timeout=60)))
                results.setdefault("dripping answer cut (upstream deadline 2 s)", []).append(
                    drip_cut(gateway_url))
                results.setdefault("300 dripping headers closed (header timeout 2 s)",
                                   []).append(dripping_headers_closed(header_port))
                results.setdefault("idle Wyoming connection closed (idle timeout 1 s)",
                                   []).append(asyncio.run(
                                       idle_wyoming_closed(wyoming.wyoming.tts_port)))


# ---------------------------------------------------------------------------- freed


def freed_after_leaving(url: str, send: Callable[[], object]) -> float:
    """Seconds from the client giving up (its read timeout) to an idle queue."""
    with contextlib.suppress(httpx.ReadTimeout):
        send()
        raise SystemExit(f"{url}: the job ended before the client gave up")
    started = time.perf_counter()
    while httpx.get(f"{url}/health", timeout=30).json()["queue"]["in_progress"]:
        time.sleep(0.05)
    return time.perf_counter() - started


def freed(rounds: int, results: Results) -> None:
    jfk = audio.decode(SPEECH / "en_jfk_ask_not.flac")
    long_speech = audio.encode(np.tile(jfk.samples, 16), jfk.sample_rate, "wav")  # 3 min
    jfk24 = audio.decode(SPEECH / "en_jfk_ask_not.flac", 24000)
    long_voice = audio.encode(np.tile(jfk24.samples, 10)[: 24000 * 110], 24000, "wav")
    text = " ".join(f"This is sentence number {i}, spoken slowly." for i in range(150))
    photo = PORTRAIT.read_bytes()
    stt = settings()
    stt.stt.beam_size = 1
    tts = settings()
    tts.tts.max_text_chars = 20000
    with running_server(create_stt_app(stt)) as stt_url, \
            running_server(create_tts_app(tts)) as tts_url, \
            running_server(create_avatar_app(settings())) as avatar_url:
        for _ in range(rounds):
            results.setdefault("transcription (3 min) freed", []).append(freed_after_leaving(
                stt_url, lambda: httpx.post(
                    f"{stt_url}/v1/audio/transcriptions", timeout=3,
                    files={"file": ("long.wav", long_speech, "audio/wav")},
                    data={"language": "en", "temperature": "0"})))
            results.setdefault("synthesis (150 sentences) freed", []).append(
                freed_after_leaving(tts_url, lambda: httpx.post(
                    f"{tts_url}/synthesize", timeout=2,
                    json={"text": text, "language": "en"})))
            results.setdefault("animation (110 s) freed", []).append(freed_after_leaving(
                avatar_url, lambda: httpx.post(
                    f"{avatar_url}/api/animate", timeout=3, data={"size": "256"},
                    files={"source_image": ("p.jpg", photo, "image/jpeg"),
                           "audio": ("a.wav", long_voice, "audio/wav")})))


# ---------------------------------------------------------------------------- supervisor


def wait_healthy(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def avatar_child(parent: psutil.Process) -> psutil.Process:
    for _ in range(600):
        for child in parent.children():
            if "avatar" in child.cmdline():
                return child
        time.sleep(0.05)
    raise SystemExit("no avatar process")


def supervisor(rounds: int, results: Results) -> None:
    ports = {"ui": free_port(), "avatar": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARY_")}
    env |= {"SECRETARY_UI_TLS": "false", "SECRETARY_UI_PORT": str(ports["ui"]),
            "SECRETARY_AVATAR_PORT": str(ports["avatar"]), "SECRETARY_AVATAR_PRELOAD": "false",
            "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen([sys.executable, "-m", "secretary", "serve", "--only",
                                "ui,avatar"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    ui, avatar = (f"http://127.0.0.1:{ports[n]}" for n in ("ui", "avatar"))
    try:
        wait_healthy(ui)
        wait_healthy(avatar)
        parent = psutil.Process(process.pid)
        for _ in range(rounds):
            with health_poller(ui) as answers:
                killed = time.perf_counter()
                avatar_child(parent).kill()
                time.sleep(0.2)  # the old process is gone before the new one is asked
                wait_healthy(avatar)
                results.setdefault("avatar answers again after SIGKILL", []).append(
                    time.perf_counter() - killed)
            results.setdefault("UI /health while the avatar restarts (slowest)", []).append(
                max(answers))
            with health_poller(ui) as answers:
                stopped = avatar_child(parent)
                stopped.send_signal(signal.SIGSTOP)
                time.sleep(5)
                stopped.send_signal(signal.SIGCONT)
            results.setdefault("UI /health while the avatar is stopped (median)", []).append(
                statistics.median(answers))
            results.setdefault("UI /health while the avatar is stopped (slowest)", []).append(
                max(answers))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections: {', '.join(SECTIONS)}")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")

    results: Results = {}
    runs = {"bombs": bombs, "deadlines": deadlines, "freed": freed, "supervisor": supervisor}
    for name in chosen:
        print(f"{name} ...", flush=True)
        runs[name](args.rounds, results)
    print(f"\n{args.rounds} rounds; seconds\n")
    print("| measurement | median | slowest |")
    print("|---|---|---|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.3f} | {max(values):.3f} |")


if __name__ == "__main__":
    main()
