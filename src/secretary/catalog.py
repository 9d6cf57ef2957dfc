"""Every capability's models in one store: what ``secretary models`` lists and pulls.

Each engine needs only its own part (``WhisperModels``, ``PiperVoices``, ...); this is for
the command and for code that works across capabilities.
"""

from __future__ import annotations

from pathlib import Path

from secretary.avatar.liveportrait.models import LIVEPORTRAIT_CATALOG, LivePortraitModels
from secretary.models import ModelInfo
from secretary.stt.models import CanaryModels, WhisperModels
from secretary.tts.models import TtsModels
from secretary.turns.models import SmartTurnModels


class ModelStore(WhisperModels, CanaryModels, TtsModels, LivePortraitModels, SmartTurnModels):
    """The cache folder with every capability's models."""

    # LivePortrait's models module answers `available` but not yet `fetch` and `find`: its
    # weights come through its own method until it does.
    def find(self, name: str) -> ModelInfo | None:
        if name == LIVEPORTRAIT_CATALOG[0].hub_id:
            return LIVEPORTRAIT_CATALOG[0]
        return super().find(name)

    def fetch(self, info: ModelInfo, *, download: bool = True) -> Path:
        if info in LIVEPORTRAIT_CATALOG:
            return self.liveportrait_weights(download=download)
        return super().fetch(info, download=download)
