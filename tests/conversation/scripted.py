"""A scripted OpenAI-compatible chat server for the tests of tool calls: each request to
``/v1/chat/completions`` is recorded and answered with the next queued script, streamed as
server-sent events (the model calling a tool, or saying words)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.helpers import running_server


class ScriptedChat:
    def __init__(self) -> None:
        self.url = ""  # the OpenAI base URL, ``.../v1``
        self.requests: list[dict[str, Any]] = []
        self.scripts: list[list[dict[str, Any]]] = []

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.complete,
                                       methods=["POST"])])

    async def complete(self, request: Request) -> StreamingResponse:
        self.requests.append(json.loads(await request.body()))
        assert self.scripts, "the model was asked more often than scripted"
        return StreamingResponse(_sse(self.scripts.pop(0)), media_type="text/event-stream")

    def tool_messages(self, request: int = -1) -> list[str]:
        """The tool results the model read in a request."""
        return [m["content"] for m in self.requests[request]["messages"]
                if m["role"] == "tool"]


@contextlib.contextmanager
def scripted_chat() -> Iterator[ScriptedChat]:
    chat = ScriptedChat()
    with running_server(chat.app()) as base:
        chat.url = f"{base}/v1"
        yield chat


async def _sse(deltas: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    for delta in deltas:
        chunk = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk",
                 "model": "scripted", "choices": [{"index": 0, "delta": delta,
                                                   "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
        await asyncio.sleep(0)
    yield b"data: [DONE]\n\n"


def said(text: str) -> list[dict[str, Any]]:
    """The model saying ``text``, a word per delta."""
    return [{"role": "assistant", "content": word + " "} for word in text.split()]


def called(name: str, arguments: str, index: int = 0) -> list[dict[str, Any]]:
    """The model calling ``name``: its name, then its arguments in two pieces."""
    half = len(arguments) // 2
    return [{"tool_calls": [{"index": index, "id": f"model_call_{index}", "type": "function",
                             "function": {"name": name, "arguments": arguments[:half]}}]},
            {"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]}]
