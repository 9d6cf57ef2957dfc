"""The client's functions over the Realtime protocol: ``tools`` and ``tool_choice`` (in
``session.update`` and per ``response.create``), the ``function_call`` items a response
streams out, and the ``function_call_output`` items the client answers with.

The server never runs a client's function. A response that calls one emits, per call:
``response.output_item.added`` (a ``function_call`` item, ``arguments: ""``),
``conversation.item.added``, ``response.function_call_arguments.delta`` for each piece as
the model streams it, ``response.function_call_arguments.done``,
``response.output_item.done`` and ``conversation.item.done``; ``response.done`` lists the
items. Words the model says before calling come first, as a message item of their own.
The client's ``function_call_output`` joins the conversation; the next ``response.create``
sends the model the user's message, its ``tool_calls`` and the results (``exchange``).

Decisions: a client's function named like one of the server's own tools (the skills) hides
the server's for that session; a tool's ``parameters`` must be a valid JSON Schema (of the
dialect its ``$schema`` names, else 2020-12) of an object, or the ``session.update`` or
``response.create`` is an ``invalid_request_error``; a call the model makes to a function
nobody offered, or with arguments that do not match the function's ``parameters`` (types,
enums, ``required``, ``additionalProperties``, nested objects and arrays: ``jsonschema``),
is an ``error`` event (type ``server_error``, code ``invalid_function_call``: the model's
fault, not the client's, e.g. "arguments for get_weather: 'city' is a required property")
and the reply says a short apology.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secretary.conversation.brain import ToolCallEvent
from secretary.realtime.protocol import ProtocolError, check_event_text, new_id
from secretary.realtime.server_events import (
    ErrorEvent,
    FunctionCallArgumentsDelta,
    FunctionCallArgumentsDone,
    ItemAdded,
    ItemDone,
    OutputItemAdded,
    OutputItemDone,
)
from secretary.schemas import schema_problem
from secretary.validation import has_speech

if TYPE_CHECKING:
    from secretary.conversation.reply import ReplyStream
    from secretary.realtime.response import Response
    from secretary.realtime.session import RealtimeSession

NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
MAX_TOOLS = 128
MAX_TOOLS_BYTES = 65536  # the tools' JSON, all together
MAX_DESCRIPTION = 4096
MAX_OUTPUT_CHARS = 32768  # a function_call_output's output
CHOICES = ("auto", "none", "required")


@dataclass(frozen=True)
class Offer:
    """The functions a response offers the model, and its ``tool_choice``."""

    tools: list[dict[str, Any]]
    choice: Any = "auto"


# ---------------------------------------------------------------------- parsing
def parse_tools(value: Any, param: str) -> list[dict[str, Any]]:
    """``tools`` as stored and echoed; ``ProtocolError`` naming the first bad value."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolError("tools must be a list of function tools", param=param)
    if len(value) > MAX_TOOLS:
        raise ProtocolError(f"at most {MAX_TOOLS} tools", param=param)
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError, RecursionError):
        raise ProtocolError("tools must be plain JSON", param=param) from None
    if size > MAX_TOOLS_BYTES:
        raise ProtocolError(f"the tools may take at most {MAX_TOOLS_BYTES} bytes of JSON "
                            f"together, not {size}", param=param)
    tools: list[dict[str, Any]] = []
    for index, tool in enumerate(value):
        where = f"{param}[{index}]"
        if not isinstance(tool, dict):
            raise ProtocolError("a tool must be an object", param=where)
        if tool.get("type", "function") != "function":
            raise ProtocolError(f"tool type {tool.get('type')!r} is not supported here; "
                                "only 'function'", code="unsupported_tool",
                                param=f"{where}.type")
        name = tool.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ProtocolError("a tool's name must be 1 to 64 letters, digits, '_' or '-'",
                                param=f"{where}.name")
        if any(t["name"] == name for t in tools):
            raise ProtocolError(f"two tools are named {name!r}", param=f"{where}.name")
        description = tool.get("description", "")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise ProtocolError(f"a tool's description must be a string of at most "
                                f"{MAX_DESCRIPTION} characters", param=f"{where}.description")
        check_event_text(description, f"{where}.description")
        parameters = tool.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise ProtocolError("a tool's parameters must be a JSON schema of an object",
                                param=f"{where}.parameters")
        problem = schema_problem(parameters)
        if problem is not None:
            raise ProtocolError(f"the parameters of {name} are not a valid JSON schema: "
                                f"{problem}", param=f"{where}.parameters")
        tools.append({"type": "function", "name": name, "description": description,
                      "parameters": parameters})
    return tools


