"""The client's functions over the Realtime API: ``tools`` in ``session.update`` and in
``response.create``, the model's calls streamed out as ``function_call`` items, the
client's ``function_call_output`` back to the model, and the answer spoken.

The model is llama.cpp's server with SmolLM2-135M (forced ``tool_choice``: the tiny model
calls reliably only then), behind a recording stub that the server's chat client talks to;
where a test needs the model to do something exact (words before its calls, two calls, an
unknown function, bad arguments, a skill's tool then a client's), the stub streams a
scripted answer instead. The events are checked against the ``openai`` package's models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import icalendar
import pytest
import websockets
from aiortc import RTCPeerConnection
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from secretary.conversation.settings import ConversationSettings
from secretary.realtime.app import create_app
from secretary.realtime.service import RealtimeService
from tests.calendar.support import CalendarServer, plain_calendar
from tests.conftest import make_settings, same_speech_every_run
from tests.conversation.llama import MODEL_NAME, llama_server, needs_llama
from tests.conversation.scripted import ChatStub, called, said, scripted_chat
from tests.helpers import running_server
from tests.realtime.conftest import realtime_settings
from tests.realtime.rtc import offer
from tests.realtime.support import ask, collect, connect, of_type, reply_audio

WEATHER = {"type": "function", "name": "get_weather",
           "description": "The weather in a city now.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
FORCED = {"type": "function", "name": "get_weather"}
# A schema with more to check: types, an enum, nested objects, no extra properties.
TABLE = {"type": "function", "name": "book_table", "description": "Book a table.",
         "parameters": {
             "type": "object", "additionalProperties": False, "required": ["guests", "time"],
             "properties": {
                 "guests": {"type": "integer", "minimum": 1}, "time": {"type": "string"},
                 "seating": {"type": "string", "enum": ["inside", "outside"]},
                 "contact": {"type": "object", "additionalProperties": False,
                             "required": ["phone"],
                             "properties": {"phone": {"type": "string"}}}}}}
RESULT = json.dumps({"temperature_c": 21, "sky": "sunny"})
CALL_EVENTS = ("response.output_item.added", "response.output_item.done",
               "conversation.item.added", "conversation.item.created",
               "conversation.item.done", "response.function_call_arguments.delta",
               "response.function_call_arguments.done", "response.done", "error")
_EVENT = TypeAdapter(RealtimeServerEvent)


@pytest.fixture(scope="module")
def stub() -> Iterator[ChatStub]:
    with scripted_chat() as stub:
        yield stub


@pytest.fixture(autouse=True)
def fresh(stub: ChatStub) -> None:
    stub.requests.clear()
    stub.scripts.clear()


@pytest.fixture(scope="module")
def llama(stub: ChatStub) -> Iterator[None]:
    with llama_server() as base:
        stub.upstream = base
        yield
        stub.upstream = None


def _chat(settings: Any, stub: ChatStub) -> Any:
    settings.ui = settings.ui.model_copy(update={"chat_url": stub.url,
                                                 "chat_model": MODEL_NAME})
    settings.conversation.chat_temperature = 0.0
    settings.conversation.chat_max_tokens = 40
    return settings


@pytest.fixture(scope="module")
def tools_url(cache_dir: Path, stub: ChatStub) -> Iterator[str]:
    """A realtime service whose brain is the chat model (the tests' echo setting gives way
    to a configured chat model)."""
    service = RealtimeService(_chat(realtime_settings(cache_dir, partials=False, face=False),
                                    stub))
    service.load()
    with running_server(create_app(service=service)) as url:
        yield url


# ---------------------------------------------------------------------- helpers
def strict(events: list[Any]) -> None:
    """The events a client's function calls make, as the ``openai`` models require them
    (the client itself builds them unchecked)."""
    for event in events:
        if event.type in CALL_EVENTS:
            _EVENT.validate_python(event.to_dict())


def kinds(events: list[Any], since: str = "response.created") -> list[str]:
    types = [e.type for e in events]
    return types[types.index(since):]


def squeeze(types: list[str]) -> list[str]:
    """Runs of the same event type as one."""
    return [t for n, t in enumerate(types) if n == 0 or types[n - 1] != t]


async def configure(connection: Any, **session: Any) -> Any:
    await collect(connection, "session.created")
    await connection.session.update(session={"type": "realtime", **session})
    return (await collect(connection, "session.updated"))[-1]


async def answer(connection: Any, call_id: str, output: str = RESULT) -> list[Any]:
    await connection.conversation.item.create(item={
        "type": "function_call_output", "call_id": call_id, "output": output})
    return await collect(connection, "conversation.item.done")


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


# ---------------------------------------------------------------------- with the real model
@needs_llama
async def test_a_forced_call_streams_out_and_the_result_is_spoken(
        tools_url: str, stub: ChatStub, llama: None) -> None:
    async with connect(tools_url) as connection:
        updated = await configure(connection, tools=[WEATHER], tool_choice=FORCED,
                                  instructions="You are a secretary. Answer briefly.")
        assert updated.session.tools[0].name == "get_weather"
        assert updated.session.tool_choice.name == "get_weather"
        await ask(connection, "What is the weather in Paris?")
        events = await collect(connection, "response.done")
        strict(events)
        assert squeeze(kinds(events)) == [
            "response.created", "response.output_item.added", "conversation.item.added",
            "response.function_call_arguments.delta", "response.function_call_arguments.done",
            "response.output_item.done", "conversation.item.done", "response.done"]
        added = of_type(events, "response.output_item.added")[0]
        assert added.item.type == "function_call" and added.item.arguments == ""
        assert added.item.name == "get_weather" and added.output_index == 0
        done = of_type(events, "response.function_call_arguments.done")[0]
        deltas = of_type(events, "response.function_call_arguments.delta")
        assert "".join(d.delta for d in deltas) == done.arguments
        assert {d.call_id for d in deltas} == {done.call_id} == {added.item.call_id}
        assert {d.item_id for d in deltas} == {done.item_id} == {added.item.id}
        assert isinstance(json.loads(done.arguments)["city"], str)
        response = events[-1].response
        assert response.status == "completed"
        assert [(o.type, o.call_id, o.status) for o in response.output] == [
            ("function_call", done.call_id, "completed")]
        assert not of_type(events, "response.output_audio.delta")
        # The chat model was offered the client's function, forced.
        assert stub.requests[0]["tools"][0]["function"]["name"] == "get_weather"
        assert stub.requests[0]["tool_choice"] == {"type": "function",
                                                   "function": {"name": "get_weather"}}

        await answer(connection, done.call_id)
        await connection.response.create(response={"tool_choice": "none"})
        events = await collect(connection, "response.done")
        assert events[-1].response.status == "completed", events[-1].response
        transcript = of_type(events, "response.output_audio_transcript.done")[0].transcript
        assert transcript.strip()
        assert len(reply_audio(events)) > 24000 * 0.3
        # The model read the whole exchange: the question, its call and the result.
        messages = stub.requests[-1]["messages"]
        assert stub.requests[-1]["tool_choice"] == "none"
        roles = [m["role"] for m in messages]
        assert roles[-3:] == ["user", "assistant", "tool"]
        assert messages[-3]["content"] == "What is the weather in Paris?"
        [call] = messages[-2]["tool_calls"]
        assert call["id"] == done.call_id and call["function"] == {
            "name": "get_weather", "arguments": done.arguments}
        assert messages[-1] == {"role": "tool", "tool_call_id": done.call_id,
                                "content": RESULT}


@needs_llama
async def test_per_response_tools_under_the_beta_names(
        tools_url: str, stub: ChatStub, llama: None) -> None:
    ws_url = tools_url.replace("http://", "ws://") + "/v1/realtime?model=secretary-realtime"
    async with websockets.connect(ws_url, max_size=None,
                                  additional_headers={"OpenAI-Beta": "realtime=v1"}) as ws:
        async def until(kind: str) -> list[dict[str, Any]]:
            seen = []
            async with asyncio.timeout(90):
                while True:
                    seen.append(json.loads(await ws.recv()))
                    if seen[-1]["type"] == kind:
                        return seen

        created = (await until("session.created"))[-1]
        assert created["session"]["tools"] == [] and created["session"]["tool_choice"] == "auto"
        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Is it warm in Rome?"}]}}))
        await until("conversation.item.created")
        await ws.send(json.dumps({"type": "response.create", "response": {
            "tools": [WEATHER], "tool_choice": FORCED}}))
        events = await until("response.done")
        types = [e["type"] for e in events]
        assert squeeze(types[types.index("response.created"):]) == [
            "response.created", "response.output_item.added", "conversation.item.created",
            "response.function_call_arguments.delta", "response.function_call_arguments.done",
            "response.output_item.done", "conversation.item.done", "response.done"], [
            e for e in events if e["type"] in ("error", "response.function_call_arguments.done")]
        for event in events:
            if event["type"] in CALL_EVENTS:
                _EVENT.validate_python(event)
        done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        assert done["name"] == "get_weather" and "city" in json.loads(done["arguments"])

        await ws.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": done["call_id"], "output": RESULT}}))
        echoed = (await until("conversation.item.created"))[-1]
        assert echoed["item"]["type"] == "function_call_output"
        # The session has no tools: the next response offers none.
        await ws.send(json.dumps({"type": "response.create"}))
        events = await until("response.done")
        types = {e["type"] for e in events}
        assert {"response.audio.delta", "response.audio_transcript.done"} <= types
        assert "tools" not in stub.requests[-1]
        assert tool_messages(stub.requests[-1])[0]["content"] == RESULT


# ---------------------------------------------------------------------- checks
BAD_TOOLS = [
    ({"tools": {"name": "x"}}, "session.tools", "invalid_value"),
    ({"tools": [{"type": "function", "name": "get weather!"}]}, "session.tools[0].name",
     "invalid_value"),
    ({"tools": [{"type": "function", "name": "x", "parameters": "a string"}]},
     "session.tools[0].parameters", "invalid_value"),
    ({"tools": [WEATHER, "not a tool"]}, "session.tools[1]", "invalid_value"),
    ({"tools": [{"type": "mcp", "server_label": "x"}]}, "session.tools[0].type",
     "unsupported_tool"),
    ({"tools": [WEATHER, WEATHER]}, "session.tools[1].name", "invalid_value"),
    ({"tools": [dict(WEATHER, name=f"f{n}") for n in range(129)]}, "session.tools",
     "invalid_value"),
    ({"tools": [dict(WEATHER, name=f"f{n}", description="x" * 4000) for n in range(20)]},
     "session.tools", "invalid_value"),
    ({"tool_choice": "sometimes"}, "session.tool_choice", "invalid_value"),
    ({"tool_choice": {"type": "function", "name": "get_weather"}}, "session.tool_choice",
     "invalid_value"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}},
     "session.tool_choice", "invalid_value"),
    # Parameters that are no valid JSON schema.
    ({"tools": [{"type": "function", "name": "f", "parameters": {
        "type": "object", "properties": {"city": {"type": "strin"}}}}]},
     "session.tools[0].parameters", "invalid_value"),
    ({"tools": [WEATHER, {"type": "function", "name": "f", "parameters": {
        "type": "object", "required": "city"}}]},
     "session.tools[1].parameters", "invalid_value"),
    ({"tools": [{"type": "function", "name": "f", "parameters": {
        "$schema": 5, "type": "object"}}]}, "session.tools[0].parameters", "invalid_value"),
]


async def test_invalid_tools_are_error_events_and_change_nothing(tools_url: str) -> None:
    async with connect(tools_url) as connection:
        await collect(connection, "session.created")
        for body, param, code in BAD_TOOLS:
            await connection.session.update(session={
                "type": "realtime", "instructions": "Changed.", **body})
            error = (await collect(connection, "error"))[-1].error
            assert (error.param, error.code) == (param, code), (body, error)
        await connection.session.update(session={"type": "realtime"})
        session = (await collect(connection, "session.updated"))[-1].session
        assert session.tools == [] and session.tool_choice == "auto"
        assert session.instructions != "Changed."
        # A response's own tools are checked the same way.
        await connection.response.create(response={"tools": [{"name": "bad name"}]})
        error = (await collect(connection, "error"))[-1].error
        assert error.param == "response.tools[0].name"
        await connection.response.create(response={"tools": [TABLE, {
            "name": "f", "parameters": {"type": "object",
                                        "properties": {"n": {"minimum": "one"}}}}]})
        error = (await collect(connection, "error"))[-1].error
        assert (error.type, error.param) == ("invalid_request_error",
                                             "response.tools[1].parameters")
        assert error.message == ("the parameters of f are not a valid JSON schema: at "
                                 "properties.n.minimum: 'one' is not of type 'number'")


async def test_outputs_must_answer_a_call_and_be_bounded(tools_url: str,
                                                         stub: ChatStub) -> None:
    async with connect(tools_url) as connection:
        await configure(connection, tools=[WEATHER])
        await connection.conversation.item.create(item={
            "type": "function_call_output", "call_id": "call_nobody", "output": RESULT})
        error = (await collect(connection, "error"))[-1].error
        assert (error.param, error.code) == ("item.call_id", "item_not_found")

        stub.scripts.append(called("get_weather", '{"city": "Oslo"}'))
        await ask(connection, "Weather in Oslo?")
        events = await collect(connection, "response.done")
        call_id = events[-1].response.output[0].call_id
        for output, code in (("x" * 40000, "string_above_max_length"),
                             ({"json": "not a string"}, "invalid_value")):
            await connection.conversation.item.create(item={
                "type": "function_call_output", "call_id": call_id, "output": output})
            error = (await collect(connection, "error"))[-1].error
            assert (error.param, error.code) == ("item.output", code)
        # A client that never answers: the session goes on.
        stub.scripts.append(said("Hello again."))
        await ask(connection, "Never mind. Hello!")
        events = await collect(connection, "response.done")
        assert events[-1].response.status == "completed"
        assert "Hello again" in of_type(
            events, "response.output_audio_transcript.done")[0].transcript
        assert all("tool_calls" not in m for m in stub.requests[-1]["messages"])


# ---------------------------------------------------------------------- a scripted model
async def test_words_then_two_calls_then_the_answer(tools_url: str, stub: ChatStub) -> None:
    async with connect(tools_url) as connection:
        await configure(connection, tools=[WEATHER])
        stub.scripts.append([*said("Let me look at both."),
                             *called("get_weather", '{"city": "Paris"}'),
                             *called("get_weather", '{"city": "Rome"}', 1)])
        await ask(connection, "Weather in Paris and Rome?")
        events = await collect(connection, "response.done")
        strict(events)
        types = squeeze(kinds(events))
        # The words first, as a message item of their own; then each call in turn.
        message_done = types.index("response.output_item.done")
        assert "response.output_audio.delta" in types[:message_done]
        assert squeeze(types[message_done:]) == [
            "response.output_item.done", "conversation.item.done",
            *["response.output_item.added", "conversation.item.added",
              "response.function_call_arguments.delta",
              "response.function_call_arguments.done", "response.output_item.done",
              "conversation.item.done"] * 2, "response.done"]
        output = events[-1].response.output
        assert [o.type for o in output] == ["message", "function_call", "function_call"]
        assert output[0].content[0].transcript.startswith("Let me look at both")
        assert [json.loads(o.arguments)["city"] for o in output[1:]] == ["Paris", "Rome"]
        assert [e.output_index for e in of_type(events, "response.output_item.added")] == [
            0, 1, 2]

        for call, result in zip(output[1:], ("sunny", "rainy"), strict=True):
            await answer(connection, call.call_id, result)
        stub.scripts.append(said("Paris is sunny and Rome is rainy."))
        await connection.response.create()
        events = await collect(connection, "response.done")
        assert of_type(events, "response.output_audio_transcript.done")[0].transcript == (
            "Paris is sunny and Rome is rainy.")
        messages = stub.requests[-1]["messages"]
        assert [m["role"] for m in messages[-4:]] == ["user", "assistant", "tool", "tool"]
        assert messages[-3]["content"].startswith("Let me look at both")
        assert [c["id"] for c in messages[-3]["tool_calls"]] == [o.call_id for o in output[1:]]
        assert [m["content"] for m in messages[-2:]] == ["sunny", "rainy"]


@pytest.mark.parametrize(("name", "arguments", "started", "message"), [
    # A function nobody offered.
    ("launch_rockets", '{"count": 3}', False, None),
    ("get_weather", '{"city": "Par', True,  # arguments that are not JSON
     "arguments for get_weather are not valid JSON"),
    ("get_weather", '{"town": "Paris"}', True,  # without the required city
     "arguments for get_weather: 'city' is a required property"),
    ("book_table", '{"guests": "four", "time": "19:00"}', True,  # a wrong type
     "arguments for book_table: guests: 'four' is not of type 'integer'"),
    ("book_table", '{"guests": 4, "time": "19:00", "seating": "roof"}', True,  # no enum value
     "arguments for book_table: seating: 'roof' is not one of ['inside', 'outside']"),
    ("book_table", '{"guests": 4, "time": "19:00", "dog": true}', True,  # an extra property
     "arguments for book_table: Additional properties are not allowed ('dog' was "
     "unexpected)"),
    ("book_table", '{"guests": 4, "time": "19:00", "contact": {"phone": 5}}', True,  # nested
     "arguments for book_table: contact.phone: 5 is not of type 'string'"),
    ("book_table", '{"guests": 0, "time": "19:00"}', True,  # below the minimum
     "arguments for book_table: guests: 0 is less than the minimum of 1"),
])
async def test_a_call_that_cannot_be_made_is_an_error_and_an_apology(
        tools_url: str, stub: ChatStub, name: str, arguments: str, started: bool,
        message: str | None) -> None:
    async with connect(tools_url) as connection:
        await configure(connection, tools=[WEATHER, TABLE])
        stub.scripts.append(called(name, arguments))
        await ask(connection, "Do it.")
        events = await collect(connection, "response.done")
        strict(events)
        [error] = of_type(events, "error")
        assert (error.error.type, error.error.code) == ("server_error", "invalid_function_call")
        assert name in error.error.message
        if message is not None:
            assert error.error.message == message
        response = events[-1].response
        assert response.status == "completed"
        assert of_type(events, "response.output_audio_transcript.done")[0].transcript == (
            "Sorry, that didn't work.")
        assert len(reply_audio(events)) > 24000 * 0.5
        calls = [o for o in response.output if o.type == "function_call"]
        assert [c.status for c in calls] == (["incomplete"] if started else [])
        # The session goes on, and the failed call is not in what the model reads next.
        stub.scripts.append(said("Fine."))
        await ask(connection, "Thanks.")
        events = await collect(connection, "response.done")
        assert events[-1].response.status == "completed"
        assert all("tool_calls" not in m for m in stub.requests[-1]["messages"])


async def test_arguments_that_match_a_strict_schema_go_out(tools_url: str,
                                                            stub: ChatStub) -> None:
    arguments = '{"guests": 4, "time": "19:00", "seating": "outside", "contact": {"phone": "5"}}'
    async with connect(tools_url) as connection:
        await configure(connection, tools=[WEATHER, TABLE])
        stub.scripts.append(called("book_table", arguments))
        await ask(connection, "A table for four at seven, outside.")
        events = await collect(connection, "response.done")
        strict(events)
        assert not of_type(events, "error")
        [call] = events[-1].response.output
        assert (call.name, call.status, call.arguments) == ("book_table", "completed",
                                                            arguments)


async def test_tools_over_the_webrtc_data_channel(tools_url: str, stub: ChatStub) -> None:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    channel = pc.createDataChannel("oai-events")
    events: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    @channel.on("message")
    def on_message(message: str) -> None:
        events.append(json.loads(message))
        arrived.set()

    async def until(kind: str) -> dict[str, Any]:
        """The next event of ``kind``; those before it are passed over."""
        async with asyncio.timeout(60):
            while True:
                while events:
                    event = events.pop(0)
                    if event["type"] == kind:
                        return event
                arrived.clear()
                await arrived.wait()

    answer = await offer(pc, f"{tools_url}/v1/realtime?model=secretary-realtime")
    assert answer.status_code == 201, answer.text
    try:
        await until("session.created")
        channel.send(json.dumps({"type": "session.update", "session": {
            "type": "realtime", "tools": [WEATHER], "tool_choice": FORCED}}))
        assert (await until("session.updated"))["session"]["tools"][0]["name"] == "get_weather"
        stub.scripts.append(called("get_weather", '{"city": "Lisbon"}'))
        channel.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "Weather in Lisbon?"}]}}))
        await until("conversation.item.done")
        channel.send(json.dumps({"type": "response.create"}))
        done = await until("response.function_call_arguments.done")
        assert json.loads(done["arguments"]) == {"city": "Lisbon"}
        assert (await until("response.done"))["response"]["output"][0]["call_id"] == (
            done["call_id"])
        channel.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": done["call_id"], "output": RESULT}}))
        assert (await until("conversation.item.added"))["item"]["call_id"] == done["call_id"]
        stub.scripts.append(said("It is sunny in Lisbon."))
        channel.send(json.dumps({"type": "response.create",
                                 "response": {"tool_choice": "none"}}))
        transcript = await until("response.output_audio_transcript.done")
        assert transcript["transcript"] == "It is sunny in Lisbon."
        assert tool_messages(stub.requests[-1])[0]["content"] == RESULT
    finally:
        await pc.close()


# ---------------------------------------------------------------------- beside the skills
async def test_client_tools_beside_the_skills_tools(
        cache_dir: Path, tmp_path: Path, stub: ChatStub, calendar: CalendarServer) -> None:
    settings = make_settings(cache_dir, data_dir=tmp_path, timezone="Europe/Berlin")
    same_speech_every_run(settings)
    settings.realtime.partials = False
    settings.realtime.face = False
    settings.conversation = ConversationSettings(brain="skills", avatar=False)
    settings.calendar = settings.calendar.model_copy(update={"url": calendar.url})
    service = RealtimeService(_chat(settings, stub))
    service.load()
    # A client's add_note hides the skill's of that name.
    note = {"type": "function", "name": "add_note", "description": "The client's notes.",
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}
    with running_server(create_app(service=service)) as url:
        async with connect(url) as connection:
            await configure(connection, tools=[WEATHER, note])
            # The model calls a skill first (the server runs it), then the client's.
            stub.scripts += [called("add_todo", '{"task": "buy an umbrella"}'),
                             called("add_note", '{"text": "umbrella"}')]
            await ask(connection, "Could you sort out my rainy day plans?")
            events = await collect(connection, "response.done")
            strict(events)
            [call] = events[-1].response.output
            assert (call.name, json.loads(call.arguments)) == ("add_note",
                                                               {"text": "umbrella"})
            first, second = stub.requests
            names = [t["function"]["name"] for t in first["tools"]]
            assert names[:2] == ["get_weather", "add_note"] and "add_todo" in names
            assert names.count("add_note") == 1
            assert next(t for t in first["tools"] if t["function"]["name"] == "add_note")[
                "function"]["description"] == "The client's notes."
            assert "buy an umbrella" in tool_messages(second)[0]["content"]
            todos = [str(c["summary"]) for t in plain_calendar(
                calendar.url, "Secretary").search(todo=True)
                for c in icalendar.Calendar.from_ical(t.data).walk("VTODO")]
            assert todos == ["buy an umbrella"]
            # The client's add_note went to the client, not to the skill.
            assert not service.pipeline.brain.secretary.notes.recent("note")
