"""The render API on real portraits, judged by the Face Landmarker's blendshapes."""

from __future__ import annotations

import cv2
import httpx
import numpy as np
import pytest

from tests.avatar.conftest import Judge
from tests.helpers import FACES

WOMAN = FACES / "pexels_woman_neutral.jpg"  # neutral face, colour, 961x1116
ASTRONAUT = FACES / "astronaut_eileen_collins.png"  # smiling already, 512x512

# What each expression must raise (the mean of the named blendshapes).
SIGNS: dict[str, tuple[str, ...]] = {
    "happy": ("mouthSmileLeft", "mouthSmileRight"),
    "sad": ("mouthFrownLeft", "mouthFrownRight"),
    "surprised": ("jawOpen", "browInnerUp"),
    "blink": ("eyeBlinkLeft", "eyeBlinkRight"),
    "angry": ("browDownLeft", "browDownRight"),
}


def render(client: httpx.Client, photo: bytes, **form: object) -> httpx.Response:
    data = {key: str(value) for key, value in form.items()}
    return client.post("/api/render", files={"source_image": ("photo", photo)}, data=data)


def rendered(client: httpx.Client, photo: bytes, **form: object) -> bytes:
    response = render(client, photo, format="png", size=512, **form)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return response.content


def test_health_and_expressions(avatar: httpx.Client) -> None:
    health = avatar.get("/health").json()
    assert health["status"] == "ok" and health["service"] == "avatar"
    listing = avatar.get("/expressions").json()
    names = [e["name"] for e in listing["expressions"]]
    assert names == ["neutral", "happy", "sad", "surprised", "angry", "blink"]
    assert all(e["intensity"] == {"min": 0.0, "max": 2.0, "default": 1.0}
               for e in listing["expressions"])
    assert {v["name"] for v in listing["visemes"]} == {"closed", "open", "wide", "round"}


@pytest.mark.parametrize(
    ("photo", "expression"),
    [(WOMAN, name) for name in SIGNS] + [(ASTRONAUT, "surprised"), (ASTRONAUT, "blink"),
                                          (ASTRONAUT, "angry")],
    ids=lambda p: p.stem if hasattr(p, "stem") else p,
)
def test_expression_is_recognised_and_grows_with_intensity(
    avatar: httpx.Client, judge: Judge, photo, expression: str
) -> None:
    source = photo.read_bytes()
    neutral = judge.scores(rendered(avatar, source))
    names = SIGNS[expression]

    def rise(intensity: float) -> dict[str, float]:
        scores = judge.scores(rendered(avatar, source, expression=expression,
                                       intensity=intensity))
        return {name: scores[name] - neutral[name] for name in names}

    half, full = rise(0.5), rise(1.0)
    for name in names:
        assert full[name] > 0.08, f"{expression}: {name} rose only {full[name]:+.3f}"
    assert np.mean(list(full.values())) > np.mean(list(half.values())) + 0.03, (half, full)


def test_open_and_round_mouth_shapes(avatar: httpx.Client, judge: Judge) -> None:
    source = WOMAN.read_bytes()
    neutral = judge.scores(rendered(avatar, source))
    opened = judge.scores(rendered(avatar, source, viseme="open", mouth_open=1.0))
    half_open = judge.scores(rendered(avatar, source, viseme="open", mouth_open=0.4))
    rounded = judge.scores(rendered(avatar, source, viseme="round", mouth_open=1.0))
    assert opened["jawOpen"] > half_open["jawOpen"] + 0.05 > neutral["jawOpen"] + 0.05
    assert rounded["mouthPucker"] > neutral["mouthPucker"] + 0.1


def test_pixels_outside_the_face_region_are_the_source(avatar: httpx.Client,
                                                        judge: Judge) -> None:
    source = ASTRONAUT.read_bytes()
    original = cv2.imdecode(np.frombuffer(source, np.uint8), cv2.IMREAD_COLOR)
    response = render(avatar, source, expression="surprised", viseme="open", mouth_open=1,
                      yaw=5, roll=-3, format="png")
    assert response.status_code == 200, response.text
    out = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == original.shape
    x, y, w, h = (int(v) for v in response.headers["x-face-box"].split(","))
    outside = np.ones(original.shape[:2], dtype=bool)
    outside[y:y + h, x:x + w] = False
    assert outside.mean() > 0.4  # the region is the face, not the photo
    assert np.array_equal(out[outside], original[outside])
    # Inside, the face did change, and the region holds the whole face.
    assert np.abs(out[~outside].astype(int) - original[~outside]).mean() > 1.0
    points = judge.face(original).points
    assert points[:, 0].min() > x and points[:, 0].max() < x + w
    assert points[:, 1].min() > y and points[:, 1].max() < y + h


