"""The telephone service as users start it (``secretary serve --only phone``), in a process
of its own (one SIP endpoint per process), with its settings as ``SECRETARY_*`` variables."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import stop_process


def read_back_settings(port: int, more: dict[str, str] | None = None) -> dict[str, str]:
    """The settings of a telephone on 127.0.0.1:``port`` (SIP) that reads the caller's
    words back in English Piper, decoded deterministically, with no face: the tests' and
    the benchmark's; ``more`` adds to them or changes them."""
    return {
        "conversation.brain": "echo", "conversation.avatar": "false",
        "realtime.face": "false", "tts.piper_noise_w": "0", "tts.piper_noise_scale": "0",
        "phone.port": str(port), "phone.rtp_port": str(20000 + port % 20000),
        "phone.answer_delay_s": "0.2",
    } | (more or {})


class PhoneProcess:
    """Started with ``settings`` (``group.name``: value, e.g. ``phone.registrar``) over
    the environment's, and ready once its /health answers."""

    def __init__(self, settings: dict[str, str], folder: Path, http_port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECRETARY_")}
        env.update({"SECRETARY_" + key.replace(".", "_").upper(): value
                    for key, value in settings.items()})
        env["SECRETARY_PHONE_HTTP_PORT"] = str(http_port)
        self.url = f"http://127.0.0.1:{http_port}"
        self.log_path = folder / f"phone-{http_port}.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "secretary", "serve", "--only", "phone",
                 "--single-process"], env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> dict:
        """Its /health once it answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the telephone exited: {self.log()[-3000:]}")
            try:
                answer = httpx.get(f"{self.url}/health", timeout=2)
                if answer.status_code == 200:
                    return answer.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the telephone did not answer /health: {self.log()[-3000:]}")

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def cpu_seconds(self) -> float:
        """The process's CPU time so far (user + system, every thread)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        stop_process(self.process)
