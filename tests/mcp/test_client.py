"""The user's MCP servers as the chat model's tools: real MCP servers written with the SDK
(over stdio as a child process, and over streamable HTTP served by uvicorn), called
directly and by the reply brain on the real llama.cpp server with a forced
``tool_choice``; a server that crashes, hangs, answers too much or is down; and the
confirmation that waits for the user's yes. Each server writes the calls it gets to a
file, so a test sees what reached it."""

from __future__ import annotations

import asyncio
import json
import runpy
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from secretary.config import Settings, describe_invalid
from secretary.conversation.brain import ChatBrain, History
from secretary.conversation.build import build_brain
from secretary.conversation.settings import ConversationSettings
from secretary.conversation.stages import Cancel, Heard
from secretary.mcp.client import McpServers
from secretary.mcp.settings import McpSettings, parse_servers
from secretary.mcp.tools import McpToolbox, is_yes, tool_name
from secretary.skills.brain import SkillBrain
from tests.calendar.support import CalendarServer
from tests.conftest import make_settings
from tests.conversation.llama import MODEL_NAME, llama_server, needs_llama
from tests.conversation.scripted import called, said, scripted_chat
from tests.helpers import free_port, running_server
from tests.ui.support import ui_settings

# The MCP server of these tests: run as a script (stdio), or its ``build`` served over HTTP.
SERVER = '''
import asyncio
import os
import sys
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from pydantic import Field

# An order number is digits: the chat model's call, written under a grammar made from this
# schema, is one whatever the model (SmolLM2 once wrote "42,10389675,..." to its last token).
OrderNumber = Annotated[str, Field(pattern="^[0-9]{1,8}$")]


def build(log):
    server = MCPServer("orders", log_level="WARNING")

    def note(line):
        with open(log, "a", encoding="utf-8") as out:
            out.write(line + "\\n")

    @server.tool()
    def lookup_order(order_id: OrderNumber) -> str:
        """When an order ships, by its number."""
        note(f"lookup_order {order_id}")
        return f"Order {order_id} ships Friday"

    @server.tool()
    def cancel_order(order_id: OrderNumber) -> str:
        """Cancel an order, by its number."""
        note(f"cancel_order {order_id}")
        return f"Order {order_id} is cancelled"

    @server.tool()
    def cancel_subscription() -> str:
        """Cancel the user's subscription to the shop's newsletter."""
        note("cancel_subscription")
        return "The subscription is cancelled"

    @server.tool()
    async def slow_report() -> str:
        """A report that takes its time."""
        note("slow_report")
        await asyncio.sleep(60)
        return "late"

    @server.tool()
    def long_report() -> str:
        """Every order ever."""
        note("long_report")
        return "".join(f"order {n} shipped. " for n in range(2000))

    @server.tool()
    def crash() -> str:
        """Check the warehouse."""
        note("crash")
        sys.stdout.flush()
        os._exit(3)

    return server


if __name__ == "__main__":
    build(sys.argv[1]).run("stdio")
'''


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "orders_server.py"
    path.write_text(SERVER, encoding="utf-8")
    return path


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "calls.log"


def stdio(name: str, script: Path, log: Path) -> str:
    """A ``SECRETARY_MCP_SERVERS`` entry running the script with this Python."""
    return f"{name}={shlex.join([sys.executable, str(script), str(log)])}"


def calls(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


@pytest.fixture
def http_server(script: Path, log: Path) -> Iterator[str]:
    """The same server over streamable HTTP, behind a bearer token; its ``/mcp`` URL."""
    app = runpy.run_path(str(script))["build"](str(log)).streamable_http_app()

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (
                dict(scope["headers"]).get(b"authorization") != b"Bearer t0ken-abc"):
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"no"})
            return
        await app(scope, receive, send)

    with running_server(guarded) as url:
        yield f"{url}/mcp"


async def until(check: Callable[[], bool]) -> None:
    """Wait (30 s at most) until ``check`` holds."""
    for _ in range(600):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("waited in vain")


def servers_of(text: str, **options: Any) -> McpServers:
    settings = McpSettings(_env_file=None, servers=text, **options)
    return McpServers.from_settings(settings)


async def started(servers: McpServers) -> McpServers:
    servers.start()
    await servers.ready()
    return servers


# --------------------------------------------------------------------------- settings

