"""Helpers for the conversation tests: recordings made from real clips, a client that
reads a turn's event stream, and a proxy that holds a service's answer back part-way."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from secretary import audio
from tests.helpers import SPEECH, reference_text, running_server

PORTRAIT = Path(__file__).parents[2] / "src" / "secretary" / "ui" / "static" / "portrait.png"
# Two sentences, spoken by two speakers with a pause between: a reply of two sentences.
TWO_SENTENCE_CLIPS = ("en_cheetah_platforms.wav", "en_cmu_arctic_aew_a0003.wav")


def recording(*names: str, pause: float = 0.6) -> tuple[bytes, str]:
    """A WAV of the clips one after the other, and what is said in it."""
    rate = audio.WHISPER_SAMPLE_RATE
    gap = np.zeros(int(pause * rate), np.float32)
    parts: list[np.ndarray] = [gap]
    for name in names:
        parts += [audio.decode(SPEECH / name).samples, gap]
    text = " ".join(reference_text(SPEECH / name) for name in names)
    return audio.encode(np.concatenate(parts), rate, "wav"), text


def silence(seconds: float = 2.0) -> bytes:
    rate = audio.WHISPER_SAMPLE_RATE
    return audio.encode(np.zeros(int(seconds * rate), np.float32), rate, "wav")


def turn_events(url: str, wav: bytes, *, stop_after: str | None = None, timeout: float = 120,
                on_event: Callable[[dict[str, Any]], None] | None = None,
                headers: dict[str, str] | None = None, **form: Any) -> list[dict[str, Any]]:
    """POST /api/turn and read its events; ``stop_after`` closes the stream at the first
    event of that type (the listener pressing Stop); ``on_event`` sees each as it arrives."""
    events: list[dict[str, Any]] = []
    data = {"session": "test", **{k: str(v) for k, v in form.items()}}
    with httpx.stream("POST", f"{url}/api/turn", files={"audio": ("speech.wav", wav)},
                      data=data, timeout=timeout, headers=headers) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        for line in answer.iter_lines():
            if not line.strip():
                continue
            events.append(json.loads(line))
            if on_event is not None:
                on_event(events[-1])
            if stop_after and events[-1]["type"] == stop_after:
                break
    return events


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def reply_audio(events: list[dict[str, Any]]) -> audio.DecodedAudio:
    """The reply's MP3 stream, put together and decoded."""
    data = b"".join(base64.b64decode(e["data"]) for e in of_type(events, "audio"))
    return audio.decode(data)


def metric(url: str, name: str, **labels: str) -> float:
    """One sample's value from the server's /metrics (0 where it is not there yet)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{wanted}}}" if wanted else name):
            return float(value)
    return 0.0


class Hold:
    """One test's hold on a ``HoldingProxy``: a log that the proxy and the test both write
    to (so it gives the order of what each saw), and the test's release."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._released = threading.Event()

    def note(self, what: str) -> None:
        with self._lock:
            self.log.append(what)

    def release(self) -> None:
        self._released.set()

    async def wait(self, limit: float) -> None:
        """Until released, or ``limit`` seconds: a client that waits for the whole answer
        then fails its test instead of hanging it."""
        if not await asyncio.to_thread(self._released.wait, limit):
            self.note("gave up holding")


class HoldingProxy:
    """A real HTTP proxy in front of a service. Each answer goes through as it arrives (an
    event stream line by line), except while a test holds it (``holding``): then each answer
    stops at a point and waits for the test's release. ``hold_after(piece)`` chooses the
    point: after the first piece it is true of; without it, after the answer's last byte,
    before its end. The proxy notes ``held`` before the client can see that point, and
    ``answer ended`` before the client can see the end."""

    def __init__(self, upstream: str, *, hold_after: Callable[[bytes], bool] | None = None,
                 limit: float = 10.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.hold_after = hold_after
        self.limit = limit
        self.hold: Hold | None = None
        self.url = ""

    @contextlib.contextmanager
    def holding(self) -> Iterator[Hold]:
        self.hold = hold = Hold()
        try:
            yield hold
        finally:
            self.hold = None
            hold.release()

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self._forward, methods=methods)])

    async def _forward(self, request: Request) -> StreamingResponse:
        # No compression asked for: an event stream is split into lines as it passes.
        headers = {k: v for k, v in request.headers.items()
                   if k not in ("host", "content-length", "accept-encoding", "connection")}
        client = httpx.AsyncClient(timeout=httpx.Timeout(120.0, connect=5.0))
        outgoing = client.build_request(
            request.method, self.upstream + request.url.path, params=request.url.query,
            headers=headers, content=await request.body())
        answer = await client.send(outgoing, stream=True)
        lines = answer.headers.get("content-type", "").startswith("text/event-stream")
        passed = {k: v for k, v in answer.headers.items() if k not in (
            "content-length", "transfer-encoding", "connection", "content-encoding")}
        return StreamingResponse(self._relay(answer, client, lines), answer.status_code,
                                 headers=passed)

    async def _relay(self, answer: httpx.Response, client: httpx.AsyncClient,
                     lines: bool) -> AsyncIterator[bytes]:
        hold = self.hold
        try:
            if hold is None or self.hold_after is None:
                async for piece in _pieces(answer, lines):
                    yield piece
                if hold is not None:
                    hold.note("held")
                    await hold.wait(self.limit)
                    hold.note("answer ended")
                return
            # One piece behind the upstream, so its end is noted before the client has the
            # last piece (a client may close as soon as it has it, ending this relay).
            held = ended = False
            last: bytes | None = None
            last_holds = False
            async for piece in _pieces(answer, lines):
                if last is not None:
                    if last.strip() == b"data: [DONE]" and not ended:
                        # The event stream's own end: a client stops reading here.
                        ended = True
                        hold.note("answer ended")
                    yield last
                    if last_holds:
                        await hold.wait(self.limit)
                last, last_holds = piece, not held and self.hold_after(piece)
                if last_holds:
                    held = True
                    hold.note("held")
            if not ended:
                hold.note("answer ended")
            if last is not None:
                yield last
                if last_holds:
                    await hold.wait(self.limit)
        finally:
            await answer.aclose()
            await client.aclose()


async def _pieces(answer: httpx.Response, lines: bool) -> AsyncIterator[bytes]:
    if not lines:
        async for chunk in answer.aiter_raw():
            yield chunk
        return
    buffered = b""
    async for chunk in answer.aiter_raw():
        buffered += chunk
        *whole, buffered = buffered.split(b"\n")
        for line in whole:
            yield line + b"\n"
    if buffered:
        yield buffered


@contextlib.contextmanager
def holding_proxy(upstream: str, *, hold_after: Callable[[bytes], bool] | None = None,
                  limit: float = 10.0) -> Iterator[HoldingProxy]:
    """A ``HoldingProxy`` in front of ``upstream`` (an origin), served on a free port."""
    proxy = HoldingProxy(upstream, hold_after=hold_after, limit=limit)
    with running_server(proxy.app()) as url:
        proxy.url = url
        yield proxy
