"""Helpers for the realtime tests: a real server, the ``openai`` package's realtime client,
real clips fed as 24 kHz pcm16, and a judge that transcribes the reply back."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from openai import AsyncOpenAI

from secretary import audio
from tests.helpers import SPEECH

RATE = 24000


def clip(name: str) -> np.ndarray:
    """A clip from tests/data/speech at 24 kHz, float32."""
    return audio.decode(SPEECH / name, RATE).samples


def pcm16(samples: np.ndarray) -> str:
    return base64.b64encode((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()).decode()


def client(url: str) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


@asynccontextmanager
async def connect(url: str, **query: str) -> AsyncIterator[Any]:
    # No reconnecting: a test wants to see the server close.
    async with client(url).realtime.connect(model="secretary-realtime", extra_query=query,
                                            max_retries=0) as connection:
        yield connection


async def ask(connection: Any, text: str) -> None:
    """A typed user message, then ``response.create``."""
    await connection.conversation.item.create(item={
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]})
    await connection.response.create()


async def feed(connection: Any, samples: np.ndarray, *, speed: float = 1.0,
               chunk: float = 0.1) -> float:
    """Append ``samples`` in ``chunk``-second pieces at ``speed`` times real time; returns
    the wall clock when the last piece was sent."""
    step = int(chunk * RATE)
    began = time.perf_counter()
    for index, start in enumerate(range(0, len(samples), step)):
        due = began + index * chunk / speed
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await connection.input_audio_buffer.append(audio=pcm16(samples[start:start + step]))
    return time.perf_counter()


def voiced(samples: np.ndarray, rate: int = RATE) -> tuple[float, float]:
    """Seconds into a clip where its speech begins and ends (Silero over the whole clip)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    at16 = audio.resample(samples, rate, 16000)
    stamps = get_speech_timestamps(at16, VadOptions(min_silence_duration_ms=100,
                                                    speech_pad_ms=0))
    if not stamps:
        return 0.0, len(samples) / rate
    return stamps[0]["start"] / 16000, stamps[-1]["end"] / 16000


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


async def collect(connection: Any, until: str, *, wait: float = 90.0,
                  events: list[Any] | None = None) -> list[Any]:
    """Events (with the wall clock each arrived at as ``_at``) up to the first ``until``."""
    events = [] if events is None else events
    async with asyncio.timeout(wait):
        async for event in connection:
            object.__setattr__(event, "_at", time.perf_counter())
            events.append(event)
            if event.type == until:
                return events
    raise AssertionError(f"the connection closed before {until}: {[e.type for e in events]}")


def of_type(events: list[Any], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]


def reply_audio(events: list[Any]) -> np.ndarray:
    data = b"".join(base64.b64decode(e.delta) for e in of_type(events,
                                                                 "response.output_audio.delta"))
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


async def synthesized(service: Any, text: str) -> np.ndarray:
    """``text`` as the loaded service's Piper says it, at 24 kHz (a voice for the user's
    part where no recording of those words is at hand)."""
    from secretary.conversation.stages import Cancel

    speaker = service.pipeline.speaker
    pieces = [samples async for samples, _ in speaker.speak(text, "en", None, Cancel())]
    rate = speaker.service.engine("piper").sample_rate
    return audio.resample(np.concatenate(pieces), rate, RATE)


def speech_only(samples: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """A clip cut to its speech with ``margin`` seconds either side (no leading pause)."""
    start, end = voiced(samples)
    return samples[max(0, int((start - margin) * RATE)):int((end + margin) * RATE)]


async def feed_noting(connection: Any, samples: np.ndarray, sent: list[tuple[float, float]],
                      *, speed: float = 1.0, chunk: float = 0.1) -> None:
    """``feed``, noting after each piece the wall clock and the seconds of audio sent so far
    (over every call with the same ``sent``)."""
    step = int(chunk * RATE)
    total = sent[-1][1] if sent else 0.0
    began = time.perf_counter()
    for index, start in enumerate(range(0, len(samples), step)):
        delay = began + index * chunk / speed - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        piece = samples[start:start + step]
        await connection.input_audio_buffer.append(audio=pcm16(piece))
        total += len(piece) / RATE
        sent.append((time.perf_counter(), total))
