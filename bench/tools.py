"""A client's function over the Realtime API: what one tool round trip adds to the answer.

    python bench/tools.py [--rounds 3] [--threads 2]

A real server on this machine (English Piper, the chat model llama.cpp's server with
SmolLM2-135M, as the tests run it) and the ``openai`` package's realtime client. The user's
request is typed (``conversation.item.create`` then ``response.create``); the clock starts
when ``response.create`` is sent:
  - with a tool: ``get_weather`` declared and forced; the call's
    ``response.function_call_arguments.done`` arrives (the model's first round), the client
    answers at once with a ``function_call_output`` and ``response.create`` (tool_choice
    ``none``), and the first ``response.output_audio.delta`` of the answer ends the clock;
  - with an MCP tool: a second server whose brain has the skills and an MCP server over
    stdio (a ``get_weather`` written for the benchmark, answering at once); the chat
    model's ``tool_choice`` forces it (``SECRETARY_CONVERSATION_CHAT_TOOL_CHOICE``), the
    brain calls it over stdio and the model answers with its result, in one response;
  - without: the same question in a session with no tools, to its first audio.
Medians (and each round) in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conversation.llama import MODEL_NAME, llama_server  # noqa: E402
from tests.helpers import running_server  # noqa: E402
from tests.realtime.support import connect  # noqa: E402

from secretary.config import Settings  # noqa: E402
from secretary.realtime.app import create_app  # noqa: E402
from secretary.realtime.service import RealtimeService  # noqa: E402

QUESTION = "Tell me the weather in Paris today."  # no skill template takes it
# The MCP server of the benchmark: one tool that answers at once, over stdio.
MCP_SERVER = """
from mcp.server.mcpserver import MCPServer

server = MCPServer("weather", log_level="WARNING")


@server.tool()
def get_weather(city: str) -> str:
    \"\"\"The weather in a city now.\"\"\"
    return '{"temperature_c": 21, "sky": "sunny"}'


server.run("stdio")
"""
WEATHER = {"type": "function", "name": "get_weather",
           "description": "The weather in a city now.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}
RESULT = json.dumps({"temperature_c": 21, "sky": "sunny"})


async def until(connection: Any, kind: str) -> Any:
    async with asyncio.timeout(120):
        async for event in connection:
            if event.type == "error":
                raise RuntimeError(event.error.message)
            if event.type == kind:
                return event
    raise RuntimeError(f"the connection closed before {kind}")


async def ask(connection: Any) -> float:
    await connection.conversation.item.create(item={
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": QUESTION}]})
    await until(connection, "conversation.item.done")
    started = time.perf_counter()
    await connection.response.create()
    return started


async def with_tool(url: str) -> dict[str, float]:
    async with connect(url) as connection:
        await until(connection, "session.created")
        await connection.session.update(session={
            "type": "realtime", "tools": [WEATHER],
            "tool_choice": {"type": "function", "name": "get_weather"}})
        await until(connection, "session.updated")
        started = await ask(connection)
        call = await until(connection, "response.function_call_arguments.done")
        called = time.perf_counter()
        await until(connection, "response.done")
        await connection.conversation.item.create(item={
            "type": "function_call_output", "call_id": call.call_id, "output": RESULT})
        await connection.response.create(response={"tool_choice": "none"})
        await until(connection, "response.output_audio.delta")
        first = time.perf_counter()
        await until(connection, "response.done")
    return {"call": called - started, "first_audio": first - started,
            "after_call": first - called}


async def with_mcp(url: str) -> dict[str, float]:
    return await without_tool(url)  # the tool's round trip is inside the response


async def without_tool(url: str) -> dict[str, float]:
    async with connect(url) as connection:
        await until(connection, "session.created")
        started = await ask(connection)
        await until(connection, "response.output_audio.delta")
        first = time.perf_counter()
        await until(connection, "response.done")
    return {"first_audio": first - started}


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.0f} ms  (" + ", ".join(
        f"{v * 1000:.0f}" for v in values) + ")"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with llama_server(threads=args.threads) as chat:
        settings = Settings(_env_file=None)
        settings.conversation.avatar = False
        settings.conversation.brain = "echo"  # the chat model alone, no skills first
        settings.conversation.speech_cache = 0  # every answer synthesized, as the first time
        settings.conversation.chat_temperature = 0.0
        settings.conversation.chat_max_tokens = 40
        settings.realtime.partials = False
        settings.realtime.face = False
        settings.ui = settings.ui.model_copy(update={"chat_url": chat,
                                                     "chat_model": MODEL_NAME})
        service = RealtimeService(settings)
        service.load()
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / "weather_mcp.py"
            script.write_text(MCP_SERVER)
            mcp_settings = settings.model_copy(deep=True)
            mcp_settings.data_dir = Path(folder)
            mcp_settings.conversation.brain = "skills"
            mcp_settings.conversation.chat_tool_choice = "weather__get_weather"
            mcp_settings.mcp = mcp_settings.mcp.model_copy(
                update={"servers": f"weather={sys.executable} {script}"})
            mcp_service = RealtimeService(mcp_settings)
            mcp_service.load()
            with running_server(create_app(service=service)) as url, \
                    running_server(create_app(service=mcp_service)) as mcp_url:
                await without_tool(url)  # warm the model, the voice and the prompt cache
                await with_mcp(mcp_url)  # and the MCP server's connection
                tool, plain, mcp = [], [], []
                for _ in range(args.rounds):
                    tool.append(await with_tool(url))
                    mcp.append(await with_mcp(mcp_url))
                    plain.append(await without_tool(url))
    print(f"typed request -> first audio of the answer ({args.rounds} rounds, "
          f"llama.cpp {args.threads} threads, SmolLM2-135M, Piper)")
    print(f"  without a tool:                    {ms([r['first_audio'] for r in plain])}")
    print(f"  with one client tool round trip:   {ms([r['first_audio'] for r in tool])}")
    print(f"    of which to the call's .done:    {ms([r['call'] for r in tool])}")
    print(f"    .done -> first audio (answer):   {ms([r['after_call'] for r in tool])}")
    print(f"  with one MCP tool over stdio:      {ms([r['first_audio'] for r in mcp])}")


if __name__ == "__main__":
    asyncio.run(main())
