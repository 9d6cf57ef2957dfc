"""The response: the reply stream played into the session's ``Output``, and its events.

Reply audio goes out in real time (``Output`` paces it), so the server always knows how
much of the reply the listener has heard: a barge-in or ``response.cancel`` stops the
audio within one chunk, the response ends ``cancelled``, and the history and the item's
transcript keep only the sentences that had begun playing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secretary.conversation.reply import ReplyOptions, ReplyStream, Sentence, Spoken, Words
from secretary.conversation.stages import Cancel, Heard, StageError
from secretary.realtime.items import assistant_item
from secretary.realtime.metrics import RESPONSE_STAGES
from secretary.realtime.protocol import OUTPUT_RATE, ProtocolError, new_id
from secretary.realtime.server_events import (
    ContentPartAdded,
    ContentPartDone,
    ItemAdded,
    ItemDone,
    OutputAudioDone,
    OutputAudioTranscriptDelta,
    OutputAudioTranscriptDone,
    OutputItemAdded,
    OutputItemDone,
    OutputTextDelta,
    OutputTextDone,
    ResponseCreated,
    ResponseDone,
)
from secretary.realtime.tools import ClientCalls, Offer, client_brain, response_offer
from secretary.validation import has_speech

if TYPE_CHECKING:
    from secretary.realtime.client_events import (
        OutputAudioBufferClear,
        ResponseCancel,
        ResponseCreate,
    )
    from secretary.realtime.session import RealtimeSession

log = logging.getLogger(__name__)


@dataclass
class Response:
    id: str
    item_id: str
    marks: dict[str, float] = field(default_factory=dict)
    cancel: Cancel = field(default_factory=Cancel)
    task: asyncio.Task[None] | None = None
    audio_started: float | None = None  # wall clock of the first audio
    reason: str = "client_cancelled"
    stream: ReplyStream | None = None  # made ahead, in the silence before the response
    announcement: Heard | None = None  # words the server says on its own (a reminder)
    offer: Offer | None = None  # its own tools (None: the session's)
    calls: ClientCalls | None = None  # its calls of the client's functions
    output: list[dict[str, Any] | None] = field(default_factory=list)  # by output_index
    message_index: int | None = None  # the reply message's output_index, once it began

    @property
    def speaking(self) -> bool:
        return self.audio_started is not None

    def reserve(self) -> int:
        """The next output item's ``output_index``."""
        self.output.append(None)
        return len(self.output) - 1


