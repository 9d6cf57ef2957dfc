"""The interface of what the secretary answers (a reply engine), and its values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Reply:
    text: str
    source: str  # "echo" or "chat"
    model: str | None = None


class ReplyEngine(Protocol):
    def describe(self) -> dict[str, str | None]: ...

    async def reply(self, text: str, language: str | None, history: list[Turn]) -> Reply: ...