def test_the_servers_setting_parses_commands_urls_and_headers() -> None:
    entries = parse_servers("files=npx -y server-files '/srv/my docs' ; "
                            "ha=https://ha.local/api/mcp|Authorization: Bearer abc|X-Home: 1")
    assert [e.name for e in entries] == ["files", "ha"]
    assert entries[0].command == ("npx", "-y", "server-files", "/srv/my docs")
    assert entries[1].url == "https://ha.local/api/mcp"
    assert entries[1].headers == {"Authorization": "Bearer abc", "X-Home": "1"}
    assert parse_servers("") == []


@pytest.mark.parametrize(("servers", "confirm", "problem"), [
    ("just-a-command", "", "has no '=command' or '=URL'"),
    ("two words=x", "", "must be 1 to 32 letters"),
    ("a__b=x", "", "not '__'"),
    ("a=x;a=y", "", "used twice"),
    ("a=ftp://host/x", "", "only http:// and https://"),
    ("a=https://host/mcp|Authorization", "", "a header must be 'Name: value'"),
    ("a=x", "a", "is not 'server.tool' or 'server.*'"),
    ("a=x", "b.*", "no server 'b'"),
])
def test_a_bad_setting_is_one_line_naming_the_variable(servers: str, confirm: str,
                                                       problem: str) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        McpSettings(_env_file=None, servers=servers, confirm=confirm)
    message = describe_invalid(caught.value)
    assert "\n" not in message and problem in message, message
    assert "SECRETARY_MCP_" in message


def test_tool_names_are_what_openai_accepts() -> None:
    assert tool_name("orders", "lookup_order") == "orders__lookup_order"
    odd = tool_name("files", "read.file/v2")
    assert odd.startswith("files__read_file_v2_") and odd == tool_name("files", "read.file/v2")
    long = tool_name("orders", "x" * 80)
    assert len(long) <= 64 and long != tool_name("orders", "x" * 81)
    for name in (odd, long):
        assert all(c.isalnum() or c in "_-" for c in name)


@pytest.mark.parametrize(("text", "yes"), [
    ("Yes.", True), ("Yes, please do it.", True), ("OK, go ahead!", True), ("Ja.", True),
    ("Ja, mach das bitte.", True), ("Mach das.", True), ("do it", True),
    ("No.", False), ("Nein, lass das.", False), ("Yes, but cancel order 7 instead.", False),
    ("Thank you.", False), ("", False), ("What is order 42?", False),
])
def test_what_counts_as_a_yes(text: str, yes: bool) -> None:
    assert is_yes(text) is yes


# --------------------------------------------------------------------------- the client

async def test_a_stdio_server_is_listed_and_called(script: Path, log: Path) -> None:
    servers = await started(servers_of(stdio("orders", script, log), max_result_chars=300))
    try:
        names = {tool.name for tool in servers.tools()["orders"]}
        assert {"lookup_order", "cancel_order", "crash"} <= names
        status = servers.status()["orders"]
        assert status["state"] == "up" and status["tools"] == len(names)
        assert status["transport"] == "stdio"
        assert status["where"] == Path(sys.executable).name  # not its arguments
        assert await servers.call("orders", "lookup_order", {"order_id": "42"}) == (
            "Order 42 ships Friday")
        assert calls(log) == ["lookup_order 42"]
        # An over-long result is cut, and says so.
        cut = await servers.call("orders", "long_report", {})
        assert cut.startswith("order 0 shipped.") and "The result was cut" in cut
        assert len(cut) < 300 + 120
        # Errors in words: a tool the server does not have, an unknown server.
        unknown = await servers.call("orders", "delete_everything", {})
        assert unknown.startswith("Error: the MCP server 'orders'"), unknown
        assert (await servers.call("nobody", "x", {})).startswith("Error: there is no MCP")
    finally:
        await servers.aclose()
    assert servers.status()["orders"]["state"] == "stopped"


async def test_a_call_past_the_timeout_is_an_error_and_the_server_stays_up(
        script: Path, log: Path) -> None:
    servers = await started(servers_of(stdio("orders", script, log), timeout_s=1.0))
    try:
        began = time.monotonic()
        result = await servers.call("orders", "slow_report", {})
        assert time.monotonic() - began < 10
        assert result.startswith("Error: the MCP server 'orders' did not finish slow_report"
                                 " within 1 s"), result
        assert "Order 7" in await servers.call("orders", "lookup_order", {"order_id": "7"})
    finally:
        await servers.aclose()


async def test_a_server_that_crashes_mid_call_is_an_error_and_comes_back(
        script: Path, log: Path) -> None:
    servers = await started(servers_of(stdio("orders", script, log), retry_s=0.5))
    try:
        result = await servers.call("orders", "crash", {})
        assert result.startswith("Error: the MCP server 'orders' went away during crash")
        await until(lambda: servers.status()["orders"]["connects"] == 2
                    and servers.status()["orders"]["state"] == "up")
        assert await servers.call("orders", "lookup_order", {"order_id": "9"}) == (
            "Order 9 ships Friday")
        assert calls(log) == ["crash", "lookup_order 9"]
    finally:
        await servers.aclose()


