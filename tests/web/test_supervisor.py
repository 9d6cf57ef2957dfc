"""``secretary serve`` runs each service in its own supervised process: a killed service
comes back (and the log says so) while the others keep answering, and a service whose
process is stuck does not delay another's ``/health``. How quickly the others answer
meanwhile is measured by ``bench/responsiveness.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from tests.helpers import child_environment, free_port, wait_for_health

# A /health request that takes longer than this counts as the UI stalling. Time is the
# behaviour here (one service keeps answering while another is frozen): answers take
# milliseconds, so the bound is generous enough for any loaded machine, and the avatar
# stays frozen for longer than it, so a UI that waited on the avatar would miss it.
HEALTH_TIMEOUT = 5.0
FROZEN_SECONDS = 8.0


def _child(parent: psutil.Process, name: str) -> psutil.Process:
    for _ in range(300):  # the supervisor starts it within a few polls; 30 s at most
        for child in parent.children():
            if name in child.cmdline():
                return child
        time.sleep(0.1)
    raise AssertionError(f"no child process serves {name}")


def test_killed_service_restarts_and_others_keep_answering(cache_dir: Path) -> None:
    ports = {"ui": free_port(), "avatar": free_port()}
    env = child_environment()
    env |= {"SECRETARY_CACHE_DIR": str(cache_dir), "SECRETARY_UI_TLS": "false",
            "SECRETARY_UI_PORT": str(ports["ui"]), "SECRETARY_AVATAR_PORT": str(ports["avatar"]),
            "SECRETARY_AVATAR_PRELOAD": "false", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-m", "secretary", "serve", "--only", "ui,avatar"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    ui, avatar = (f"http://127.0.0.1:{ports[n]}" for n in ("ui", "avatar"))
    output = ""
    try:
        wait_for_health(ui, timeout=120)
        wait_for_health(avatar, timeout=120)
        supervisor = psutil.Process(process.pid)
        first = _child(supervisor, "avatar")
        assert first.pid != process.pid  # a process of its own

        # The UI answers all along while the avatar is killed and comes back. The poller's
        # thread only records; the test's thread asserts.
        answered: list[int] = []
        failures: list[str] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                try:
                    answered.append(
                        httpx.get(f"{ui}/health", timeout=HEALTH_TIMEOUT).status_code)
                except httpx.HTTPError as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.05)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            first.kill()
            wait_for_health(avatar, timeout=120)
            second = _child(supervisor, "avatar")
            assert second.pid != first.pid

            # A stuck service (its whole process stopped, as a loop blocked for good would
            # be) does not delay the other's answers: the UI goes on answering meanwhile.
            second.send_signal(signal.SIGSTOP)
            before_freeze = len(answered)
            time.sleep(FROZEN_SECONDS)
            during_freeze = len(answered) - before_freeze
            second.send_signal(signal.SIGCONT)
        finally:
            done.set()
            poller.join()
        assert not failures, failures
        assert set(answered) == {200}, answered
        # A poll every 0.05 s: some 100 answers in those seconds when nothing waits on the
        # frozen service, none when the UI stalls with it.
        assert during_freeze >= 5, during_freeze
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert process.returncode == 0, output
    assert "service avatar" in output and "SIGKILL" in output and "restarting" in output, output
