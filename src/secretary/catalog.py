"""Every capability's models in one store: what ``secretary models`` lists and pulls.

Each engine needs only its own part (``WhisperModels``, ``PiperVoices``, ...); this is for
the command and for code that works across capabilities.
"""

from __future__ import annotations

from secretary.avatar.liveportrait.models import LivePortraitModels
from secretary.stt.models import WhisperModels
from secretary.tts.models import TtsModels


class ModelStore(WhisperModels, TtsModels, LivePortraitModels):
    """The cache folder with every capability's models."""
