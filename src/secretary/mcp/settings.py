"""The Model Context Protocol's settings (``SECRETARY_MCP_*``)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

from secretary.settings_base import group

# A server's name: the first part of its tools' names for the chat model (``name__tool``).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP header's name (a token)
_SYNTAX = "use 'name=command args' or 'name=https://host/path|Header: value', ';' between servers"


@dataclass(frozen=True)
class ServerEntry:
    """One MCP server of ``SECRETARY_MCP_SERVERS``: a command (stdio) or a URL (streamable
    HTTP) with its headers."""

    name: str
    command: tuple[str, ...] = ()
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict, hash=False)


def parse_servers(text: str) -> list[ServerEntry]:
    """``name=command args;name=http(s)://url|Header: value|Header: value`` as entries
    (``ValueError`` naming SECRETARY_MCP_SERVERS and the entry that is wrong)."""
    entries: list[ServerEntry] = []
    for index, raw in enumerate(text.split(";"), 1):
        item = raw.strip()
        if not item:
            continue
        name, sep, rest = item.partition("=")
        name, rest = name.strip(), rest.strip()
        where = f"SECRETARY_MCP_SERVERS: server {index}"
        if not sep or not rest:
            raise ValueError(f"{where} ({name[:40]!r}) has no '=command' or '=URL'; {_SYNTAX}")
        if not _NAME.match(name) or "__" in name:
            raise ValueError(f"{where}: the name {name[:40]!r} must be 1 to 32 letters, "
                             "digits, '-' or '_' (not '__'), starting with a letter or digit")
        if any(entry.name == name for entry in entries):
            raise ValueError(f"{where}: the name {name!r} is used twice")
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", rest):
            url, *pairs = (part.strip() for part in rest.split("|"))
            if not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
                raise ValueError(f"{where} ({name!r}): only http:// and https:// URLs are "
                                 "served (streamable HTTP); a local server is a command")
            headers: dict[str, str] = {}
            for pair in pairs:
                key, colon, value = pair.partition(":")
                if not colon or not _HEADER.match(key.strip()) or not value.strip():
                    raise ValueError(f"{where} ({name!r}): a header must be 'Name: value', "
                                     "after a '|' behind the URL")
                headers[key.strip()] = value.strip()
            entries.append(ServerEntry(name, url=url, headers=headers))
            continue
        try:
            command = tuple(shlex.split(rest))
        except ValueError as exc:
            raise ValueError(f"{where} ({name!r}): the command does not parse ({exc})") from None
        entries.append(ServerEntry(name, command=command))
    return entries


def parse_confirm(text: str) -> list[tuple[str, str]]:
    """``server.tool,server.*`` as (server, tool or '*') pairs (``ValueError`` naming
    SECRETARY_MCP_CONFIRM)."""
    rules: list[tuple[str, str]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        server, dot, tool = item.partition(".")
        if not dot or not _NAME.match(server) or not tool.strip():
            raise ValueError(f"SECRETARY_MCP_CONFIRM: {item[:60]!r} is not 'server.tool' or "
                             "'server.*'")
        rules.append((server, tool.strip()))
    return rules


class McpSettings(BaseSettings):
    """MCP servers the chat model may use as tools, and the secretary's own MCP server."""

    model_config = group("SECRETARY_MCP_")

    servers: str = Field(
        default="",
        json_schema_extra={"example": 'files=npx -y @modelcontextprotocol/server-filesystem '
                           '/srv/docs;ha=https://ha.local/api/mcp|Authorization: Bearer abc'},
        description="MCP servers whose tools the chat model may call, ';'-separated "
        "'name=command args' (stdio) or 'name=http(s)://url' (streamable HTTP), a URL "
        "followed by '|Header: value' pairs for its headers.",
    )
    confirm: str = Field(
        default="",
        json_schema_extra={"example": "ha.turn_on,files.write_file"},
        description="Tools ('server.tool', or 'server.*') that change something outside: "
        "the secretary asks the user and calls them only after a yes.",
    )
    timeout_s: float = Field(default=20.0, gt=0, le=600,
                             description="Seconds one MCP tool call may take.")
    connect_timeout_s: float = Field(default=15.0, gt=0, le=600,
                                     description="Seconds to connect to an MCP server.")
    retry_s: float = Field(default=30.0, gt=0, le=3600,
                           description="Seconds between tries to reach a server that is down.")
    max_result_chars: int = Field(
        default=8000, ge=100, le=1_000_000,
        description="A tool result longer than this is cut (and says so) before the chat "
        "model reads it.")
    http: bool = Field(
        default=True,
        description="Serve the secretary's skills as an MCP server (streamable HTTP) at /mcp "
        "on the UI server, behind the API key.",
    )

    @field_validator("servers")
    @classmethod
    def _check_servers(cls, value: str) -> str:
        parse_servers(value)
        return value

    @field_validator("confirm")
    @classmethod
    def _check_confirm(cls, value: str) -> str:
        parse_confirm(value)
        return value

    @model_validator(mode="after")
    def _check_confirmed_servers(self) -> McpSettings:
        # A typo here would let a tool run unasked: a name must be one of the servers.
        known = {entry.name for entry in parse_servers(self.servers)}
        for server, tool in parse_confirm(self.confirm):
            if server not in known:
                raise ValueError(f"SECRETARY_MCP_CONFIRM names {server}.{tool}, but there is "
                                 f"no server {server!r} in SECRETARY_MCP_SERVERS")
        return self

    def server_entries(self) -> list[ServerEntry]:
        return parse_servers(self.servers)

    def confirm_rules(self) -> list[tuple[str, str]]:
        return parse_confirm(self.confirm)
