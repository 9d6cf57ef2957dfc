"""The conversation's items: what the user said or typed and what the secretary answered,
in order, as the protocol shows them (dicts; keys with a leading ``_`` stay on the server).

A committed audio buffer becomes a user item whose transcript follows. An assistant item
keeps which sentences began playing when (``_spoken``), so ``conversation.item.truncate``
can cut its transcript, and the chat history with it, to what the listener heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from secretary.conversation.stages import Cancel, Heard, StageError
from secretary.realtime.protocol import ProtocolError, check_event_text, new_id
from secretary.realtime.server_events import (
    InputAudioBufferCommitted,
    ItemAdded,
    ItemDone,
    ItemTruncated,
    TranscriptionCompleted,
    TranscriptionFailed,
)
from secretary.realtime.tools import output_item
from secretary.realtime.vad import RATE

if TYPE_CHECKING:
    from secretary.realtime.client_events import ItemCreate, ItemTruncate
    from secretary.realtime.session import RealtimeSession


def assistant_item(item_id: str, audio: bool) -> dict[str, Any]:
    """A reply's item, its one content part still empty."""
    return {"id": item_id, "object": "realtime.item", "type": "message",
            "role": "assistant", "status": "in_progress",
            "content": [{"type": "output_audio" if audio else "output_text",
                         "transcript" if audio else "text": ""}]}


class Conversation:
    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.items: list[dict[str, Any]] = []
        self.transcripts: dict[str, asyncio.Task[str]] = {}  # by user item id

    def last_id(self) -> str | None:
        return self.items[-1]["id"] if self.items else None

    # ------------------------------------------------------------------ client events
    async def create(self, event: ItemCreate) -> None:
        item = event.item
        if not isinstance(item, dict):
            raise ProtocolError("item must be an object", param="item")
        if item.get("type") == "function_call_output":
            await self.add(output_item(item, self.items))
            return
        if item.get("type", "message") != "message" or item.get("role") not in (
                "user", "system", "assistant"):
            raise ProtocolError("only message items (user, assistant or system) and "
                                "function_call_output items are supported here",
                                code="unsupported_item", param="item.type")
        content = item.get("content")
        if not isinstance(content, list) or not content:
            raise ProtocolError("item.content must be a non-empty list", param="item.content")
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in (
                    "input_text", "text", "output_text"):
                raise ProtocolError("content parts must be text (input_text) here",
                                    code="unsupported_content", param="item.content")
            text = part.get("text")
            if not isinstance(text, str) or len(text) > 16384:
                raise ProtocolError("content text must be a string of at most 16384 "
                                    "characters", param="item.content.text")
            check_event_text(text, "item.content.text")
            texts.append(text)
        stored = {"id": item.get("id") if isinstance(item.get("id"), str) else new_id("item"),
                  "object": "realtime.item", "type": "message", "role": item["role"],
                  "status": "completed",
                  "content": [{"type": "input_text", "text": t} for t in texts]}
        await self.add(stored)

    async def truncate(self, event: ItemTruncate) -> None:
        item_id, end = event.item_id, event.audio_end_ms
        item = next((i for i in self.items if i["id"] == item_id), None)
        if item is None or item.get("role") != "assistant":
            raise ProtocolError(f"no assistant item {item_id!r}", code="item_not_found",
                                param="item_id")
        if not isinstance(end, int) or end < 0:
            raise ProtocolError("audio_end_ms must be a non-negative integer",
                                param="audio_end_ms")
        spoken = item.get("_spoken", [])
        text = " ".join(s.text for s in spoken if s.start * 1000 < end)
        item["content"][0]["transcript"] = text
        remembered = item.get("_remembered")
        if remembered is not None and remembered[1] != text:
            # The chat history, too, keeps only what was heard.
            self.session.stages.brain.revise(self.session.id, *remembered, text)
            item["_remembered"] = (remembered[0], text) if text else None
        await self.session.emit(ItemTruncated(item_id=item_id, audio_end_ms=end))

    # ------------------------------------------------------------------ items
    async def add(self, item: dict[str, Any]) -> None:
        previous = self.last_id()
        self.items.append(item)
        await self.session.emit(ItemAdded(previous_item_id=previous, item=item))
        await self.session.emit(ItemDone(previous_item_id=previous, item=item))

    async def add_user_audio(self, item_id: str, audio: np.ndarray,
                             early: asyncio.Task[Heard] | None = None) -> asyncio.Task[str]:
        """The committed buffer as a user item; its transcript comes in a task (``early``
        where it was started before the turn ended)."""
        await self.session.emit(InputAudioBufferCommitted(item_id=item_id,
                                                          previous_item_id=self.last_id()))
        item = {"id": item_id, "object": "realtime.item", "type": "message", "role": "user",
                "status": "completed",
                "content": [{"type": "input_audio", "transcript": None}]}
        await self.add(item)
        task = self.session.spawn(self._transcribe(item, audio, early))
        self.transcripts[item_id] = task
        return task

    async def _transcribe(self, item: dict[str, Any], audio: np.ndarray,
                          early: asyncio.Task[Heard] | None = None) -> str:
        session = self.session
        try:
            if early is not None:
                heard = await early
            else:
                heard = await session.stages.transcriber.transcribe(
                    audio, session.config.language, Cancel())
        except StageError as exc:
            if session.config.transcription is not None:
                await session.emit(TranscriptionFailed(
                    item_id=item["id"], error={"type": "transcription_error",
                                               "code": exc.code, "message": exc.message}))
            return ""
        text = heard.text.strip()
        if "speech_stopped" in session.marks:
            session.marks.setdefault("transcribed", time.perf_counter())
        item["content"][0]["transcript"] = text
        item["language"] = heard.language
        if session.config.transcription is not None:
            await session.emit(TranscriptionCompleted(
                item_id=item["id"], transcript=text,
                usage={"type": "duration", "seconds": round(len(audio) / RATE, 3)},
                language=heard.language))
        return text

    async def transcribed(self) -> None:
        """Wait for the user items' transcripts still being made."""
        for task in list(self.transcripts.values()):
            with contextlib.suppress(BaseException):
                await task

    def user_text(self) -> tuple[str, str | None]:
        """The last user item's text (typed, or its transcript) and language."""
        for item in reversed(self.items):
            if item.get("role") != "user":
                continue
            part = item["content"][0]
            text = part.get("text") if part["type"] == "input_text" else part.get("transcript")
            return (text or "").strip(), item.get("language")
        return "", None

    def remember(self, item: dict[str, Any], user: str, reply: str) -> None:
        """The exchange into the chat history (what a truncate may revise)."""
        self.session.stages.brain.remember(self.session.id, user, reply)
        item["_remembered"] = (user, reply)
