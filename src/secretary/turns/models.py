"""Smart Turn's model file in the cache.

Smart Turn v3.2 (BSD-2) ships as one ONNX file inside the ``pipecat-ai`` wheel. The
framework itself is not needed (and pulls in many packages), so the file is taken out of
the wheel into the cache once: from an installed ``pipecat`` package where there is one,
else from the wheel that ``pip download`` fetches from the package index pip is set up
for. The file is checked against its SHA-256 either way.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from secretary.errors import ModelUnavailableError
from secretary.models import ModelCache, ModelInfo, have_packages, package_dir

SMART_TURN = ModelInfo(
    "smart-turn-v3.2", "turn", "package",
    "Smart Turn v3.2 end-of-turn model, 23 languages (taken from the pipecat-ai wheel)",
    packages=("pipecat-ai",))
SMART_TURN_CATALOG: tuple[ModelInfo, ...] = (SMART_TURN,)

_WHEEL = "pipecat-ai==1.14.0"
_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
_FILE = "smart-turn-v3.2-cpu.onnx"
_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class SmartTurnModels(ModelCache):
    """The end-of-turn model in the cache."""

    def smart_turn_path(self, *, download: bool = True) -> Path:
        target = self.root / "smart-turn" / _FILE
        if target.is_file() and _sha256(target) == _SHA256:
            return target
        if have_packages(("pipecat",)):
            installed = package_dir("pipecat") / _MEMBER.removeprefix("pipecat/")
            if installed.is_file():
                return self._keep(installed.read_bytes(), target)
        if not download:
            raise ModelUnavailableError(
                "the end-of-turn model is not in the cache: run `secretary models pull "
                "smart-turn-v3.2` once with a connection to the package index, or set "
                "SECRETARY_REALTIME_END_OF_TURN=false")
        return self._keep(self._from_wheel(), target)

    def locate_smart_turn(self) -> Path | None:
        """The model file where it is here already, or None."""
        try:
            return self.smart_turn_path(download=False)
        except ModelUnavailableError:
            return None

    def _from_wheel(self) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                 "--dest", folder, _WHEEL], capture_output=True, text=True, timeout=600)
            wheels = list(Path(folder).glob("*.whl"))
            if done.returncode != 0 or not wheels:
                raise ModelUnavailableError(
                    f"could not fetch the {_WHEEL} wheel for the end-of-turn model: "
                    f"{done.stderr.strip()[-300:] or 'no wheel'}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                try:
                    return wheel.read(_MEMBER)
                except KeyError:
                    raise ModelUnavailableError(
                        f"{wheels[0].name} holds no {_MEMBER}") from None

    def _keep(self, data: bytes, target: Path) -> Path:
        if hashlib.sha256(data).hexdigest() != _SHA256:
            raise ModelUnavailableError(f"{_FILE} does not match its recorded SHA-256")
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written beside and renamed: a crash never leaves half a model under the name.
        fd, staging = tempfile.mkstemp(prefix=f".{_FILE}-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(staging, target)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise
        return target

    def catalog(self) -> list[ModelInfo]:
        return [*super().catalog(), *SMART_TURN_CATALOG]

    def fetch(self, info: ModelInfo, *, download: bool = True) -> Path:
        if info in SMART_TURN_CATALOG:
            return self.smart_turn_path(download=download)
        return super().fetch(info, download=download)
