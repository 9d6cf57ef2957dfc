"""Every 200 carries its whole body: a full queue is decided before the status goes out.

The reproducer of the lost answers: many concurrent requests against a small queue. Each
answer must be either a 200 whose body decodes completely, or a 503 with Retry-After;
never a 200 with an empty or cut body. Streamed and whole answers, directly and through
the UI gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

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


async def _burst(send: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
                 count: int = CONCURRENT) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=300) as client:
        return await asyncio.gather(*(send(client) for _ in range(count)))


def _check(answers: list[httpx.Response], valid: Callable[[bytes], None]) -> tuple[int, int]:
    served = refused = 0
    for answer in answers:
        if answer.status_code == 200:
            valid(answer.content)  # the whole body, decodable
            served += 1
        else:
            assert answer.status_code == 503, (answer.status_code, answer.text[:300])
            assert answer.headers.get("retry-after"), answer.headers
            assert answer.json()["error"]["code"] == "busy"
            refused += 1
    assert served >= 1 and refused >= 1, (served, refused)  # the queue did fill up
    return served, refused


def _speech_audio(body: bytes) -> None:
    decoded = audio.decode(body)
    assert decoded.duration > 2.0, decoded.duration  # both sentences, not a cut-off piece


def test_openai_speech_streams_never_answer_an_empty_200(tts_url: str) -> None:
    async def send(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"{tts_url}/v1/audio/speech", json={
            "model": "tts-1", "input": SENTENCE, "voice": "alloy", "response_format": "wav"})

    _check(asyncio.run(_burst(send)), _speech_audio)
    assert httpx.get(f"{tts_url}/health").json()["queue"]["in_progress"] == 0  # none leaked


def test_synthesize_stream_and_whole_never_answer_an_empty_200(tts_url: str) -> None:
    async def send(client: httpx.AsyncClient) -> httpx.Response:
        stream = send.count % 2 == 0  # type: ignore[attr-defined]
        send.count += 1  # type: ignore[attr-defined]
        return await client.post(f"{tts_url}/synthesize", json={
            "text": SENTENCE, "language": "en", "format": "mp3", "stream": stream})

    send.count = 0  # type: ignore[attr-defined]
    _check(asyncio.run(_burst(send)), _speech_audio)


def test_through_the_ui_gateway_every_200_is_whole(cache_dir: Path, tts_url: str) -> None:
    settings = make_settings(cache_dir)
    settings.ui = settings.ui.model_copy(update={"tts_url": tts_url})
    with running_server(create_ui_app(settings)) as ui_url:
        async def send(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post(f"{ui_url}/api/tts/v1/audio/speech", json={
                "model": "tts-1", "input": SENTENCE, "voice": "alloy",
                "response_format": "opus"})

        _check(asyncio.run(_burst(send)), _speech_audio)


def test_stt_event_stream_is_whole_or_refused(cache_dir: Path) -> None:
    settings = _small_queue(make_settings(cache_dir), "stt")
    engine = WhisperEngine(settings.stt, ModelStore(settings.models_dir))
    clip = (SPEECH / "en_cmu_arctic_aew_a0001.wav").read_bytes()
    with running_server(create_stt_app(settings, engine)) as url:
        async def send(client: httpx.AsyncClient) -> httpx.Response:
            return await client.post(f"{url}/v1/audio/transcriptions",
                                     files={"file": ("a.wav", clip, "audio/wav")},
                                     data={"stream": "true", "language": "en"})

        def complete(body: bytes) -> None:
            text = body.decode()
            assert '"transcript.text.done"' in text and '"type": "error"' not in text, text

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

        def whole_video(body: bytes) -> None:
            decoded = audio.decode(body)  # the AAC track runs to the end of the speech
            assert decoded.duration > 2.0, decoded.duration

        _check(asyncio.run(_burst(send, 8)), whole_video)
