"""Talking to a Wyoming server with the ``wyoming`` package's own client, as Home
Assistant does: one connection per request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from secretary import audio

TIMEOUT = 300.0
CHUNK_SAMPLES = 1024  # what Home Assistant sends


def client(port: int) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", port, connect_timeout=10, read_timeout=TIMEOUT)


def pcm16(clip: Path) -> bytes:
    """A clip as Home Assistant sends speech: 16 kHz, 16-bit, mono."""
    return audio.to_pcm16(audio.decode(clip).samples)


async def describe(port: int) -> Info:
    async with client(port) as c:
        await c.write_event(Describe().event())
        event = await c.read_event()
        assert event is not None and event.type == "info", event
        return Info.from_event(event)


async def send_audio(c: AsyncTcpClient, pcm: bytes, rate: int = 16000, width: int = 2,
                     channels: int = 1) -> None:
    await c.write_event(AudioStart(rate=rate, width=width, channels=channels).event())
    step = CHUNK_SAMPLES * width * channels
    for start in range(0, len(pcm), step):
        await c.write_event(AudioChunk(rate=rate, width=width, channels=channels,
                                       audio=pcm[start:start + step]).event())
    await c.write_event(AudioStop().event())


@dataclass
class Heard:
    event: Event
    seconds: float  # audio-stop sent to transcript received


async def transcribe(port: int, pcm: bytes, language: str | None = None, *,
                     rate: int = 16000, width: int = 2, channels: int = 1,
                     send_transcribe: bool = True) -> Heard:
    async with client(port) as c:
        if send_transcribe:
            await c.write_event(Transcribe(language=language).event())
        await send_audio(c, pcm, rate, width, channels)
        stopped = time.perf_counter()
        event = await c.read_event()
        assert event is not None, "the server closed the connection"
        return Heard(event, time.perf_counter() - stopped)


@dataclass
class Spoken:
    events: list[Event] = field(default_factory=list)
    first_chunk: float | None = None  # seconds from the request to the first audio-chunk

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events if e.type != "audio-chunk"]

    @property
    def rate(self) -> int:
        return next(e.data["rate"] for e in self.events if e.type == "audio-start")

    @property
    def pcm(self) -> bytes:
        return b"".join(e.payload or b"" for e in self.events if e.type == "audio-chunk")

    @property
    def samples(self) -> np.ndarray:
        return np.frombuffer(self.pcm, "<i2").astype(np.float32) / 32768.0

    def wav(self) -> bytes:
        return audio.encode(self.samples, self.rate, "wav")


async def _read_until(c: AsyncTcpClient, spoken: Spoken, started: float, last: str) -> None:
    while True:
        event = await c.read_event()
        assert event is not None, f"closed after {spoken.types}"
        if event.type == "audio-chunk" and spoken.first_chunk is None:
            spoken.first_chunk = time.perf_counter() - started
        spoken.events.append(event)
        if event.type in (last, "error"):
            return


async def synthesize(port: int, text: str, voice: SynthesizeVoice | dict | None = None
                     ) -> Spoken:
    spoken = Spoken()
    async with client(port) as c:
        event = Synthesize(text=text, voice=voice if isinstance(voice, SynthesizeVoice)
                           else None).event()
        if isinstance(voice, dict):  # every field, as the package drops language with name
            event.data["voice"] = voice
        started = time.perf_counter()
        await c.write_event(event)
        await _read_until(c, spoken, started, "audio-stop")
    return spoken


async def synthesize_streaming(port: int, chunks: list[str], *, wait_after: int | None = None,
                               voice: SynthesizeVoice | None = None) -> tuple[Spoken, int]:
    """Home Assistant's streaming synthesis. With ``wait_after``, audio is read until the
    first audio-stop after that many chunks, before the rest of the text is sent (the
    rest of the reply is still being written); returns the events and how many of them
    came before synthesize-stop was sent."""
    spoken = Spoken()
    async with client(port) as c:
        started = time.perf_counter()
        await c.write_event(SynthesizeStart(voice=voice).event())
        for index, chunk in enumerate(chunks):
            await c.write_event(SynthesizeChunk(text=chunk).event())
            if wait_after is not None and index + 1 == wait_after:
                await _read_until(c, spoken, started, "audio-stop")
        before_stop = len(spoken.events)
        await c.write_event(Synthesize(text="".join(chunks), voice=voice).event())
        await c.write_event(SynthesizeStop().event())
        await _read_until(c, spoken, started, "synthesize-stopped")
    return spoken, before_stop


def run(coroutine):  # noqa: ANN001, ANN201
    return asyncio.run(coroutine)
