"""Small uploads that would cost gigabytes are refused before they are decoded, and the
server's memory barely moves.

The reproducers: a 2.7 MB FLAC of four hours of silence (decoded in full it is gigabytes of
samples), an 875 KB PNG of 30000x30000 pixels (2.7 GB once decoded), a PNG header that
claims 65535x65535, and a 99 MB JSON body. The server runs in this process; a sampler
thread records the process's peak RSS while each request runs. How long a refusal takes is
measured by ``bench/responsiveness.py``.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from secretary.avatar.app import create_app as create_avatar_app
from secretary.avatar.meshwarp import MeshWarpEngine
from secretary.avatar.models import FaceLandmarkerModel
from secretary.catalog import ModelStore
from secretary.stt.app import create_app as create_stt_app
from secretary.stt.whisper import WhisperEngine
from secretary.tts.app import create_app as create_tts_app
from secretary.tts.espeak import EspeakEngine
from secretary.ui.app import create_app as create_ui_app
from tests.conftest import make_settings
from tests.helpers import FACES, running_server, silent_hours_flac

# Peak growth allowed while a bomb is refused. Measured: 0 to 94 MB (the 99 MB JSON body is
# the test client's own, in this process; the rest the refused body's
# buffers); decoded in full the same files took 2.5 to 3.9 GB.
MAX_GROWTH_MB = 200
# A /health request that takes longer than this while a bomb is refused counts as the
# service stalling. Time is the behaviour here (the event loop keeps serving), so the
# bound is generous: answers take milliseconds, and parsing the 99 MB body on the loop
# would stall it for seconds; a loaded 2-core machine never takes this long.
HEALTH_TIMEOUT = 5.0


@pytest.fixture(scope="module")
def silent_hours() -> bytes:
    return silent_hours_flac()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _png(width: int, height: int, rows: int) -> bytes:
    """A grayscale PNG of ``width`` x ``height`` whose data holds ``rows`` black rows."""
    packer = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    data = b"".join(packer.compress(row) for _ in range(rows)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n"
            + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    return _png(30000, 30000, 30000)  # about 875 KB


@contextmanager
def peak_growth_mb() -> Iterator[list[float]]:
    """Yields a list that holds, afterwards, the peak RSS growth (MB) of this process."""
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    result: list[float] = []
    try:
        yield result
    finally:
        running = False
        thread.join()
        result.append((peak - baseline) / 2**20)


def _refused(send, status: int) -> httpx.Response:
    with peak_growth_mb() as growth:
        answer = send()
    print(f"{answer.request.url.path}: {answer.status_code}, peak growth {growth[0]:.0f} MB")
    assert answer.status_code == status, answer.text[:300]
    assert answer.json()["error"]["message"]
    assert growth[0] < MAX_GROWTH_MB, f"the server grew by {growth[0]:.0f} MB"
    return answer


def test_hours_of_silence_to_transcribe(cache_dir: Path, silent_hours: bytes) -> None:
    settings = make_settings(cache_dir, stt={"max_audio_seconds": 600})
    engine = WhisperEngine(settings.stt, ModelStore(settings.models_dir))
    with running_server(create_stt_app(settings, engine)) as url:
        answer = _refused(lambda: httpx.post(
            f"{url}/v1/audio/transcriptions", timeout=60,
            files={"file": ("silence.flac", silent_hours, "audio/flac")}), 413)
        assert "600 s" in answer.json()["error"]["message"]
        assert httpx.get(f"{url}/health").json()["queue"]["in_progress"] == 0


def test_hours_of_silence_to_animate_and_a_huge_png(cache_dir: Path, silent_hours: bytes,
                                                     huge_png: bytes) -> None:
    settings = make_settings(cache_dir)
    engine = MeshWarpEngine(settings.avatar, FaceLandmarkerModel(settings.models_dir))
    photo = (FACES / "pexels_woman_neutral.jpg").read_bytes()
    with running_server(create_avatar_app(settings, engine)) as url:
        _refused(lambda: httpx.post(f"{url}/api/animate", timeout=60, files={
            "source_image": ("p.jpg", photo, "image/jpeg"),
            "audio": ("silence.flac", silent_hours, "audio/flac")}), 413)
        answer = _refused(lambda: httpx.post(f"{url}/api/render", timeout=60, files={
            "source_image": ("huge.png", huge_png, "image/png")}), 413)
        assert "900 megapixels" in answer.json()["error"]["message"]
        # A header claiming 65535x65535 over almost no data (OpenCV raised on it).
        claims = _png(65535, 65535, 1)
        _refused(lambda: httpx.post(f"{url}/api/render", timeout=60, files={
            "source_image": ("claims.png", claims, "image/png")}), 413)
        # Not an image at all, and a PNG cut short inside its header.
        for junk in (b"GIF89a" + b"\0" * 4, claims[:20]):
            bad = httpx.post(f"{url}/api/render", timeout=60,
                             files={"source_image": ("x.png", junk, "image/png")})
            assert bad.status_code == 415, bad.text


def test_hours_of_silence_as_a_voice_to_clone(cache_dir: Path, silent_hours: bytes) -> None:
    settings = make_settings(cache_dir, tts={"routes": "*=espeak"})
    engine = EspeakEngine()
    engine.load()
    with running_server(create_tts_app(settings, {"espeak": engine})) as url:
        _refused(lambda: httpx.post(
            f"{url}/synthesize-with-voice-clone", timeout=60, data={"text": "Hello there."},
            files={"speaker_audio": ("silence.flac", silent_hours, "audio/flac")}), 413)


def test_huge_json_is_refused_while_health_keeps_answering(cache_dir: Path) -> None:
    """99 MB of history to /api/reply: refused unread, and /health answers meanwhile."""
    history = b'{"role": "user", "content": "hi"},' * 3_000_000
    body = b'{"text": "hello", "history": [' + history[:-1] + b"]}"
    settings = make_settings(cache_dir)
    with running_server(create_ui_app(settings)) as url:
        # The poller's thread only records; the test's thread asserts (an assertion in
        # another thread would only print a warning).
        answered: list[int] = []
        failures: list[str] = []
        done = threading.Event()

        def poll() -> None:
            while True:
                try:
                    answered.append(httpx.get(f"{url}/health",
                                              timeout=HEALTH_TIMEOUT).status_code)
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                if done.is_set():
                    return
                time.sleep(0.02)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            answer = _refused(lambda: httpx.post(
                f"{url}/api/reply", content=body, timeout=60,
                headers={"content-type": "application/json"}), 413)
            # Without a length up front the body is counted as it comes and cut off.
            chunked = httpx.post(f"{url}/api/reply", content=iter([body[:2_000_000]]),
                                 headers={"content-type": "application/json"}, timeout=60)
            assert chunked.status_code == 413
        finally:
            done.set()
            poller.join()
        assert "not a file upload" in answer.json()["error"]["message"]
        assert not failures, failures
        assert answered and set(answered) == {200}, answered
