"""One reply pipeline, three users, one test body: a reply cancelled while it plays stops
its speech (and face) at once and keeps only what was heard, whether it is a browser turn
(``POST /api/turn`` then ``/interrupt``), a Realtime API response over WebSocket
(``response.cancel``) or over WebRTC (``response.cancel`` on the data channel).

All three run on ONE pipeline (Whisper base, the read-back brain, Piper, the mesh-warp
face), whose speaker and face are watched from the inside: each records the work it still
does after the reply's cancellation reached it (a sentence begun, audio or a frame made).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.runner import Pipeline
from secretary.conversation.service import ConversationService
from secretary.conversation.stages import Cancel, Frame, Look, Speaker, Speech
from secretary.realtime.app import create_app as create_realtime_app
from secretary.realtime.service import RealtimeService
from secretary.ui.app import create_app as create_ui_app
from tests.conftest import make_settings, same_speech_every_run
from tests.conversation.support import PORTRAIT, TWO_SENTENCE_CLIPS, of_type, recording
from tests.helpers import running_server
from tests.realtime.rtc import ClipTrack, frames, offer, record_events
from tests.realtime.support import ask, connect
from tests.realtime.support import collect as events_until

LONG_REPLY = ("The first train leaves at six in the morning. The second one leaves at seven "
              "in the morning. The third one leaves at eight. The last one leaves at nine.")
FIRST_SENTENCE = "The first train leaves at six in the morning."


@dataclass
class Watch:
    """What the pipeline did after a cancellation had reached it."""

    late: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.late.clear()


class WatchedSpeaker:
    def __init__(self, speaker: Speaker, watch: Watch) -> None:
        self.speaker, self.watch = speaker, watch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.speaker, name)

    async def speak(self, text: str, language: str, voice: str | None,
                    cancel: Cancel) -> AsyncIterator[tuple[np.ndarray, int]]:
        if cancel:
            self.watch.late.append(f"a sentence begun: {text!r}")
        async for piece in self.speaker.speak(text, language, voice, cancel):
            if cancel:
                self.watch.late.append("audio")
            yield piece


class WatchedAnimator:
    def __init__(self, animator: Any, watch: Watch) -> None:
        self.animator, self.watch = animator, watch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.animator, name)

    async def frames(self, look: Look, speech: Speech, cancel: Cancel
                     ) -> AsyncIterator[Frame]:
        if cancel:
            self.watch.late.append("a face begun")
        async for frame in self.animator.frames(look, speech, cancel):
            if cancel:
                self.watch.late.append("frame")
            yield frame


@dataclass
class Outcome:
    status: str  # how the reply ended: cancelled
    kept: str  # the reply as the history keeps it
    first_sentence: str  # the reply's first sentence as it was spoken


@pytest.fixture(scope="module")
def pipeline_and_watch(cache_dir: Path) -> tuple[Pipeline, Watch, Any]:
    settings = make_settings(cache_dir)
    same_speech_every_run(settings)
    settings.realtime.max_sessions = 2
    service = ConversationService(settings, TurnMetrics(), PORTRAIT.read_bytes())
    service.load()
    watch = Watch()
    pipeline = service.pipeline
    pipeline.speaker = WatchedSpeaker(pipeline.speaker, watch)
    assert pipeline.animator is not None
    pipeline.animator = WatchedAnimator(pipeline.animator, watch)
    return pipeline, watch, service


@pytest.fixture(scope="module")
def urls(pipeline_and_watch: tuple[Pipeline, Watch, Any]) -> Iterator[dict[str, str]]:
    pipeline, _, conversation = pipeline_and_watch
    realtime = RealtimeService(conversation.settings, pipeline=pipeline)
    realtime.load()
    with running_server(create_ui_app(conversation.settings, conversation=conversation)) as ui, \
            running_server(create_realtime_app(service=realtime)) as live:
        yield {"ui": ui, "realtime": live, "_service": realtime}  # type: ignore[dict-item]


async def browser_turn(urls: dict[str, Any], pipeline: Pipeline) -> Outcome:
    """The page's Talk mode: the recording, then Stop once half a second was heard."""
    wav, _ = recording("en_jfk_ask_not.flac", *TWO_SENTENCE_CLIPS)
    events: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=120) as client, client.stream(
            "POST", f"{urls['ui']}/api/turn", files={"audio": ("s.wav", wav)},
            data={"session": "cancel-turn"}) as answer:
        turn_id = answer.headers["x-turn-id"]
        async for line in answer.aiter_lines():
            if not line.strip():
                continue
            events.append(json.loads(line))
            if events[-1]["type"] == "frame" and len(of_type(events, "frame")) == 1:
                stopped = await client.post(f"{urls['ui']}/api/turn/{turn_id}/interrupt",
                                            json={"played": 0.5})
                assert stopped.status_code == 200, stopped.text
    done = events[-1]
    transcript = of_type(events, "transcript")[0]["text"]
    history = pipeline.brain.history.get("cancel-turn")  # type: ignore[attr-defined]
    assert history and history[-1][0] == transcript
    return Outcome(done["outcome"], history[-1][1], of_type(events, "sentence")[0]["text"])


