"""The same turn with every stage over HTTP: real speech-to-text, text-to-speech and avatar
services on their own ports, the UI server calling them (``SECRETARY_CONVERSATION_STAGES=
remote``)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from secretary.avatar.app import create_app as create_avatar_app
from secretary.stt.app import create_app as create_stt_app
from secretary.tts.app import create_app as create_tts_app
from secretary.ui.app import create_app as create_ui_app
from tests.conftest import make_settings
from tests.conversation.support import (
    TWO_SENTENCE_CLIPS,
    HoldingProxy,
    holding_proxy,
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
def speech_service(cache_dir: Path) -> Iterator[HoldingProxy]:
    """The text-to-speech service, reached through a proxy that can hold the end of each
    of its answers (the end of a sentence's synthesis) back."""
    with running_server(create_tts_app(make_settings(cache_dir))) as tts, \
            holding_proxy(tts) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def urls(cache_dir: Path, speech_service: HoldingProxy) -> Iterator[dict[str, str]]:
    settings = make_settings(cache_dir)
    with running_server(create_stt_app(settings)) as stt, \
            running_server(create_avatar_app(settings)) as avatar:
        ui_settings = make_settings(cache_dir)
        ui_settings.ui = ui_settings.ui.model_copy(
            update={"stt_url": stt, "tts_url": speech_service.url, "avatar_url": avatar})
        ui_settings.conversation = ui_settings.conversation.model_copy(
            update={"stages": "remote"})
        with running_server(create_ui_app(ui_settings)) as ui:
            yield {"ui": ui, "stt": stt, "tts": speech_service.upstream, "avatar": avatar}


def test_a_turn_over_http_streams_in_order(urls: dict[str, str],
                                           speech_service: HoldingProxy) -> None:
    wav, said = recording(*TWO_SENTENCE_CLIPS)

    def listen(event: dict[str, Any]) -> None:
        if event["type"] == "audio" and "first audio" not in hold.log:
            hold.note("first audio")
            hold.release()

    # Each sentence's synthesis passes on as the service sends it, but its end is held
    # until the listener has the first reply audio: a speech stage that waited for a
    # sentence's whole answer, or a turn that waited for the last sentence, would send the
    # first audio only after the proxy gave up holding.
    with speech_service.holding() as hold:
        events = turn_events(urls["ui"], wav, on_event=listen)
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["turn", "transcript"] and kinds[-1] == "done", kinds
    assert "error" not in kinds, events
    transcript = of_type(events, "transcript")[0]
    assert transcript["language"] == "en"
    assert wer(said, transcript["text"], "en") <= TRANSCRIPT_CEILING, transcript["text"]
    # Seconds of audio the service's Whisper read (content, not a clock): the fitted window
    # for a final, not the full 30 s one.
    assert transcript["window"] < 30

    sentences = of_type(events, "sentence")
    assert len(sentences) >= 2
    # One answer of the service per sentence, and the first audio reached the listener
    # before the first of them (so before the last) had ended.
    ended = [i for i, what in enumerate(hold.log) if what == "answer ended"]
    assert len(ended) == len(sentences), hold.log
    assert hold.log.index("first audio") < ended[0], hold.log

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


def test_remote_stages_present_the_api_key_the_services_ask_for(cache_dir: Path) -> None:
    """With SECRETARY_API_KEY set on every service, the UI's remote stages send the first
    key (a stage that sent none got a 401 from its service)."""
    keyed = make_settings(cache_dir, api_key="k1,k2")
    keyed.conversation = keyed.conversation.model_copy(update={"avatar": False})
    with running_server(create_stt_app(keyed)) as stt, \
            running_server(create_tts_app(keyed)) as tts:
        assert httpx.get(f"{stt}/v1/models", timeout=10).status_code == 401
        ui_settings = keyed.model_copy(deep=True)
        ui_settings.ui = ui_settings.ui.model_copy(update={"stt_url": stt, "tts_url": tts})
        ui_settings.conversation = ui_settings.conversation.model_copy(
            update={"stages": "remote"})
        with running_server(create_ui_app(ui_settings)) as ui:
            wav, said = recording(TWO_SENTENCE_CLIPS[0])
            events = turn_events(ui, wav, headers={"Authorization": "Bearer k2"})
    kinds = [e["type"] for e in events]
    assert "error" not in kinds, events
    assert wer(said, of_type(events, "transcript")[0]["text"], "en") <= TRANSCRIPT_CEILING
    assert reply_audio(events).duration > 1