class Responses:
    """The session's response in progress (one at a time)."""

    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.current: Response | None = None

    # ------------------------------------------------------------------ client events
    async def create(self, event: ResponseCreate) -> None:
        session = self.session
        if session.config.kind == "transcription":
            raise ProtocolError("a transcription session makes no responses",
                                code="invalid_event", param="type")
        if self.current is not None:
            raise ProtocolError("a response is already in progress; cancel it first",
                                code="conversation_already_has_active_response")
        options = event.response or {}
        if not isinstance(options, dict):
            raise ProtocolError("response must be an object", param="response")
        modalities = options.get("output_modalities", options.get("modalities"))
        if modalities is not None and (not isinstance(modalities, list)
                                       or not set(modalities) <= {"text", "audio"}):
            raise ProtocolError("output_modalities: ['audio'] or ['text']",
                                param="response.output_modalities")
        offer = response_offer(options, session.config.tools, session.config.tool_choice)
        self.start("audio" in (modalities or session.config.output_modalities), offer=offer)

    async def cancel(self, event: ResponseCancel) -> None:
        response = self.current
        wanted = event.response_id
        if response is None or (wanted and wanted != response.id):
            raise ProtocolError("there is no response in progress to cancel",
                                code="response_cancel_not_active")
        self.stop("client_cancelled")

    async def clear_output(self, event: OutputAudioBufferClear) -> None:
        if self.current is not None:
            self.stop("client_cancelled")

    # ------------------------------------------------------------------ starting, stopping
    def start(self, audio: bool, stream: ReplyStream | None = None,
              announcement: Heard | None = None, offer: Offer | None = None) -> None:
        session = self.session
        response = Response(new_id("resp"), new_id("item"),
                            {**session.marks, "response_created": time.perf_counter()},
                            stream=stream, announcement=announcement, offer=offer)
        session.marks = {}
        self.current = response
        response.task = session.spawn(self._respond(response, audio))

    async def announce(self, text: str, language: str) -> None:
        """A response the server starts on its own, saying ``text`` (a reminder due): after
        the response in progress and while the user is not speaking."""
        session = self.session
        # Polled: two owners' states (the response's and turn taking's), checked rarely.
        while self.current is not None or session.turns.user_speaking():  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        heard = Heard(text=text, language=language, language_probability=1.0, duration=0.0)
        self.start("audio" in session.config.output_modalities, announcement=heard)

    def stop(self, reason: str) -> None:
        """Cancel the response in progress: its audio stops within one chunk."""
        response = self.current
        if response is None or response.cancel:
            return
        response.reason = reason
        response.cancel.set(reason)
        self.session.output.clear()
        if response.task is not None:
            response.task.cancel()

    def close(self) -> None:
        if self.current is not None:
            self.current.cancel.set("closed")
            self.session.output.clear()

    def heard(self, text: str, language: str | None) -> Heard:
        return Heard(text=text, language=language or self.session.config.language or "en",
                     language_probability=1.0, duration=0.0)

    def reply_stream(self, heard: Heard, audio: bool, brain: Any = None) -> ReplyStream:
        session = self.session
        limits = session.limits
        return ReplyStream(brain or session.brain(), session.stages.speaker, session.id, heard,
                           voice=session.config.voice, audio=audio, rate=OUTPUT_RATE,
                           trim_lead=True, options=ReplyOptions(
                               limits.max_sentence_chars, limits.first_clause_chars,
                               limits.sentence_pause, first_words=limits.first_words))

    # ------------------------------------------------------------------ running
    async def _respond(self, response: Response, audio: bool) -> None:
        session = self.session
        conversation, output = session.conversation, session.output
        item = assistant_item(response.item_id, audio)
        body = {"id": response.id, "object": "realtime.response", "status": "in_progress",
                "status_details": None, "output": [], "conversation_id": "conv_" + session.id,
                "output_modalities": ["audio"] if audio else ["text"], "usage": None}
        await session.emit(ResponseCreated(response=dict(body)))
        output.state("thinking")
        stream: ReplyStream | None = None
        status, details = "completed", None
        user = ""
        try:
            if response.announcement is not None:
                language = response.announcement.language
            else:
                await conversation.transcribed()
                user, language = conversation.user_text()
                if not has_speech(user):
                    raise StageError("input", "there is no user message to respond to",
                                     "no_input")
            brain = client_brain(session, response) if response.announcement is None \
                else None
            if response.calls is None:  # with the client's tools, once there are words
                await self._begin(response, item, audio)
            stream, response.stream = response.stream, None
            heard = self.heard(user, language)
            if stream is not None and (stream.heard != heard or stream.audio != audio
                                       or brain is not None):
                stream.drop()  # made for another text (or without the tools): start over
                stream = None
            if response.announcement is not None:
                stream = self.reply_stream(response.announcement, audio,
                                           Words(response.announcement.text)).start()
            elif stream is None:
                stream = self.reply_stream(heard, audio, brain).start()
            elif session.metrics is not None:
                session.metrics.replies_ahead.labels("used").inc()
            if response.calls is not None:
                response.calls.stream = stream
            # Shielded: a cancel ends the response at once, while the speech engine finishes
            # the piece it is on in its thread (its output is dropped).
            inner = asyncio.create_task(self._play(response, stream, item))
            inner.add_done_callback(lambda t: t.cancelled() or t.exception())
            try:
                await asyncio.shield(inner)
            except asyncio.CancelledError:
                inner.cancel()
                raise
            if audio:
                await output.drain()
        except asyncio.CancelledError:
            status = "cancelled"
            details = {"type": "cancelled", "reason": response.reason}
        except StageError as exc:
            status = "failed"
            details = {"type": "failed", "error": {"type": "server_error", "code": exc.code,
                                                   "message": exc.message}}
        except Exception as exc:  # a bug: end the response, keep the session
            log.exception("response %s failed", response.id)
            status = "failed"
            details = {"type": "failed", "error": {"type": "server_error",
                                                   "code": "internal_error",
                                                   "message": f"{type(exc).__name__}: {exc}"}}
        finally:
            if response.cancel and status == "completed":
                status, details = "cancelled", {"type": "cancelled", "reason": response.reason}
            played = (output.played() if response.message_index is not None else 0.0) \
                if audio else None
            stopped = time.perf_counter()
            output.clear()
            output.state("listening")
            spoken = stream.spoken if stream is not None else []
            await self._finish(response, item, body, audio, spoken, user, status, details,
                               played)
            if response.reason == "turn_detected" and status == "cancelled":
                session.stats["barge_in_stop"].append(time.perf_counter() - stopped)
            if self.current is response:
                self.current = None

    async def _begin(self, response: Response, item: dict[str, Any], audio: bool) -> None:
        """The reply's message item (and its one content part) into the conversation."""
        session = self.session
        previous = session.conversation.last_id()
        session.conversation.items.append(item)
        index = response.message_index = response.reserve()
        await session.emit(OutputItemAdded(response_id=response.id, output_index=index,
                                           item=item))
        await session.emit(ItemAdded(previous_item_id=previous, item=item))
        await session.emit(ContentPartAdded(
            response_id=response.id, item_id=item["id"], output_index=index,
            part={"type": "audio", "transcript": ""} if audio
            else {"type": "text", "text": ""}))
        await session.output.begin(response.id, item["id"])

    async def _play(self, response: Response, stream: ReplyStream,
                    item: dict[str, Any]) -> None:
        """Play ``stream``: each sentence's transcript delta, then its audio at the pace it
        is heard (the stream notes which sentences began playing: what the history keeps)."""
        session = self.session
        first = True
        delta_event = OutputAudioTranscriptDelta if stream.audio else OutputTextDelta
        try:
            async for piece in stream:
                if stream.first_delta is not None:
                    response.marks.setdefault("brain_first_delta", stream.first_delta)
                if isinstance(piece, Sentence):
                    if response.message_index is None:
                        await self._begin(response, item, stream.audio)
                    text = piece.text if first else " " + piece.text
                    first = False
                    await session.emit(delta_event(
                        response_id=response.id, item_id=response.item_id,
                        output_index=response.message_index, delta=text))
                    continue
                if response.audio_started is None:
                    response.audio_started = time.perf_counter()
                    response.marks["first_audio"] = response.audio_started
                    session.output.state("speaking")
                await session.output.play(piece.samples)
        finally:
            await stream.aclose()

    async def _finish(self, response: Response, item: dict[str, Any], body: dict[str, Any],
                      audio: bool, spoken: list[Spoken], user: str, status: str,
                      details: dict[str, Any] | None, played: float | None) -> None:
        session = self.session
        heard = spoken if played is None else [s for s in spoken if s.start < played]
        text = " ".join(s.text for s in heard)
        key = "transcript" if audio else "text"
        item["content"][0][key] = text
        item["status"] = "completed" if status == "completed" else "incomplete"
        item["_spoken"] = spoken
        public = {k: v for k, v in item.items() if not k.startswith("_")}
        ids = {"response_id": response.id, "item_id": item["id"],
               "output_index": response.message_index or 0}
        if item in session.conversation.items:
            if audio:
                await session.emit(OutputAudioDone(**ids))
                await session.emit(OutputAudioTranscriptDone(**ids, transcript=text))
            else:
                await session.emit(OutputTextDone(**ids, text=text))
            await session.emit(ContentPartDone(
                **ids, part={"type": "audio", "transcript": text} if audio
                else {"type": "text", "text": text}))
            await session.emit(OutputItemDone(response_id=response.id,
                                              output_index=ids["output_index"], item=public))
            await session.emit(ItemDone(item=public))
            response.output[ids["output_index"]] = public
        if response.calls is not None:  # after the words, as the model said them
            await response.calls.close(status == "cancelled")
        if (user and text and item in session.conversation.items
                and not (response.calls and response.calls.made)):
            session.conversation.remember(item, user, text)  # (words before a call: not yet)
        output = [o for o in response.output if o is not None]
        done = dict(body, status=status, status_details=details, output=output,
                    usage={"total_tokens": 0, "input_tokens": 0, "output_tokens": 0})
        if played is not None:
            done["audio_played_seconds"] = round(played, 3)
        # Not in OpenAI's schema (clients ignore it): stage times in seconds from the end
        # of the user's speech (or from response.create), for benchmarks and dashboards.
        marks = response.marks
        base = marks.get("speech_stopped", marks["response_created"])
        if session.metrics is not None and "speech_stopped" in marks:
            for stage in RESPONSE_STAGES:
                if stage in marks:
                    session.metrics.response_seconds.labels(stage).observe(
                        max(0.0, marks[stage] - base))
        done["timings"] = {k: round(v - base, 4) for k, v in marks.items()}
        await session.emit(ResponseDone(response=done))
