"""The secretary as the conversation's brain: its skills answer first, and what they do not
understand goes to the chat model where one is configured, else a short "what I can do".

With a chat model, what the memory holds about the request goes into its system prompt, so
"what should I bring my sister?" can use "my sister likes tea" said last week.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from secretary.conversation.stages import Brain, Cancel, Heard
from secretary.skills.phrases import LANGUAGES, say
from secretary.skills.service import Secretary

log = logging.getLogger(__name__)

_FACTS = 3  # remembered facts offered to the chat model per turn


class SkillBrain:
    """A ``Brain``: the skills, then ``chat`` (None: no chat model)."""

    def __init__(self, secretary: Secretary, chat: Brain | None, history: Any) -> None:
        self.secretary = secretary
        self.chat = chat
        self.history = history

    def describe(self) -> dict[str, Any]:
        model = self.chat.describe().get("model") if self.chat is not None else None
        return {"source": "skills", "model": model}

    def with_instructions(self, instructions: str) -> SkillBrain:
        """The same skills, with a session's own system prompt for the chat model."""
        chat = self.chat
        change = getattr(chat, "with_instructions", None)
        return SkillBrain(self.secretary, change(instructions) if change else chat,
                          self.history)

    async def reply(self, session: str, heard: Heard, cancel: Cancel) -> AsyncIterator[str]:
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
        answer = await self.secretary.handle("typed", text, language)
        if answer is not None:
            return answer.text
        if self.chat is None:
            return say(_language(language), "help")
        chat = await self._informed(text)
        return await chat.answer(text, language, history)

    async def _informed(self, text: str) -> Brain:
        """The chat model with the remembered facts that bear on ``text`` in its prompt."""
        assert self.chat is not None
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
