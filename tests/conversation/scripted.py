"""An OpenAI-compatible chat server for the tests of tool calls: each request to
``/v1/chat/completions`` is recorded and answered with the next queued script, streamed as
server-sent events (the model calling a tool, or saying words), or, where none is queued,
forwarded to a real llama.cpp server (``upstream``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.helpers import running_server


class ChatStub:
    def __init__(self) -> None:
        self.url = ""  # the OpenAI base URL, ``.../v1``
        self.upstream: str | None = None  # llama.cpp's base URL, for requests not scripted
        self.requests: list[dict[str, Any]] = []
        self.scripts: list[list[dict[str, Any]]] = []
        self.pause = 0.005  # seconds between two streamed deltas

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.complete,
                                       methods=["POST"])])

    async def complete(self, request: Request) -> StreamingResponse:
        body = await request.body()
        self.requests.append(json.loads(body))
        if self.scripts:
            return StreamingResponse(_sse(self.scripts.pop(0), self.pause),
                                     media_type="text/event-stream")
        assert self.upstream is not None, "the model was asked more often than scripted"
        client = httpx.AsyncClient(timeout=120)
        answer = await client.send(client.build_request(
            "POST", f"{self.upstream}/chat/completions", content=body,
            headers={"Content-Type": "application/json"}), stream=True)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                await answer.aclose()
                await client.aclose()

        return StreamingResponse(relay(), answer.status_code,
                                 media_type=answer.headers.get("content-type"))

    def tool_messages(self, request: int = -1) -> list[str]:
        """The tool results the model read in a request."""
        return [m["content"] for m in self.requests[request]["messages"]
                if m["role"] == "tool"]


@contextlib.contextmanager
def scripted_chat() -> Iterator[ChatStub]:
    chat = ChatStub()
    with running_server(chat.app()) as base:
        chat.url = f"{base}/v1"
        yield chat


async def _sse(deltas: list[dict[str, Any]], pause: float) -> AsyncIterator[bytes]:
    for delta in deltas:
        chunk = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "model": "stub",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield f"data: {json.dumps(chunk)}\n\n".encode()
        await asyncio.sleep(pause)
    yield b"data: [DONE]\n\n"


def said(text: str) -> list[dict[str, Any]]:
    """The model saying ``text``, a word per delta."""
    return [{"role": "assistant", "content": word + " "} for word in text.split()]


def called(name: str, arguments: str, index: int = 0) -> list[dict[str, Any]]:
    """The model calling ``name``: its name, then its arguments in three pieces."""
    third = max(1, len(arguments) // 3)
    pieces = [arguments[i:i + third] for i in range(0, len(arguments), third)]
    return [{"tool_calls": [{"index": index, "id": f"model_call_{index}", "type": "function",
                             "function": {"name": name, "arguments": ""}}]},
            *({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
              for piece in pieces)]
