"""Bad input over Wyoming: an ``error`` event, then the connection stays usable (an error
outside a request) or closes cleanly (an error that ends a request), and other clients
are not affected. Malformed bytes are written raw; everything else goes through the
``wyoming`` package's client and event writer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Describe
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStop, SynthesizeVoice

from secretary.stt.whisper import WhisperEngine
from secretary.tts.espeak import EspeakEngine
from secretary.tts.piper import PiperEngine
from tests.helpers import SPEECH
from tests.wyoming_api.client import client, pcm16, run, synthesize, transcribe
from tests.wyoming_api.conftest import Wyoming, wyoming_server

READ = 30.0


class Raw:
    """A plain TCP connection: raw bytes out, events in (the package's reader)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def event(self, item: Event) -> None:
        await async_write_event(item, self.writer)

    async def read(self) -> Event | None:
        return await asyncio.wait_for(async_read_event(self.reader), READ)

    async def error(self) -> dict:
        event = await self.read()
        assert event is not None and event.type == "error", event
        return event.data

    async def usable(self) -> None:
        """The connection still answers: describe gives info."""
        await self.event(Describe().event())
        event = await self.read()
        assert event is not None and event.type == "info", event

    async def closed(self) -> None:
        assert await self.read() is None

    def close(self) -> None:
        self.writer.close()


def chunk(size: int) -> Event:
    return AudioChunk(rate=16000, width=2, channels=1, audio=b"\0" * size).event()


START = AudioStart(rate=16000, width=2, channels=1).event()


async def _outside_a_request(port: int) -> None:
    conn = await Raw.open(port)
    try:
        await conn.send(b"{not json\n")
        assert "not JSON" in (await conn.error())["text"]
        await conn.usable()
        await conn.send(b'{"data": {}}\n')
        assert "no type" in (await conn.error())["text"]
        await conn.usable()
        await conn.send(b'["describe"]\n')
        await conn.error()
        await conn.usable()
        # Unknown event types are ignored, as the protocol asks of servers.
        await conn.event(Event("detect", {"names": ["ok_nabu"]}))
        await conn.usable()
    finally:
        conn.close()


@pytest.mark.parametrize("side", ["stt", "tts"])
def test_malformed_events_get_an_error_and_the_connection_stays(side: str,
                                                                wyoming: Wyoming) -> None:
    run(_outside_a_request(wyoming.stt_port if side == "stt" else wyoming.tts_port))


async def _out_of_order_stt(port: int) -> None:
    conn = await Raw.open(port)
    try:
        await conn.event(chunk(2048))
        assert (await conn.error())["text"] == "audio-chunk before audio-start"
        await conn.usable()
        await conn.event(AudioStop().event())
        assert (await conn.error())["text"] == "audio-stop before audio-start"
        await conn.usable()
    finally:
        conn.close()


async def _out_of_order_tts(port: int) -> None:
    conn = await Raw.open(port)
    try:
        await conn.event(SynthesizeChunk(text="Hello.").event())
        assert "before synthesize-start" in (await conn.error())["text"]
        await conn.event(SynthesizeStop().event())
        assert "before synthesize-start" in (await conn.error())["text"]
        await conn.usable()
    finally:
        conn.close()


def test_events_out_of_order_outside_a_request(wyoming: Wyoming) -> None:
    run(_out_of_order_stt(wyoming.stt_port))
    run(_out_of_order_tts(wyoming.tts_port))


async def _ends_request(port: int, events: list[Event], expect: str) -> None:
    conn = await Raw.open(port)
    try:
        for item in events:
            await conn.event(item)
        error = await conn.error()
        assert expect in error["text"], error
        await conn.closed()
    finally:
        conn.close()


@pytest.mark.parametrize(("events", "expect"), [
    ([Transcribe(language="xx").event()], "unknown language code 'xx'"),
    ([Transcribe(name="large-v3").event()], "is not served here"),
    ([START, START], "audio-start twice"),
    ([Event("audio-start", {"rate": 16000, "width": 5, "channels": 1})],
     "width must be an integer from 1 to 4"),
    ([START, AudioChunk(rate=8000, width=2, channels=1, audio=b"\0\0").event()],
     "must stay as audio-start gave them"),
    ([START, Transcribe(language="en").event()], "transcribe during an audio stream"),
], ids=["language", "model", "start-twice", "width", "format-change", "transcribe-twice"])
def test_bad_speech_requests_get_an_error_and_close(events: list[Event], expect: str,
                                                    wyoming: Wyoming) -> None:
    run(_ends_request(wyoming.stt_port, events, expect))


@pytest.mark.parametrize(("voice", "text", "expect"), [
    (SynthesizeVoice(name="nobody"), "Hello.", "unknown voice 'nobody'"),
    ({"language": "tlh"}, "Hello.", "no configured voice speaks language 'tlh'"),
    (None, "   ", "text is empty"),
    (None, "x" * 5000, "more than the limit of 4096"),
    ({"name": 42}, "Hello.", "name must be a string"),
], ids=["voice", "language", "empty", "too-long", "not-a-string"])
def test_bad_synthesis_requests_get_an_error_and_close(voice: object, text: str, expect: str,
                                                       wyoming: Wyoming) -> None:
    spoken = run(synthesize(wyoming.tts_port, text, voice))  # type: ignore[arg-type]
    assert spoken.types == ["error"]
    assert expect in spoken.events[0].data["text"]


@pytest.fixture(scope="module")
def strict(cache_dir: Path, whisper_engine: WhisperEngine, piper_engine: PiperEngine,
           espeak_engine: EspeakEngine) -> Iterator[Wyoming]:
    """Small limits, to reach them quickly."""
    with wyoming_server(cache_dir, whisper_engine, piper_engine, espeak_engine,
                        max_audio_seconds=2.0, max_payload_bytes=8192, max_data_bytes=4096,
                        max_connections=3, idle_timeout=1.0) as server:
        yield server


async def _huge_chunk(port: int) -> None:
    # Outside a request: the payload is read past, the connection goes on.
    conn = await Raw.open(port)
    try:
        await conn.event(chunk(100_000))
        assert "over the limit of 8192" in (await conn.error())["text"]
        await conn.usable()
        await conn.event(Event("describe", {"padding": "x" * 10_000}))
        assert "over the limit of 4096" in (await conn.error())["text"]
        await conn.usable()
        # Inside one: the request ends, the connection closes.
        await conn.event(START)
        await conn.event(chunk(100_000))
        assert "over the limit of 8192" in (await conn.error())["text"]
        await conn.closed()
    finally:
        conn.close()


async def _too_long(port: int) -> None:
    conn = await Raw.open(port)
    try:
        await conn.event(START)
        for _ in range(20):  # 20 x 8000 bytes: 5 s at 16 kHz, over the 2 s limit
            await conn.event(chunk(8000))
        assert "longer than the limit of 2 s" in (await conn.error())["text"]
        await conn.closed()
    finally:
        conn.close()


async def _unframed(port: int) -> None:
    conn = await Raw.open(port)
    try:
        await conn.send(b"x" * 70_000)  # no newline within the 64 KiB a header may take
        assert (await conn.error())["code"] == "bad_stream"
        await conn.closed()
    finally:
        conn.close()
    conn = await Raw.open(port)
    try:
        await conn.send(json.dumps({"type": "audio-chunk", "payload_length": -1}).encode()
                        + b"\n")
        assert "payload_length must be a non-negative integer" in (await conn.error())["text"]
        await conn.closed()
    finally:
        conn.close()


def test_huge_events_and_too_much_audio(strict: Wyoming) -> None:
    run(_huge_chunk(strict.stt_port))
    run(_too_long(strict.stt_port))
    run(_unframed(strict.stt_port))
    run(_unframed(strict.tts_port))


async def _connections(port: int) -> None:
    held = [await Raw.open(port) for _ in range(3)]
    try:
        for conn in held:
            await conn.usable()
        extra = await Raw.open(port)
        assert (await extra.error())["code"] == "busy"
        await extra.closed()
        # An idle connection is closed after idle_timeout (1 s), which frees its place. The
        # bound is the read's own (READ, 30 times the idle timeout): without the timeout
        # the read would wait that long and fail. bench/responsiveness.py measures it.
        await held[0].closed()
        again = await Raw.open(port)
        try:
            await again.usable()
        finally:
            again.close()
    finally:
        for conn in held:
            conn.close()


def test_connection_limit_and_idle_timeout(strict: Wyoming) -> None:
    run(_connections(strict.tts_port))


async def _others_unaffected(wyoming: Wyoming) -> None:
    """While one client transcribes and another synthesizes, a third sends garbage and a
    fourth an unknown voice; the first two get their whole answers."""
    clip = SPEECH / "en_cmu_arctic_aew_a0003.wav"

    async def garbage() -> None:
        conn = await Raw.open(wyoming.stt_port)
        await conn.send(b"\xff\xfe garbage\n" * 5 + b"x" * 70_000)
        while await conn.read() is not None:
            pass
        conn.close()

    heard, spoken, _, refused = await asyncio.gather(
        transcribe(wyoming.stt_port, pcm16(clip), "en"),
        synthesize(wyoming.tts_port, "Good morning. Your first meeting is at nine."),
        garbage(),
        synthesize(wyoming.tts_port, "Hello.", SynthesizeVoice(name="nobody")),
    )
    assert heard.event.type == "transcript" and "shook hands" in heard.event.data["text"]
    assert spoken.types == ["audio-start", "audio-stop"] and len(spoken.pcm) > 22050
    assert refused.types == ["error"]


def test_other_clients_are_unaffected(wyoming: Wyoming) -> None:
    run(_others_unaffected(wyoming))


async def _describe_with_client(port: int) -> None:
    """After a refused request on one connection, a new one from the package's client is
    served as usual."""
    async with client(port) as c:
        await c.write_event(Synthesize(text="Hello.", voice=SynthesizeVoice(name="x")).event())
        event = await c.read_event()
        assert event is not None and event.type == "error"
    async with client(port) as c:
        await c.write_event(Describe().event())
        event = await c.read_event()
        assert event is not None and event.type == "info"


def test_a_new_connection_after_an_error(wyoming: Wyoming) -> None:
    run(_describe_with_client(wyoming.tts_port))


async def _two_at_once(port: int) -> list[dict]:
    pcm = pcm16(SPEECH / "en_jfk_ask_not.flac")
    heard = await asyncio.gather(transcribe(port, pcm, "en"), transcribe(port, pcm, "en"))
    return [h.event.to_dict() for h in heard]


def test_a_full_queue_answers_busy(cache_dir: Path, whisper_engine: WhisperEngine,
                                   piper_engine: PiperEngine,
                                   espeak_engine: EspeakEngine) -> None:
    """The speech-to-text service's own limits (SECRETARY_STT_MAX_CONCURRENCY and
    _MAX_QUEUE, here 1 and 0): the second of two requests at once is refused as the HTTP
    API would refuse it (503 there), and the first is served."""
    with wyoming_server(cache_dir, whisper_engine, piper_engine, espeak_engine,
                        stt_limits=(1, 0)) as server:
        answers = run(_two_at_once(server.stt_port))
    types = sorted(a["type"] for a in answers)
    assert types == ["error", "transcript"], answers
    error = next(a for a in answers if a["type"] == "error")
    assert error["data"]["code"] == "busy"
    assert "busy" in error["data"]["text"]


async def _declared_but_not_sent(port: int) -> None:
    """A header that declares 2 GiB of payload and sends a little: nothing of that size is
    held, and the server answers others meanwhile."""
    conn = await Raw.open(port)
    header = {"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1},
              "payload_length": 2 << 30}
    await conn.send(json.dumps(header).encode() + b"\n" + b"\0" * 100_000)
    other = await Raw.open(port)
    await other.usable()
    other.close()
    conn.writer.write_eof()  # the payload never comes: the server sees the end
    assert await conn.read() is None
    conn.close()


async def _ping(port: int) -> None:
    conn = await Raw.open(port)
    await conn.event(Event("ping", {"text": "hello"}))
    event = await conn.read()
    assert event is not None and event.type == "pong" and event.data["text"] == "hello"
    conn.close()


def test_a_payload_declared_but_never_sent(wyoming: Wyoming) -> None:
    run(_declared_but_not_sent(wyoming.stt_port))


def test_ping(wyoming: Wyoming) -> None:
    run(_ping(wyoming.stt_port))
    run(_ping(wyoming.tts_port))
