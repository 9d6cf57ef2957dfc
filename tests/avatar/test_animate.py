"""Talking: a real speech clip through /api/animate, checked frame by frame."""

from __future__ import annotations

import io
import math

import av
import httpx
import numpy as np
import pytest

from secretary import audio
from tests.avatar.conftest import Judge
from tests.helpers import FACES, SPEECH

PHOTO = FACES / "pexels_woman_neutral.jpg"
CLIP = SPEECH / "en_sr_one_two_three.wav"  # "one two three" with pauses between the words
FPS = 25


def animate(client: httpx.Client, **form: object) -> httpx.Response:
    files = {"source_image": ("photo.jpg", PHOTO.read_bytes()),
             "audio": ("clip.wav", CLIP.read_bytes())}
    return client.post("/api/animate", files=files,
                       data={key: str(value) for key, value in form.items()})


def video_frames(mp4: bytes) -> tuple[list[np.ndarray], str, str]:
    with av.open(io.BytesIO(mp4)) as container:
        video_codec = container.streams.video[0].codec_context.name
        audio_codec = container.streams.audio[0].codec_context.name
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    return frames, video_codec, audio_codec


def loudness_per_frame(samples: np.ndarray, rate: int, count: int) -> np.ndarray:
    hop = rate / FPS
    return np.array([
        10 * np.log10(np.mean(samples[int(i * hop):int((i + 1) * hop)] ** 2) + 1e-10)
        for i in range(count)
    ])


@pytest.fixture(scope="module")
def animation(avatar: httpx.Client) -> bytes:
    response = animate(avatar, fps=FPS, size=384)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    return response.content


def test_video_has_one_frame_per_25th_of_a_second(animation: bytes) -> None:
    source = audio.decode(CLIP)
    frames, video_codec, audio_codec = video_frames(animation)
    assert (video_codec, audio_codec) == ("h264", "aac")
    assert len(frames) == math.ceil(source.duration * FPS)
    assert max(frames[0].shape[:2]) in (383, 384)


def test_audio_track_is_the_input(animation: bytes) -> None:
    source = audio.decode(CLIP)
    track = audio.decode(animation)
    assert abs(track.duration - source.duration) < 0.1
    n = min(len(track.samples), len(source.samples))
    # No lag: the track starts with the pictures, at the input's first sample.
    correlation = np.corrcoef(track.samples[:n], source.samples[:n])[0, 1]
    assert correlation > 0.95


def test_mouth_follows_the_speech(animation: bytes, judge: Judge) -> None:
    frames, _, _ = video_frames(animation)
    jaw = np.array([judge.scores(frame)["jawOpen"] for frame in frames])
    source = audio.decode(CLIP)
    level = loudness_per_frame(source.samples, source.sample_rate, len(frames))
    speech = level > np.percentile(level, 90) - 15
    pause = level < np.percentile(level, 10) + 6
    assert speech.sum() >= 10 and pause.sum() >= 10
    # Open while speaking, closed in the pauses, and moving with the loudness.
    assert jaw[speech].mean() > 0.15
    assert jaw[pause].mean() < 0.5 * jaw[speech].mean()
    assert np.corrcoef(jaw, level)[0, 1] > 0.5
    # The pauses between the words close the mouth again: it opens and closes more than
    # once, not just at the start and the end of the clip.
    opened = jaw > 0.5 * jaw.max()
    assert np.count_nonzero(np.diff(opened.astype(int)) == 1) >= 3


def test_streamed_animation_arrives_in_pieces(avatar: httpx.Client) -> None:
    files = {"source_image": ("photo.jpg", PHOTO.read_bytes()),
             "audio": ("clip.wav", CLIP.read_bytes())}
    pieces: list[bytes] = []
    with avatar.stream("POST", "/api/animate", files=files,
                       data={"stream": "true", "size": "256"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp4"
        pieces = [piece for piece in response.iter_bytes() if piece]
    assert len(pieces) >= 3
    frames, video_codec, _ = video_frames(b"".join(pieces))
    assert video_codec == "h264"
    assert len(frames) == math.ceil(audio.decode(CLIP).duration * FPS)
    track = audio.decode(b"".join(pieces))
    source = audio.decode(CLIP)
    n = min(len(track.samples), len(source.samples))
    assert np.corrcoef(track.samples[:n], source.samples[:n])[0, 1] > 0.9


@pytest.mark.parametrize(
    ("form", "audio_bytes", "status", "param"),
    [
        ({}, b"RIFF....WAVEnot really", 400, "audio"),
        ({"fps": "0"}, None, 400, "fps"),
        ({"fps": "500"}, None, 400, "fps"),
        ({"expression": "bored"}, None, 400, "expression"),
        ({"size": "8"}, None, 400, "size"),
    ],
)
def test_bad_animate_requests_are_4xx(avatar: httpx.Client, form: dict[str, str],
                                      audio_bytes: bytes | None, status: int,
                                      param: str) -> None:
    files = {"source_image": ("photo.jpg", PHOTO.read_bytes()),
             "audio": ("clip.wav", CLIP.read_bytes() if audio_bytes is None else audio_bytes)}
    response = avatar.post("/api/animate", files=files, data=form)
    assert response.status_code == status, response.text[:300]
    assert response.json()["error"]["param"] == param
    assert avatar.get("/health").json()["status"] == "ok"


def test_animate_without_a_face_is_422(avatar: httpx.Client) -> None:
    files = {"source_image": ("cup.png", (FACES / "noface_coffee_cup.png").read_bytes()),
             "audio": ("clip.wav", CLIP.read_bytes())}
    response = avatar.post("/api/animate", files=files, data={"stream": "true"})
    assert response.status_code == 422
    assert "no face" in response.json()["error"]["message"]


def test_busy_service_answers_503_and_recovers(cache_dir) -> None:
    """One engine slot and no queue: while an animation streams, other work gets 503 with
    Retry-After, and is served again once it ends."""
    from secretary.avatar.app import create_app
    from tests.conftest import make_settings
    from tests.helpers import running_server

    settings = make_settings(cache_dir)
    settings.avatar.max_concurrency, settings.avatar.max_queue = 1, 0
    long_clip = (SPEECH / "en_jfk_ask_not.flac").read_bytes()
    photo = PHOTO.read_bytes()
    with running_server(create_app(settings)) as url, httpx.Client(base_url=url,
                                                                   timeout=300) as client:
        files = {"source_image": ("photo.jpg", photo), "audio": ("clip.flac", long_clip)}
        with client.stream("POST", "/api/animate", files=files,
                           data={"stream": "true", "size": "256"}) as streaming:
            assert streaming.status_code == 200
            chunks = streaming.iter_bytes()
            assert next(chunks)
            busy = client.post("/api/render", files={"source_image": ("p.jpg", photo)})
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "2"
            assert "busy" in busy.json()["error"]["message"]
            rest = b"".join(chunks)
        assert rest
        again = client.post("/api/render", files={"source_image": ("p.jpg", photo)})
        assert again.status_code == 200
