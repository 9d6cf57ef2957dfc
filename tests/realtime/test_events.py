"""The protocol's typed events: server events under both name sets (GA and beta), client
events read from both, and an unknown event still answered with an ``error``."""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from typing import Any

import pytest

from secretary.realtime import client_events, server_events
from secretary.realtime.protocol import ProtocolError
from secretary.realtime.server_events import SERVER_EVENTS, UNSET, ErrorEvent, ServerEvent
from secretary.realtime.session import RealtimeSession

# The server events whose names differ in the beta protocol, as beta clients know them.
BETA = {
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "conversation.item.added": "conversation.item.created",
}


def _example(cls: type[ServerEvent]) -> ServerEvent:
    """An instance with a made-up value in each field that has no default."""
    return cls(**{f.name: f"<{f.name}>" for f in fields(cls)
                  if f.default is MISSING and f.default_factory is MISSING})


@pytest.mark.parametrize("cls", SERVER_EVENTS, ids=lambda cls: cls.__name__)
def test_each_server_event_has_its_ga_name_and_its_beta_name(cls: type[ServerEvent]) -> None:
    event = _example(cls)
    ga, beta = event.as_json(), event.as_json(beta=True)
    assert ga["type"] == cls.type
    expected = BETA.get(cls.type, cls.type)
    if cls is server_events.TranscriptionSessionCreated:
        expected = "transcription_session.created"
    assert beta["type"] == expected
    # The same fields, in the order the class declares them, under both names.
    names = [f.name for f in fields(cls) if getattr(event, f.name) is not UNSET]
    assert list(ga) == ["type", *names] and list(beta) == list(ga)
    assert {k: v for k, v in ga.items() if k != "type"} == {
        k: v for k, v in beta.items() if k != "type"}


def test_every_beta_name_is_written_by_an_event_class() -> None:
    written = {cls.type: cls.beta_type for cls in SERVER_EVENTS if cls.beta_type}
    assert {k: v for k, v in written.items() if k in BETA} == BETA


def test_content_events_carry_their_indexes_and_an_unset_field_is_left_out() -> None:
    delta = server_events.OutputAudioDelta(response_id="resp_1", item_id="item_1", delta="AA")
    assert delta.as_json(beta=True) == {
        "type": "response.audio.delta", "response_id": "resp_1", "item_id": "item_1",
        "output_index": 0, "content_index": 0, "delta": "AA"}
    item = {"id": "item_1"}
    assert server_events.ItemDone(item=item).as_json() == {
        "type": "conversation.item.done", "item": item}
    assert server_events.ItemDone(previous_item_id=None, item=item).as_json() == {
        "type": "conversation.item.done", "previous_item_id": None, "item": item}


@pytest.mark.parametrize("name,cls", [
    ("session.update", client_events.SessionUpdate),
    ("transcription_session.update", client_events.TranscriptionSessionUpdate),
    ("input_audio_buffer.append", client_events.InputAudioBufferAppend),
    ("input_audio_buffer.commit", client_events.InputAudioBufferCommit),
    ("input_audio_buffer.clear", client_events.InputAudioBufferClear),
    ("conversation.item.create", client_events.ItemCreate),
    ("conversation.item.truncate", client_events.ItemTruncate),
    ("response.create", client_events.ResponseCreate),
    ("response.cancel", client_events.ResponseCancel),
    ("output_audio_buffer.clear", client_events.OutputAudioBufferClear),
])
def test_client_events_are_read_from_their_names(name: str, cls: type) -> None:
    event = client_events.parse_client_event(
        json.dumps({"type": name, "event_id": "evt_1"}), 1 << 20)
    assert type(event) is cls and event.event_id == "evt_1"


def test_a_session_update_is_read_from_the_ga_and_the_beta_name() -> None:
    body: dict[str, Any] = {"instructions": "Be brief."}
    for name in ("session.update", "transcription_session.update"):
        event = client_events.parse_client_event(
            json.dumps({"type": name, "session": body}), 1 << 20)
        assert isinstance(event, client_events.SessionUpdate) and event.session == body
    assert json.loads(json.dumps(client_events.SessionUpdate(session=body).as_json())) == {
        "type": "session.update", "session": body}


@pytest.mark.parametrize("raw,code", [
    ('{"type": "no.such.event", "event_id": "evt_9"}', "invalid_event"),
    ("[1, 2]", "invalid_event"),
    ("{not json", "invalid_json"),
    ('{"type": "response.create", "pad": "' + "x" * 100 + '"}', "event_too_large"),
])
def test_a_bad_client_event_is_a_protocol_error(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        client_events.parse_client_event(raw, 100)
    error = ErrorEvent.of(caught.value).as_json()
    assert error["type"] == "error" and error["error"]["code"] == code
    assert error["error"]["event_id"] == ("evt_9" if "evt_9" in raw else None)


async def test_an_unknown_event_is_still_an_error_event() -> None:
    sent: list[dict[str, Any]] = []

    async def send(event: dict[str, Any]) -> None:
        sent.append(event)

    session = RealtimeSession(None, send, model="secretary-realtime")
    await session.handle(json.dumps({"type": "no.such.event", "event_id": "evt_1"}))
    await session.close()
    assert len(sent) == 1
    error = sent[0]
    assert error["type"] == "error" and error["event_id"].startswith("event_")
    assert error["error"] == {"type": "invalid_request_error", "code": "invalid_event",
                              "message": "unknown event type 'no.such.event'",
                              "param": "type", "event_id": "evt_1"}
