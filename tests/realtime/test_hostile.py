"""Hostile and careless clients: each gets its error, and the service keeps serving."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
import websockets

from secretary.realtime.service import RealtimeService
from tests.realtime.support import collect as events_until
from tests.realtime.support import connect, of_type


def _ws(url: str) -> str:
    return url.replace("http://", "ws://") + "/v1/realtime?model=secretary-realtime"


async def _next(ws: websockets.ClientConnection, kind: str) -> dict:
    while True:
        event = json.loads(await ws.recv())
        if event["type"] == kind:
            return event


async def test_bad_events_get_error_events_and_the_session_goes_on(url: str) -> None:
    async with websockets.connect(_ws(url), max_size=None) as ws:
        await _next(ws, "session.created")
        cases = [
            ("{not json", "invalid_json"),
            (json.dumps([1, 2]), "invalid_event"),
            (json.dumps({"type": "no.such.event"}), "invalid_event"),
            (json.dumps({"type": "input_audio_buffer.append", "audio": "%%%"}),
             "invalid_value"),
            (json.dumps({"type": "input_audio_buffer.append",
                         "audio": base64.b64encode(b"\x00\x01\x02").decode()}),
             "invalid_value"),  # odd byte count: not 16-bit PCM
            (json.dumps({"type": "input_audio_buffer.append",
                         "audio": "A" * (2 * 1024 * 1024)}), "event_too_large"),
            (json.dumps({"type": "session.update", "session": {
                "type": "realtime",
                "audio": {"input": {"format": {"type": "audio/opus"}}}}}),
             "unsupported_audio_format"),
            (json.dumps({"type": "session.update", "session": {
                "type": "realtime",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}}),
             "unsupported_audio_format"),
            (json.dumps({"type": "session.update", "session": {
                "audio": {"input": {"turn_detection": {"type": "server_vad",
                                                       "threshold": 7}}}}}),
             "invalid_value"),
            (json.dumps({"type": "input_audio_buffer.commit"}),
             "input_audio_buffer_commit_empty"),
            (json.dumps({"type": "conversation.item.create", "item": {"type": "message"}}),
             "unsupported_item"),
        ]
        for message, code in cases:
            await ws.send(message)
            event = await _next(ws, "error")
            assert event["error"]["code"] == code, (message[:80], event)
        # A 200 KB event of nested brackets: the JSON parser's recursion error is an
        # invalid_json error event, not a dropped connection.
        await ws.send("[" * 100_000 + "]" * 100_000)
        event = await _next(ws, "error")
        assert event["error"]["code"] == "invalid_json", event
        # Text the speech engines cannot take is named, as the HTTP APIs answer 400.
        for text, named in (("call\x00me", "U+0000 (NUL)"), ("bell\x07", "U+0007"),
                            ("\x1b[31mred", "U+001B (ESC)")):
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": text}]}}))
            event = await _next(ws, "error")
            assert event["error"]["param"] == "item.content.text", event
            assert named in event["error"]["message"], event
        await ws.send(json.dumps({"type": "session.update",
                                  "session": {"instructions": "be\x00brief"}}))
        event = await _next(ws, "error")
        assert "NUL" in event["error"]["message"], event
        assert event["error"]["param"] == "session.instructions", event
        # Still serving: a valid update is applied.
        await ws.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "instructions": "still here"}}))
        assert (await _next(ws, "session.updated"))["session"]["instructions"] == "still here"


async def test_a_webrtc_offer_with_a_bad_session_field_is_a_400(url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        for session, said in (("{not json", "not valid JSON"), ("[" * 100_000, "not valid JSON"),
                              ("[1, 2]", "JSON object")):
            answer = await client.post(f"{url}/v1/realtime/calls", files={
                "sdp": (None, "v=0\r\nm=audio\r\n"), "session": (None, session)})
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["param"] == "session" and said in error["message"], error


async def test_too_many_sessions_get_an_error_and_a_503(url: str) -> None:
    # The test server allows two sessions.
    async with connect(url) as first, connect(url) as second:
        await events_until(first, "session.created")
        await events_until(second, "session.created")
        async with websockets.connect(_ws(url)) as third:
            event = json.loads(await third.recv())
            assert event["type"] == "error"
            assert event["error"]["code"] == "session_limit_reached"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await third.recv()
            assert closed.value.rcvd.code == 1013
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(f"{url}/v1/realtime", content=b"v=0\r\nm=audio\r\n",
                                       headers={"Content-Type": "application/sdp"})
        assert answer.status_code == 503 and answer.headers["retry-after"]
        assert answer.json()["error"]["type"]
    # The places are free again.
    async with connect(url) as again:
        assert of_type(await events_until(again, "session.created"), "session.created")


async def test_transcription_session_gives_transcripts_and_no_responses(url: str) -> None:
    from tests.realtime.support import clip, feed, silence

    async with connect(url, intent="transcription") as connection:
        created = await events_until(connection, "session.created")
        assert created[-1].session.type == "transcription"
        await feed(connection, clip("en_cmu_arctic_aew_a0003.wav"), speed=4.0)
        await feed(connection, silence(1.0), speed=4.0)
        events = await events_until(
            connection, "conversation.item.input_audio_transcription.completed")
        assert "shook hands" in events[-1].transcript
        await connection.response.create()
        events = await events_until(connection, "error")
        assert not of_type(events, "response.created")


async def test_an_idle_session_is_closed_with_an_error(url: str,
                                                      service: RealtimeService) -> None:
    saved = service.options.idle_timeout_s
    service.options.idle_timeout_s = 1.0
    try:
        async with websockets.connect(_ws(url)) as ws:
            await _next(ws, "session.created")
            event = await asyncio.wait_for(_next(ws, "error"), 10)
            assert event["error"]["code"] == "session_expired"
            assert "idle" in event["error"]["message"]
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
    finally:
        service.options.idle_timeout_s = saved


async def test_beta_clients_get_the_beta_event_names(url: str) -> None:
    headers = {"OpenAI-Beta": "realtime=v1"}
    async with websockets.connect(_ws(url), additional_headers=headers) as ws:
        created = await _next(ws, "session.created")
        assert created["session"]["input_audio_format"] == "pcm16"
        await ws.send(json.dumps({"type": "session.update", "session": {
            "modalities": ["text", "audio"], "input_audio_format": "pcm16",
            "turn_detection": None}}))
        assert (await _next(ws, "session.updated"))["session"]["turn_detection"] is None
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Good morning."}]}}))
        await _next(ws, "conversation.item.created")
        await ws.send(json.dumps({"type": "response.create"}))
        kinds = set()
        while True:
            event = json.loads(await ws.recv())
            kinds.add(event["type"])
            if event["type"] == "response.done":
                break
        assert {"response.audio.delta", "response.audio_transcript.delta",
                "response.audio_transcript.done"} <= kinds
        assert not any(k.startswith("response.output_audio") for k in kinds)
