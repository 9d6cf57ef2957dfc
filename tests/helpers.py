"""Test helpers shared by every capability: real servers, data files, word error rate."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import jiwer
import numpy as np
import pytest
import uvicorn
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

DATA = Path(__file__).parent / "data"
SPEECH = DATA / "speech"
FACES = DATA / "faces"

_english = EnglishTextNormalizer()
_basic = BasicTextNormalizer()


def speech_clips(lang: str | None = None) -> list[Path]:
    clips = sorted(p for p in SPEECH.iterdir() if p.suffix in (".wav", ".flac"))
    return [p for p in clips if lang is None or p.name.startswith(f"{lang}_")]


def reference_text(clip: Path) -> str:
    return clip.with_suffix(".txt").read_text(encoding="utf-8").strip()


def clip_language(clip: Path) -> str:
    return clip.name.split("_", 1)[0]


def needs(available: bool, resource: str) -> pytest.MarkDecorator:
    """Skip where ``resource`` is missing on a developer's machine. CI installs every such
    resource (``scripts/test.sh``), so under CI the test always runs, and a missing resource
    fails it instead of hiding behind a skip."""
    return pytest.mark.skipif(
        not available and not os.environ.get("CI"),
        reason=f"needs {resource} (CI installs it, and there the test runs)",
    )


def expected_device_and_compute_type() -> tuple[str, str]:
    """What Whisper should run on with the default settings (device and compute type
    "auto"/"default"): float16 on a GPU that CTranslate2 can use, int8 on the CPU. Written
    here rather than read from the code under test, so the suite holds on both."""
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        return "cuda", "float16"
    return "cpu", "int8"


def normalize(text: str, language: str) -> str:
    """Whisper's own normalisers: the English one for English, the basic one otherwise."""
    return (_english if language == "en" else _basic)(text).strip()


def wer(reference: str, hypothesis: str, language: str) -> float:
    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    return jiwer.wer(ref, hyp)


def median_pitch(samples: np.ndarray, rate: int) -> float:
    """The voice's median fundamental frequency in Hz, by autocorrelation over the louder
    40 ms frames (60 to 400 Hz, clearly periodic frames only). Speech resampled to play
    twice as fast measures twice the pitch; speech slowed by its engine measures the same."""
    frame, lowest_lag, highest_lag = int(0.04 * rate), int(rate / 400), int(rate / 60)
    overall = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    pitches = []
    for start in range(0, len(samples) - frame, frame // 2):
        window = samples[start:start + frame].astype(np.float64)
        window -= window.mean()
        if np.sqrt(np.mean(window**2)) < 0.5 * overall:
            continue
        correlation = np.correlate(window, window, "full")[frame - 1:]
        if correlation[0] <= 0:
            continue
        lag = lowest_lag + int(np.argmax(correlation[lowest_lag:highest_lag]))
        if correlation[lag] / correlation[0] > 0.5:
            pitches.append(rate / lag)
    if len(pitches) < 10:
        raise AssertionError(f"only {len(pitches)} voiced frames: is this speech?")
    return float(np.median(pitches))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(app, *, startup_timeout: float = 120.0) -> Iterator[str]:
    """Serve ``app`` with a real uvicorn server on a free loopback port; yield its URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("test server failed to start")
        if time.monotonic() > deadline:
            raise TimeoutError("test server did not start in time")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_for_health(url: str, timeout: float = 120.0, verify: bool = True) -> dict:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/health", timeout=5, verify=verify)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError as exc:
            last_error = exc
        time.sleep(0.25)
    raise TimeoutError(f"{url}/health did not answer: {last_error}")


def requests_counted(metrics: str, route: str, status: str) -> float:
    """The request counter of a service's ``/metrics`` text for one route and status."""
    import re

    for line in metrics.splitlines():
        if not line.startswith("secretary_http_requests_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.index("}")]))
        if labels.get("route") == route and labels.get("status") == status:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class EngineProxy:
    """A real engine with a few methods overridden by a test: everything a subclass does
    not define is the engine's own."""

    def __init__(self, engine: object) -> None:
        self._engine = engine
        self.name = engine.name  # type: ignore[attr-defined]

    def __getattr__(self, name: str):
        if name == "_engine":  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self._engine, name)


def silent_hours_flac() -> bytes:
    """Four hours of silence as 8 kHz FLAC: about 2.7 MB (an audio bomb)."""
    out = io.BytesIO()
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=8000)
        stream.layout = "mono"
        minute = np.zeros((1, 8000 * 60), np.int16)
        for index in range(240):
            frame = av.AudioFrame.from_ndarray(minute, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 8000, index * minute.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


# What tests/conftest.py sets for every test and a child process must keep: the tests'
# own data folder, and the transcript read back unless a test asks for the skills.
_TEST_ENVIRONMENT = ("SECRETARY_DATA_DIR", "SECRETARY_CONVERSATION_BRAIN")


def child_environment() -> dict[str, str]:
    """The environment for a ``secretary`` child process: no developer's SECRETARY_*
    settings, but the test run's own."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SECRETARY_") or k in _TEST_ENVIRONMENT}


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Ends a child process the tests started: asked first, killed if it does not go."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
