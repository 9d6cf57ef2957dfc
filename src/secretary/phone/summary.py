"""A call's summary by the chat model, where one is configured (``SECRETARY_UI_CHAT_URL``,
``_CHAT_MODEL``, ``_CHAT_API_KEY``, the same model the secretary talks with): a sentence or
two on who called, what about and how to call back. Without a chat model, or where it
fails, answers nothing or takes longer than 20 s (or ``SECRETARY_UI_CHAT_TIMEOUT`` where
that is shorter), the summary stays the caller's first sentences; the call's record is kept
either way."""

from __future__ import annotations

import asyncio
import logging
import re

from secretary.config import Settings
from secretary.conversation.brain import ChatBrain, History
from secretary.conversation.stages import Cancel, Heard
from secretary.phone.calls import CallRecord, first_sentences

log = logging.getLogger(__name__)

PROMPT = (
    "You write short notes about telephone calls that a secretary took for the user. You "
    "are given the call's transcript. Reply with one or two short sentences: who called, "
    "what they want, and how to call them back if they said so. Write only the note, in "
    "the language of the call, without a heading or a list.")
_LABEL = re.compile(r"^\s*(?:summary|note|zusammenfassung|notiz)\s*:\s*", re.IGNORECASE)
MAX_CHARS = 300
TIMEOUT_S = 20.0  # the longest wait for a summary (less where SECRETARY_UI_CHAT_TIMEOUT is)
MAX_TOKENS = 96


class CallSummarizer:
    """The chat model asked for a call's summary, within a deadline."""

    def __init__(self, url: str, model: str, *, api_key: str | None = None,
                 timeout: float = TIMEOUT_S, max_tokens: int = MAX_TOKENS,
                 language: str = "en") -> None:
        self.timeout = timeout
        self.language = language
        # Its own client and an empty history: nothing of the calls is remembered.
        self.brain = ChatBrain(url, model, PROMPT, History(0, 1), api_key=api_key,
                               timeout=timeout, max_tokens=max_tokens, temperature=0.2)

    @classmethod
    def from_settings(cls, settings: Settings) -> CallSummarizer | None:
        ui, phone = settings.ui, settings.phone
        if not ui.chat_url or not ui.chat_model:
            return None
        return cls(ui.chat_url, ui.chat_model,
                   api_key=ui.chat_api_key.get_secret_value() if ui.chat_api_key else None,
                   timeout=min(TIMEOUT_S, ui.chat_timeout),
                   language=phone.language if phone.language in ("en", "de") else "en")

    async def aclose(self) -> None:
        await self.brain.aclose()

    @staticmethod
    def transcript(record: CallRecord) -> str:
        names = {"caller": "Caller", "secretary": "Secretary"}
        lines = [f"{names.get(line.who, line.who)}: {line.text}" for line in record.lines
                 if line.who in names]
        return f"A call from {record.caller()}.\n" + "\n".join(lines)

    async def summarize(self, record: CallRecord) -> None:
        """The record's ``summary`` from the model (``summary_source`` "chat"); left as it
        is where the caller said nothing, or the model fails or is too slow. Never raises
        (but for cancellation)."""
        if not any(line.who == "caller" for line in record.lines):
            return  # no message was left: nothing to summarize
        heard = Heard(self.transcript(record), self.language, 1.0, 0.0)
        text = ""
        try:
            async with asyncio.timeout(self.timeout):
                async for delta in self.brain.reply(f"call-{record.id}", heard, Cancel()):
                    text += delta
                    if len(text) > 2 * MAX_CHARS:
                        break  # enough for two sentences
        except TimeoutError:
            log.warning("phone: the chat model gave no summary of call %s within %g s; the "
                        "caller's first sentences stand", record.id, self.timeout)
            return
        except Exception as exc:  # noqa: BLE001 - the record must be kept whatever happens
            log.warning("phone: the chat model could not summarize call %s (%s); the "
                        "caller's first sentences stand", record.id, exc)
            return
        summary = first_sentences(_LABEL.sub("", text.replace("*", " ")), 2, MAX_CHARS)
        if summary:
            record.summary = summary
            record.summary_source = "chat"
