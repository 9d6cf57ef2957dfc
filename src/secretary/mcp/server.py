"""The secretary's skills as an MCP server, for Claude Desktop and other agents.

One MCP tool per skill tool (``secretary.skills.tools``): the same names, descriptions and
JSON-schema arguments the chat model gets, each answered with the skill's own sentence
("I put lunch with Anna in your calendar for Friday at 1 pm") as text. A call the skills
refuse (an unknown tool, a missing argument, a time that is not ISO 8601) comes back as a
tool error (``isError``) that says what is wrong, and the server goes on serving.

Two transports:

- stdio: ``secretary mcp`` (``serve_stdio``), the command a desktop agent starts itself,
  e.g. Claude Desktop's ``{"command": "secretary", "args": ["mcp"]}``. Its stdout is the
  protocol: logs go to stderr (and the SDK points file descriptor 1 at stderr while it
  serves, so a stray print cannot break a frame).
- streamable HTTP at ``/mcp`` on the browser UI's server (``http_router``), behind the
  same guard as every route there (the API key, the Host and Origin checks). Stateless,
  with JSON answers: no session to keep, no stream held open.

Decisions:
- Answers are phrased in one language per server, English unless ``secretary mcp
  --language de``: the tools' schemas stay exactly the chat model's, so there is no
  language argument. A time without an offset is in the user's time zone.
- Every call runs in the secretary's session ``mcp``: a question asked back ("which
  lunch?") waits there like a chat model's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import (
    StreamableHTTPASGIApp,
    StreamableHTTPSessionManager,
)
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)

from secretary import __version__
from secretary.config import Settings
from secretary.skills.service import Secretary
from secretary.skills.tools import SkillTools

log = logging.getLogger(__name__)

SESSION = "mcp"  # the secretary's session for every MCP call
DEFAULT_LANGUAGE = "en"
HTTP_PATH = "/mcp"


def create_server(secretary: Callable[[], Secretary], language: str = DEFAULT_LANGUAGE,
                  zone: str | None = None) -> Server[Any]:
    """An MCP server whose tools are the skills of ``secretary()`` (asked at each call,
    so the skills may come up after the server), answering in ``language``."""
    where = f" ({zone})" if zone else ""
    instructions = (
        "The user's own secretary: their calendar, to-dos, reminders, notes and what to "
        "remember about them. Times are ISO 8601; one without an offset is in the user's "
        f"time zone{where}. Each tool answers with a sentence saying what was done.")

    async def list_tools(_: ServerRequestContext[Any],
                         __: PaginatedRequestParams | None) -> ListToolsResult:
        tools = []
        for spec in SkillTools(secretary()).specs():
            function = spec["function"]
            tools.append(Tool(name=function["name"], description=function["description"],
                              input_schema=function["parameters"]))
        return ListToolsResult(tools=tools)

    async def call_tool(_: ServerRequestContext[Any],
                        params: CallToolRequestParams) -> CallToolResult:
        arguments = json.dumps(params.arguments or {}, ensure_ascii=False)
        try:
            text = await SkillTools(secretary()).call(params.name, arguments, language,
                                                      SESSION)
        except Exception as exc:  # a fault of the skills: the caller hears it, the log has it
            log.exception("MCP tool %s failed", params.name)
            text = f"Error: {params.name} failed ({type(exc).__name__}: {exc})"
        return CallToolResult(content=[TextContent(text=text)],
                              is_error=text.startswith("Error:"))

    return Server("secretary", version=__version__, title="Secretary",
                  instructions=instructions, on_list_tools=list_tools,
                  on_call_tool=call_tool)


async def serve_stdio(settings: Settings, language: str = DEFAULT_LANGUAGE) -> None:
    """Serve the skills of ``settings`` (calendar server, notes, time zone) over this
    process's stdin and stdout until stdin closes."""
    from secretary.skills.build import build_secretary

    secretary = build_secretary(settings)
    server = create_server(lambda: secretary, language, settings.timezone)
    log.info("serving the secretary's skills over MCP (stdio), answering in %s", language)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def http_router(settings: Settings, secretary: Callable[[], Secretary | None],
                language: str = DEFAULT_LANGUAGE) -> APIRouter:
    """``/mcp``: the skills over MCP's streamable HTTP, for an app's ``include_router``.

    ``secretary()`` gives the process's skills (those of the conversation's brain), or
    None where the brain has none: then the router's own, built from ``settings`` on the
    first call. The router's lifespan runs the SDK's session manager, and the app merges
    it into its own when it includes the router."""
    built: list[Secretary] = []

    def skills() -> Secretary:
        found = secretary()
        if found is not None:
            return found
        if not built:
            from secretary.skills.build import build_secretary

            built.append(build_secretary(settings))
        return built[0]

    server = create_server(skills, language, settings.timezone)
    # No DNS-rebinding settings of the SDK's own: the app's guard checks Host and Origin.
    manager = StreamableHTTPSessionManager(app=server, stateless=True, json_response=True)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        async with manager.run():
            yield

    router = APIRouter(lifespan=lifespan)
    # A route, not a mount: a mount answers "/mcp" with a redirect to "/mcp/". Not in the
    # OpenAPI document: MCP is described by its own protocol.
    router.add_route(HTTP_PATH, StreamableHTTPASGIApp(manager),  # type: ignore[arg-type]
                     name="mcp", include_in_schema=False)
    return router
