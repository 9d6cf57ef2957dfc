"""OpenAI's Agents SDK for voice as the Realtime API's client: a ``RealtimeAgent`` with a
``@function_tool``, run by ``RealtimeRunner`` over the SDK's own WebSocket model against
the project's realtime server, whose chat model is llama.cpp's server with SmolLM2-135M
(behind the recording stub of test_tools.py, which forwards every request to it).

The tiny model calls a tool reliably only when ``tool_choice`` forces it, and a forced
choice stays forced, as in OpenAI's API: the response the SDK asks for after the tool's
output would call the tool again, and again. Two ways the protocol allows, one test each:
the session's choice is ``none`` and only the response that must call forces it (its own
``tool_choice`` in ``response.create``); or the session forces it and the tool sets the
session's choice to ``none`` (a ``session.update``) before its output goes back."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from secretary.realtime.app import create_app
from secretary.realtime.service import RealtimeService
from tests.conversation.llama import MODEL_NAME, llama_server, needs_llama
from tests.conversation.scripted import ChatStub, scripted_chat
from tests.helpers import needs, running_server
from tests.realtime.conftest import realtime_settings


def _agents_sdk() -> bool:
    try:
        return importlib.util.find_spec("agents.realtime") is not None
    except ModuleNotFoundError:  # no package named agents at all
        return False


needs_agents = needs(_agents_sdk(), "openai-agents (the [test] extra)")
pytestmark = [needs_llama, needs_agents]

QUESTION = "What is the weather in Paris?"
WEATHER = {"city": "Paris", "temperature_c": 21, "sky": "sunny"}
FORCED = {"type": "function", "name": "get_weather"}


@pytest.fixture(scope="module")
def stub() -> Iterator[ChatStub]:
    with scripted_chat() as stub, llama_server() as upstream:
        stub.upstream = upstream
        yield stub


@pytest.fixture(scope="module")
def ws_url(cache_dir: Path, stub: ChatStub) -> Iterator[str]:
    settings = realtime_settings(cache_dir, partials=False, face=False)
    settings.ui = settings.ui.model_copy(update={"chat_url": stub.url,
                                                 "chat_model": MODEL_NAME})
    settings.conversation.chat_temperature = 0.0
    settings.conversation.chat_max_tokens = 40
    service = RealtimeService(settings)
    service.load()
    with running_server(create_app(service=service)) as url:
        yield url.replace("http://", "ws://") + "/v1/realtime?model=secretary-realtime"


def spoken_after_tool(events: list[Any]) -> bool:
    kinds = [e.type for e in events]
    return "tool_end" in kinds and "audio_end" in kinds[kinds.index("tool_end"):]


@pytest.mark.parametrize("way", ["forced per response", "reset by the tool"])
async def test_an_agent_calls_its_function_tool_and_speaks_the_answer(
        ws_url: str, stub: ChatStub, way: str) -> None:
    from agents import function_tool
    from agents.realtime import (
        AssistantMessageItem,
        RealtimeAgent,
        RealtimeRunner,
        RealtimeSession,
        RealtimeToolCallItem,
    )
    from agents.realtime.model_inputs import RealtimeModelSendRawMessage
    from openai.types.responses import ToolChoiceFunction

    stub.requests.clear()
    ran: list[str] = []
    holder: dict[str, RealtimeSession] = {}

    async def raw(event_type: str, **data: Any) -> None:
        """A client event as the SDK sends it, in order with its own."""
        await holder["session"].model.send_event(RealtimeModelSendRawMessage(
            message={"type": event_type, "other_data": data}))

    @function_tool
    async def get_weather(city: str) -> str:
        """The weather in a city now."""
        ran.append(city)
        if way == "reset by the tool":
            await raw("session.update", session={"type": "realtime", "tool_choice": "none"})
        return json.dumps(WEATHER)

    agent = RealtimeAgent(name="secretary", tools=[get_weather],
                          instructions="You are a secretary. Answer briefly.")
    choice: Any = "none" if way == "forced per response" else ToolChoiceFunction(
        type="function", name="get_weather")
    runner = RealtimeRunner(agent, config={"tracing_disabled": True, "model_settings": {
        "output_modalities": ["audio"], "tool_choice": choice}})
    events: list[Any] = []
    async with await runner.run(model_config={"url": ws_url, "headers": {}}) as session:
        holder["session"] = session
        if way == "forced per response":
            # The user's words without the response the SDK's send_message would start;
            # then one response that must call the tool.
            await raw("conversation.item.create", item={
                "type": "message", "role": "user",
                "content": [{"type": "input_text", "text": QUESTION}]})
            await raw("response.create", response={"tool_choice": FORCED})
        else:
            await session.send_message(QUESTION)
        async with asyncio.timeout(180):
            async for event in session:
                events.append(event)
                assert event.type != "error", event
                if event.type == "agent_end" and spoken_after_tool(events):
                    break  # the end of the response that answered from the tool's output
    history = [e for e in events if e.type == "history_updated"][-1].history

    kinds = [e.type for e in events]
    # The tool ran once, with arguments that match its schema.
    assert len(ran) == 1 and ran[0].strip(), ran
    [start] = [e for e in events if e.type == "tool_start"]
    [end] = [e for e in events if e.type == "tool_end"]
    jsonschema.validate(json.loads(end.arguments), get_weather.params_json_schema)
    assert json.loads(end.arguments)["city"] == ran[0]
    assert json.loads(end.output) == WEATHER
    # Then the answer was spoken: audio after the tool's end, and its transcript.
    after = events[kinds.index("tool_end"):]
    audio = b"".join(e.audio.data for e in after if e.type == "audio")
    assert len(audio) > 24000 * 2 * 0.3, len(audio)  # pcm16 at 24 kHz: 0.3 s at least
    assert "audio_end" in [e.type for e in after]
    [call] = [i for i in history if isinstance(i, RealtimeToolCallItem)]
    assert (call.name, call.status, json.loads(call.output or "")) == (
        "get_weather", "completed", WEATHER)
    answers = [i for i in history if isinstance(i, AssistantMessageItem)]
    assert history.index(answers[-1]) > history.index(call)
    transcript = "".join(getattr(part, "transcript", None) or ""
                         for part in answers[-1].content)
    assert transcript.strip(), answers[-1]
    assert start.agent.name == "secretary"
    # The model was asked twice: forced to call, then to answer from the tool's output
    # (not forced again: no second call).
    first, second = stub.requests
    assert first["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert second["tool_choice"] == "none"
    assert [m["role"] for m in second["messages"]][-3:] == ["user", "assistant", "tool"]
    assert second["messages"][-3]["content"] == QUESTION
    assert json.loads(second["messages"][-1]["content"]) == WEATHER
    assert second["messages"][-2]["tool_calls"][0]["id"] == call.call_id
