"""One handler per Wyoming connection: the protocol's events in, the service's answers out.

Errors follow one rule. An error that ends a request in progress (an unknown voice, a
language Whisper does not know, audio over the limit, a full queue) is sent as an
``error`` event and the connection is closed: clients such as Home Assistant wait for
the answer until the connection ends, so closing tells them at once. An error outside a
request (a malformed event, ``audio-chunk`` before ``audio-start``) is sent as an
``error`` event and the connection stays open. Unknown event types are ignored, as the
protocol asks of servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, SelectProgram
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from secretary.errors import InvalidRequestError, SecretaryError
from secretary.stt.engine import TranscriptionOptions
from secretary.tts.routing import Route
from secretary.wyoming.protocol import EventError, FramingError, Limits, read_event
from secretary.wyoming.service import PROGRAM, PcmFormat, WyomingService, text_field

log = logging.getLogger(__name__)

# After an error that closes a connection: how long, and how much, is read and dropped.
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 << 20


class Observer:
    """What the handlers report (the server counts it for /metrics and /health)."""

    def request(self, kind: str, seconds: float, outcome: str) -> None: ...

    def first_audio(self, seconds: float) -> None: ...

    def error(self, kind: str, code: str) -> None: ...


class _Connection(AsyncEventHandler):
    kind = ""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 service: WyomingService, observer: Observer) -> None:
        super().__init__(reader, writer)
        self.service = service
        self.observer = observer
        settings = service.settings.wyoming
        self.limits = Limits(settings.max_data_bytes, settings.max_payload_bytes)
        self.idle_timeout = settings.idle_timeout
        # A request is in progress: an error now ends it and closes the connection.
        self.busy = False
        self.errored = False  # an error event went out (the close then lingers)

    def reset(self) -> None:
        self.busy = False

    async def run(self) -> None:
        try:
            while True:
                try:
                    event = await asyncio.wait_for(read_event(self.reader, self.limits),
                                                   self.idle_timeout)
                except TimeoutError:
                    log.info("wyoming %s: closing a connection idle for %g s", self.kind,
                             self.idle_timeout)
                    break
                except FramingError as exc:
                    await self.send_error(exc.message, "bad_stream")
                    break
                except EventError as exc:
                    if not await self.refuse(InvalidRequestError(exc.message)):
                        break
                    continue
                if event is None:
                    break
                if not await self.handle_event(event):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away, or stopped reading
        finally:
            if self.errored:
                await self._linger()
            await self.disconnect()
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def _linger(self) -> None:
        """After an error: end our side, and read what the client is still sending for a
        moment. Closing on unread data resets the connection, and a reset can throw away
        the error event before the client has read it."""
        loop = asyncio.get_running_loop()
        deadline, budget = loop.time() + LINGER_SECONDS, LINGER_BYTES
        with contextlib.suppress(Exception):
            if self.writer.can_write_eof():
                self.writer.write_eof()
            while budget > 0 and loop.time() < deadline:
                piece = await asyncio.wait_for(self.reader.read(1 << 16),
                                               deadline - loop.time())
                if not piece:
                    break
                budget -= len(piece)

    async def write_event(self, event: Event) -> None:
        # A client that stops reading must not hold its place in a work queue forever.
        await asyncio.wait_for(super().write_event(event), self.idle_timeout)

    async def handle_event(self, event: Event) -> bool:
        try:
            if Describe.is_type(event.type):
                await self.write_event((await self.info()).event())
                return True
            if Ping.is_type(event.type):
                await self.write_event(Pong(text=event.data.get("text")).event())
                return True
            if SelectProgram.is_type(event.type):
                name = text_field(event.data, "name", "select-program", required=True)
                if name != PROGRAM:
                    raise InvalidRequestError(
                        f"select-program: no program {name!r} here; this one is {PROGRAM!r}",
                        param="name")
                return True
            return await self.handle(event)
        except SecretaryError as exc:
            return await self.refuse(exc)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            raise
        except Exception as exc:
            log.exception("wyoming %s: unexpected error on %s", self.kind, event.type)
            await self.send_error(f"internal error: {type(exc).__name__}", "internal_error")
            return False

    async def refuse(self, exc: SecretaryError) -> bool:
        """Send the error; keep the connection unless it ended a request."""
        ended_request = self.busy
        self.reset()
        await self.send_error(exc.message, exc.code)
        return not ended_request

    async def send_error(self, text: str, code: str) -> None:
        self.observer.error(self.kind, code)
        self.errored = True
        with contextlib.suppress(ConnectionError, TimeoutError):
            await self.write_event(Error(text=text, code=code).event())

    async def info(self) -> Any: ...

    async def handle(self, event: Event) -> bool:
        return True


class SttConnection(_Connection):
    """``transcribe`` (optional), ``audio-start``, ``audio-chunk``..., ``audio-stop`` ->
    ``transcript``."""

    kind = "stt"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options: TranscriptionOptions | None = None
        self.format: PcmFormat | None = None
        self.audio = bytearray()
        self.max_bytes = 0

    def reset(self) -> None:
        super().reset()
        self.options, self.format = None, None
        self.audio = bytearray()

    async def info(self) -> Any:
        return await self.service.stt_info()

    async def handle(self, event: Event) -> bool:
        kind = event.type
        if kind == "transcribe":
            if self.format is not None:
                raise InvalidRequestError("transcribe during an audio stream; send audio-stop "
                                          "first")
            self.busy = True
            self.options = await self.service.transcribe_options(event.data)
            return True
        if AudioStart.is_type(kind):
            if self.format is not None:
                raise InvalidRequestError("audio-start twice; send audio-stop first")
            self.busy = True
            self.format = PcmFormat.parse(event.data, "audio-start")
            self.options = self.options or TranscriptionOptions()
            seconds = self.service.settings.wyoming.max_audio_seconds
            self.max_bytes = int(seconds * self.format.bytes_per_second)
            return True
        if AudioChunk.is_type(kind):
            if self.format is None:
                raise InvalidRequestError("audio-chunk before audio-start")
            if PcmFormat.parse(event.data, "audio-chunk") != self.format:
                raise InvalidRequestError("audio-chunk: rate, width and channels must stay as "
                                          "audio-start gave them")
            payload = event.payload or b""
            if len(self.audio) + len(payload) > self.max_bytes:
                seconds = self.service.settings.wyoming.max_audio_seconds
                raise InvalidRequestError(
                    f"the audio is longer than the limit of {seconds:g} s")
            self.audio += payload
            return True
        if AudioStop.is_type(kind):
            if self.format is None or self.options is None:
                raise InvalidRequestError("audio-stop before audio-start")
            return await self._transcript(self.format, self.options, bytes(self.audio))
        return True  # the protocol's other events are not for this server

    async def _transcript(self, fmt: PcmFormat, options: TranscriptionOptions,
                          pcm: bytes) -> bool:
        started = time.perf_counter()
        self.audio = bytearray()  # the copy in ``pcm`` is the one that lives on
        text, language = "", options.language
        if len(pcm) >= fmt.width * fmt.channels:
            result = await self.service.transcribe(pcm, fmt, options)
            text, language = result.text, result.info.language
        self.reset()
        await self.write_event(Transcript(text=text, language=language).event())
        self.observer.request("stt", time.perf_counter() - started, "ok")
        return True


class TtsConnection(_Connection):
    """``synthesize`` -> ``audio-start``, ``audio-chunk``..., ``audio-stop``; streamed:
    ``synthesize-start``, ``synthesize-chunk``..., (``synthesize``), ``synthesize-stop``
    -> audio for each run of complete sentences as soon as it is known, then
    ``synthesize-stopped``."""

    kind = "tts"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stream_route: Route | None = None
        self.pending = ""
        self.spoken = False  # some audio of this stream went out already
        self.started = 0.0

    def reset(self) -> None:
        super().reset()
        self.stream_route, self.pending, self.spoken = None, "", False

    async def info(self) -> Any:
        return await self.service.tts_info()

    async def handle(self, event: Event) -> bool:
        kind = event.type
        if Synthesize.is_type(kind):
            if self.stream_route is not None:
                return True  # a streaming client repeats the whole text for old servers
            started = time.perf_counter()
            self.busy = True
            text = text_field(event.data, "text", "synthesize", required=True) or ""
            sentences = self.service.sentences(text)
            route = await self.service.route(event.data.get("voice"))
            await self._speak(route, sentences, started, stream=False)
            self.reset()
            self.observer.request("tts", time.perf_counter() - started, "ok")
            return True
        if SynthesizeStart.is_type(kind):
            if self.stream_route is not None:
                raise InvalidRequestError("synthesize-start twice; send synthesize-stop first")
            self.started = time.perf_counter()
            self.busy = True
            self.stream_route = await self.service.route(event.data.get("voice"))
            return True
        if SynthesizeChunk.is_type(kind):
            if self.stream_route is None:
                raise InvalidRequestError("synthesize-chunk before synthesize-start")
            text = text_field(event.data, "text", "synthesize-chunk", required=True) or ""
            complete, self.pending = self.service.split_stream(self.pending + text)
            if complete:
                await self._speak(self.stream_route, complete, self.started, stream=True)
            return True
        if SynthesizeStop.is_type(kind):
            if self.stream_route is None:
                raise InvalidRequestError("synthesize-stop before synthesize-start")
            rest = self.pending.strip()
            if rest and any(ch.isalnum() for ch in rest):
                await self._speak(self.stream_route, self.service.sentences(rest),
                                  self.started, stream=True)
            await self.write_event(SynthesizeStopped().event())
            self.observer.request("tts", time.perf_counter() - self.started, "ok")
            self.reset()
            return True
        return True  # the protocol's other events are not for this server

    async def _speak(self, route: Route, sentences: list[str], started: float, *,
                     stream: bool) -> None:
        """audio-start, the chunks as they are made, audio-stop."""
        job = self.service.job(route, sentences)
        pieces = self.service.pcm(job, leading_pause=stream and self.spoken)
        await self.write_event(AudioStart(rate=job.sample_rate, width=2, channels=1).event())
        first = True
        # Closed here even when the client goes away mid-stream: it holds a queue place.
        async with contextlib.aclosing(pieces):  # type: ignore[type-var]
            async for piece in pieces:
                if first:
                    self.observer.first_audio(time.perf_counter() - started)
                    first = False
                await self.write_event(
                    AudioChunk(rate=job.sample_rate, width=2, channels=1, audio=piece).event())
        await self.write_event(AudioStop().event())
        self.spoken = True
