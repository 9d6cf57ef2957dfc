"""The user's MCP servers (``SECRETARY_MCP_SERVERS``), held open for the chat model's tool
calls: a command run over stdio, or a URL spoken to over streamable HTTP with its headers.

``McpServers`` runs its connections on an event loop of its own, in one daemon thread of
the process that serves (the UI server, the realtime service, the Wyoming server): one
task per server connects, lists the server's tools, pings it every ``retry_s`` while it is
up, and after it is lost or could not be reached tries again every ``retry_s``. A call
comes from whichever loop a turn runs on and waits for its answer there; so a server
never depends on which loop, thread or request started it, and a turn that is cancelled
cancels its call.

Nothing here raises into the conversation: a server that is down, crashes during a call,
is too slow (``timeout_s``), or refuses, gives a result in words starting with
``Error: the MCP server '<name>' ...``; a result longer than ``max_result_chars`` is cut
and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CONNECTION_CLOSED,
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    PaginatedRequestParams,
    ResourceLink,
    TextContent,
    Tool,
)

from secretary.errors import scrub
from secretary.mcp.settings import McpSettings, ServerEntry

log = logging.getLogger(__name__)

_STOP_S = 15.0  # the connections' own shutdown (a stdio server gets 2 s, then a kill)


def where(entry: ServerEntry) -> str:
    """What may be shown of a server: its URL without user, password or query, or the
    name of its command (never its arguments or headers)."""
    if entry.url:
        parts = urlsplit(entry.url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    return os.path.basename(entry.command[0]) if entry.command else ""


def _secrets(entry: ServerEntry) -> tuple[str, ...]:
    """What must not appear in an error shown or logged: header values, the URL's password
    and query, the command's arguments."""
    found = [*entry.headers.values(), *entry.command[1:]]
    if entry.url:
        parts = urlsplit(entry.url)
        found += [parts.password or "", parts.query]
        found += [value for _, _, value in (p.partition("=") for p in parts.query.split("&"))]
    return tuple(s for s in found if s)


@dataclass
class _Server:
    entry: ServerEntry
    state: str = "starting"  # starting, up, down, stopped
    tools: list[Tool] = field(default_factory=list)  # the last listing (kept while down)
    session: ClientSession | None = None
    error: str | None = None
    since: float = field(default_factory=time.time)
    connects: int = 0
    # Made on the servers' loop: a call that saw the connection close sets ``lost``;
    # ``tried`` is set once the first try to connect has ended, either way.
    lost: asyncio.Event | None = None
    tried: asyncio.Event | None = None

    def set(self, state: str, error: str | None = None) -> None:
        if state != self.state:
            self.since = time.time()
        self.state, self.error = state, error

    def describe(self) -> dict[str, Any]:
        return {"state": self.state, "transport": "http" if self.entry.url else "stdio",
                "where": where(self.entry), "tools": len(self.tools), "error": self.error,
                "since": round(self.since, 3), "connects": self.connects}


