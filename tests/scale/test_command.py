"""``secretary serve --ray local``: a real command that starts Ray on this machine, deploys
the services, answers through Serve's proxy, and stops Ray when told to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers import SPEECH, child_environment, free_port


def test_serve_ray_local_deploys_answers_and_stops(cache_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = child_environment() | {"SECRETARY_CACHE_DIR": str(cache_dir),
                                 "SECRETARY_RAY_PORT": str(port),
                                 "RAY_USAGE_STATS_ENABLED": "0"}
    log = tmp_path / "serve.log"  # a file, not a pipe: Ray's logs would fill a pipe
    process = subprocess.Popen(
        [sys.executable, "-m", "secretary", "serve", "--ray", "local", "--only",
         "stt,tts,ui,calendar"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/stt/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("the services did not answer through the proxy")
        answer = httpx.post(f"{base}/stt/v1/audio/transcriptions", timeout=60, files={
            "file": ("a.wav", (SPEECH / "en_cmu_arctic_aew_a0001.wav").read_bytes(),
                     "audio/wav")})
        assert answer.status_code == 200 and "danger trail" in answer.json()["text"].lower()
        calendar = httpx.get(f"{base}/calendar/health", timeout=10)
        assert calendar.status_code == 200 and calendar.json()["service"] == "calendar"
        # The browser UI at the root, its gateway calling the others through the proxy.
        page = httpx.get(f"{base}/", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        services = httpx.get(f"{base}/api/status", timeout=30).json()["services"]
        for name in ("stt", "tts"):
            assert services[name]["state"] == "up", services
            assert services[name]["url"] == f"{base}/{name}"
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        # Ray went with it: nothing answers on the proxy's port.
        try:
            httpx.get(f"{base}/stt/health", timeout=2)
            raise AssertionError("the proxy still answers after the command ended")
        except httpx.HTTPError:
            pass
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def test_a_service_serve_cannot_carry_is_refused_at_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "secretary", "serve", "--ray", "--only", "wyoming"],
        env=child_environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "wyoming cannot run on Ray Serve" in result.stderr
