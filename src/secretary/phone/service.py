"""The telephone service: each answered call is a realtime session, as in Live mode.

The caller's audio (from the endpoint's media thread) goes to ``session.push_audio``; the
session's reply audio goes to the caller through ``PhoneOutput`` (the session's ``Output``,
paced by PJSIP's media clock taking 20 ms frames); the transcripts of both sides, DTMF
digits and how the call ended become the call's record (``calls.py``), summarized by the
chat model where one is configured (``summary.py``).

Call control, on the caller's final transcripts: a goodbye (en, de) ends the call after the
secretary's answer; asking for a person transfers it (blind REFER) where
SECRETARY_PHONE_TRANSFER_TO is set. Where the brain has a chat model, the session also
offers it a function of the call's own, ``transfer_call``: the model may decide to put
the caller through (a request beyond the secretary), and the call answers the function
call, says so and transfers the same way. A call also ends at SECRETARY_PHONE_MAX_CALL_S, and
after SECRETARY_PHONE_SILENCE_HANGUP_S without sound from either side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from secretary.audio import Resampler
from secretary.config import Settings
from secretary.errors import SecretaryError
from secretary.phone.calls import CallLog, CallRecord
from secretary.phone.endpoint import CLOCK_RATE, CallHandle, SipEndpoint
from secretary.phone.summary import CallSummarizer
from secretary.realtime.protocol import OUTPUT_RATE
from secretary.realtime.service import Lease, RealtimeService

log = logging.getLogger(__name__)

GOODBYE = re.compile(
    r"\b(good ?bye|bye(?:[- ]bye)?|see you|talk to you later|tsch(?:ü|ue)ss|"
    r"auf wieder(?:hören|hoeren|sehen)|ciao)\b", re.IGNORECASE)
PERSON = re.compile(
    r"\b(human|real person|a person|someone|somebody|operator|receptionist|"
    r"mensch(?:en)?|mitarbeiter(?:in)?|jemanden|person sprechen)\b", re.IGNORECASE)
# Codecs that carry 8 kHz audio: the session judges the end of turn as narrowband (G.722
# is 16 kHz, wideband).
NARROWBAND_CODECS = frozenset({"PCMU", "PCMA"})
SILENT_DBFS = -50.0  # a caller's frame quieter than this is silence
TRANSFER_SAID = {"en": "One moment, I am putting you through.",
                 "de": "Einen Moment, ich verbinde Sie."}
# The function the chat model may call to hand the caller to a person (a client's function
# of the call's session: the server never runs it, the call does).
TRANSFER_TOOL: dict[str, Any] = {
    "type": "function", "name": "transfer_call",
    "description": "Put the caller through to a person: when they ask for one, or when "
    "their request is beyond what the secretary can do.",
    "parameters": {"type": "object", "properties": {"reason": {
        "type": "string", "description": "Why the caller is put through, in a few words."}}},
}


def calls_client_tools(brain: Any) -> bool:
    """Whether the brain has a chat model that can call a session's functions (the skills'
    brain without one, or the echo brain, cannot)."""
    chat = getattr(brain, "chat", brain)
    return chat is not None and callable(getattr(chat, "with_client_tools", None))


class Playout:
    """Reply audio for the caller, 16-bit at CLOCK_RATE, shared with the media thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chunks: deque[bytes] = deque()
        self.queued = 0  # bytes
        self.pulled = 0  # bytes of the current response taken by the media clock

    def push(self, data: bytes) -> None:
        with self.lock:
            self.chunks.append(data)
            self.queued += len(data)

    def pull(self, size: int) -> tuple[bytes, int]:
        """(``size`` bytes, how many of them were audio rather than padding)."""
        out = bytearray()
        with self.lock:
            while len(out) < size and self.chunks:
                head = self.chunks[0]
                take = size - len(out)
                out += head[:take]
                if take >= len(head):
                    self.chunks.popleft()
                else:
                    self.chunks[0] = head[take:]
            filled = len(out)
            self.queued -= filled
            self.pulled += filled
        return bytes(out) + bytes(size - filled), filled

    def clear(self) -> None:
        with self.lock:
            self.chunks.clear()
            self.queued = 0


class PhoneOutput:
    """The session's ``Output`` over the call: 24 kHz reply audio resampled to the bridge's
    rate; synthesis waits while more than ``lead`` seconds are queued."""

    def __init__(self, playout: Playout, lead: float = 0.2) -> None:
        self.playout = playout
        self.lead = lead
        self.resampler = Resampler(OUTPUT_RATE, CLOCK_RATE)

    async def begin(self, response_id: str, item_id: str) -> None:
        self.playout.pulled = 0

    async def play(self, samples: np.ndarray) -> None:
        pcm = np.clip(self.resampler.push(samples), -1.0, 1.0)
        self.playout.push((pcm * 32767).astype("<i2").tobytes())
        # Polled: the media thread empties the queue, 20 ms at a time.
        while self.playout.queued > self.lead * CLOCK_RATE * 2:  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    def played(self) -> float:
        return self.playout.pulled / 2 / CLOCK_RATE

    def clear(self) -> None:
        self.playout.clear()

    async def drain(self) -> None:
        while self.playout.queued > 0:  # noqa: ASYNC110 - the media thread empties it
            await asyncio.sleep(0.02)

    def state(self, name: str) -> None:
        pass


