"""Every 200 carries its whole body: a full queue is decided before the status goes out.

The reproducer of the lost answers: many concurrent requests against a small queue. Each
answer must be either a 200 whose body is the whole answer, or a 503 with Retry-After;
never a 200 with an empty or cut body. "Whole" is measured against the same request sent
alone first, on an idle queue: the same length of speech, the same transcript, the same
number of video frames. Streamed and whole answers, directly and through the UI gateway.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import av
import httpx
import pytest

from secretary import audio
from secretary.avatar.app import create_app as create_avatar_app
from secretary.avatar.meshwarp import MeshWarpEngine
from secretary.avatar.models import FaceLandmarkerModel
from secretary.catalog import ModelStore
from secretary.config import Settings
from secretary.stt.app import create_app as create_stt_app
from secretary.stt.whisper import WhisperEngine
from secretary.tts.app import create_app as create_tts_app
from secretary.tts.espeak import EspeakEngine
from secretary.ui.app import create_app as create_ui_app
from tests.conftest import make_settings
from tests.helpers import FACES, SPEECH, running_server

CONCURRENT = 24
SENTENCE = "The quick brown fox jumps over the lazy dog. It was a sunny day."


def _small_queue(settings: Settings, group: str) -> Settings:
    limits = getattr(settings, group)
    setattr(settings, group, limits.model_copy(update={"max_concurrency": 1, "max_queue": 2}))
    return settings


@pytest.fixture(scope="module")
def tts_url(cache_dir: Path) -> Iterator[str]:
    settings = make_settings(cache_dir, tts={"routes": "*=espeak", "max_concurrency": 1,
                                             "max_queue": 2})
    engine = EspeakEngine()
    engine.load()
    with running_server(create_tts_app(settings, {"espeak": engine})) as url:
        yield url


Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


async def _burst(send: Send, count: int = CONCURRENT) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=300) as client:
        return await asyncio.gather(*(send(client) for _ in range(count)))


async def _alone(send: Send) -> bytes:
    """The answer to one request on an idle queue: what a whole answer is."""
    async with httpx.AsyncClient(timeout=300) as client:
        answer = await send(client)
    assert answer.status_code == 200, answer.text[:300]
    return answer.content


def _check(answers: list[httpx.Response], whole: Callable[[bytes], None]) -> tuple[int, int]:
    served = refused = 0
    for answer in answers:
        if answer.status_code == 200:
            whole(answer.content)
            served += 1
        else:
            assert answer.status_code == 503, (answer.status_code, answer.text[:300])
            assert answer.headers.get("retry-after"), answer.headers
            assert answer.json()["error"]["code"] == "busy"
            refused += 1
    assert served >= 1 and refused >= 1, (served, refused)  # the queue did fill up
    return served, refused


# The same text through the same engine gives the same samples; the containers differ by
# at most a frame of padding (an MP3 or Opus frame is 20 to 26 ms). Losing the last
# sentence takes away some 2 s, a last word some 0.3 s.
SAME_SPEECH_WITHIN = 0.06


def _same_speech_as(alone: bytes) -> Callable[[bytes], None]:
    expected = audio.decode(alone).duration

    def whole(body: bytes) -> None:
        duration = audio.decode(body).duration
        assert abs(duration - expected) <= SAME_SPEECH_WITHIN, (duration, expected)

    return whole


def test_openai_speech_streams_never_answer_an_empty_200(tts_url: str) -> None:
    async def send(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"{tts_url}/v1/audio/speech", json={
            "model": "tts-1", "input": SENTENCE, "voice": "alloy", "response_format": "wav"})

    _check(asyncio.run(_burst(send)), _same_speech_as(asyncio.run(_alone(send))))
    assert httpx.get(f"{tts_url}/health").json()["queue"]["in_progress"] == 0  # none leaked


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
def test_synthesize_never_answers_an_empty_200(tts_url: str, stream: bool) -> None:
    async def send(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"{tts_url}/synthesize", json={
            "text": SENTENCE, "language": "en", "format": "mp3", "stream": stream})

    _check(asyncio.run(_burst(send)), _same_speech_as(asyncio.run(_alone(send))))


def test_through_the_ui_gateway_every_200_is_whole(cache_dir: Path, tts_url: str) -> None:
    settings = make_settings(cache_dir)
    settings.ui = settings.ui.model_copy(update={"tts_url": tts_url})
    with running_server(create_ui_app(settings)) as ui_url:
        async def send(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post(f"{ui_url}/api/tts/v1/audio/speech", json={
                "model": "tts-1", "input": SENTENCE, "voice": "alloy",
                "response_format": "opus"})

        _check(asyncio.run(_burst(send)), _same_speech_as(asyncio.run(_alone(send))))


def test_stt_event_stream_is_whole_or_refused(cache_dir: Path) -> None:
    settings = _small_queue(make_settings(cache_dir), "stt")
    engine = WhisperEngine(settings.stt, ModelStore(settings.models_dir))
    clip = (SPEECH / "en_cmu_arctic_aew_a0001.wav").read_bytes()
    with running_server(create_stt_app(settings, engine)) as url:
        async def send(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post(f"{url}/v1/audio/transcriptions",
                                     files={"file": ("a.wav", clip, "audio/wav")},
                                     data={"stream": "true", "language": "en"})

        expected = _final_text(asyncio.run(_alone(send)))
        assert "danger trail" in expected.lower(), expected

        def complete(body: bytes) -> None:
            assert _final_text(body) == expected, body.decode()  # one decoding: the same words

        _check(asyncio.run(_burst(send, 8)), complete)


def test_avatar_stream_is_whole_or_refused(cache_dir: Path) -> None:
    settings = _small_queue(make_settings(cache_dir), "avatar")
    engine = MeshWarpEngine(settings.avatar, FaceLandmarkerModel(settings.models_dir))
    photo = (FACES / "pexels_woman_neutral.jpg").read_bytes()
    speech = (SPEECH / "en_cmu_arctic_aew_a0001.wav").read_bytes()
    with running_server(create_avatar_app(settings, engine)) as url:
        async def send(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post(
                f"{url}/api/animate",
                files={"source_image": ("p.jpg", photo, "image/jpeg"),
                       "audio": ("a.wav", speech, "audio/wav")},
                data={"stream": "true", "fps": "8", "size": "128"})

        alone = asyncio.run(_alone(send))
        expected = (_video_frames(alone), audio.decode(alone).duration)
        assert expected[0] >= 8 * 2, expected  # some 2.5 s of speech at 8 frames a second

        def whole_video(body: bytes) -> None:
            # Every frame, and the AAC track to the end of the speech.
            frames, duration = _video_frames(body), audio.decode(body).duration
            assert frames == expected[0], (frames, expected)
            assert abs(duration - expected[1]) <= SAME_SPEECH_WITHIN, (duration, expected)

        _check(asyncio.run(_burst(send, 8)), whole_video)


def _final_text(body: bytes) -> str:
    """The text of the stream's ``transcript.text.done`` event (none there: an error)."""
    events = [json.loads(line[len("data: "):]) for line in body.decode().splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert not [e for e in events if e.get("type") == "error"], events
    done = [e["text"] for e in events if e.get("type") == "transcript.text.done"]
    assert len(done) == 1, events
    return done[0]


def _video_frames(body: bytes) -> int:
    with av.open(io.BytesIO(body)) as container:
        return sum(1 for _ in container.decode(video=0))
