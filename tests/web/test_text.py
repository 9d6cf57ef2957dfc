"""Odd text gets a 400 that names the character, never a 500 from an engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from secretary.catalog import ModelStore
from secretary.tts.app import create_app as create_tts_app
from secretary.tts.espeak import EspeakEngine
from secretary.tts.models import PIPER_PACKAGED_VOICE
from secretary.tts.piper import PiperEngine
from secretary.ui.app import create_app as create_ui_app
from tests.conftest import make_settings
from tests.helpers import running_server


@pytest.fixture(scope="module")
def tts_url(cache_dir: Path) -> Iterator[str]:
    settings = make_settings(cache_dir)  # English through Piper, the rest through eSpeak
    piper = PiperEngine([PIPER_PACKAGED_VOICE], ModelStore(settings.models_dir))
    espeak = EspeakEngine()
    with running_server(create_tts_app(settings, {"piper": piper, "espeak": espeak})) as url:
        yield url


def _post(url: str, body: dict) -> httpx.Response:
    # json.dumps writes a lone surrogate as the \ud800 escape, as a client's JSON would.
    return httpx.post(url, content=json.dumps(body), timeout=60,
                      headers={"content-type": "application/json"})


@pytest.mark.parametrize(("text", "named"), [
    ("Hello\x00 world.", "U+0000 (NUL)"),
    ("Hello \ud800 world.", "U+D800"),
    ("Hello \udfff", "U+DFFF"),
    ("Ring \x07 the bell.", "U+0007"),
    ("Escape \x1b[31m red.", "U+001B (ESC)"),
    ("Delete \x7f this.", "U+007F (DEL)"),
])
@pytest.mark.parametrize("language", ["en", "de"])  # Piper and eSpeak
def test_synthesize_names_the_character(tts_url: str, text: str, named: str,
                                        language: str) -> None:
    answer = _post(f"{tts_url}/synthesize", {"text": text, "language": language})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert named in error["message"] and error["param"] == "text"


def test_openai_speech_and_odd_voice_names(tts_url: str) -> None:
    answer = _post(f"{tts_url}/v1/audio/speech",
                   {"model": "tts-1", "voice": "alloy", "input": "Hi\x00"})
    assert answer.status_code == 400 and "U+0000" in answer.json()["error"]["message"]
    odd_voice = _post(f"{tts_url}/v1/audio/speech",
                      {"model": "tts-1", "voice": "\ud800", "input": "Hello."})
    assert 400 <= odd_voice.status_code < 500, odd_voice.text
    fine = _post(f"{tts_url}/synthesize", {"text": "Tabs\tand\nnew lines are fine."})
    assert fine.status_code == 200


def test_reply_names_the_character(cache_dir: Path) -> None:
    with running_server(create_ui_app(make_settings(cache_dir))) as url:
        answer = _post(f"{url}/api/reply", {"text": "hi \ud83d there"})
        assert answer.status_code == 400 and "U+D83D" in answer.json()["error"]["message"]
        history = _post(f"{url}/api/reply", {"text": "hi", "history": [
            {"role": "user", "content": "fine"}, {"role": "assistant", "content": "a\x00b"}]})
        assert history.status_code == 400
        assert history.json()["error"]["param"] == "history.1.content"
        assert _post(f"{url}/api/reply", {"text": "hi \U0001f600"}).status_code == 200
