"""The same turn with every stage over HTTP: real speech-to-text, text-to-speech and avatar
services on their own ports, the UI server calling them (``SECRETARY_CONVERSATION_STAGES=
remote``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from secretary.avatar.app import create_app as create_avatar_app
from secretary.stt.app import create_app as create_stt_app
from secretary.tts.app import create_app as create_tts_app
from secretary.ui.app import create_app as create_ui_app
from tests.conftest import make_settings
from tests.conversation.support import (
    TWO_SENTENCE_CLIPS,
    of_type,
    recording,
    reply_audio,
    turn_events,
)
from tests.helpers import FACES, running_server, wer

# Same clips and ceilings as in-process (tests/conversation/test_turn.py): the service
# decodes the same 16-bit samples in the same fitted window.
TRANSCRIPT_CEILING = 0.12
READ_BACK_CEILING = 0.32


@pytest.fixture(scope="module")
def urls(cache_dir: Path) -> Iterator[dict[str, str]]:
    settings = make_settings(cache_dir)
    with running_server(create_stt_app(settings)) as stt, \
            running_server(create_tts_app(settings)) as tts, \
            running_server(create_avatar_app(settings)) as avatar:
        ui_settings = make_settings(cache_dir)
        ui_settings.ui = ui_settings.ui.model_copy(
            update={"stt_url": stt, "tts_url": tts, "avatar_url": avatar})
        ui_settings.conversation = ui_settings.conversation.model_copy(
            update={"stages": "remote"})
        with running_server(create_ui_app(ui_settings)) as ui:
            yield {"ui": ui, "stt": stt, "tts": tts, "avatar": avatar}


def test_a_turn_over_http_streams_in_order(urls: dict[str, str]) -> None:
    wav, said = recording(*TWO_SENTENCE_CLIPS)
    events = turn_events(urls["ui"], wav)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["turn", "transcript"] and kinds[-1] == "done", kinds
    assert "error" not in kinds, events
    transcript = of_type(events, "transcript")[0]
    assert transcript["language"] == "en"
    assert wer(said, transcript["text"], "en") <= TRANSCRIPT_CEILING, transcript["text"]
    assert transcript["window"] < 30  # the service's fitted window for a final

    sentences = of_type(events, "sentence")
    assert len(sentences) >= 2
    first_of_last = next(i for i, e in enumerate(events)
                         if e["type"] == "audio" and e["sentence"] == sentences[-1]["index"])
    assert kinds.index("audio") < first_of_last

    spoken = reply_audio(events)
    heard = httpx.post(f"{urls['stt']}/transcribe", timeout=120, data={"language": "en"},
                       files={"file": ("reply.mp3", _mp3(events))}).json()
    reply = of_type(events, "reply")[-1]["text"]
    assert wer(reply, heard["text"], "en") <= READ_BACK_CEILING, heard["text"]
    assert spoken.duration > 3

    frames = of_type(events, "frame")
    assert len(frames) >= 20 and frames[0]["time"] == 0.0
    assert events[-1]["outcome"] == "completed"


def test_a_portrait_without_a_face_is_refused_by_the_remote_avatar(
        urls: dict[str, str]) -> None:
    answer = httpx.post(f"{urls['ui']}/api/portrait", timeout=60, files={
        "image": ("cup.png", (FACES / "noface_coffee_cup.png").read_bytes())})
    assert answer.status_code == 422, answer.text
    assert "face" in answer.json()["error"]["message"]


def _mp3(events: list[dict]) -> bytes:
    return b"".join(base64.b64decode(e["data"]) for e in of_type(events, "audio"))
