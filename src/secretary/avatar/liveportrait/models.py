"""The models the LivePortrait engine loads: the published human model and, for face
detection and cropping, the Face Landmarker the mesh engine uses too."""

from __future__ import annotations

from pathlib import Path

from secretary.avatar.liveportrait.files import ALL_FILES, HUB_ID, find_root, missing_files
from secretary.avatar.models import FaceLandmarkerModel
from secretary.errors import ModelUnavailableError
from secretary.models import ModelInfo

PULL_COMMAND = "secretary models pull liveportrait"
LIVEPORTRAIT_CATALOG = (
    ModelInfo("liveportrait", "avatar", "hub",
              "LivePortrait human model (the GPU avatar engine; MIT licence)", HUB_ID),
)


def offline_message(name: str) -> str:
    return (
        f"the LivePortrait weights ({name}) are not on this machine. Run "
        f"`{PULL_COMMAND}` on a machine with internet access (it downloads the human model "
        f"of {HUB_ID} into the model cache, SECRETARY_CACHE_DIR), or copy the "
        f"{', '.join(ALL_FILES)} files of {HUB_ID} into a folder and set "
        "SECRETARY_AVATAR_LIVEPORTRAIT_MODEL to it; or use SECRETARY_AVATAR_ENGINE=meshwarp"
    )


class LivePortraitModels(FaceLandmarkerModel):
    """The LivePortrait weights in the cache (and the Face Landmarker)."""

    def liveportrait_weights(self, name: str = HUB_ID, *, download: bool = True) -> Path:
        """The folder holding the published files: a local folder, or a hub id from the
        hub cache or a download (where allowed)."""
        as_path = Path(name).expanduser()
        if as_path.is_dir():
            root = find_root(as_path)
        elif "/" in name and not as_path.is_absolute():
            root = self.hub_snapshot(name, list(ALL_FILES), download=download,
                                     offline_message=offline_message(name))
        else:
            raise ModelUnavailableError(
                f"LivePortrait weights {name!r} (SECRETARY_AVATAR_LIVEPORTRAIT_MODEL) are "
                f"neither a folder nor a hub id such as {HUB_ID!r}")
        missing = missing_files(root)
        if missing:
            raise ModelUnavailableError(
                f"{offline_message(name)} (the folder {str(root)!r} lacks "
                f"{', '.join(missing)})")
        return root

    def catalog(self) -> list[ModelInfo]:
        return [*super().catalog(), *LIVEPORTRAIT_CATALOG]

    def available(self, info: ModelInfo) -> bool:
        if info.name != "liveportrait":
            return super().available(info)
        try:
            self.liveportrait_weights(download=False)
        except ModelUnavailableError:
            return False
        return True