def parse_tool_choice(value: Any, param: str) -> Any:
    """``auto``, ``none``, ``required`` or ``{"type": "function", "name": ...}`` (the Chat
    Completions shape ``{"function": {"name": ...}}`` is read too)."""
    if value is None:
        return "auto"
    if isinstance(value, str) and value in CHOICES:
        return value
    if isinstance(value, dict) and value.get("type") == "function":
        function = value.get("function")
        name = function.get("name") if isinstance(function, dict) else value.get("name")
        if isinstance(name, str) and NAME.fullmatch(name):
            return {"type": "function", "name": name}
    raise ProtocolError("tool_choice is 'auto', 'none', 'required' or "
                        "{'type': 'function', 'name': ...}", param=param)


def check_offer(tools: list[dict[str, Any]], choice: Any, param: str) -> None:
    """A ``tool_choice`` that needs a tool has one to choose."""
    if choice == "required" and not tools:
        raise ProtocolError("tool_choice 'required' needs at least one tool", param=param)
    if isinstance(choice, dict) and all(t["name"] != choice["name"] for t in tools):
        raise ProtocolError(f"tool_choice names {choice['name']!r}, which is not among the "
                            "tools", param=param)


def response_offer(options: dict[str, Any], tools: list[dict[str, Any]],
                   choice: Any) -> Offer | None:
    """A ``response.create``'s own tools and choice over the session's (None: the
    session's, as they are when the response starts)."""
    if "tools" not in options and "tool_choice" not in options:
        return None
    if "tools" in options:
        tools = parse_tools(options["tools"], "response.tools")
    if "tool_choice" in options:
        choice = parse_tool_choice(options["tool_choice"], "response.tool_choice")
    check_offer(tools, choice, "response.tool_choice")
    return Offer(tools, choice)