async def realtime_websocket(urls: dict[str, Any], pipeline: Pipeline) -> Outcome:
    """The Realtime API over WebSocket: a typed question, cancelled half a second into
    the answer's audio."""
    async with connect(urls["realtime"]) as connection:
        created = await events_until(connection, "session.created")
        session_id = created[-1].session.id
        await ask(connection, LONG_REPLY)
        events: list[Any] = []
        while len(of_type_ws(events, "response.output_audio.delta")) < 5:  # 0.5 s sent
            await events_until(connection, "response.output_audio.delta", events=events)
        await connection.response.cancel()
        events = await events_until(connection, "response.done", events=events)
    done = events[-1].response
    history = pipeline.brain.history.get(session_id)  # type: ignore[attr-defined]
    assert history and history[-1][0] == LONG_REPLY
    return Outcome(done.status, history[-1][1], FIRST_SENTENCE)


def of_type_ws(events: list[Any], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]


async def realtime_webrtc(urls: dict[str, Any], pipeline: Pipeline) -> Outcome:
    """Live mode's call: a typed question on the data channel, cancelled once half a
    second of the answer's sound came on the audio track."""
    pc = RTCPeerConnection()
    events: list[dict[str, Any]] = []
    channel = pc.createDataChannel("oai-events")
    done = record_events(channel, events)
    heard = asyncio.Event()

    @channel.on("open")
    def on_open() -> None:
        channel.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": LONG_REPLY}]}}))
        channel.send(json.dumps({"type": "response.create"}))

    async def read(track: Any) -> None:
        loud = 0
        async for frame in frames(track):
            if track.kind != "audio":
                continue
            data = frame.to_ndarray().astype(np.float32) / 32768.0
            loud += float(np.sqrt(np.mean(data ** 2))) > 0.01
            if loud == 25 and not heard.is_set():  # 0.5 s of the answer's sound
                heard.set()
                channel.send(json.dumps({"type": "response.cancel"}))

    readers: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: readers.append(asyncio.create_task(read(track))))
    pc.addTrack(ClipTrack(np.zeros(16000, np.float32)))  # a microphone that stays quiet
    answer = await offer(pc, f"{urls['realtime']}/v1/realtime/calls")
    assert answer.status_code == 201, answer.text
    try:
        await asyncio.wait_for(done.wait(), 90)
    finally:
        await pc.close()
        for reader in readers:
            reader.cancel()
    response = next(e for e in events if e["type"] == "response.done")["response"]
    session_id = next(e for e in events if e["type"] == "session.created")["session"]["id"]
    history = pipeline.brain.history.get(session_id)  # type: ignore[attr-defined]
    assert history and history[-1][0] == LONG_REPLY
    return Outcome(response["status"], history[-1][1], FIRST_SENTENCE)


Driver = Callable[[dict[str, Any], Pipeline], Awaitable[Outcome]]


@pytest.mark.parametrize("driver", [browser_turn, realtime_websocket, realtime_webrtc],
                         ids=["browser-turn", "realtime-websocket", "realtime-webrtc"])
async def test_a_cancelled_reply_stops_at_once_and_keeps_what_was_heard(
        driver: Driver, urls: dict[str, Any],
        pipeline_and_watch: tuple[Pipeline, Watch, Any]) -> None:
    pipeline, watch, _ = pipeline_and_watch
    watch.clear()
    outcome = await driver(urls, pipeline)
    await asyncio.sleep(1.0)  # room for any work that would wrongly go on
    assert outcome.status == "cancelled", outcome
    # Nothing begun after the cancellation reached the pipeline; the piece in the engine's
    # hands at that moment may finish (its output is dropped), no more.
    assert not [w for w in watch.late if "begun" in w], watch.late
    assert watch.late.count("audio") <= 1 and watch.late.count("frame") <= 1, watch.late
    # Half a second was heard: the history keeps the first sentence, no more.
    assert outcome.kept == outcome.first_sentence, outcome
