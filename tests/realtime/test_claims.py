"""The realtime service's README claims, each against a real server driven by the
``openai`` package's realtime client: the echo grace at the reply's start, a short
interruption that is not a backchannel, the buffer and item events, ``create_response`` and
``interrupt_response``, the partials' ``audio_end_ms`` and their dropping when the CPU falls
behind, and the session's limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from secretary.realtime.app import create_app
from secretary.realtime.partials import PartialTranscriber
from secretary.realtime.service import RealtimeService
from tests.helpers import SPEECH, reference_text, running_server, wer
from tests.realtime.conftest import realtime_settings
from tests.realtime.support import (
    ask,
    clip,
    connect,
    feed,
    feed_noting,
    of_type,
    reply_audio,
    silence,
    speech_only,
    synthesized,
    voiced,
)
from tests.realtime.support import collect as events_until
from tests.stt.test_accuracy import WER_CEILING

CLIP = "en_cheetah_platforms.wav"
QUILTER = "en_librispeech_1272-128104-0000_quilter.wav"
# About nine seconds of read-back reply: it is still playing when each test's user is done.
LONG_REPLY = ("The first train leaves at six in the morning. The second one leaves at seven "
              "in the morning. The third one leaves at eight. The last one leaves at nine.")


async def _session_id(connection: Any) -> str:
    return (await events_until(connection, "session.created"))[-1].session.id


async def _vad(connection: Any, **turn: object) -> None:
    await connection.session.update(session={"type": "realtime", "audio": {"input": {
        "turn_detection": {"type": "server_vad", **turn}}}})
    await events_until(connection, "session.updated")


async def _first_of(connection: Any, *kinds: str) -> Any:
    """The next event of one of ``kinds``."""
    async with asyncio.timeout(60):
        async for event in connection:
            if event.type in kinds:
                return event
    raise AssertionError(f"the connection closed before any of {kinds}")


def _history(service: RealtimeService, session_id: str) -> list[tuple[str, str]]:
    """The exchanges the brain keeps for the session (what a chat model is sent next)."""
    return service.pipeline.brain.history.get(session_id)


# ---------------------------------------------------------------------------- barge-in
async def test_speech_in_the_replys_first_moments_is_taken_for_echo(url: str) -> None:
    speech = speech_only(clip(CLIP))
    async with connect(url) as connection:
        await _session_id(connection)
        await ask(connection, LONG_REPLY)
        events = await events_until(connection, "response.output_audio.delta")
        # At once and fast: the VAD hears it begin well inside the reply's first 600 ms
        # (SECRETARY_REALTIME_BARGE_IN_GRACE_MS), and it is voiced for far longer than the
        # 500 ms that stops a reply.
        reader = asyncio.create_task(events_until(connection, "response.done", events=events))
        await feed(connection, speech, speed=4.0)
        await feed(connection, silence(0.8), speed=4.0)
        events = await reader
        kinds = [e.type for e in events]
        assert events[-1].response.status == "completed", events[-1].response.status_details
        assert "input_audio_buffer.speech_started" in kinds  # it was heard ...
        assert "input_audio_buffer.speech_stopped" in kinds
        # ... and dropped: no user item, no transcript, the reply played to its end.
        assert "input_audio_buffer.committed" not in kinds, kinds
        assert "conversation.item.input_audio_transcription.completed" not in kinds
        said = of_type(events, "response.output_audio_transcript.done")[0].transcript
        assert "nine" in said

        # The same speech a second into the reply stops it.
        await ask(connection, LONG_REPLY)
        events = await events_until(connection, "response.output_audio.delta")
        await feed(connection, silence(1.0))
        await feed(connection, speech, speed=4.0)
        events = await events_until(connection, "response.done", events=events)
        done = events[-1].response
        assert done.status == "cancelled" and done.status_details.reason == "turn_detected"


async def test_a_short_interruption_that_is_not_a_backchannel_stops_the_reply(
        url: str, service: RealtimeService) -> None:
    stop = await synthesized(service, "Stop!")
    async with connect(url) as connection:
        session_id = await _session_id(connection)
        await ask(connection, LONG_REPLY)
        events = await events_until(connection, "response.output_audio.delta")
        await feed(connection, silence(1.0))
        await feed(connection, stop)
        # Enough silence for the turn to end whatever the end-of-turn model makes of it.
        await feed(connection, silence(1.5))
        events = await events_until(connection, "response.done", events=events)
        done = events[-1].response
        # Then "Stop!" is the next turn, and its own reply plays to the end.
        events = await events_until(connection, "response.done", events=events)
        assert events[-1].response.status == "completed"
        kinds = [e.type for e in events]
        started = of_type(events, "input_audio_buffer.speech_started")
        stopped = of_type(events, "input_audio_buffer.speech_stopped")
        assert len(started) == 1 and len(stopped) == 1, kinds
        # Voiced for less than the 500 ms that stop a reply by their length: its transcript
        # decided (made in its first pause).
        assert stopped[0].audio_end_ms - started[0].audio_start_ms < 500
        assert done.status == "cancelled" and done.status_details.reason == "turn_detected"
        kept = of_type(events, "response.output_audio_transcript.done")[0].transcript
        assert kept.startswith("The first train leaves") and "nine" not in kept, kept

        # The history keeps the reply as far as it was heard.
        heard = of_type(events, "conversation.item.input_audio_transcription.completed")
        assert heard and "stop" in heard[-1].transcript.lower()
        assert _history(service, session_id)[0] == (LONG_REPLY, kept)


# ---------------------------------------------------------------------- client events
async def test_input_audio_buffer_clear_drops_the_audio(url: str) -> None:
    async with connect(url) as connection:
        await _session_id(connection)
        await connection.session.update(session={
            "type": "realtime", "audio": {"input": {"turn_detection": None}}})
        await events_until(connection, "session.updated")
        dropped = "en_cmu_arctic_aew_a0003.wav"  # "... the two men shook hands."
        await feed(connection, clip(dropped), speed=20.0)
        await connection.input_audio_buffer.clear()
        await events_until(connection, "input_audio_buffer.cleared")
        await connection.input_audio_buffer.commit()
        answer = await _first_of(connection, "error", "input_audio_buffer.committed")
        assert answer.type == "error", answer.type
        assert answer.error.code == "input_audio_buffer_commit_empty"

        # Audio appended before a clear is not in the next commit's transcript.
        await feed(connection, clip(dropped), speed=20.0)
        await connection.input_audio_buffer.clear()
        await feed(connection, clip(CLIP), speed=20.0)
        await connection.input_audio_buffer.commit()
        events = await events_until(
            connection, "conversation.item.input_audio_transcription.completed")
        transcript = events[-1].transcript
        assert wer(reference_text(SPEECH / CLIP), transcript, "en") <= WER_CEILING[CLIP]
        assert "hands" not in transcript.lower(), transcript


async def test_item_truncate_keeps_only_what_was_heard(url: str,
                                                      service: RealtimeService) -> None:
    first = "The first train leaves at six in the morning."
    text = f"{first} The last one leaves at nine."
    async with connect(url) as connection:
        session_id = await _session_id(connection)
        await ask(connection, text)
        events = await events_until(connection, "response.done")
        assert events[-1].response.status == "completed"
        item = of_type(events, "response.output_item.done")[0].item
        assert _history(service, session_id) == [(text, text)]
        # Where the second sentence begins in the reply's audio: its transcript delta comes
        # after all of the first sentence's audio.
        second = next(i for i, e in enumerate(events)
                      if e.type == "response.output_audio_transcript.delta"
                      and "nine" in e.delta)
        boundary_ms = len(reply_audio(events[:second])) * 1000 // 24000
        assert boundary_ms > 1000

        # The client played the first half of the first sentence, then stopped.
        await connection.conversation.item.truncate(item_id=item.id, content_index=0,
                                                    audio_end_ms=boundary_ms // 2)
        events = await events_until(connection, "conversation.item.truncated")
        assert events[-1].item_id == item.id and events[-1].audio_end_ms == boundary_ms // 2
        stored = next(i for i in service.leases[session_id].session.items
                      if i["id"] == item.id)
        assert stored["content"][0]["transcript"] == first
        # The next turn's context (what a chat model is sent) holds only what was heard.
        assert _history(service, session_id) == [(text, first)]


async def test_output_audio_buffer_clear_stops_the_reply(url: str) -> None:
    async with connect(url) as connection:
        await _session_id(connection)
        await ask(connection, LONG_REPLY)
        events = await events_until(connection, "response.output_audio.delta")
        await connection.output_audio_buffer.clear()
        events = await events_until(connection, "response.done", events=events)
        done = events[-1].response
        assert done.status == "cancelled"
        assert done.status_details.reason == "client_cancelled"
        kept = of_type(events, "response.output_audio_transcript.done")[0].transcript
        assert "nine" not in kept
        # Stopped within its first sentence or two, not at its end (about nine seconds).
        assert len(reply_audio(events)) / 24000 < 5.0


# ---------------------------------------------------------------------- turn detection
async def test_turn_detection_without_create_response_only_transcribes(url: str) -> None:
    async with connect(url) as connection:
        await _session_id(connection)
        await _vad(connection, create_response=False)
        await feed(connection, clip(CLIP), speed=2.0)
        await feed(connection, silence(1.2), speed=2.0)
        events = await events_until(
            connection, "conversation.item.input_audio_transcription.completed")
        kinds = [e.type for e in events]
        assert "input_audio_buffer.speech_stopped" in kinds
        assert "input_audio_buffer.committed" in kinds
        transcript = events[-1].transcript
        assert wer(reference_text(SPEECH / CLIP), transcript, "en") <= WER_CEILING[CLIP]
        # No response of its own: the client's request is the only one (an automatic one
        # would be in progress already, and refuse it, or come after it).
        await connection.response.create()
        events = await events_until(connection, "response.done")
        await connection.session.update(session={"type": "realtime"})
        events = await events_until(connection, "session.updated", events=events)
        kinds = [e.type for e in events]
        assert "error" not in kinds, [e for e in events if e.type == "error"]
        assert kinds.count("response.created") == 1, kinds
        said = of_type(events, "response.output_audio_transcript.done")[0].transcript
        assert wer(transcript, said, "en") == 0.0


async def test_turn_detection_without_interrupt_response_lets_the_reply_play(
        url: str, service: RealtimeService) -> None:
    stop = await synthesized(service, "Stop!")
    speech = speech_only(clip(CLIP))
    async with connect(url) as connection:
        await _session_id(connection)
        await _vad(connection, interrupt_response=False)
        await ask(connection, LONG_REPLY)
        events = await events_until(connection, "response.output_audio.delta")
        await feed(connection, silence(1.0))
        # A short "Stop!" (judged by its transcript), then a long sentence (stops a reply
        # by its length): neither stops this one.
        await feed(connection, stop)
        await feed(connection, silence(0.8))
        await feed(connection, speech, speed=2.0)
        await feed(connection, silence(0.8), speed=2.0)
        events = await events_until(connection, "response.done", events=events)
        assert events[-1].response.status == "completed", events[-1].response.status_details
        said = of_type(events, "response.output_audio_transcript.done")[0].transcript
        assert "nine" in said
        kinds = [e.type for e in events]
        assert kinds.count("input_audio_buffer.speech_started") == 2, kinds  # both heard
        assert kinds.count("conversation.item.input_audio_transcription.completed") >= 1


# ---------------------------------------------------------------------------- partials
async def test_partials_carry_the_input_they_heard(url: str) -> None:
    speech = clip(QUILTER)
    sent: list[tuple[float, float]] = []
    async with connect(url) as connection:
        await _session_id(connection)
        events: list = []
        reader = asyncio.create_task(events_until(
            connection, "conversation.item.input_audio_transcription.completed",
            events=events))
        await feed_noting(connection, silence(0.5), sent)
        await feed_noting(connection, speech, sent)
        await feed_noting(connection, silence(1.0), sent, speed=4.0)
        await reader
    deltas = of_type(events, "conversation.item.input_audio_transcription.delta")
    assert len(deltas) >= 2
    ends = [d.audio_end_ms for d in deltas]
    assert ends == sorted(ends) and ends[0] < ends[-1], ends
    started = of_type(events, "input_audio_buffer.speech_started")[0].audio_start_ms
    for delta in deltas:
        # No more than had been sent when it arrived, and past the speech's start.
        heard_ms = max(s for t, s in sent if t < delta._at) * 1000
        assert started < delta.audio_end_ms <= heard_ms + 1, (delta.audio_end_ms, heard_ms)
    assert ends[-1] <= (0.5 + len(speech) / 24000) * 1000


class _SlowPartials(PartialTranscriber):
    """Partials on a CPU that has fallen behind: each takes ``delay`` seconds more in the
    one partials worker; ``asked`` counts the partials the session asked for."""

    def __init__(self, transcriber: Any, delay: float) -> None:
        super().__init__(transcriber)
        self.delay = delay
        self.asked = 0

    def _local(self, samples: np.ndarray, language: str | None) -> str:
        time.sleep(self.delay)
        return super()._local(samples, language)

    async def transcribe(self, samples: np.ndarray, language: str | None) -> str:
        self.asked += 1
        return await super().transcribe(samples, language)


async def test_partials_are_dropped_never_the_final_when_the_cpu_falls_behind(
        url: str, service: RealtimeService, monkeypatch: pytest.MonkeyPatch) -> None:
    delay = 1.0  # each partial takes over a second: three intervals (350 ms) and more
    slow = _SlowPartials(service.pipeline.transcriber, delay)
    monkeypatch.setattr(service, "partials", slow)  # what the next session is given
    speech = clip(QUILTER)
    try:
        async with connect(url) as connection:
            await _session_id(connection)
            events: list = []
            reader = asyncio.create_task(events_until(
                connection, "conversation.item.input_audio_transcription.completed",
                events=events))
            await feed(connection, speech)
            await feed(connection, silence(1.0), speed=4.0)
            await reader
    finally:
        slow.shutdown()
    start, end = voiced(speech)
    intervals = (end - start) / service.limits().partial_interval
    # The newest audio each time the worker is free, never a queue: fewer partials than
    # intervals, at most one per slow partial.
    assert 1 <= slow.asked <= (end - start) / delay + 1, slow.asked
    assert slow.asked < intervals / 2, (slow.asked, intervals)
    assert of_type(events, "conversation.item.input_audio_transcription.delta")
    # The final is whole and right.
    final = events[-1].transcript
    assert wer(reference_text(SPEECH / QUILTER), final, "en") <= WER_CEILING[QUILTER], final


# ---------------------------------------------------------------------------- limits
@contextmanager
def _limited(service: RealtimeService, cache_dir: Path, **limits: object) -> Iterator[str]:
    """A second service with small limits over the loaded stages (nothing loads twice; its
    shutdown closes the stages, which in-process and with the read-back brain hold
    nothing to close)."""
    settings = realtime_settings(cache_dir, face=False, **limits)
    small = RealtimeService(settings, pipeline=service.pipeline)
    small.load()
    with running_server(create_app(service=small)) as base:
        yield base


async def test_a_session_ends_at_its_maximum_length(service: RealtimeService,
                                                   cache_dir: Path) -> None:
    with _limited(service, cache_dir, max_session_s=2.0) as base:
        async with connect(base) as connection:
            began = time.perf_counter()
            # Time is the behaviour here: the watcher looks once a second, so 30 s is far
            # past the 2 s limit on any machine.
            events = await events_until(connection, "error", wait=30.0)
            lasted = time.perf_counter() - began
            error = events[-1].error
            assert error.code == "session_expired", error
            assert "maximum length of 2 s" in error.message
            assert lasted >= 2.0  # not before its time
            assert [e async for e in connection] == []  # the server closed it


async def test_the_input_buffer_is_bounded(service: RealtimeService, cache_dir: Path) -> None:
    with _limited(service, cache_dir, max_buffer_s=2.0) as base:
        # Manual turns: past the limit an append is refused, and what fit is kept.
        async with connect(base) as connection:
            await _session_id(connection)
            await connection.session.update(session={
                "type": "realtime", "audio": {"input": {"turn_detection": None}}})
            await events_until(connection, "session.updated")
            await feed(connection, clip(CLIP), speed=20.0)  # 4.5 s
            await connection.input_audio_buffer.commit()
            events = await events_until(
                connection, "conversation.item.input_audio_transcription.completed")
            errors = of_type(events, "error")
            assert errors and {e.error.code for e in errors} == {"input_audio_buffer_full"}
            transcript = events[-1].transcript.lower()
            assert "today" in transcript and "used" not in transcript, transcript

        # Server VAD: a turn longer than the limit is cut there, while the user goes on.
        speech = clip(QUILTER)
        async with connect(base) as connection:
            await _session_id(connection)
            await _vad(connection, create_response=False)
            await feed(connection, speech, speed=2.0)
            await feed(connection, silence(1.0), speed=2.0)
            events = await events_until(
                connection, "conversation.item.input_audio_transcription.completed")
            started = of_type(events, "input_audio_buffer.speech_started")[0]
            stopped = of_type(events, "input_audio_buffer.speech_stopped")[0]
            _, end = voiced(speech)
            assert stopped.audio_end_ms - started.audio_start_ms <= 2000 + 100
            assert events[-1].usage.seconds <= 2.0 + 0.1  # the turn's audio, cut at the limit
            assert stopped.audio_end_ms < (end - 2.0) * 1000  # seconds before the speech ends
            transcript = events[-1].transcript.lower()
            assert transcript.startswith("mr") and "gospel" not in transcript, transcript


async def test_the_audio_lead_setting_reaches_the_websocket_pacing(
        service: RealtimeService, cache_dir: Path) -> None:
    """SECRETARY_REALTIME_AUDIO_LEAD_MS: how far ahead of real time reply audio is sent."""
    settings = realtime_settings(cache_dir, face=False, audio_lead_ms=50)
    small = RealtimeService(settings, pipeline=service.pipeline)
    small.load()
    with running_server(create_app(service=small)) as base:
        async with connect(base) as connection:
            session_id = await _session_id(connection)
            assert small.leases[session_id].session.output.lead == 0.05
