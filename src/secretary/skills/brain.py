"""The secretary as the conversation's brain: its skills answer first, and what they do not
understand goes to the chat model where one is configured, else a short "what I can do".

With a chat model, what the memory holds about the request goes into its system prompt, so
"what should I bring my sister?" can use "my sister likes tea" said last week.

Where the chat model has MCP servers' tools (``secretary.mcp.tools.McpToolbox``), a call
that waits for the user's yes is settled first, before the skills hear the turn: a yes
makes the call and its result is the answer.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator
from typing import Any

from secretary.conversation.stages import Brain, Cancel, Heard
from secretary.skills.phrases import LANGUAGES, say
from secretary.skills.service import Secretary

log = logging.getLogger(__name__)

_FACTS = 3  # remembered facts offered to the chat model per turn


class SkillBrain:
    """A ``Brain``: the skills, then ``chat`` (None: no chat model). ``tools``: the chat
    model's toolbox where it has MCP servers (waited for, confirmed, closed from here)."""

    def __init__(self, secretary: Secretary, chat: Brain | None, history: Any,
                 tools: Any = None) -> None:
        self.secretary = secretary
        self.chat = chat
        self.history = history
        self.tools = tools

    def describe(self) -> dict[str, Any]:
        model = self.chat.describe().get("model") if self.chat is not None else None
        return {"source": "skills", "model": model}

    def with_instructions(self, instructions: str) -> SkillBrain:
        """The same skills, with a session's own system prompt for the chat model."""
        chat = self.chat
        change = getattr(chat, "with_instructions", None)
        return SkillBrain(self.secretary, change(instructions) if change else chat,
                          self.history, self.tools)

    def mcp_status(self) -> dict[str, Any] | None:
        """The MCP servers' states for ``/health`` (None without MCP servers)."""
        return self.tools.status() if self.tools is not None else None

    async def aclose(self) -> None:
        if self.tools is not None:
            await self.tools.aclose()

    def with_client_tools(self, *args: Any, **kwargs: Any) -> SkillBrain:
        """The same skills, the chat model offering a Realtime client's functions too
        (``ChatBrain.with_client_tools``)."""
        brain = copy.copy(self)
        change = getattr(self.chat, "with_client_tools", None)
        brain.chat = change(*args, **kwargs) if change else self.chat
        return brain

    async def reply(self, session: str, heard: Heard, cancel: Cancel) -> AsyncIterator[str]:
        done = await self._confirmed(session, heard.text)
        if done is not None:
            yield done
            return
        answer = await self.secretary.handle(session, heard.text, heard.language)
        if answer is not None:
            yield answer.text
            return
        if self.chat is None:
            yield say(_language(heard.language), "help")
            return
        chat = await self._informed(heard.text)
        async for delta in chat.reply(session, heard, cancel):
            yield delta

    async def answer(self, text: str, language: str | None,
                     history: list[tuple[str, str]]) -> str:
        # The typed box keeps its own history: questions asked back wait under one name.
        done = await self._confirmed("typed", text)
        if done is not None:
            return done
        answer = await self.secretary.handle("typed", text, language)
        if answer is not None:
            return answer.text
        if self.chat is None:
            return say(_language(language), "help")
        chat = await self._informed(text)
        return await chat.answer(text, language, history)

    async def _confirmed(self, session: str, text: str) -> str | None:
        """The result of a tool call that waited for this yes (None: no such call)."""
        if self.tools is None:
            return None
        return await self.tools.confirmed(session, text)

    async def _informed(self, text: str) -> Brain:
        """The chat model with the remembered facts that bear on ``text`` in its prompt
        (and the MCP servers' tools listed, once, before it first runs)."""
        assert self.chat is not None
        if self.tools is not None:
            await self.tools.ready()
        change = getattr(self.chat, "with_instructions", None)
        prompt = getattr(self.chat, "system_prompt", None)
        if change is None or prompt is None:
            return self.chat
        try:
            facts = await asyncio.to_thread(self.secretary.notes.search, text, "memory",
                                            _FACTS)
        except Exception as exc:  # the memory unreadable: answer without it, say so in the log
            log.warning("memory not searchable: %s", exc)
            return self.chat
        if not facts:
            return self.chat
        known = "\n".join(f"- {note.text}" for note in facts)
        return change(f"{prompt}\nWhat the user told you earlier:\n{known}")

    def remember(self, session: str, user: str, assistant: str) -> None:
        self.history.add(session, user, assistant)

    def revise(self, session: str, user: str, before: str, after: str) -> None:
        self.history.revise(session, user, before, after)


def _language(language: str | None) -> str:
    return language if language in LANGUAGES else "en"
