"""``secretary serve --only wyoming`` as a user runs it: a real subprocess, real ports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from secretary.launcher import select_services
from tests.helpers import SPEECH, free_port, wait_for_health, wer
from tests.test_cli import _env, _stop
from tests.wyoming_api.client import describe, pcm16, run, synthesize, transcribe

JFK = SPEECH / "en_jfk_ask_not.flac"


def test_not_started_by_default() -> None:
    assert "wyoming" not in [spec.name for spec in select_services(None)]
    assert [spec.name for spec in select_services("wyoming")] == ["wyoming"]


def test_serve_only_wyoming(cache_dir: Path) -> None:
    http, stt, tts, handle = free_port(), free_port(), free_port(), free_port()
    env = _env(cache_dir, SECRETARY_WYOMING_PORT=str(http), SECRETARY_WYOMING_STT_PORT=str(stt),
               SECRETARY_WYOMING_TTS_PORT=str(tts), SECRETARY_WYOMING_HANDLE_PORT=str(handle))
    process = subprocess.Popen([sys.executable, "-m", "secretary", "serve", "--only", "wyoming"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        health = wait_for_health(f"http://127.0.0.1:{http}", timeout=180)
        assert health["service"] == "wyoming"
        assert health["stt"]["port"] == stt and health["tts"]["port"] == tts
        assert run(describe(stt)).asr[0].models[0].name == "base"
        assert "en_US-joe-medium" in {v.name for v in run(describe(tts)).tts[0].voices}
        heard = run(transcribe(stt, pcm16(JFK), "en"))
        reference = (SPEECH / "en_jfk_ask_not.txt").read_text()
        assert wer(reference, heard.event.data["text"], "en") < 0.1
        spoken = run(synthesize(tts, "Good morning."))
        assert spoken.types == ["audio-start", "audio-stop"] and len(spoken.pcm) > 10_000
    finally:
        output = _stop(process)
    assert "wyoming stt on tcp://127.0.0.1" in output


def test_bad_settings_end_serve_with_one_line(cache_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "secretary", "serve", "--only", "wyoming"],
        env=_env(cache_dir, SECRETARY_WYOMING_STT_PORT="10200",
                 SECRETARY_WYOMING_TTS_PORT="10200"),
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "SECRETARY_WYOMING_STT_PORT and _TTS_PORT must differ" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
