"""The ``secretary`` command as a user runs it: real subprocesses, real ports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from secretary.launcher import SERVICES
from tests.helpers import SPEECH, child_environment, free_port, wait_for_health, wer

DEFAULT_SERVICES = [name for name, spec in SERVICES.items() if spec.default]

JFK = SPEECH / "en_jfk_ask_not.flac"
GERMAN = SPEECH / "de_thorsten_plan_geklappt.wav"


def _env(cache_dir: Path, **extra: str) -> dict[str, str]:
    env = child_environment()
    env.update({"SECRETARY_CACHE_DIR": str(cache_dir), "HF_HUB_OFFLINE": "1", **extra})
    return env


def _secretary(*args: str, env: dict[str, str], timeout: float = 300
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "secretary", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_transcribe_command_prints_subtitles(cache_dir: Path) -> None:
    result = _secretary("transcribe", str(JFK), str(GERMAN), "--format", "srt",
                        env=_env(cache_dir))
    assert result.returncode == 0, result.stderr
    assert "00:00:00,000 --> 00:00:11,000" in result.stdout
    assert "ask what you can do for your country" in result.stdout
    assert "Euer Plan hat ja toll geklappt." in result.stdout


def test_transcribe_command_writes_files_and_reports_bad_ones(cache_dir: Path,
                                                              tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not audio")
    result = _secretary("transcribe", str(GERMAN), str(bad), "--format", "verbose_json",
                        "--word-timestamps", "--output-dir", str(tmp_path / "out"),
                        env=_env(cache_dir))
    assert result.returncode == 1
    assert "notes.txt" in result.stderr and "could not read" in result.stderr
    body = json.loads((tmp_path / "out" / f"{GERMAN.stem}.json").read_text())
    assert body["language"] == "german" and body["words"][0]["word"] == "Euer"


def test_models_list(cache_dir: Path) -> None:
    result = _secretary("models", "list", env=_env(cache_dir))
    assert result.returncode == 0
    line = next(row for row in result.stdout.splitlines() if row.startswith("base "))
    assert line.split()[3] == "yes"  # the "here" column


def test_offline_model_pull_fails_clearly(cache_dir: Path) -> None:
    result = _secretary("models", "pull", "large-v3", env=_env(cache_dir))
    assert result.returncode == 2
    assert "secretary models pull large-v3" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_service_name(cache_dir: Path) -> None:
    result = _secretary("serve", "--only", "stt,coffee", env=_env(cache_dir))
    assert result.returncode == 2
    assert "coffee" in result.stderr and "stt" in result.stderr


def _serve(cache_dir: Path, only: str | None, ports: dict[str, int]) -> subprocess.Popen[str]:
    env = _env(cache_dir, **{f"SECRETARY_{name.upper()}_PORT": str(port)
                             for name, port in ports.items()})
    args = [sys.executable, "-m", "secretary", "serve"] + (["--only", only] if only else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        pytest.fail(f"serve did not stop on SIGTERM:\n{output}")
    assert process.returncode == 0, output
    return output


def test_serve_only_stt_answers_and_stops_cleanly(cache_dir: Path) -> None:
    port = free_port()
    process = _serve(cache_dir, "stt", {"stt": port})
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}", timeout=120)
        assert health["loaded"] is True and health["model"] == "base"
        with open(JFK, "rb") as f:
            response = httpx.post(f"http://127.0.0.1:{port}/v1/audio/transcriptions",
                                  files={"file": f}, data={"model": "whisper-1"}, timeout=120)
        assert response.status_code == 200
        reference = (SPEECH / "en_jfk_ask_not.txt").read_text()
        assert wer(reference, response.json()["text"], "en") < 0.1
    finally:
        _stop(process)


def test_serve_only_canary_without_weights_starts_and_says_what_to_do(cache_dir: Path
                                                                     ) -> None:
    """Offline, without the Canary weights (or without NeMo): the service still starts,
    and both /health and the Compose health check say why it cannot transcribe."""
    port = free_port()
    process = _serve(cache_dir, "canary", {"canary": port})
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}", timeout=180)
        assert health["service"] == "canary" and health["status"] == "model_unavailable"
        assert ("secretary models pull canary-1b" in health["error"]
                or "secretary[canary]" in health["error"])
        check = _secretary("health", "canary",
                           env=_env(cache_dir, SECRETARY_CANARY_PORT=str(port)))
        assert check.returncode == 1 and "canary: model_unavailable" in check.stdout
        stt = _secretary("health", "stt",
                         env=_env(cache_dir, SECRETARY_STT_PORT=str(free_port())))
        assert stt.returncode == 1 and "stt: unreachable" in stt.stdout
    finally:
        _stop(process)


@pytest.mark.slow
def test_serve_starts_every_service(cache_dir: Path) -> None:
    """One command brings up the whole stack, each service on its own port, offline."""
    # The UI's main port speaks HTTPS; its plain-HTTP loopback port (SECRETARY_UI_HTTP_PORT)
    # answers the same app.
    ports = {name: free_port() for name in (*DEFAULT_SERVICES, "ui_http")}
    process = _serve(cache_dir, None, ports)
    try:
        for name in DEFAULT_SERVICES:
            port = ports["ui_http" if name == "ui" else name]
            health = wait_for_health(f"http://127.0.0.1:{port}", timeout=180)
            assert health.get("service") == name, health
        # The HTTPS listener opens once the UI has loaded its in-process turn engines.
        https = wait_for_health(f"https://127.0.0.1:{ports['ui']}", timeout=180, verify=False)
        assert https["service"] == "ui"
        # The UI reaches the others on the ports they were given, with no address set.
        status = httpx.get(f"http://127.0.0.1:{ports['ui_http']}/api/status", timeout=30).json()
        assert {n: s["state"] for n, s in status["services"].items()} == {
            "stt": "up", "tts": "up", "avatar": "up"}, status
    finally:
        _stop(process)


def test_invalid_setting_is_reported_in_one_line(cache_dir: Path) -> None:
    result = _secretary("models", "list", env=_env(cache_dir, SECRETARY_STT_DEVICE="tpu"))
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr and "device" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_tts_routes_end_serve_with_one_line(cache_dir: Path) -> None:
    result = _secretary("serve", "--only", "tts",
                        env=_env(cache_dir, SECRETARY_TTS_ROUTES="en=festival"), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "SECRETARY_TTS_ROUTES" in lines[0] and "festival" in lines[0]
    assert "for example SECRETARY_TTS_ROUTES=" in lines[0]
    assert "Traceback" not in result.stderr