def test_no_seam_at_the_region_border(avatar: httpx.Client) -> None:
    """The warp fades to nothing before the region's edge: a strong expression leaves the
    border rows and columns of the region as they were."""
    source = WOMAN.read_bytes()
    neutral = rendered(avatar, source)
    response = render(avatar, source, expression="surprised", intensity=2, size=512,
                      format="png")
    a = cv2.imdecode(np.frombuffer(neutral, np.uint8), cv2.IMREAD_COLOR).astype(int)
    b = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR).astype(int)
    x, y, w, h = (int(v) for v in response.headers["x-face-box"].split(","))
    ring = np.zeros(a.shape[:2], dtype=bool)
    ring[y:y + h, x:x + w] = True
    ring[y + 3:y + h - 3, x + 3:x + w - 3] = False
    assert np.abs(a[ring] - b[ring]).max() <= 2
    # Neighbouring pixels across the whole image differ no more than in the source.
    jumps = np.abs(np.diff(b, axis=0)).mean()
    assert jumps < np.abs(np.diff(a, axis=0)).mean() * 1.05


@pytest.mark.parametrize("name", ["noface_coffee_cup.png", "noface_rocket_launch.jpg"])
def test_photo_without_a_face_is_422(avatar: httpx.Client, name: str) -> None:
    response = render(avatar, (FACES / name).read_bytes())
    assert response.status_code == 422
    error = response.json()["error"]
    assert "no face" in error["message"] and error["param"] == "source_image"
    assert avatar.get("/health").json()["status"] == "ok"


def test_huge_photo_is_downscaled(avatar: httpx.Client, judge: Judge) -> None:
    photo = cv2.imread(str(WOMAN))
    huge = cv2.resize(photo, (photo.shape[1] * 5, photo.shape[0] * 5))
    ok, encoded = cv2.imencode(".jpg", huge, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    response = render(avatar, encoded.tobytes(), expression="happy")
    assert response.status_code == 200, response.text
    out = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert max(out.shape[:2]) == 1024
    assert judge.scores(out)["mouthSmileLeft"] > 0.3


@pytest.mark.parametrize(
    ("form", "photo", "status", "param"),
    [
        ({}, b"this is not an image", 415, "source_image"),
        ({"expression": "bored"}, None, 400, "expression"),
        ({"intensity": "2.5"}, None, 400, "intensity"),
        ({"intensity": "-0.1"}, None, 400, "intensity"),
        ({"intensity": "lots"}, None, 400, "intensity"),
        ({"viseme": "kiss"}, None, 400, "viseme"),
        ({"viseme": "open", "mouth_open": "1.5"}, None, 400, "mouth_open"),
        ({"size": "100000"}, None, 400, "size"),
        ({"format": "gif"}, None, 400, "format"),
        ({"yaw": "45"}, None, 400, "yaw"),
        ({}, b"", 400, "source_image"),
    ],
)
def test_bad_render_requests_are_4xx(avatar: httpx.Client, form: dict[str, str],
                                     photo: bytes | None, status: int, param: str) -> None:
    body = WOMAN.read_bytes() if photo is None else photo
    response = avatar.post("/api/render", files={"source_image": ("photo", body)}, data=form)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert render(avatar, ASTRONAUT.read_bytes(), size=128).status_code == 200


def test_missing_photo_is_400(avatar: httpx.Client) -> None:
    response = avatar.post("/api/render", data={"expression": "happy"})
    assert response.status_code == 400
    assert "source_image" in response.json()["error"]["message"]


def test_neutral_render_is_the_photo(avatar: httpx.Client) -> None:
    source = ASTRONAUT.read_bytes()
    response = render(avatar, source, format="png")
    assert response.status_code == 200
    out = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(out, cv2.imdecode(np.frombuffer(source, np.uint8), cv2.IMREAD_COLOR))