def chat_specs(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools as a chat model's ``tools``."""
    return [{"type": "function", "function": {
        "name": t["name"], "description": t["description"], "parameters": t["parameters"]}}
        for t in tools]


def chat_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


# ---------------------------------------------------------------------- items
def output_item(item: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """A client's ``function_call_output`` item, checked, as the conversation keeps it."""
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not any(
            i.get("type") == "function_call" and i.get("call_id") == call_id for i in items):
        raise ProtocolError(f"no function_call item has the call_id {call_id!r}",
                            code="item_not_found", param="item.call_id")
    if not isinstance(output, str):
        raise ProtocolError("output must be a string", param="item.output")
    if len(output) > MAX_OUTPUT_CHARS:
        raise ProtocolError(f"output may be at most {MAX_OUTPUT_CHARS} characters, not "
                            f"{len(output)}", code="string_above_max_length",
                            param="item.output")
    check_event_text(output, "item.output")
    item_id = item.get("id")
    return {"id": item_id if isinstance(item_id, str) and 0 < len(item_id) <= 64
            else new_id("item"), "object": "realtime.item", "type": "function_call_output",
            "status": "completed", "call_id": call_id, "output": output}


def exchange(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages that follow the last user message: the assistant's words, its
    ``tool_calls`` (the completed calls the client has answered) and the ``tool`` messages
    with the client's outputs."""
    start = next((n + 1 for n in reversed(range(len(items)))
                  if items[n].get("type", "message") == "message"
                  and items[n].get("role") == "user"), 0)
    tail = items[start:]
    answered = {i["call_id"] for i in tail if i.get("type") == "function_call_output"}
    messages: list[dict[str, Any]] = []
    calls: set[str] = set()
    for item in tail:
        kind = item.get("type")
        if kind == "message" and item.get("role") == "assistant":
            part = item["content"][0] if item.get("content") else {}
            text = part.get("transcript") or part.get("text") or ""
            if text:
                messages.append({"role": "assistant", "content": text})
        elif (kind == "function_call" and item.get("status") == "completed"
              and item["call_id"] in answered):
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            calls.add(item["call_id"])
        elif kind == "function_call_output" and item["call_id"] in calls:
            messages.append({"role": "tool", "tool_call_id": item["call_id"],
                             "content": item["output"]})
    return messages


# ---------------------------------------------------------------------- a response's calls
def client_brain(session: RealtimeSession, response: Response) -> Any:
    """The session's brain offering the client's functions, with this turn's calls and
    their results so far (None: the session's brain as it is, for a reply made ahead)."""
    brain = session.brain()
    change = getattr(brain, "with_client_tools", None)
    offer = response.offer or Offer(session.config.tools, session.config.tool_choice)
    history = exchange(session.conversation.items)
    if change is None or not (offer.tools or history):
        return None
    if offer.tools:
        response.calls = ClientCalls(session, response)
    return change(chat_specs(offer.tools), chat_choice(offer.choice),
                  response.calls.report if response.calls else None, history)


class ClientCalls:
    """A response's calls of the client's functions. The brain reports them as it streams
    (``report``, from its own task); ``_run`` sends their events in order: at once where
    the model said nothing first, else after the words' message item is done."""

    def __init__(self, session: RealtimeSession, response: Response) -> None:
        self.session, self.response = session, response
        self.queue: asyncio.Queue[ToolCallEvent | None] = asyncio.Queue()
        self.items: dict[str, tuple[int, dict[str, Any]]] = {}  # by call_id
        self.stream: ReplyStream | None = None  # the reply the model's words go to
        self.after_words: bool | None = None  # decided at the first call
        self.message_done = asyncio.Event()
        self.task: asyncio.Task[None] = session.spawn(self._run())
        self.made = False  # a call went out whole

    def report(self, event: ToolCallEvent) -> None:
        if self.after_words is None:
            said = self.stream.reply if self.stream is not None else ""
            self.after_words = has_speech(said)
        self.queue.put_nowait(event)

    async def _run(self) -> None:
        while (event := await self.queue.get()) is not None:
            if self.after_words:
                await self.message_done.wait()
            await self._send(event)

    async def _send(self, event: ToolCallEvent) -> None:
        session, response = self.session, self.response
        if event.kind == "started":
            item = {"id": new_id("item"), "object": "realtime.item", "type": "function_call",
                    "status": "in_progress", "name": event.name, "call_id": event.call_id,
                    "arguments": ""}
            index = response.reserve()
            self.items[event.call_id] = (index, item)
            previous = session.conversation.last_id()
            session.conversation.items.append(item)
            await session.emit(OutputItemAdded(response_id=response.id, output_index=index,
                                               item=dict(item)))
            await session.emit(ItemAdded(previous_item_id=previous, item=dict(item)))
            return
        if event.kind == "refused":
            await session.emit(ErrorEvent.of(ProtocolError(
                event.text, code="invalid_function_call", type="server_error")))
        if event.call_id not in self.items:
            return
        index, item = self.items[event.call_id]
        ids = {"response_id": response.id, "item_id": item["id"], "output_index": index,
               "call_id": event.call_id}
        if event.kind == "arguments":
            item["arguments"] += event.text
            await session.emit(FunctionCallArgumentsDelta(**ids, delta=event.text))
        elif event.kind == "done":
            item["arguments"] = event.text
            self.made = True
            await self._close(item, index, "completed")
        elif event.kind == "refused":
            await self._close(item, index, "incomplete")

    async def _close(self, item: dict[str, Any], index: int, status: str) -> None:
        response, emit = self.response, self.session.emit
        item["status"] = status
        await emit(FunctionCallArgumentsDone(
            response_id=response.id, item_id=item["id"], output_index=index,
            call_id=item["call_id"], name=item["name"], arguments=item["arguments"]))
        await emit(OutputItemDone(response_id=response.id, output_index=index,
                                  item=dict(item)))
        await emit(ItemDone(item=dict(item)))
        response.output[index] = dict(item)

    async def close(self, cancelled: bool) -> None:
        """The events still due sent (a cancelled response's calls, not yet shown, are
        dropped); a call cut off by a cancel ends ``incomplete``."""
        if cancelled and self.after_words:
            while not self.queue.empty():
                self.queue.get_nowait()
        self.message_done.set()
        self.queue.put_nowait(None)
        await asyncio.wait({self.task})
        for index, item in self.items.values():
            if item["status"] == "in_progress":
                await self._close(item, index, "incomplete")
