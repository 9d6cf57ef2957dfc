"""The secretary's skills as an MCP server, driven by the MCP SDK's own clients.

``secretary mcp`` runs as a real child process on a real calendar server (the calendar
service, Radicale, in another child process) and is spoken to over its stdin and stdout;
``/mcp`` is served by the UI app under a real uvicorn server, with the skills of its
conversation's brain. What the tools write is read back from the CalDAV server by a
plain client that shares no code with the secretary.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import httpx
import httpx2
import icalendar
import pydantic
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ListToolsResult, TextContent

from secretary.config import Settings
from secretary.skills.tools import SkillTools
from secretary.ui.app import create_app as create_ui_app
from tests.calendar.support import CalendarServer, plain_calendar
from tests.helpers import child_environment, running_server
from tests.ui.support import ui_settings

ZONE = "Europe/Berlin"
CALL_TIMEOUT_S = 60.0
# What the chat model gets as tools: the MCP tools must be the same.
SPECS = {spec["function"]["name"]: spec["function"]
         for spec in SkillTools(None).specs()}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def calendar_url(calendar: CalendarServer) -> str:
    return calendar.url


def child_env(calendar_url: str, data_dir: Path) -> dict[str, str]:
    return child_environment() | {"SECRETARY_CALENDAR_URL": calendar_url,
                                  "SECRETARY_DATA_DIR": str(data_dir),
                                  "SECRETARY_TIMEZONE": ZONE}


def soon(days: int, hour: int, minute: int = 0) -> datetime:
    """A time some days ahead, in the secretary's zone."""
    day = datetime.now(ZoneInfo(ZONE)).date() + timedelta(days=days)
    return datetime.combine(day, time(hour, minute), ZoneInfo(ZONE))


def text_of(result: CallToolResult) -> str:
    assert len(result.content) == 1, result
    content = result.content[0]
    assert isinstance(content, TextContent), content
    return content.text


def components(url: str, kind: str) -> list[Any]:
    """The calendar's events or to-dos as another client reads them."""
    found = plain_calendar(url, "Secretary").search(event=kind == "VEVENT",
                                                    todo=kind == "VTODO")
    return [component for item in found
            for component in icalendar.Calendar.from_ical(item.data).walk(kind)]


def assert_tools_are_the_skills(listed: ListToolsResult) -> None:
    tools = {tool.name: tool for tool in listed.tools}
    assert {"add_event", "add_reminder", "remember", "recall"} <= set(tools)
    assert set(tools) == set(SPECS)
    for name, tool in tools.items():
        assert tool.description == SPECS[name]["description"]
        assert tool.input_schema == SPECS[name]["parameters"]


async def test_stdio_server_serves_the_skills_and_survives_bad_calls(
        calendar_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "secretary", "mcp"],
        env=child_env(calendar_url, data_dir), cwd=tmp_path)  # cwd: no .env of a developer
    unexpected: list[Any] = []  # anything on stdout that is not a protocol message

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            unexpected.append(message)

    with (tmp_path / "stderr.log").open("w") as errlog:
        with anyio.fail_after(CALL_TIMEOUT_S * 2):
            async with (stdio_client(params, errlog=errlog) as (read, write),
                        ClientSession(read, write, message_handler=on_message) as session):
                initialized = await session.initialize()
                assert initialized.server_info.name == "secretary"
                assert ZONE in (initialized.instructions or "")
                assert_tools_are_the_skills(await session.list_tools())

                start = soon(2, 9, 30)
                added = await session.call_tool(
                    "add_event", {"title": "Dentist", "start": start.isoformat()[:16]})
                assert not added.is_error, text_of(added)
                assert "Dentist" in text_of(added)
                events = [e for e in components(calendar_url, "VEVENT")
                          if "Dentist" in str(e["SUMMARY"])]
                assert len(events) == 1
                assert events[0]["DTSTART"].dt == start  # the naive time was Berlin's
                assert events[0]["DTEND"].dt == start + timedelta(hours=1)

                missing = await session.call_tool("add_event", {"title": "Lunch"})
                assert missing.is_error
                assert text_of(missing).startswith("Error:")
                assert "start" in text_of(missing)

                bad_time = await session.call_tool(
                    "add_reminder", {"task": "call mum", "due": "next tuesday-ish"})
                assert bad_time.is_error
                assert "ISO 8601" in text_of(bad_time)
                assert "next tuesday-ish" in text_of(bad_time)

                unknown = await session.call_tool("fly_to_the_moon", {})
                assert unknown.is_error
                assert "fly_to_the_moon" in text_of(unknown)

                # Still serving after the refusals.
                remembered = await session.call_tool(
                    "remember", {"fact": "my sister Anna likes green tea"})
                assert not remembered.is_error, text_of(remembered)
                recalled = await session.call_tool("recall", {"subject": "Anna"})
                assert not recalled.is_error, text_of(recalled)
                assert "green tea" in text_of(recalled)

                reminder = await session.call_tool(
                    "add_reminder", {"task": "water the plants",
                                     "due": soon(3, 18).isoformat()})
                assert not reminder.is_error, text_of(reminder)
    assert not unexpected, unexpected
    assert not [e for e in components(calendar_url, "VEVENT") if "Lunch" in str(e["SUMMARY"])]


