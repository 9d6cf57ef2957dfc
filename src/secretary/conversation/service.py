"""The conversation service in plain Python, between an HTTP layer (``app.py``) and the
pipeline: portraits uploaded once per page session and referred to by key, the recording
decoded and checked before a turn starts (so bad input is a 4xx, not an event), a bound on
turns at once, the turns in progress by id (so one can be interrupted from another
request), a typed transcript answered whole, and Talk mode's end-of-speech check.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import numpy as np

from secretary import audio
from secretary.avatar.engine import EXPRESSIONS, MAX_INTENSITY
from secretary.config import Settings
from secretary.conversation import endpointing
from secretary.conversation.build import build_pipeline
from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.runner import Pipeline, Turn, TurnInput
from secretary.conversation.stages import Look, StageError
from secretary.errors import (
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceBusyError,
    UnprocessableError,
)
from secretary.turns.rule import EndOfTurnRule, load_rule
from secretary.validation import check_text

_SESSION = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_PORTRAIT = "default"
STALE_SECONDS = 600.0
MAX_REPLY_INPUT_CHARS = 4000
MAX_HISTORY_TURNS = 20
# Silence after which Smart Turn is asked whether the utterance is finished (as the
# realtime service asks at each pause of three VAD frames).
PAUSE_BEFORE_VERDICT = 0.096


class PortraitStore:
    """Portraits by key (a content hash), LRU; ``default`` is the packaged one."""

    def __init__(self, default: bytes | None, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.default = default

    @staticmethod
    def key_of(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:24]

    def add(self, data: bytes) -> str:
        key = self.key_of(data)
        with self._lock:
            self._items[key] = data
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> bytes:
        if key == DEFAULT_PORTRAIT and self.default is not None:
            return self.default
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
        if data is None:
            raise NotFoundError(
                f"portrait {key!r} is not known here (the server restarted or forgot it); "
                "upload it again to /api/portrait", param="portrait")
        return data


class ConversationService:
    def __init__(self, settings: Settings, metrics: TurnMetrics,
                 default_portrait: bytes | None = None,
                 pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self.options = settings.conversation
        self.metrics = metrics
        self.pipeline = pipeline or build_pipeline(settings, metrics)
        self.portraits = PortraitStore(default_portrait, self.options.max_portraits)
        self.turns: dict[str, Turn] = {}
        self._starting = 0
        self.loaded = False
        self._load_lock = threading.Lock()
        self.end_of_turn: EndOfTurnRule | None = None  # Talk mode's, once loaded

    def load(self) -> None:
        """Blocking: load in-process engines (at start-up, or before the first turn)."""
        with self._load_lock:
            if not self.loaded:
                self.pipeline.load()
                # Silero loads on first use: do it now, not in Talk mode's first check.
                endpointing.endpoint(np.zeros(audio.WHISPER_SAMPLE_RATE, np.float32))
                self.end_of_turn = load_rule(self.settings, "Talk mode")
                self.loaded = True

    async def aclose(self) -> None:
        for turn in list(self.turns.values()):
            turn.interrupt(reason="the server is shutting down")
        await self.pipeline.aclose()

    def describe(self) -> dict[str, Any]:
        mcp = getattr(self.pipeline.brain, "mcp_status", lambda: None)()  # its MCP servers
        return {"stages": self.pipeline.describe(), "turns_in_progress": len(self.turns),
                **({"mcp": mcp} if mcp is not None else {})}

    def describe_reply(self) -> dict[str, Any]:
        """Who answers: the transcript read back (``echo``) or a chat model, and which."""
        return self.pipeline.brain.describe()

    def turn_options(self) -> dict[str, Any]:
        """What the page needs for its turns: whether avatar frames come and how many a
        second, and the silence after which Talk mode stops listening."""
        return {"avatar": self.pipeline.animator is not None, "fps": self.options.avatar_fps,
                "end_of_speech_seconds": self.options.end_of_speech_ms / 1000}

    # ------------------------------------------------------------------ whole replies
    async def reply(self, text: str, language: str | None,
                    history: list[tuple[str, str]]) -> dict[str, Any]:
        """The brain's whole answer to ``text``, after the earlier turns the caller keeps
        (``history``: (role, content), oldest first; the latest ones count)."""
        text = check_text(text, "text").strip()
        for index, (_, content) in enumerate(history):
            check_text(content, f"history.{index}.content")
        if not text:
            raise InvalidRequestError("text: there is nothing to reply to", param="text")
        if len(text) > MAX_REPLY_INPUT_CHARS:
            raise InvalidRequestError(
                f"text: longer than {MAX_REPLY_INPUT_CHARS} characters", param="text"
            )
        brain = self.pipeline.brain
        answer = await brain.answer(text, language, history[-MAX_HISTORY_TURNS:])
        return {"text": answer, **brain.describe()}

    # ------------------------------------------------------------------ end of speech
    async def endpoint(self, pcm: bytes) -> dict[str, Any]:
        """How much of the microphone's recording so far (its last seconds, 16 kHz 16-bit
        PCM) is speech, how long the silence at its end has lasted, and how long a silence
        ends this utterance (``end_after``): with Smart Turn, as the realtime service's
        turns end (short after a complete sentence, long after an unfinished one), else
        the configured end of speech."""
        samples = endpointing.pcm16(pcm)
        heard = await asyncio.to_thread(endpointing.endpoint, samples)
        answer: dict[str, Any] = {**heard.as_json(),
                                  "end_after": self.options.end_of_speech_ms / 1000}
        rule = self.end_of_turn
        if rule is not None and heard.speech_seconds > 0 and (
                heard.trailing_silence >= PAUSE_BEFORE_VERDICT):
            complete = await asyncio.to_thread(rule.model.complete, samples)
            wait = rule.complete_ms if complete >= rule.threshold else rule.incomplete_wait(
                "auto")
            answer.update(complete=round(complete, 3), end_after=wait / 1000)
        return answer

    # ------------------------------------------------------------------ portraits
    async def add_portrait(self, data: bytes) -> dict[str, Any]:
        if not self.loaded:
            await asyncio.to_thread(self.load)
        animator = self.pipeline.animator
        if animator is not None:
            try:
                await animator.prepare(data)
            except StageError as exc:
                raise UnprocessableError(f"image: {exc.message}", param="image") from None
        return {"portrait": self.portraits.add(data)}

    # ------------------------------------------------------------------ turns
    def check_session(self, session: str) -> str:
        if not _SESSION.match(session):
            raise InvalidRequestError(
                "session: 1 to 64 letters, digits, '-' or '_' (the page makes one per visit)",
                param="session")
        return session

    async def start_turn(self, recording: bytes, *, session: str, portrait: str | None,
                         expression: str = "neutral", intensity: float = 1.0,
                         language: str | None = None, voice: str | None = None) -> Turn:
        """Check and decode everything before the turn starts: what fails here is the
        client's 4xx; what fails later is an error event in the stream."""
        started = time.perf_counter()
        self.check_session(session)
        # A turn whose response never started streaming (its client left first) holds no place.
        for stale in [t for t in self.turns.values() if started - t.started > STALE_SECONDS]:
            stale.interrupt(reason="never streamed")
            self.turns.pop(stale.id, None)
        if len(self.turns) + self._starting >= self.options.max_turns:
            raise ServiceBusyError(
                f"the secretary is answering {len(self.turns)} turns already; try again "
                "shortly", retry_after=1)
        self._starting += 1  # held while the recording decodes
        try:
            look = None
            if portrait and self.pipeline.animator is not None:
                if expression not in EXPRESSIONS:
                    raise InvalidRequestError(
                        f"unknown expression {expression!r}; use one of {', '.join(EXPRESSIONS)}",
                        param="expression")
                if not 0 <= intensity <= MAX_INTENSITY:
                    raise InvalidRequestError(
                        f"intensity must be between 0 and {MAX_INTENSITY:g}", param="intensity")
                look = Look(self.portraits.get(portrait), expression, intensity)
            if not recording:
                raise InvalidRequestError("audio: the uploaded file is empty", param="audio")
            try:
                decoded = await asyncio.to_thread(audio.decode, recording)
            except (audio.AudioDecodeError, audio.NoAudioStreamError, audio.EmptyAudioError) as exc:
                exc.message = f"audio: {exc.message}"
                exc.param = "audio"
                raise
            if decoded.duration > self.options.max_audio_seconds:
                raise PayloadTooLargeError(
                    f"audio: the recording lasts {decoded.duration:.0f} s, more than the limit of "
                    f"{self.options.max_audio_seconds:.0f} s for one turn", param="audio")
            if not self.loaded:
                await asyncio.to_thread(self.load)
            language = (language or "").strip().lower() or None
            known = getattr(self.pipeline.transcriber, "languages", None)
            if language and known is not None and language not in known():
                raise InvalidRequestError(
                    f"unknown language code {language!r}; use an ISO 639-1 code such as 'en' or "
                    "'de', or leave it out to detect the language", param="language")
            request = TurnInput(decoded.samples, session=session, language=language,
                                voice=voice or None, look=look,
                                decode_seconds=time.perf_counter() - started)
            turn = self.pipeline.start(request, started=started)
            self.turns[turn.id] = turn
        finally:
            self._starting -= 1
        return turn

    def interrupt(self, turn_id: str, played_seconds: float | None) -> dict[str, Any]:
        turn = self.turns.get(turn_id)
        if turn is None:
            raise NotFoundError(f"no turn {turn_id!r} in progress", param="turn")
        turn.interrupt(played_seconds, reason="stopped by the listener")
        return {"turn": turn_id, "interrupted": True}

    async def ndjson(self, turn: Turn) -> AsyncIterator[bytes]:
        """The turn's events, one JSON object a line; leaving early cancels the turn."""
        try:
            async with aclosing(turn.events()) as events:
                async for event in events:
                    yield (json.dumps(event, ensure_ascii=False) + "\n").encode()
        finally:
            self.turns.pop(turn.id, None)