class McpServers:
    """The configured MCP servers, connected in the background (``start``)."""

    def __init__(self, entries: list[ServerEntry], *, timeout_s: float = 20.0,
                 connect_timeout_s: float = 15.0, retry_s: float = 30.0,
                 max_result_chars: int = 8000) -> None:
        self.servers = {entry.name: _Server(entry) for entry in entries}
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.retry_s = retry_s
        self.max_result_chars = max_result_chars
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @classmethod
    def from_settings(cls, settings: McpSettings) -> McpServers:
        return cls(settings.server_entries(), timeout_s=settings.timeout_s,
                   connect_timeout_s=settings.connect_timeout_s, retry_s=settings.retry_s,
                   max_result_chars=settings.max_result_chars)

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        """Begin connecting (idempotent; returns at once, the servers connect meanwhile)."""
        with self._lock:
            if self._thread is not None:
                return
            running = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(running,),
                                            name="mcp-servers", daemon=True)
            self._thread.start()
        running.wait(10)

    def _run(self, running: threading.Event) -> None:
        try:
            asyncio.run(self._main(running))
        except Exception:  # never expected: each server's task catches its own failures
            log.exception("the MCP servers' loop stopped")
        finally:
            running.set()

    async def _main(self, running: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        for server in self.servers.values():
            server.lost, server.tried = asyncio.Event(), asyncio.Event()
        running.set()
        async with anyio.create_task_group() as group:
            for name, server in self.servers.items():
                group.start_soon(self._hold, server, name=f"mcp-server-{name}")
            await self._stop.wait()
            group.cancel_scope.cancel()
        for server in self.servers.values():
            server.set("stopped", server.error)

    async def ready(self) -> None:
        """Wait until each server's first try to connect has ended (at most the connect
        timeout); at once after that."""
        self.start()
        if all(s.tried is not None and s.tried.is_set() for s in self.servers.values()):
            return

        async def tried() -> None:
            with anyio.move_on_after(self.connect_timeout_s + 5):
                for server in self.servers.values():
                    if server.tried is not None:
                        await server.tried.wait()

        with contextlib.suppress(RuntimeError):
            await self._on_loop(tried())

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Close every connection (a stdio server's process ends); blocking, idempotent."""
        with self._lock:
            thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            loop.call_soon_threadsafe(stop.set)
        thread.join(_STOP_S)

    async def _on_loop(self, work: Coroutine[Any, Any, Any]) -> Any:
        """Run ``work`` on the servers' loop and wait for it on this one (a cancel here
        cancels it there)."""
        loop = self._loop
        if loop is None or loop.is_closed() or self._thread is None or (
                not self._thread.is_alive()):
            work.close()
            raise RuntimeError("the MCP servers are not running")
        if loop is asyncio.get_running_loop():
            return await work
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop))

    # ------------------------------------------------------------------ connections
    async def _hold(self, server: _Server) -> None:
        """Keep one server connected, for as long as the servers run."""
        name = server.entry.name
        while True:
            assert server.lost is not None and server.tried is not None
            server.lost = asyncio.Event()
            was_up = False
            error: str | None = None
            try:
                async with self._session(server.entry) as session:
                    with anyio.fail_after(self.connect_timeout_s):
                        await session.initialize()
                        tools = await _list_tools(session)
                    server.tools, server.session = tools, session
                    server.connects += 1
                    server.set("up")
                    server.tried.set()
                    was_up = True
                    log.info("MCP server %r (%s) is up with %d tools", name,
                             where(server.entry), len(tools))
                    error = await self._watch(server, session)
            except Exception as exc:
                if isinstance(_leaf(exc), TimeoutError):
                    error = f"no answer within {self.connect_timeout_s:g} s"
                else:
                    error = self._describe(server.entry, exc)
            finally:
                server.session = None
            news = was_up or server.state != "down" or error != server.error
            server.set("down", error)
            server.tried.set()
            # Said once, not at every try while it stays down the same way.
            (log.warning if news else log.debug)(
                "MCP server %r (%s) is down: %s; trying again %s", name, where(server.entry),
                error, "now" if was_up else f"in {self.retry_s:g} s")
            if not was_up:  # a server lost after it was up is tried again at once
                await anyio.sleep(self.retry_s)

    @contextlib.asynccontextmanager
    async def _session(self, entry: ServerEntry) -> AsyncIterator[ClientSession]:
        if entry.url:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            # The read timeout also bounds the server's event stream between events.
            timeout = httpx2.Timeout(self.connect_timeout_s, read=max(300.0, self.timeout_s))
            async with httpx2.AsyncClient(headers=entry.headers, timeout=timeout) as http, \
                    streamable_http_client(entry.url, http_client=http) as (read, write), \
                    ClientSession(read, write) as session:
                yield session
        else:
            command, *args = entry.command
            parameters = StdioServerParameters(command=command, args=args)
            async with stdio_client(parameters) as (read, write), \
                    ClientSession(read, write) as session:
                yield session

    async def _watch(self, server: _Server, session: ClientSession) -> str:
        """Return why the connection is lost: a call saw it close, or a ping (every
        ``retry_s``) went unanswered."""
        assert server.lost is not None
        while True:
            with anyio.move_on_after(self.retry_s):
                await server.lost.wait()
                return "the connection closed during a call"
            try:
                with anyio.fail_after(self.connect_timeout_s):
                    await session.send_ping()
            except TimeoutError:
                return f"no answer to a ping within {self.connect_timeout_s:g} s"
            except Exception as exc:
                return self._describe(server.entry, exc)

    @staticmethod
    def _describe(entry: ServerEntry, exc: BaseException) -> str:
        exc = _leaf(exc)
        text = exc.message if isinstance(exc, MCPError) else (str(exc) or type(exc).__name__)
        return scrub(" ".join(text.split())[:300], _secrets(entry))

    # ------------------------------------------------------------------ what they offer
    def tools(self) -> dict[str, list[Tool]]:
        """Each server's tools, as last listed (a server down now keeps its list: a call
        to it says that it is down)."""
        return {name: list(server.tools) for name, server in self.servers.items()}

    def status(self) -> dict[str, Any]:
        """For ``/health``: each server's state, tool count, last error, and where it is
        (a URL without credentials, or the command's name)."""
        return {name: server.describe() for name, server in self.servers.items()}

    async def call(self, name: str, tool: str, arguments: dict[str, Any]) -> str:
        """The tool's result as text for the chat model; an error in words, never raised."""
        server = self.servers.get(name)
        if server is None:
            return f"Error: there is no MCP server {name!r}."
        try:
            text = await self._on_loop(self._call(server, tool, arguments))
        except RuntimeError:
            text = f"Error: the MCP server '{name}' is not running (the secretary is stopping)."
        return self.cut(text)

    async def _call(self, server: _Server, tool: str, arguments: dict[str, Any]) -> str:
        name, session = server.entry.name, server.session
        if session is None:
            why = f": {server.error}" if server.error else ""
            return (f"Error: the MCP server '{name}' is not reachable now{why}. It is tried "
                    f"again every {self.retry_s:g} s; tell the user {tool} could not be done.")
        try:
            with anyio.fail_after(self.timeout_s):
                result = await session.call_tool(tool, arguments)
        except TimeoutError:
            return (f"Error: the MCP server '{name}' did not finish {tool} within "
                    f"{self.timeout_s:g} s; it was not waited for.")
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                assert server.lost is not None
                server.lost.set()  # its task reconnects
                return (f"Error: the MCP server '{name}' went away during {tool} (it is "
                        "being restarted); whether it was done is not known.")
            return (f"Error: the MCP server '{name}' refused {tool}: "
                    f"{self._describe(server.entry, exc)}")
        except Exception as exc:
            log.warning("MCP call %s.%s failed: %r", name, tool, exc)
            return (f"Error: the MCP server '{name}' failed {tool}: "
                    f"{self._describe(server.entry, exc)}")
        if not isinstance(result, CallToolResult):
            return f"Error: the MCP server '{name}' answered {tool} with something unexpected."
        text = _text(result)
        if result.is_error:
            return f"Error: the MCP server '{name}' says {tool} failed: {text}"
        return text

    def cut(self, text: str) -> str:
        limit = self.max_result_chars
        if len(text) <= limit:
            return text
        return (f"{text[:limit]}\n[The result was cut: it had {len(text)} characters, only "
                f"the first {limit} are shown.]")


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside task groups' exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _list_tools(session: ClientSession) -> list[Tool]:
    tools: list[Tool] = []
    cursor: str | None = None
    for _ in range(100):  # pages; a server that never stops paging is cut off
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        listing = await session.list_tools(params=params)
        tools += listing.tools
        cursor = listing.next_cursor
        if not cursor:
            break
    return tools


def _text(result: CallToolResult) -> str:
    """What the model reads of a result: its text, and a word for what is not text."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, EmbeddedResource):
            text = getattr(block.resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[a file: {block.resource.uri}]")
        elif isinstance(block, ResourceLink):
            parts.append(f"[a link: {block.uri}]")
        elif isinstance(block, ImageContent):
            parts.append("[an image]")
        elif isinstance(block, AudioContent):
            parts.append("[a sound]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts) or "(the tool returned nothing)"