def test_stdio_stdout_carries_only_the_protocol(calendar_url: str, tmp_path: Path) -> None:
    """Every line on stdout is a JSON-RPC message, even with debug logging on: the logs
    are on stderr."""
    errors = tmp_path / "stderr.log"
    with errors.open("wb") as errlog:
        child = subprocess.Popen(
            [sys.executable, "-m", "secretary", "--verbose", "mcp"], cwd=tmp_path,
            env=child_env(calendar_url, tmp_path / "data"), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=errlog)
    assert child.stdin is not None and child.stdout is not None
    try:
        def ask(message: dict[str, Any]) -> dict[str, Any] | None:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(json.dumps(message).encode() + b"\n")
            child.stdin.flush()
            if "id" not in message:
                return None
            while True:  # a notification may come first: protocol too, skipped
                answer = json.loads(child.stdout.readline())
                assert answer["jsonrpc"] == "2.0", answer
                if answer.get("id") == message["id"]:
                    return answer

        hello = ask({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "a desktop agent", "version": "1"}}})
        assert hello is not None and hello["result"]["serverInfo"]["name"] == "secretary"
        ask({"jsonrpc": "2.0", "method": "notifications/initialized"})
        listed = ask({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert listed is not None
        assert {tool["name"] for tool in listed["result"]["tools"]} == set(SPECS)
        noted = ask({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "add_note", "arguments": {"text": "the boiler code is 4711"}}})
        assert noted is not None and noted["result"]["isError"] is False, noted
        refused = ask({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "add_note", "arguments": {}}})
        assert refused is not None and refused["result"]["isError"] is True, refused
        assert "text" in refused["result"]["content"][0]["text"]
        child.stdin.close()
        assert child.wait(30) == 0
        rest = child.stdout.read().decode()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    for line in rest.splitlines():
        assert json.loads(line)["jsonrpc"] == "2.0", line
    logged = errors.read_text()
    assert "DEBUG" in logged or "INFO" in logged, logged  # the logs went somewhere: stderr


def skills_settings(cache_dir: Path, data_dir: Path, calendar_url: str, **extra: Any
                    ) -> Settings:
    """The UI with the skills on (conftest.py turns them off), no avatar, nothing loaded
    before a turn."""
    settings = ui_settings(cache_dir)
    settings.data_dir = data_dir
    settings.timezone = ZONE
    settings.conversation = settings.conversation.model_copy(
        update={"brain": "skills", "avatar": False, "preload": False})
    settings.calendar = settings.calendar.model_copy(update={"url": calendar_url})
    for name, value in extra.items():
        setattr(settings, name, value)
    return settings


async def mcp_session_run(url: str, headers: dict[str, str], work: Any) -> Any:
    with anyio.fail_after(CALL_TIMEOUT_S):
        async with (httpx2.AsyncClient(headers=headers, timeout=30) as http,
                    streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
                    ClientSession(read, write) as session):
            await session.initialize()
            return await work(session)


async def test_http_mcp_on_the_ui_server_uses_the_conversations_skills(
        cache_dir: Path, calendar_url: str, tmp_path: Path) -> None:
    settings = skills_settings(cache_dir, tmp_path / "data", calendar_url)
    assert settings.mcp.http  # on by default
    app = create_ui_app(settings)
    secretary = app.state.service.conversation.pipeline.brain.secretary
    changes: list[str] = []
    secretary.listeners.append(changes.append)

    async def work(session: ClientSession) -> CallToolResult:
        assert_tools_are_the_skills(await session.list_tools())
        return await session.call_tool("add_todo", {"task": "buy oat milk"})

    with running_server(app) as url:
        added = await mcp_session_run(url, {}, work)
        assert not added.is_error, text_of(added)
        assert "oat milk" in text_of(added)
    assert changes == ["add_todo"]  # done by the brain's own skills
    todos = [str(todo["SUMMARY"]) for todo in components(calendar_url, "VTODO")]
    assert any("oat milk" in todo for todo in todos), todos


async def test_http_mcp_needs_the_api_key(cache_dir: Path, calendar_url: str,
                                          tmp_path: Path) -> None:
    settings = skills_settings(cache_dir, tmp_path / "data", calendar_url,
                               api_key=pydantic.SecretStr("mcp-test-key"))
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "curl", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}

    async def work(session: ClientSession) -> CallToolResult:
        return await session.call_tool("add_todo", {"task": "renew the passport"})

    with running_server(create_ui_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=accept) as client:
            refused = await client.post("/mcp", json=hello)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["code"] == "unauthorized"
            wrong = await client.post("/mcp", json=hello,
                                      headers={"Authorization": "Bearer not-the-key"})
            assert wrong.status_code == 401, wrong.text
            # A page on another site cannot make the server act, key or not.
            foreign = await client.post("/mcp", json=hello, headers={
                "Authorization": "Bearer mcp-test-key", "Origin": "https://evil.example"})
            assert foreign.status_code == 403, foreign.text
            answered = await client.post("/mcp", json=hello,
                                         headers={"Authorization": "Bearer mcp-test-key"})
            assert answered.status_code == 200, answered.text
            assert answered.json()["result"]["serverInfo"]["name"] == "secretary"

        added = await mcp_session_run(url, {"Authorization": "Bearer mcp-test-key"}, work)
        assert not added.is_error, text_of(added)
    todos = [str(todo["SUMMARY"]) for todo in components(calendar_url, "VTODO")]
    assert any("renew the passport" in todo for todo in todos), todos


def test_http_mcp_off(cache_dir: Path, calendar_url: str, tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRETARY_MCP_HTTP", "false")
    settings = skills_settings(cache_dir, tmp_path / "data", calendar_url)
    assert not settings.mcp.http
    with running_server(create_ui_app(settings)) as url:
        answer = httpx.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                            timeout=30)
        assert answer.status_code == 404, answer.text
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
