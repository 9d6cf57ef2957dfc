"""The reply brain: the transcript read back, or a chat model's answer streamed token by
token; and the splitter that hands each finished sentence to speech at once.

Any OpenAI-compatible chat API works (llama.cpp's server, Ollama, vLLM, OpenAI): the
request is the plain ``POST {base}/chat/completions`` with ``stream: true``, read as
server-sent events with httpx. The UI's ``/api/reply`` asks the same client for a whole
answer at once (``stream: false``).

Tools: the server's own (a ``Toolbox``: the skills) run here, round after round; a client's
functions (the Realtime API's ``session.tools``, see ``with_client_tools``) are never run
here: their calls stream out to the client and the reply ends for the client's results.
A call's arguments are checked against the function's ``parameters`` (JSON Schema, with
``jsonschema``) first: a server's tool called with arguments that do not match is not run,
and the model reads what was wrong as the tool's result; a client's is ``refused``.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from secretary.conversation.stages import Cancel, Heard, StageError
from secretary.errors import SecretaryError, redact_url, scrub
from secretary.schemas import arguments_problem
from secretary.web.client import http_failure, new_client, status_failure


class History:
    """Bounded conversation history per page session (LRU over sessions)."""

    def __init__(self, max_turns: int, max_sessions: int) -> None:
        self.max_turns = max_turns
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, deque[tuple[str, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session: str) -> list[tuple[str, str]]:
        with self._lock:
            turns = self._sessions.get(session)
            if turns is None:
                return []
            self._sessions.move_to_end(session)
            return list(turns)

    def add(self, session: str, user: str, assistant: str) -> None:
        if self.max_turns == 0:
            return
        with self._lock:
            turns = self._sessions.get(session)
            if turns is None:
                turns = self._sessions[session] = deque(maxlen=self.max_turns)
            turns.append((user, assistant))
            self._sessions.move_to_end(session)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)

    def revise(self, session: str, user: str, before: str, after: str) -> None:
        """The latest exchange ``(user, before)`` becomes ``(user, after)``, or goes when
        ``after`` is empty: the listener turned out to have heard less of the reply."""
        with self._lock:
            turns = self._sessions.get(session)
            if turns is None:
                return
            for index in reversed(range(len(turns))):
                if turns[index] == (user, before):
                    if after:
                        turns[index] = (user, after)
                    else:
                        del turns[index]
                    return


class EchoBrain:
    """Without a chat model, the secretary reads back what it heard."""

    def __init__(self, history: History) -> None:
        self.history = history

    def describe(self) -> dict[str, Any]:
        return {"source": "echo", "model": None}

    async def reply(self, session: str, heard: Heard, cancel: Cancel) -> AsyncIterator[str]:
        yield heard.text

    async def answer(self, text: str, language: str | None,
                     history: list[tuple[str, str]]) -> str:
        return text

    def remember(self, session: str, user: str, assistant: str) -> None:
        self.history.add(session, user, assistant)

    def revise(self, session: str, user: str, before: str, after: str) -> None:
        self.history.revise(session, user, before, after)


class Toolbox(Protocol):
    """Functions offered to the chat model (OpenAI ``tools``) and their execution."""

    def specs(self) -> list[dict[str, Any]]: ...

    async def call(self, name: str, arguments: str, language: str | None,
                   session: str) -> str:
        """The result the model reads (an error said in words, never raised)."""
        ...


@dataclass(frozen=True)
class ToolCallEvent:
    """A call of one of the client's functions as the model makes it: ``started`` (its name
    is known), ``arguments`` (a piece of them, as it streams), ``done`` (``text``: the whole
    arguments, a JSON object), or ``refused``: a function nobody offered, or arguments that
    do not match its ``parameters`` schema (``text``: what is wrong)."""

    kind: str
    call_id: str
    name: str
    text: str = ""


OnCall = Callable[[ToolCallEvent], None]

# Said where the model's call could not be made (an unknown function, bad arguments).
_APOLOGY = {"en": "Sorry, that didn't work.", "de": "Das hat leider nicht geklappt."}


# The turn's error codes for what went wrong calling the chat model.
_STAGE_CODES = {"upstream_unavailable": "chat_unreachable", "upstream_timeout": "chat_timeout",
                "bad_gateway": "chat_failed"}


class ChatBrain:
    """An OpenAI-compatible chat completion: streamed for a turn, whole for ``answer``."""

    def __init__(self, url: str, model: str, system_prompt: str, history: History, *,
                 api_key: str | None = None, timeout: float = 120.0,
                 max_tokens: int | None = None, temperature: float | None = None,
                 tools: Toolbox | None = None, tool_choice: Any = "auto") -> None:
        self.base = url.rstrip("/")
        self.url = self.base + "/chat/completions"
        self.model = model
        self.system_prompt = system_prompt
        self.history = history
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.tools = tools  # functions the model may call (the secretary's skills)
        self.tool_choice = tool_choice
        # A client's functions (``with_client_tools``): chat ``tools`` specs by name.
        self.client_tools: dict[str, dict[str, Any]] = {}
        self.client_choice: Any = "auto"
        self.on_call: OnCall | None = None
        self.exchange: list[dict[str, Any]] = []  # the calls and results so far this turn
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = new_client(timeout)
        self.where = f"the chat model {model!r} at {redact_url(self.base)}"
        # What must never reach the page or the log, whatever the chat server echoes.
        parts = urlsplit(self.base)
        self.secrets = tuple(s for s in (api_key, parts.password, parts.username) if s)

    def describe(self) -> dict[str, Any]:
        return {"source": "chat", "model": self.model}

    def with_instructions(self, instructions: str) -> ChatBrain:
        """The same client and history with another system prompt (a shallow copy)."""
        brain = copy.copy(self)
        brain.system_prompt = instructions
        return brain

    def with_client_tools(self, tools: Sequence[dict[str, Any]], choice: Any,
                          on_call: OnCall | None,
                          exchange: Sequence[dict[str, Any]] = ()) -> ChatBrain:
        """A copy (the same client and history) that offers a client's functions (chat
        ``tools`` specs; ``choice`` its ``tool_choice``) beside the server's tools. A call
        of one is not run: it goes to ``on_call`` as it streams, and the reply ends there
        (the client runs it). ``exchange`` (the assistant's ``tool_calls`` messages and the
        ``tool`` messages with the client's results) follows the user's message. Where a
        client's function has the name of one of the server's tools, the client's wins:
        the server's is not offered."""
        brain = copy.copy(self)
        brain.client_tools = {spec["function"]["name"]: spec for spec in tools}
        brain.client_choice = choice
        brain.on_call = on_call
        brain.exchange = [dict(message) for message in exchange]
        return brain

    async def aclose(self) -> None:
        await self.client.aclose()

    def messages(self, session: str, heard: Heard) -> list[dict[str, Any]]:
        earlier = [(role, content) for user, assistant in self.history.get(session)
                   for role, content in (("user", user), ("assistant", assistant))]
        return [*self._messages(heard.text, heard.language, earlier), *self.exchange]

    def _messages(self, text: str, language: str | None,
                  earlier: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
        system = self.system_prompt
        if language:
            system += f"\nThe user is speaking the language with ISO code {language!r}."
        return [{"role": "system", "content": system},
                *({"role": role, "content": content} for role, content in earlier),
                {"role": "user", "content": text}]

    def remember(self, session: str, user: str, assistant: str) -> None:
        self.history.add(session, user, assistant)

    def revise(self, session: str, user: str, before: str, after: str) -> None:
        self.history.revise(session, user, before, after)

    async def reply(self, session: str, heard: Heard, cancel: Cancel) -> AsyncIterator[str]:
        try:
            async for delta in self._complete(self.messages(session, heard), heard.language,
                                              session, cancel, self.max_tokens):
                yield delta
        except SecretaryError as exc:
            raise self._stage_error(exc) from None

    async def _complete(self, messages: list[dict[str, Any]], language: str | None,
                        session: str, cancel: Cancel,
                        max_tokens: int | None) -> AsyncIterator[str]:
        """The model's text, streamed; where it calls the server's tools, their results go
        back to it as tool messages and its next answer follows (a few rounds at most).
        A round that calls a client's function ends the reply (``_settle``)."""
        client = self.client_tools
        choice: Any = self.client_choice if client else self.tool_choice
        server = [spec for spec in self.tools.specs()
                  if _spec_name(spec) not in client] if self.tools is not None else []
        specs = [*client.values(), *server]
        for round_ in range(_TOOL_ROUNDS + 1):
            payload: dict[str, Any] = {"model": self.model, "stream": True,
                                       "messages": messages}
            if max_tokens:
                payload["max_tokens"] = max_tokens
            if self.temperature is not None:
                payload["temperature"] = self.temperature
            if specs:
                payload["tools"] = specs
                payload["tool_choice"] = "none" if round_ == _TOOL_ROUNDS else choice
            watch = _ClientCalls(client, self.on_call) if client else None
            calls = _ToolCalls(watch.piece if watch is not None else None)
            text = ""
            async for delta in self._stream(payload, cancel, calls):
                text += delta
                yield delta
            if cancel or not calls:
                return
            if watch is not None:
                sent, refused = self._settle(calls, watch, {_spec_name(s) for s in server})
                if sent:
                    return  # the client runs its functions; their results come next turn
                if refused:
                    apology = _APOLOGY.get(language or "en", _APOLOGY["en"])
                    yield f" {apology}" if text.strip() else apology
                    return
            if self.tools is None:
                return
            messages = [*messages, {"role": "assistant", "content": text,
                                    "tool_calls": calls.as_messages()}]
            schemas = {_spec_name(spec): spec for spec in server}
            for call in calls.as_messages():
                function = call["function"]
                spec = schemas.get(function["name"])
                # A raw line break inside a string, as small models write, is taken here.
                problem = arguments_problem(function["name"], function["arguments"],
                                            spec["function"].get("parameters"),
                                            strict=False) if spec is not None else None
                result = f"Error: {problem}." if problem is not None else (
                    await self.tools.call(function["name"], function["arguments"],
                                          language, session))
                messages.append({"role": "tool", "tool_call_id": call["id"],
                                 "content": result})
            # A forced call is made once; then the model answers in words.
            choice = "auto" if choice == "auto" else "none"

    def _settle(self, calls: _ToolCalls, watch: _ClientCalls,
                server: Collection[str]) -> tuple[bool, bool]:
        """The round's calls told to ``on_call``: each client's call ``done`` (or
        ``refused`` for arguments that do not match its schema), a call
        of a function nobody offered ``refused``. Returns (a client's call went out, a call
        was refused). The server's calls of a round with a client's call are not run (the
        model may make them again once the client's results are in)."""
        sent = refused = False
        for index, call in sorted(calls.calls.items()):
            name = call["name"]
            if not name:
                continue
            if index in watch.ids:
                if index not in watch.outcome:
                    watch.finish(index)
                sent |= watch.outcome[index]
                refused |= not watch.outcome[index]
            elif name not in server:
                watch.report(ToolCallEvent(
                    "refused", _call_id(), name[:64], f"the model called {name[:64]!r}, a "
                    "function that is neither among the session's tools nor the server's"))
                refused = True
        return sent, refused

    async def _stream(self, payload: dict[str, Any], cancel: Cancel,
                      calls: _ToolCalls) -> AsyncIterator[str]:
        try:
            async with self.client.stream("POST", self.url, json=payload,
                                          headers=self.headers) as answer:
                if answer.status_code != 200:
                    body = (await answer.aread()).decode("utf-8", "replace")
                    raise self._refusal(answer.status_code, body)
                async for line in answer.aiter_lines():
                    if cancel:
                        return
                    delta = _delta(line, calls)
                    if delta is _DONE:
                        return
                    if delta:
                        yield delta
        except httpx.HTTPError as exc:
            raise self._failure(exc) from None

    async def answer(self, text: str, language: str | None,
                     history: list[tuple[str, str]]) -> str:
        if self.tools is not None:  # the tools' rounds, streamed and joined
            deltas = self._complete(self._messages(text, language, history), language,
                                    "typed", Cancel(), None)
            return "".join([delta async for delta in deltas]).strip()
        # As the UI's /api/reply always asked: the model's own length and sampling.
        payload = {"model": self.model, "messages": self._messages(text, language, history),
                   "stream": False}
        try:
            answer = await self.client.post(self.url, json=payload, headers=self.headers)
        except httpx.HTTPError as exc:
            raise self._failure(exc) from None
        content = _content(answer)
        if answer.status_code != 200 or content is None:
            raise self._refusal(answer.status_code, answer.text)
        return content.strip()

    def _failure(self, exc: httpx.HTTPError) -> SecretaryError:
        failure = http_failure(self.where, exc, param="chat",
                               remedy="start it or unset SECRETARY_UI_CHAT_URL")
        failure.message = scrub(failure.message, self.secrets)
        return failure

    def _refusal(self, status: int, body: str) -> SecretaryError:
        failure = status_failure(self.where, status, body, param="chat")
        failure.message = scrub(failure.message, self.secrets)
        return failure

    @staticmethod
    def _stage_error(failure: SecretaryError) -> StageError:
        return StageError.of("brain", failure, _STAGE_CODES[failure.code])


_DONE = object()


_TOOL_ROUNDS = 3  # tool calls answered per reply before the model must speak


def _spec_name(spec: dict[str, Any]) -> str:
    return str((spec.get("function") or {}).get("name", ""))


def _call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


class _ClientCalls:
    """A round's calls of the client's functions, told to ``report`` as they stream: the
    call is ``started`` once its name is known, then each piece of its arguments, and it is
    ``done`` (or ``refused``) once the next call begins or the answer ends."""

    def __init__(self, tools: dict[str, dict[str, Any]], report: OnCall | None) -> None:
        self.tools = tools
        self.report: OnCall = report or (lambda event: None)
        self.ids: dict[int, str] = {}  # the calls told, by their index: our call_id
        self.calls: dict[int, dict[str, str]] = {}
        self.outcome: dict[int, bool] = {}  # finished calls: went out (or refused)
        self.current: int | None = None

    def piece(self, index: int, call: dict[str, str], arguments: str) -> None:
        if index != self.current:
            if self.current in self.ids and self.current not in self.outcome:
                self.finish(self.current)  # the previous call is whole
            self.current = index
        if index not in self.ids:
            if call["name"] not in self.tools:
                return  # not yet named, or the server's (or nobody's: ``_settle``)
            self.ids[index], self.calls[index] = _call_id(), call
            self.report(ToolCallEvent("started", self.ids[index], call["name"]))
            arguments = call["arguments"]  # all that came before the name
        if arguments and index not in self.outcome:
            self.report(ToolCallEvent("arguments", self.ids[index], call["name"], arguments))

    def finish(self, index: int) -> None:
        call = self.calls[index]
        name, call_id = call["name"], self.ids[index]
        problem = arguments_problem(name, call["arguments"],
                                    self.tools[name]["function"].get("parameters"))
        self.outcome[index] = problem is None
        if problem is None:
            self.report(ToolCallEvent("done", call_id, name, call["arguments"] or "{}"))
        else:
            self.report(ToolCallEvent("refused", call_id, name, problem))


class _ToolCalls:
    """The tool calls of one streamed answer, put together from their deltas: the
    standard ``tool_calls`` (by index) or the older ``function_call`` (one call).
    ``on_piece`` sees each call after each of its pieces, with that piece's arguments."""

    def __init__(self, on_piece: Callable[[int, dict[str, str], str], None] | None = None
                 ) -> None:
        self.calls: dict[int, dict[str, str]] = {}
        self.on_piece = on_piece

    def __bool__(self) -> bool:
        return any(call["name"] for call in self.calls.values())

    def add(self, delta: dict[str, Any]) -> None:
        pieces = delta.get("tool_calls")
        if not isinstance(pieces, list):
            legacy = delta.get("function_call")
            pieces = [{"index": 0, "function": legacy}] if isinstance(legacy, dict) else []
        for piece in pieces:
            if not isinstance(piece, dict):
                continue
            index = piece.get("index", 0)
            index = index if isinstance(index, int) else 0
            call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if isinstance(piece.get("id"), str):
                call["id"] = piece["id"]
            function = piece.get("function") or {}
            if not isinstance(function, dict):
                continue
            if isinstance(function.get("name"), str) and function["name"]:
                call["name"] = function["name"]  # some servers repeat it in every delta
            arguments = function.get("arguments")
            arguments = arguments if isinstance(arguments, str) else ""
            call["arguments"] += arguments
            if self.on_piece is not None:
                self.on_piece(index, call, arguments)

    def as_messages(self) -> list[dict[str, Any]]:
        return [{"id": call["id"] or f"call_{index}", "type": "function",
                 "function": {"name": call["name"], "arguments": call["arguments"] or "{}"}}
                for index, call in sorted(self.calls.items()) if call["name"]]


def _delta(line: str, calls: _ToolCalls | None = None) -> Any:
    """The text of one server-sent event line ('' for anything else); tool call pieces
    go to ``calls``."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return _DONE
    try:
        choice = json.loads(data)["choices"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return ""
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if not isinstance(delta, dict):
        return ""
    if calls is not None:
        calls.add(delta)
    content = delta.get("content")
    return content if isinstance(content, str) else ""


def _content(answer: httpx.Response) -> str | None:
    """The text of a whole (not streamed) completion; None for anything else."""
    try:
        content = answer.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None
