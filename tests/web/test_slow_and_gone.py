"""Work nobody waits for stops, and slow clients are cut off.

- A client that gives up: its transcription stops between segments, its synthesis between
  sentences, its animation between frames; the queue is free again within seconds,
  long before the job would have ended.
- 300 connections dripping their headers are closed by the header deadline; a body that
  stalls gets a 408.
- The UI gateway gives up on a silent service, and ends any exchange at its deadline.

Time is the behaviour in each, so each keeps a bound, generous (several times the deadline
under test) and counted where it can be: bytes a dripping service sent, rounds of polling.
How long each takes is measured by ``bench/responsiveness.py``.
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from secretary import audio
from secretary.avatar.app import create_app as create_avatar_app
from secretary.avatar.meshwarp import MeshWarpEngine
from secretary.avatar.models import FaceLandmarkerModel
from secretary.catalog import ModelStore
from secretary.stt.app import create_app as create_stt_app
from secretary.stt.whisper import WhisperEngine
from secretary.tts.app import create_app as create_tts_app
from secretary.tts.models import PIPER_PACKAGED_VOICE
from secretary.tts.piper import PiperEngine
from secretary.ui.app import create_app as create_ui_app
from secretary.web.listeners import Listener
from secretary.web.server import server_config
from tests.conftest import make_settings
from tests.helpers import FACES, SPEECH, free_port, running_server

# After the client leaves, the queue must be free within this many polls 0.1 s apart (10 s
# and more): the running step (a 30 s window of Whisper, a sentence, a frame) ends first.
# Measured 0.1 to 4 s on a busy 2-core machine; the whole jobs take 30 s and more (the
# transcription 40 s before).
FREED_WITHIN_POLLS = 100


def _wait_until_idle(url: str) -> int:
    """How many polls of ``/health`` it took until no job is in progress."""
    for polls in range(1, FREED_WITHIN_POLLS + 1):
        if httpx.get(f"{url}/health", timeout=5).json()["queue"]["in_progress"] == 0:
            return polls
        time.sleep(0.1)
    raise AssertionError(f"the job still ran {FREED_WITHIN_POLLS} polls after its client left")


def _give_up(send) -> None:
    with pytest.raises(httpx.ReadTimeout):
        send()


def _wav(samples: np.ndarray, rate: int) -> bytes:
    return audio.encode(samples, rate, "wav")


def test_transcription_stops_when_its_client_leaves(cache_dir: Path) -> None:
    clip = audio.decode(SPEECH / "en_jfk_ask_not.flac")
    long_speech = _wav(np.tile(clip.samples, 16), clip.sample_rate)  # about 3 minutes
    settings = make_settings(cache_dir, stt={"beam_size": 1})  # shorter steps on a slow CPU
    engine = WhisperEngine(settings.stt, ModelStore(settings.models_dir))
    with running_server(create_stt_app(settings, engine)) as url:
        _give_up(lambda: httpx.post(f"{url}/v1/audio/transcriptions", timeout=3,
                                    files={"file": ("long.wav", long_speech, "audio/wav")},
                                    # No temperature fallback: one window is one step.
                                    data={"language": "en", "temperature": "0"}))
        print(f"transcription freed after {_wait_until_idle(url)} polls")


def test_synthesis_stops_between_sentences(cache_dir: Path) -> None:
    settings = make_settings(cache_dir, tts={"max_text_chars": 20000})
    piper = PiperEngine([PIPER_PACKAGED_VOICE], ModelStore(settings.models_dir))
    text = " ".join(f"This is sentence number {i}, spoken slowly." for i in range(150))
    with running_server(create_tts_app(settings, {"piper": piper})) as url:
        _give_up(lambda: httpx.post(f"{url}/synthesize", timeout=2,
                                    json={"text": text, "language": "en"}))
        print(f"synthesis freed after {_wait_until_idle(url)} polls")


def test_animation_stops_between_frames(cache_dir: Path) -> None:
    settings = make_settings(cache_dir)
    engine = MeshWarpEngine(settings.avatar, FaceLandmarkerModel(settings.models_dir))
    clip = audio.decode(SPEECH / "en_jfk_ask_not.flac", 24000)
    speech = _wav(np.tile(clip.samples, 10)[: 24000 * 110], 24000)
    photo = (FACES / "pexels_woman_neutral.jpg").read_bytes()
    with running_server(create_avatar_app(settings, engine)) as url:
        _give_up(lambda: httpx.post(
            f"{url}/api/animate", timeout=3,
            files={"source_image": ("p.jpg", photo, "image/jpeg"),
                   "audio": ("a.wav", speech, "audio/wav")}, data={"size": "256"}))
        print(f"animation freed after {_wait_until_idle(url)} polls")


@contextmanager
def _server(app, **settings) -> Iterator[str]:
    """A server the way ``secretary serve`` runs one (with the header deadline)."""
    port = free_port()
    server = uvicorn.Server(server_config(app, Listener("127.0.0.1", port),
                                          log_level="warning", **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_dripping_headers_are_cut_off(cache_dir: Path) -> None:
    settings = make_settings(cache_dir)
    with _server(create_ui_app(settings), header_timeout=2.0) as url:
        port = int(url.rsplit(":", 1)[1])
        sockets = []
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sockets.append(sock)
        open_ones = list(sockets)
        # 16 rounds 0.5 s apart: 8 s and more, four times the 2 s header deadline.
        for _ in range(16):
            if not open_ones:
                break
            still = []
            for sock in open_ones:
                try:
                    sock.sendall(b"X-Drip: 1\r\n")
                    sock.settimeout(0.001)
                    if sock.recv(1) == b"":
                        continue  # closed by the server
                except (TimeoutError, BlockingIOError):
                    pass
                except OSError:
                    continue  # reset by the server
                still.append(sock)
            open_ones = still
            time.sleep(0.5)
        for sock in sockets:
            sock.close()
        assert not open_ones, f"{len(open_ones)} of 300 still open after 16 rounds"
        assert httpx.get(f"{url}/health").status_code == 200  # and it still serves


def test_a_stalled_body_gets_a_408(cache_dir: Path) -> None:
    settings = make_settings(cache_dir, body_timeout=1.0)
    with running_server(create_ui_app(settings)) as url:
        port = int(url.rsplit(":", 1)[1])
        # The socket's own timeout is the bound: ten times the 1 s body deadline. Without
        # the deadline the server would wait for the rest of the body, and recv would
        # raise TimeoutError.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /api/reply HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                         b'{"text": ')
            answer = sock.recv(65536)
            assert b" 408 " in answer.split(b"\r\n")[0], answer


SILENT_SECONDS = 5.0
DRIP_SECONDS = 0.2  # a byte every 0.2 s: ten bytes in the gateway's 2 s deadline
# Three times the deadline's worth of bytes: a gateway without a deadline reaches it.
DRIP_LIMIT = 30


def _hung_service() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        # Far past the gateway's 1 s, so its 504 comes first; short so the test ends soon.
        await asyncio.sleep(SILENT_SECONDS)
        return {}

    @app.get("/voices")
    async def drip() -> StreamingResponse:
        async def forever():
            while True:
                yield b"x"
                await asyncio.sleep(DRIP_SECONDS)

        return StreamingResponse(forever())

    return app


def test_the_gateway_gives_up_on_a_hung_service(cache_dir: Path) -> None:
    with running_server(_hung_service()) as hung:
        settings = make_settings(cache_dir)
        settings.ui = settings.ui.model_copy(update={
            "tts_url": hung, "upstream_timeout": 1.0, "upstream_deadline": 2.0})
        with running_server(create_ui_app(settings)) as url:
            # The service answers (200) after 5 s: a 504 is the gateway giving up first.
            silent = httpx.get(f"{url}/api/tts/health", timeout=30)
            assert silent.status_code == 504, silent.text
            assert silent.json()["error"]["code"] == "upstream_timeout"
            body = io.BytesIO()
            with pytest.raises(httpx.HTTPError), httpx.stream(
                    "GET", f"{url}/api/tts/voices", timeout=30) as dripping:
                for chunk in dripping.iter_raw():
                    body.write(chunk)
                    # Never ended: stop reading, and the missing HTTPError fails the test.
                    if len(body.getvalue()) >= DRIP_LIMIT:
                        break
            # Cut at the 2 s deadline: some bytes passed, far fewer than the limit.
            assert 0 < len(body.getvalue()) < DRIP_LIMIT
