"""The realtime service in plain Python: the conversation stages (built as the UI's turns
build them: in-process or over HTTP), the sessions in progress and their limits.

Transports (``app.py``: WebSocket; ``webrtc.py``: WebRTC) open a session here, hand it the
client's events, and close it; the limits (sessions at once, idle time, session length)
are kept here for both.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secretary.config import Settings
from secretary.conversation.build import build_face_engine, build_pipeline
from secretary.conversation.face import FaceRenderer
from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.runner import Pipeline
from secretary.errors import ServiceBusyError
from secretary.realtime import vad
from secretary.realtime.metrics import RealtimeMetrics
from secretary.realtime.output import Output
from secretary.realtime.partials import PartialTranscriber
from secretary.realtime.session import Limits, RealtimeSession, Send
from secretary.turns.rule import EndOfTurnRule, load_rule

log = logging.getLogger(__name__)

# The packaged portrait (the page's default face).
PORTRAIT = Path(__file__).parents[1] / "ui" / "static" / "portrait.png"
MODELS = ("secretary-realtime", "gpt-realtime", "gpt-4o-realtime-preview",
          "gpt-4o-mini-realtime-preview", "gpt-realtime-mini")


@dataclass
class Lease:
    """A session's place: released once, when its transport ends."""

    session: RealtimeSession
    started: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.last_activity = time.monotonic()


class RealtimeService:
    name = "realtime"
    title = "Secretary realtime (OpenAI Realtime API)"
    queue = None  # sessions are bounded by max_sessions, not a work queue

    def __init__(self, settings: Settings, pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self.options = settings.realtime
        self.preload = self.options.preload
        self.metrics = TurnMetrics()
        self.realtime_metrics = RealtimeMetrics(self.metrics.registry)
        self._pipeline = pipeline
        self.partials: PartialTranscriber | None = None
        self.leases: dict[str, Lease] = {}
        self.created = int(time.time())
        self.loaded = False
        self.renderer: FaceRenderer | None = None
        self.end_of_turn: EndOfTurnRule | None = None  # semantic_vad's model, once loaded
        self.reminders: Any = None  # the skills' reminder watcher, where the brain has skills
        # Face frames render here, one at a time, off the event loop.
        self.face_executor = ThreadPoolExecutor(1, thread_name_prefix="realtime-face")

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            self._pipeline = build_pipeline(self.settings, self.metrics)
        return self._pipeline

    def limits(self) -> Limits:
        o, c = self.options, self.settings.conversation
        return Limits(max_event_bytes=o.max_event_kb * 1024, max_buffer_seconds=o.max_buffer_s,
                      partials=o.partials, partial_interval=o.partial_interval_ms / 1000,
                      barge_in_min=o.barge_in_min_ms / 1000,
                      barge_in_grace=o.barge_in_grace_ms / 1000,
                      sentence_pause=c.sentence_pause_ms / 1000,
                      max_sentence_chars=self.settings.tts.max_sentence_chars,
                      first_clause_chars=c.first_clause_chars, first_words=c.first_words,
                      early_final_ms=o.early_final_ms,
                      reply_ahead=o.reply_ahead, audio_lead=o.audio_lead_ms / 1000)

    def load(self) -> None:
        """Blocking: the stages' engines and the VAD."""
        if self.loaded:
            return
        self.pipeline.load()
        vad.load()
        self.end_of_turn = load_rule(self.settings, "realtime")
        self.partials = PartialTranscriber(self.pipeline.transcriber)
        if self.options.face:
            self.renderer = self._face()
        self.loaded = True

    def _face(self) -> FaceRenderer:
        """The avatar engine in this process (the pipeline's, if it runs one here)."""
        engine = build_face_engine(self.settings, self.pipeline)
        return FaceRenderer(engine, PORTRAIT.read_bytes(), self.options.video_size)

    def face_renderer(self) -> FaceRenderer | None:
        return self.renderer

    def close(self) -> Any:
        async def shutdown() -> None:
            for lease in list(self.leases.values()):
                await lease.session.close()
            if self.partials is not None:
                self.partials.shutdown()
            self.face_executor.shutdown(wait=False, cancel_futures=True)
            if self.reminders is not None:
                await self.reminders.stop()
            await self.pipeline.aclose()
        return shutdown()

    def model_ids(self) -> tuple[str, ...]:
        return MODELS

    def health(self) -> dict[str, Any]:
        brain = self._pipeline.brain if self._pipeline else None
        mcp = getattr(brain, "mcp_status", lambda: None)()  # the brain's MCP servers
        return {"status": "ok", "service": self.name, "sessions": len(self.leases),
                "max_sessions": self.options.max_sessions,
                "stages": self.pipeline.describe() if self._pipeline else None,
                **({"mcp": mcp} if mcp is not None else {})}

    # ------------------------------------------------------------------ sessions
    def check_capacity(self) -> None:
        if len(self.leases) >= self.options.max_sessions:
            raise ServiceBusyError(
                f"all {self.options.max_sessions} realtime sessions are in use; try again "
                "shortly", retry_after=5)

    async def open(self, send: Send, *, model: str | None, intent: str | None,
                   output: Output | None = None, beta: bool = False) -> Lease:
        """A new session (``ServiceBusyError`` past the limit)."""
        self.check_capacity()
        if not self.loaded:
            await asyncio.to_thread(self.load)
        kind = "transcription" if intent == "transcription" else "realtime"
        holder: list[Lease] = []
        session = RealtimeSession(self.pipeline, send, model=model or MODELS[0], kind=kind,
                                  limits=self.limits(), partials=self.partials,
                                  output=output, beta=beta, metrics=self.realtime_metrics,
                                  end_of_turn=self.end_of_turn,
                                  on_activity=lambda: holder[0].touch() if holder else None)
        lease = Lease(session)
        holder.append(lease)
        self.check_capacity()  # the load above may have let another in
        self.leases[session.id] = lease
        await session.start()
        if kind == "realtime":
            self._say_reminders(session)
        return lease

    def _say_reminders(self, session: RealtimeSession) -> None:
        """Reminders that fall due are said in the session (one missed while no session
        was open, at its start), where the brain is the secretary's skills."""
        secretary = getattr(self.pipeline.brain, "secretary", None)
        if secretary is None:
            return
        if self.reminders is None:
            from secretary.skills.reminders import Reminders

            self.reminders = Reminders(secretary, self.settings.calendar.reminder_poll_s)
            self.reminders.start()
        reminders = self.reminders

        async def say() -> None:
            async for reminder in reminders.listen():
                language = session.config.language or "en"
                await session.responses.announce(reminder.text(language), language)

        session.spawn(say())

    async def release(self, lease: Lease) -> None:
        if self.leases.pop(lease.session.id, None) is not None:
            await lease.session.close()

    def expired(self, lease: Lease) -> str | None:
        """Why the session must end now, or None."""
        now = time.monotonic()
        if now - lease.started > self.options.max_session_s:
            return f"the session reached its maximum length of {self.options.max_session_s:g} s"
        if now - lease.last_activity > self.options.idle_timeout_s:
            return f"the session was idle for {self.options.idle_timeout_s:g} s"
        return None

    async def watch(self, lease: Lease) -> str:
        """Return when the session must end for a limit (its reason)."""
        while True:
            reason = self.expired(lease)
            if reason is not None:
                return reason
            await asyncio.sleep(min(1.0, self.options.idle_timeout_s / 4))
