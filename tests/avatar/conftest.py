from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from secretary.avatar.app import create_app
from secretary.avatar.landmarks import FaceLandmarks, Landmarker
from secretary.catalog import ModelStore
from tests.conftest import make_settings
from tests.helpers import running_server


@pytest.fixture(scope="session")
def avatar_url(cache_dir: Path) -> Iterator[str]:
    app = create_app(make_settings(cache_dir))
    with running_server(app) as url:
        yield url


@pytest.fixture(scope="session")
def avatar(avatar_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=avatar_url, timeout=300) as client:
        yield client


class Judge:
    """The Face Landmarker run on rendered images, independent of the service's own."""

    def __init__(self, landmarker: Landmarker) -> None:
        self.landmarker = landmarker

    def face(self, image: bytes | np.ndarray) -> FaceLandmarks:
        if isinstance(image, bytes):
            image = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
        found = self.landmarker.detect(image)
        assert found is not None, "the judge found no face in the rendered image"
        return found

    def scores(self, image: bytes | np.ndarray) -> dict[str, float]:
        return self.face(image).blendshapes


@pytest.fixture(scope="session")
def judge(cache_dir: Path) -> Iterator[Judge]:
    landmarker = Landmarker(ModelStore(cache_dir / "models").face_landmarker_path())
    landmarker.load()
    yield Judge(landmarker)
    landmarker.close()
