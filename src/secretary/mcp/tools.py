"""The chat model's tools with MCP servers: the secretary's skills and every configured
MCP server's tools in one ``Toolbox``, and the confirmation that guards some of them.

Names: OpenAI-compatible APIs accept tool names of 1 to 64 characters from
``[a-zA-Z0-9_-]``, and two servers may offer tools of the same name. A server's tool is
offered as ``<server>__<tool>`` (two underscores; a server's name cannot hold two), e.g.
``orders__lookup_order``. A tool whose name has other characters, or that would make the
name longer than 64, is offered as the name with each other character made ``_``, cut to
55 characters, and ``_`` plus 8 hex digits of a hash of the server's and the tool's names
(``files__read_text_file_3f2a91c0``): stable from one start to the next, so
``chat_tool_choice`` may name it. The skills keep their own names (``add_event``, ...).

Confirmation (``SECRETARY_MCP_CONFIRM``: ``server.tool`` or ``server.*``): such a call is
not made; the model reads "Not done yet: ask the user to confirm ..." and asks, and the call
waits for the session's next turn. If that turn is a yes (``is_yes``), the call is made
and its result is the secretary's answer (``confirmed``); any other turn forgets it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from secretary.conversation.brain import Toolbox
from secretary.mcp.client import McpServers
from secretary.mcp.settings import McpSettings

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SEPARATOR = "__"
_MAX_DESCRIPTION = 1024
_PENDING_S = 300.0  # a yes later than this confirms nothing
_MAX_PENDING = 256  # sessions with a call waiting for a yes


def tool_name(server: str, tool: str) -> str:
    """The name the chat model calls a server's tool by (see the module's docstring)."""
    name = f"{server}{_SEPARATOR}{tool}"
    if _NAME.match(name):
        return name
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)[:55]}_{digest}"


# What counts as a yes, alone or with a few words of politeness around it ("Yes, please
# do it.", "Ja, mach das bitte.").
_YES = frozenset({
    "yes", "yeah", "yep", "yup", "sure", "ok", "okay", "alright", "all right", "do it",
    "go ahead", "go on", "confirm", "confirmed", "i confirm", "yes do it", "please do",
    "do that", "yes do that",
    "ja", "jawohl", "jap", "jo", "klar", "genau", "gerne", "mach das", "mach es", "mach",
    "mach mal", "tu das", "tu es", "los", "bestätigt", "ich bestätige", "in ordnung",
})
_FILLER = frozenset({"please", "bitte", "thanks", "thank", "you", "danke", "schön", "sehr",
                     "gern", "then", "dann", "doch", "na"})


def is_yes(text: str) -> bool:
    """Whether the user's whole turn says yes, in English or German."""
    clauses = [c.split() for c in re.split(r"[^\w\s]+", text.lower()) if c.strip()]
    if not clauses:
        return False
    for words in clauses:
        kept = " ".join(w for w in words if w not in _FILLER)
        if kept and kept not in _YES:
            return False
    return any(" ".join(w for w in words if w not in _FILLER) for words in clauses)


@dataclass(frozen=True)
class _Call:
    server: str
    tool: str
    arguments: dict[str, Any]
    at: float


class McpToolbox:
    """A ``Toolbox``: ``skills``' tools, then the tools the MCP servers offer."""

    def __init__(self, servers: McpServers, skills: Toolbox | None = None,
                 confirm: list[tuple[str, str]] | None = None) -> None:
        self.servers = servers
        self.skills = skills
        self.confirm = list(confirm or [])
        self._pending: OrderedDict[str, list[_Call]] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: McpSettings, skills: Toolbox | None = None) -> McpToolbox:
        return cls(McpServers.from_settings(settings), skills, settings.confirm_rules())

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        self.servers.start()

    async def ready(self) -> None:
        """Once the servers have had their first try to connect (so the first turn sees
        their tools)."""
        await self.servers.ready()

    async def aclose(self) -> None:
        await self.servers.aclose()

    def status(self) -> dict[str, Any]:
        return self.servers.status()

    # ------------------------------------------------------------------ the Toolbox
    def specs(self) -> list[dict[str, Any]]:
        found = list(self.skills.specs()) if self.skills is not None else []
        for server, tools in self.servers.tools().items():
            for tool in tools:
                description = " ".join((tool.description or tool.title or tool.name).split())
                description = (f"{description[:_MAX_DESCRIPTION]} (a tool of the MCP "
                               f"server '{server}')")
                found.append({"type": "function", "function": {
                    "name": tool_name(server, tool.name), "description": description,
                    "parameters": _parameters(tool.input_schema)}})
        return found

    async def call(self, name: str, arguments: str, language: str | None,
                   session: str) -> str:
        target = self._find(name)
        if target is None:
            if self.skills is not None and name in self._skill_names():
                return await self.skills.call(name, arguments, language, session)
            names = [spec["function"]["name"] for spec in self.specs()]
            shown = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
            return f"Error: there is no tool {name!r}; the tools are {shown}."
        server, tool = target
        try:  # a raw line break inside a string, as small models write, is taken too
            args = json.loads(arguments or "{}", strict=False)
        except ValueError:
            return f"Error: the arguments of {name} are not JSON."
        if not isinstance(args, dict):
            return f"Error: the arguments of {name} must be a JSON object."
        if self.needs_confirmation(server, tool):
            self._remember(session, _Call(server, tool, args, time.monotonic()))
            shown = json.dumps(args, ensure_ascii=False)
            return (f"Not done yet: ask the user to confirm that {tool} of '{server}' should "
                    f"be done with {shown[:500]}. Say in a short question what it would do; "
                    "it is done only if the user says yes in their next turn.")
        return await self.servers.call(server, tool, args)

    def needs_confirmation(self, server: str, tool: str) -> bool:
        return any(s == server and t in ("*", tool) for s, t in self.confirm)

    # ------------------------------------------------------------------ confirmation
    def pending(self, session: str) -> bool:
        return session in self._pending

    async def confirmed(self, session: str, text: str) -> str | None:
        """Where a call waits for this session's yes and ``text`` (the next turn) is one:
        the call's result, the answer to say. Else None, and a waiting call is forgotten."""
        calls = self._pending.pop(session, None)
        if not calls or not is_yes(text):
            return None
        fresh = [c for c in calls if time.monotonic() - c.at <= _PENDING_S]
        if not fresh:
            return None
        results = [await self.servers.call(c.server, c.tool, c.arguments) for c in fresh]
        return "\n".join(results)

    def _remember(self, session: str, call: _Call) -> None:
        self._pending.setdefault(session, []).append(call)
        self._pending.move_to_end(session)
        while len(self._pending) > _MAX_PENDING:
            self._pending.popitem(last=False)

    # ------------------------------------------------------------------ names
    def _find(self, name: str) -> tuple[str, str] | None:
        """The (server, tool) the model's ``name`` stands for."""
        if _SEPARATOR not in name:
            return None
        for server, tools in self.servers.tools().items():
            for tool in tools:
                if tool_name(server, tool.name) == name:
                    return server, tool.name
        return None

    def _skill_names(self) -> set[str]:
        assert self.skills is not None
        return {spec["function"]["name"] for spec in self.skills.specs()}


def _parameters(schema: Any) -> dict[str, Any]:
    """A tool's input schema as the function's parameters (always an object)."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return {"type": "object", "properties": {}}
    found = dict(schema)
    found.setdefault("properties", {})
    return found