async def test_a_server_that_is_down_is_tried_again_every_retry(tmp_path: Path, script: Path,
                                                                 log: Path) -> None:
    # A command that fails until its flag file exists, then is the server.
    gate = tmp_path / "gate.py"
    flag = tmp_path / "open"
    gate.write_text(f"import os, runpy, sys\nif not os.path.exists({str(flag)!r}): "
                    f"sys.exit(1)\nsys.argv = [{str(script)!r}, {str(log)!r}]\n"
                    f"runpy.run_path({str(script)!r}, run_name='__main__')\n")
    servers = await started(servers_of(f"orders={shlex.join([sys.executable, str(gate)])}",
                                       retry_s=0.3, connect_timeout_s=5))
    try:
        status = servers.status()["orders"]
        assert status["state"] == "down" and status["error"], status
        result = await servers.call("orders", "lookup_order", {"order_id": "1"})
        assert result.startswith("Error: the MCP server 'orders' is not reachable"), result
        flag.touch()
        await until(lambda: servers.status()["orders"]["state"] == "up")
        assert "Order 1" in await servers.call("orders", "lookup_order", {"order_id": "1"})
    finally:
        await servers.aclose()


async def test_an_http_server_gets_its_headers_and_is_called(http_server: str,
                                                             log: Path) -> None:
    good = f"orders={http_server}?session=s3cret|Authorization: Bearer t0ken-abc"
    bad = f"locked={http_server}|Authorization: Bearer wrong-token"
    servers = await started(servers_of(f"{good};{bad}", retry_s=60))
    try:
        status = servers.status()
        assert status["orders"]["state"] == "up", status
        assert status["orders"]["where"] == http_server  # without the query
        assert status["locked"]["state"] == "down" and status["locked"]["error"]
        assert "wrong-token" not in json.dumps(status) and "s3cret" not in json.dumps(status)
        assert await servers.call("orders", "lookup_order", {"order_id": "42"}) == (
            "Order 42 ships Friday")
        assert calls(log) == ["lookup_order 42"]
    finally:
        await servers.aclose()


# --------------------------------------------------------------------------- the toolbox

