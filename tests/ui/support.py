"""Settings for the UI tests: isolated from .env files, sharing the session's model cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from secretary.config import Settings


def ui_settings(cache_dir: Path, **ui: Any) -> Settings:
    settings = Settings(_env_file=None, cache_dir=cache_dir)
    settings.ui = settings.ui.model_copy(update=ui)
    # The gateway tests never take a turn: the in-process engines load on first use only.
    settings.conversation = settings.conversation.model_copy(update={"preload": False})
    return settings