class PhoneCall:
    """One call: the endpoint's ``CallHandler`` and the realtime session behind it."""

    # The session's tool_choice with the transfer tool ("auto"; tests force the call).
    tool_choice: Any = "auto"

    def __init__(self, phone: PhoneService, handle: CallHandle,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.phone = phone
        self.options = phone.options
        self.handle = handle
        self.loop = loop
        self.record = CallRecord.of(handle.remote)
        # Kept as it goes, on the event loop (one writer), from the ring on.
        self.record._journal = phone.log.keep
        loop.call_soon_threadsafe(phone.log.keep, self.record)
        self.playout = Playout()
        self.inbox: asyncio.Queue[np.ndarray | None] = asyncio.Queue(maxsize=500)
        self.connected = asyncio.Event()
        self.finished = asyncio.Event()
        self.lease: Lease | None = None
        self.last_sound = time.monotonic()
        self.ending: str | None = None  # why the call ends after the current response
        self.transfer_to: str | None = None
        self.handover = False  # the model called transfer_call: the call transfers itself
        self.reason = ""
        self.tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ media/endpoint threads
    def answered(self, codec: str) -> None:
        self.record.codec = codec
        self.loop.call_soon_threadsafe(self.phone.log.keep, self.record)
        self.loop.call_soon_threadsafe(self.connected.set)

    def heard(self, pcm: bytes) -> None:
        samples = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
        if samples.size and np.sqrt(np.mean(samples ** 2)) > 10 ** (SILENT_DBFS / 20):
            self.last_sound = time.monotonic()
        self.loop.call_soon_threadsafe(self._queue, samples)

    def _queue(self, samples: np.ndarray) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.inbox.put_nowait(samples)

    def speak(self, size: int) -> bytes:
        data, filled = self.playout.pull(size)
        if filled:
            self.last_sound = time.monotonic()
        return data

    def dtmf(self, digit: str) -> None:
        self.loop.call_soon_threadsafe(lambda: self._spawn(self._dtmf(digit)))

    def ended(self, reason: str) -> None:
        def end() -> None:
            if not self.reason:
                self.reason = f"the caller hung up ({reason})" if reason else \
                    "the caller hung up"
            self.finished.set()
            self.inbox.put_nowait(None) if not self.inbox.full() else None

        self.loop.call_soon_threadsafe(end)

    # ------------------------------------------------------------------ the event loop
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def hang_up(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
            log.info("phone: hanging up on %s: %s", self.record.caller(), reason)
        self.handle.hangup()
        self.finished.set()

    async def send(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        if kind == "conversation.item.input_audio_transcription.completed":
            text = str(event.get("transcript") or "")
            self.record.add("caller", text)
            self._control(text)
        elif kind in ("response.output_audio_transcript.done", "response.audio_transcript.done"):
            self.record.add("secretary", str(event.get("transcript") or ""))
        elif kind == "response.output_text.done":
            self.record.add("secretary", str(event.get("text") or ""))
        elif kind == "response.function_call_arguments.done":
            self._called(event)
        elif kind == "response.done" and self.ending is not None and not self.handover:
            self._spawn(self._after_reply())
        elif kind == "error":
            log.debug("phone: session error %s", event.get("error"))

    def _control(self, text: str) -> None:
        if self.ending is not None:
            return
        if GOODBYE.search(text):
            self.ending = "the caller said goodbye"
        elif PERSON.search(text) and self.options.transfer_to:
            self.ending = "transferred"
            self.transfer_to = self.options.transfer_to
        if self.ending is not None:
            # Whatever the reply, the call ends within a few seconds.
            self.loop.call_later(15.0, lambda: self.hang_up(self.ending or "ended"))

    def _called(self, event: dict[str, Any]) -> None:
        """The model called a function of the session: ``transfer_call``, the only one."""
        call_id = str(event.get("call_id") or "")
        if event.get("name") != TRANSFER_TOOL["name"] or not call_id:
            return
        try:
            arguments = json.loads(str(event.get("arguments") or "{}"))
        except ValueError:
            arguments = {}
        reason = arguments.get("reason") if isinstance(arguments, dict) else None
        reason = " ".join(reason.split())[:200] if isinstance(reason, str) else ""
        target = self.options.transfer_to
        if self.ending is not None or not target:
            # Already ending (a goodbye), or transferring (the caller asked for a person).
            self._spawn(self._answer(call_id, json.dumps(
                {"transferred_to": self.transfer_to} if self.transfer_to
                else {"error": "the call is ending"})))
            return
        self.record.add("event", f"the secretary decided to transfer the call: "
                                 f"{reason or 'no reason given'}")
        self.ending, self.transfer_to, self.handover = "transferred", target, True
        self.loop.call_later(15.0, lambda: self.hang_up(self.ending or "ended"))
        self._spawn(self._hand_over(call_id))

    async def _answer(self, call_id: str, output: str) -> None:
        """The function call's output, after the response that made it (the history
        complete: the call and its result)."""
        if self.lease is None:
            return
        session = self.lease.session
        while session.responses.current is not None:  # noqa: ASYNC110 - the session's state
            await asyncio.sleep(0.05)
        await session.handle(json.dumps({"type": "conversation.item.create", "item": {
            "type": "function_call_output", "call_id": call_id, "output": output}}))

    async def _hand_over(self, call_id: str) -> None:
        """The model's transfer: its call answered, the sentence said, the REFER sent."""
        assert self.lease is not None and self.transfer_to is not None
        await self._answer(call_id, json.dumps({"transferred_to": self.transfer_to}))
        language = self.options.language if self.options.language in TRANSFER_SAID else "en"
        await self.lease.session.responses.announce(TRANSFER_SAID[language], language)
        await self._after_reply()

    async def _after_reply(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain(), 10)
        await asyncio.sleep(0.3)
        if self.transfer_to is not None:
            self.record.transferred_to = self.transfer_to
            self.record.add("event", f"transferred to {self.transfer_to}")
            self.reason = "transferred"
            self.handle.transfer(self.transfer_to)
            await asyncio.sleep(10)  # the endpoint hangs up once the transfer succeeds
        self.hang_up(self.ending or "ended")

    async def _drain(self) -> None:
        while self.playout.queued > 0 or (  # noqa: ASYNC110 - two owners' states, polled
                self.lease is not None and self.lease.session.responses.current is not None):
            await asyncio.sleep(0.05)

    async def _dtmf(self, digit: str) -> None:
        self.record.add("event", f"pressed {digit}")
        if self.lease is None:
            return
        session = self.lease.session
        # After the response in progress (the greeting, an answer): then it is the digit's.
        for _ in range(200):
            if session.responses.current is None:
                break
            await asyncio.sleep(0.1)
        await session.handle(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": f"The caller pressed {digit}"}]}}))
        if session.responses.current is None:
            await session.handle(json.dumps({"type": "response.create"}))

    async def run(self) -> None:
        """The call from ringing to its record."""
        try:
            await self._converse()
        except SecretaryError as exc:
            self.hang_up(f"no session: {exc.message}")
        except Exception:
            log.exception("phone: the call from %s failed", self.record.caller())
            self.hang_up("an error")
        finally:
            for task in list(self.tasks):
                task.cancel()
            if self.lease is not None:
                await self.phone.realtime.release(self.lease)
            self.record.finish(self.reason or "ended")
            self.phone.calls.pop(self.record.id, None)
            try:
                if self.phone.summarizer is not None and not self.phone.stopping:
                    await self.phone.summarizer.summarize(self.record)
            finally:  # kept, whatever became of the summary
                await asyncio.to_thread(self.phone.log.save, self.record)

    async def _converse(self) -> None:
        o = self.options
        self.lease = await self.phone.realtime.open(self.send, model=None, intent=None,
                                                    output=PhoneOutput(self.playout))
        session = self.lease.session
        language = o.language if o.language in ("en", "de") else "en"
        caller = self.record.caller()
        update: dict[str, Any] = {
            "instructions": f"{o.instructions}\nThis is a telephone call from {caller}."}
        if o.transfer_to and calls_client_tools(session.stages.brain):
            # The model may transfer the call itself. (A session with a client's tools
            # makes no reply ahead of the end of the turn: the model may call one.)
            update.update(tools=[TRANSFER_TOOL], tool_choice=self.tool_choice)
        await session.handle(json.dumps({"type": "session.update", "session": update}))
        waiter = asyncio.ensure_future(self.finished.wait())
        connected = asyncio.ensure_future(self.connected.wait())
        await asyncio.wait({waiter, connected}, timeout=o.answer_delay_s + 30,
                           return_when=asyncio.FIRST_COMPLETED)
        connected.cancel()
        if not self.connected.is_set():
            waiter.cancel()
            if not self.finished.is_set():
                self.hang_up("the call was never connected")
            return
        # The bridge hands over 16 kHz PCM whatever the codec: the session is told the band.
        narrowband = self.record.codec.upper() in NARROWBAND_CODECS
        session.turns.narrowband_track = narrowband
        if narrowband and o.narrowband_turns == "words":
            session.turns.words_only = True
            session.turns.reset_detector()
        elif narrowband and o.narrowband_turns == "server_vad":
            await session.handle(json.dumps({"type": "session.update", "session": {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad"}}}}}))
        self.last_sound = time.monotonic()
        greeting = o.greeting_de if language == "de" else o.greeting
        if greeting:
            session.spawn(session.responses.announce(greeting, language))
        feeder = asyncio.ensure_future(self._feed())
        guard = asyncio.ensure_future(self._guard())
        await waiter
        for task in (feeder, guard):
            task.cancel()
        await asyncio.gather(feeder, guard, return_exceptions=True)

    async def _feed(self) -> None:
        assert self.lease is not None
        session = self.lease.session
        while True:
            samples = await self.inbox.get()
            if samples is None:
                return
            # Several frames at once where the loop fell behind.
            parts = [samples]
            while not self.inbox.empty() and len(parts) < 25:
                more = self.inbox.get_nowait()
                if more is None:
                    break
                parts.append(more)
            await session.push_audio(np.concatenate(parts), CLOCK_RATE)

    async def _guard(self) -> None:
        """The limits: the call's length, silence, the session's own limits."""
        o = self.options
        started = time.monotonic()
        while not self.finished.is_set():
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if now - started > o.max_call_s:
                self.hang_up(f"the call reached its maximum length of {o.max_call_s:g} s")
            elif now - self.last_sound > o.silence_hangup_s:
                self.hang_up(f"no sound for {o.silence_hangup_s:g} s")


class PhoneService:
    """The telephone: a realtime service of its own, the SIP endpoint, the calls."""

    name = "phone"
    title = "Secretary telephone (SIP)"
    queue = None

    def __init__(self, settings: Settings, realtime: RealtimeService | None = None) -> None:
        self.settings = settings
        self.options = settings.phone
        self.preload = settings.realtime.preload
        if realtime is None:
            own = settings.model_copy(deep=True)
            own.realtime.max_sessions = max(own.realtime.max_sessions, self.options.max_calls)
            own.realtime.partials = own.realtime.partials and self.options.partials
            realtime = RealtimeService(own)
        self.realtime = realtime
        self.metrics = realtime.metrics
        self.calls: dict[str, PhoneCall] = {}
        self.log = CallLog(settings.data_dir / "calls", self._notes(settings),
                           self.options.webhook, self.options.webhook_timeout_s)
        # The chat model's summary of each call, where one is configured.
        self.summarizer = CallSummarizer.from_settings(settings)
        self.stopping = False
        self.endpoint: SipEndpoint | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    @staticmethod
    def _notes(settings: Settings) -> Any:
        from secretary.skills.notes import NotesStore

        try:
            return NotesStore(settings.data_dir / "notes.sqlite3")
        except Exception:
            log.exception("phone: the notes are not available; calls are kept as JSON only")
            return None

    @property
    def created(self) -> int:
        return self.realtime.created

    def model_ids(self) -> tuple[str, ...]:
        return ()  # a telephone, not a model API

    def load(self) -> None:
        self.realtime.load()

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # Calls a killed telephone left in progress are finished and saved first.
        await asyncio.to_thread(self.log.recover)
        self.endpoint = SipEndpoint(self.options, self._incoming, self.settings.cache_dir)
        await asyncio.to_thread(self.endpoint.start)

    async def stop(self) -> None:
        self.stopping = True  # calls ending now are kept with the first sentences
        for call in list(self.calls.values()):
            call.hang_up("the service stopped")
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=5)
        if self.endpoint is not None:
            await asyncio.to_thread(self.endpoint.stop)
        if self.summarizer is not None:
            await self.summarizer.aclose()

    def close(self) -> Any:
        return self.realtime.close()

    def _incoming(self, handle: CallHandle) -> PhoneCall | None:
        """On the endpoint's thread: a handler for the call, its run started on the loop."""
        assert self.loop is not None
        call = PhoneCall(self, handle, self.loop)
        self.calls[call.record.id] = call
        log.info("phone: call from %s (%s)", call.record.caller(), handle.source)

        def begin() -> None:
            task = asyncio.ensure_future(call.run())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        self.loop.call_soon_threadsafe(begin)
        return call

    def health(self) -> dict[str, Any]:
        endpoint = self.endpoint
        return {"status": "ok" if endpoint is not None else "starting", "service": self.name,
                "sip": f"{self.options.host}:{self.options.port}",
                "registration": endpoint.registration if endpoint else None,
                "active_calls": len(self.calls), "max_calls": self.options.max_calls,
                "refused": dict(endpoint.refused) if endpoint else {}}
