"""README claims about the avatar that need their own test: landmarks analysed once per
photo (cached by content hash), streamed video that leaves before the last frame is
rendered, rotated and multi-face photos, and the metrics endpoint."""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from secretary import audio
from secretary.avatar import meshwarp
from secretary.avatar.app import create_app
from secretary.avatar.engine import Pose
from secretary.avatar.landmarks import Landmarker
from secretary.avatar.meshwarp import MeshWarpEngine
from secretary.avatar.models import FaceLandmarkerModel
from tests.avatar.conftest import Judge
from tests.conftest import make_settings
from tests.helpers import FACES, SPEECH, EngineProxy, requests_counted, running_server

WOMAN = FACES / "pexels_woman_neutral.jpg"  # 961x1116
MAN = FACES / "pexels_man_angry_bw.jpg"
ASTRONAUT = FACES / "astronaut_eileen_collins.png"
CLIP = SPEECH / "en_sr_one_two_three.wav"
# Seconds a test engine waits for the client before it gives up (only a failing run waits).
PATIENCE = 30


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _image(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _render(url: str, photo: bytes, **form: object) -> httpx.Response:
    return httpx.post(f"{url}/api/render", files={"source_image": ("photo", photo)},
                      data={k: str(v) for k, v in form.items()}, timeout=120)


# --------------------------------------------------------------------------- caching


class CountingLandmarker(Landmarker):
    """The real Face Landmarker, counting its analyses."""

    calls = 0

    def detect(self, bgr: np.ndarray):
        type(self).calls += 1
        return super().detect(bgr)


@pytest.fixture
def counting_url(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(meshwarp, "Landmarker", CountingLandmarker)
    CountingLandmarker.calls = 0
    settings = make_settings(cache_dir)
    settings.avatar.cache_size = 2
    with running_server(create_app(settings)) as url:
        yield url


def test_landmarks_are_found_once_per_photo_content(counting_url: str) -> None:
    url = counting_url
    woman = WOMAN.read_bytes()
    assert _render(url, woman, expression="happy").status_code == 200
    assert CountingLandmarker.calls == 1
    # The same photo again, under another name, for another expression, size and
    # endpoint: no new analysis.
    assert _render(url, woman, expression="sad", size=256).status_code == 200
    files = {"source_image": ("other-name.jpg", woman), "audio": ("a.wav", CLIP.read_bytes())}
    assert httpx.post(f"{url}/api/animate", files=files, data={"size": "128"},
                      timeout=300).status_code == 200
    assert CountingLandmarker.calls == 1
    assert httpx.get(f"{url}/health").json()["cached_sources"] == 1
    # The same picture in other bytes is another photo (the key is the content's hash).
    again = cv2.imencode(".png", _image(woman))[1].tobytes()
    assert _render(url, again).status_code == 200
    assert CountingLandmarker.calls == 2
    # A cache of two photos: a third pushes out the least recently used one.
    assert _render(url, ASTRONAUT.read_bytes()).status_code == 200
    assert httpx.get(f"{url}/health").json()["cached_sources"] == 2
    assert _render(url, woman).status_code == 200
    assert CountingLandmarker.calls == 4
    assert _render(url, ASTRONAUT.read_bytes()).status_code == 200
    assert CountingLandmarker.calls == 4


# --------------------------------------------------------------------------- streaming


class OrderRecordingEngine(EngineProxy):
    """The real mesh-warp engine, which will not render the last frame until the client
    says the first piece of video has arrived (or ``PATIENCE`` runs out), and records which
    came first. A service that made the whole file before sending would wait in vain."""

    def __init__(self, engine: MeshWarpEngine, frames: int) -> None:
        super().__init__(engine)
        self.frames = frames
        self.rendered = 0
        self.client_has_video = threading.Event()
        self.order: list[str] = []

    def render(self, key: str, pose: Pose, size: int | None = None):
        if self.rendered == self.frames - 1:
            arrived = self.client_has_video.wait(PATIENCE)
            self.order.append("client had video" if arrived else "waited in vain")
        self.rendered += 1
        self.order.append(f"frame {self.rendered}")
        return self._engine.render(key, pose, size)


def test_stream_sends_video_before_the_last_frame_is_rendered(cache_dir: Path) -> None:
    settings = make_settings(cache_dir)
    frames = math.ceil(audio.decode(CLIP).duration * 25)  # 25 fps, the default
    engine = OrderRecordingEngine(
        MeshWarpEngine(settings.avatar, FaceLandmarkerModel(settings.models_dir)), frames)
    files = {"source_image": ("photo.jpg", WOMAN.read_bytes()),
             "audio": ("clip.wav", CLIP.read_bytes())}
    pieces = []
    with running_server(create_app(settings, engine)) as url, httpx.stream(
            "POST", f"{url}/api/animate", files=files, timeout=300,
            data={"stream": "true", "size": "256"}) as response:
        assert response.status_code == 200
        for piece in response.iter_bytes():
            pieces.append(piece)
            engine.client_has_video.set()
    assert engine.order[-2:] == ["client had video", f"frame {frames}"], engine.order[-3:]
    assert engine.rendered == frames
    assert audio.decode(b"".join(pieces)).duration == pytest.approx(frames / 25, abs=0.1)


# --------------------------------------------------------------------------- photos


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an EXIF block that holds only the orientation tag (0x0112), as a phone
    writes it when the camera was held sideways."""
    entry = struct.pack(">HHIH2x", 0x0112, 3, 1, orientation)  # SHORT, one value
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + b"\0" * 4
    payload = b"Exif\0\0" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + app1 + jpeg[2:]


def test_sideways_phone_photo_is_turned_upright(avatar: httpx.Client, judge: Judge) -> None:
    upright = cv2.imread(str(WOMAN))
    # Stored turned a quarter to the left, with EXIF orientation 6: "turn right to view".
    stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)
    jpeg = _with_exif_orientation(cv2.imencode(".jpg", stored)[1].tobytes(), 6)
    response = avatar.post("/api/render", files={"source_image": ("phone.jpg", jpeg)},
                           data={"expression": "happy", "format": "png"})
    assert response.status_code == 200, response.text
    out = _image(response.content)
    # Upright: taller than wide, as the 961x1116 original (downscaled to 1024 at most).
    assert out.shape[:2] == (1024, 882), out.shape
    neutral = judge.scores(cv2.resize(upright, (882, 1024), interpolation=cv2.INTER_AREA))
    assert judge.scores(out)["mouthSmileLeft"] > neutral["mouthSmileLeft"] + 0.08


def test_tilted_face_still_takes_an_expression(avatar: httpx.Client, judge: Judge) -> None:
    photo = cv2.imread(str(WOMAN))
    height, width = photo.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 20, 1.0)  # head tilted 20°
    tilted = cv2.warpAffine(photo, turn, (width, height), borderMode=cv2.BORDER_REPLICATE)
    source = _png(tilted)
    neutral = judge.scores(tilted)
    response = avatar.post("/api/render", files={"source_image": ("tilted.png", source)},
                           data={"expression": "happy", "format": "png"})
    assert response.status_code == 200, response.text
    smiled = judge.scores(response.content)
    for name in ("mouthSmileLeft", "mouthSmileRight"):
        # The same rise the upright photo must show (test_render's 0.08).
        assert smiled[name] > neutral[name] + 0.08, (name, neutral[name], smiled[name])


def test_photo_with_two_faces_animates_one_and_leaves_the_other(avatar: httpx.Client
                                                                 ) -> None:
    woman, man = cv2.imread(str(WOMAN)), cv2.imread(str(MAN))
    height = 600
    halves = [cv2.resize(p, (round(p.shape[1] * height / p.shape[0]), height))
              for p in (woman, man)]
    pair = np.concatenate(halves, axis=1)
    seam = halves[0].shape[1]
    response = avatar.post("/api/render", files={"source_image": ("pair.png", _png(pair))},
                           data={"expression": "surprised", "viseme": "open",
                                 "mouth_open": "1", "format": "png"})
    assert response.status_code == 200, response.text
    out = _image(response.content)
    assert out.shape == pair.shape
    x, y, w, h = (int(v) for v in response.headers["x-face-box"].split(","))
    assert x + w <= seam or x >= seam, (x, w, seam)  # one face's region, not both
    outside = np.ones(pair.shape[:2], dtype=bool)
    outside[y:y + h, x:x + w] = False
    assert np.array_equal(out[outside], pair[outside])  # the other face untouched
    assert np.abs(out[~outside].astype(int) - pair[~outside]).mean() > 1.0


# --------------------------------------------------------------------------- metrics


def test_metrics_count_requests(avatar_url: str) -> None:
    before = httpx.get(f"{avatar_url}/metrics").text
    photo = ASTRONAUT.read_bytes()
    for _ in range(2):
        assert _render(avatar_url, photo, size=128).status_code == 200
    assert _render(avatar_url, photo, expression="bored").status_code == 400
    after = httpx.get(f"{avatar_url}/metrics").text
    assert (requests_counted(after, "/api/render", "200")
            - requests_counted(before, "/api/render", "200")) == 2
    assert (requests_counted(after, "/api/render", "400")
            - requests_counted(before, "/api/render", "400")) == 1