class Skills:
    """A stand-in for the skills' toolbox: one tool, calls recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def specs(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {
            "name": "add_todo", "description": "Add a to-do.",
            "parameters": {"type": "object", "properties": {"task": {"type": "string"}}}}}]

    async def call(self, name: str, arguments: str, language: str | None,
                   session: str) -> str:
        self.calls.append((name, arguments))
        return "Added."


async def test_the_toolbox_offers_and_dispatches_both_and_answers_bad_calls_in_words(
        script: Path, log: Path) -> None:
    skills = Skills()
    settings = McpSettings(_env_file=None, servers=stdio("orders", script, log))
    toolbox = McpToolbox.from_settings(settings, skills)
    toolbox.start()
    await toolbox.ready()
    try:
        names = [spec["function"]["name"] for spec in toolbox.specs()]
        assert names[0] == "add_todo" and "orders__lookup_order" in names
        spec = next(s["function"] for s in toolbox.specs()
                    if s["function"]["name"] == "orders__lookup_order")
        assert "order_id" in spec["parameters"]["properties"]
        assert "orders" in spec["description"]
        assert await toolbox.call("add_todo", '{"task": "x"}', "en", "s1") == "Added."
        assert skills.calls == [("add_todo", '{"task": "x"}')]
        result = await toolbox.call("orders__lookup_order", '{"order_id": "5"}', "en", "s1")
        assert result == "Order 5 ships Friday"
        for name, arguments, problem in [
                ("orders__nothing", "{}", "there is no tool 'orders__nothing'"),
                ("delete_everything", "{}", "there is no tool 'delete_everything'"),
                ("orders__lookup_order", "not json", "are not JSON"),
                ("orders__lookup_order", "[1]", "must be a JSON object")]:
            answer = await toolbox.call(name, arguments, "en", "s1")
            assert answer.startswith("Error:") and problem in answer, answer
        assert calls(log) == ["lookup_order 5"]
    finally:
        await toolbox.aclose()


async def test_the_brain_checks_an_mcp_tools_arguments_against_its_schema(
        script: Path, log: Path) -> None:
    toolbox = McpToolbox.from_settings(
        McpSettings(_env_file=None, servers=stdio("orders", script, log)))
    toolbox.start()
    await toolbox.ready()
    with scripted_chat() as chat:
        brain = ChatBrain(chat.url, "scripted", "You help.", History(4, 8), tools=toolbox)
        try:
            chat.scripts += [called("orders__lookup_order", '{"order_id": 42}'),
                             called("orders__lookup_order", '{"order_id": "42"}'),
                             said("It ships Friday.")]
            heard = Heard("Where is order 42?", "en", 1.0, 2.0)
            answer = "".join([d async for d in brain.reply("s1", heard, Cancel())])
            assert answer.strip() == "It ships Friday."
            # The call with a number for the string was not made; the model read why.
            assert chat.tool_messages() == [
                "Error: arguments for orders__lookup_order: order_id: 42 is not of type "
                "'string'.", "Order 42 ships Friday"]
            assert calls(log) == ["lookup_order 42"]
        finally:
            await brain.aclose()
            await toolbox.aclose()


async def test_a_tool_to_confirm_waits_for_the_next_turns_yes(script: Path, log: Path) -> None:
    settings = McpSettings(_env_file=None, servers=stdio("orders", script, log),
                           confirm="orders.cancel_order")
    toolbox = McpToolbox.from_settings(settings)
    toolbox.start()
    await toolbox.ready()
    try:
        asked = await toolbox.call("orders__cancel_order", '{"order_id": "8"}', "en", "s1")
        assert asked.startswith("Not done yet: ask the user to confirm"), asked
        assert calls(log) == [] and toolbox.pending("s1")
        assert await toolbox.confirmed("s2", "yes") is None  # another session's yes
        assert await toolbox.confirmed("s1", "Yes, do it.") == "Order 8 is cancelled"
        assert calls(log) == ["cancel_order 8"]
        assert await toolbox.confirmed("s1", "yes") is None  # done once
        # Any other answer forgets the call.
        await toolbox.call("orders__cancel_order", '{"order_id": "9"}', "en", "s1")
        assert await toolbox.confirmed("s1", "No, leave it.") is None
        assert await toolbox.confirmed("s1", "yes") is None
        assert calls(log) == ["cancel_order 8"]
        # Tools not named in the setting run at once.
        assert "Order 3" in await toolbox.call("orders__lookup_order", '{"order_id": "3"}',
                                               "en", "s1")
    finally:
        await toolbox.aclose()


# --------------------------------------------------------------------------- /health

def test_the_health_of_the_ui_shows_each_mcp_server(cache_dir: Path, tmp_path: Path,
                                                    script: Path, log: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/mcp"
    settings = ui_settings(cache_dir, chat_url="http://127.0.0.1:9/v1", chat_model="m")
    settings.data_dir = tmp_path
    settings.conversation = settings.conversation.model_copy(update={"brain": "skills"})
    settings.mcp = McpSettings(_env_file=None, retry_s=60, servers=(
        f"{stdio('orders', script, log)};gone={down}|Authorization: Bearer hidden-token"))
    from secretary.ui.app import create_app

    with running_server(create_app(settings)) as url:
        deadline = time.monotonic() + 30
        while True:
            mcp = httpx.get(f"{url}/health", timeout=10).json()["conversation"]["mcp"]
            if mcp["gone"]["state"] == "down" and mcp["orders"]["state"] == "up":
                break
            assert time.monotonic() < deadline, mcp
            time.sleep(0.1)
    assert mcp["gone"]["where"] == down and mcp["gone"]["error"]
    assert mcp["orders"]["tools"] >= 5
    assert "hidden-token" not in json.dumps(mcp)


# --------------------------------------------------------------------------- the brain


@pytest.fixture(scope="module")
def chat() -> Iterator[str]:
    with llama_server() as url:
        yield url


# No template of the skills takes these ("Where is my order?" would be the memory's).
LAMP = "I bought a lamp last week with order 42. Has it left the shop yet?"


def brain_for(cache_dir: Path, tmp_path: Path, calendar: CalendarServer, chat: str,
              choice: str, servers: str, **mcp: Any) -> SkillBrain:
    settings: Settings = make_settings(cache_dir, data_dir=tmp_path, timezone="Europe/Berlin")
    settings.conversation = ConversationSettings(brain="skills", chat_tool_choice=choice,
                                                 chat_temperature=0.0, chat_max_tokens=40)
    settings.calendar = settings.calendar.model_copy(update={"url": calendar.url})
    settings.ui = settings.ui.model_copy(update={"chat_url": chat, "chat_model": MODEL_NAME})
    settings.mcp = McpSettings(_env_file=None, servers=servers, **mcp)
    brain = build_brain(settings)
    assert isinstance(brain, SkillBrain)
    return brain


async def say(brain: SkillBrain, text: str, session: str = "s1") -> str:
    heard = Heard(text, "en", 1.0, 2.0)
    return "".join([d async for d in brain.reply(session, heard, Cancel())]).strip()


def force(brain: SkillBrain, name: str) -> None:
    brain.chat.tool_choice = {"type": "function", "function": {"name": name}}  # type: ignore[union-attr]


def spy(tools: McpToolbox) -> list[str]:
    """The results the chat model reads, as it reads them."""
    results: list[str] = []
    call = tools.call

    async def recorded(name: str, arguments: str, language: str | None, session: str) -> str:
        results.append(await call(name, arguments, language, session))
        return results[-1]

    tools.call = recorded  # type: ignore[method-assign]
    return results


async def closing(brain: SkillBrain, test: Callable[[], Awaitable[None]]) -> None:
    try:
        await test()
    finally:
        await brain.aclose()


@needs_llama
async def test_the_chat_model_calls_a_stdio_servers_tool(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer, chat: str, script: Path,
        log: Path) -> None:
    brain = brain_for(cache_dir, tmp_path, calendar, chat, "orders__lookup_order",
                      stdio("orders", script, log), max_result_chars=200)
    assert isinstance(brain.tools, McpToolbox)
    results = spy(brain.tools)

    async def test() -> None:
        reply = await say(brain, LAMP)
        assert reply
        assert len(calls(log)) == 1 and calls(log)[0].startswith("lookup_order")
        assert results[-1].endswith("ships Friday")
        # An over-long result reaches the model cut, saying so.
        force(brain, "orders__long_report")
        assert await say(brain, "Give me the full story of all the shop's parcels so far.")
        assert calls(log)[1] == "long_report"
        assert results[-1].startswith("order 0 shipped.") and "was cut" in results[-1]
        assert len(results[-1]) < 200 + 120

    await closing(brain, test)


@needs_llama
async def test_the_chat_model_calls_an_http_servers_tool_from_the_typed_box(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer, chat: str,
        http_server: str, log: Path) -> None:
    brain = brain_for(cache_dir, tmp_path, calendar, chat, "shop__lookup_order",
                      f"shop={http_server}|Authorization: Bearer t0ken-abc")

    async def test() -> None:
        assert await brain.answer(LAMP, "en", [])
        assert len(calls(log)) == 1 and calls(log)[0].startswith("lookup_order")

    await closing(brain, test)


@needs_llama
async def test_a_crash_or_a_timeout_still_gets_a_reply_and_the_next_turn_works(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer, chat: str, script: Path,
        log: Path) -> None:
    brain = brain_for(cache_dir, tmp_path, calendar, chat, "orders__crash",
                      stdio("orders", script, log), retry_s=0.5, timeout_s=1.0)
    tools = brain.tools
    assert isinstance(tools, McpToolbox)
    results = spy(tools)

    async def test() -> None:
        assert await say(brain, "Is everything all right in the warehouse?")
        assert calls(log) == ["crash"]
        assert results[-1].startswith("Error: the MCP server 'orders' went away during crash")
        await until(lambda: tools.status()["orders"]["state"] == "up"
                    and tools.status()["orders"]["connects"] == 2)
        force(brain, "orders__slow_report")
        assert await say(brain, "How were the sales this week?")
        assert results[-1].startswith("Error: the MCP server 'orders' did not finish "
                                      "slow_report within 1 s"), results
        force(brain, "orders__lookup_order")
        assert await say(brain, LAMP)
        assert calls(log)[:2] == ["crash", "slow_report"]
        assert calls(log)[2].startswith("lookup_order")
        assert results[-1].endswith("ships Friday")

    await closing(brain, test)


@needs_llama
async def test_a_tool_to_confirm_runs_only_after_the_users_yes(
        cache_dir: Path, tmp_path: Path, calendar: CalendarServer, chat: str, script: Path,
        log: Path) -> None:
    brain = brain_for(cache_dir, tmp_path, calendar, chat, "orders__cancel_subscription",
                      stdio("orders", script, log), confirm="orders.*")

    async def test() -> None:
        assert await say(brain, "That newsletter of the shop annoys me, I want it gone.")
        assert calls(log) == []  # asked, not done
        assert await say(brain, "Yes, do it.") == "The subscription is cancelled"
        assert calls(log) == ["cancel_subscription"]

    await closing(brain, test)
