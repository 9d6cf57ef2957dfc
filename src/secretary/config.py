"""Configuration from ``SECRETARY_*`` environment variables and an optional ``.env`` file.

Each service has its own settings group with its own prefix, so the variable names read
naturally (``SECRETARY_STT_PORT``, ``SECRETARY_TTS_PORT``) and a replica of one service can
be configured without knowing about the others. Apps take a ``Settings`` object: tests build
their own instead of patching globals.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "secretary"


def _group(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )


class ServiceSettings(BaseSettings):
    """What every service has: where it listens and how much work it accepts."""

    port: int = 0
    max_concurrency: int = Field(
        default=1, ge=1, description="Requests processed at once by this service's engine."
    )
    max_queue: int = Field(
        default=8,
        ge=0,
        description="Requests waiting for the engine; past this the service answers 503.",
    )


class SttSettings(ServiceSettings):
    model_config = _group("SECRETARY_STT_")

    port: int = 8083
    model: str = Field(
        default="base",
        description="Model name (base, tiny.en, large-v3, ...), hub id or local folder.",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = Field(
        default="default",
        description="CTranslate2 compute type; 'default' means float16 on cuda, int8 on cpu.",
    )
    cpu_threads: int = Field(default=0, ge=0, description="0 lets CTranslate2 choose.")
    num_workers: int = Field(
        default=2,
        ge=1,
        description="Model workers: transcriptions that run in parallel inside CTranslate2.",
    )
    max_concurrency: int = 2
    beam_size: int = Field(default=5, ge=1)
    vad_filter: bool = Field(
        default=True, description="Drop non-speech with Silero VAD before decoding."
    )
    batch_size: int = Field(
        default=0,
        ge=0,
        description="Above 0, long files are decoded in batches of this many VAD chunks.",
    )
    preload: bool = Field(default=True, description="Load the model at start-up, not first use.")
    max_audio_seconds: float = Field(default=3 * 3600, gt=0)


class TtsSettings(ServiceSettings):
    model_config = _group("SECRETARY_TTS_")

    port: int = 8082


class AvatarSettings(ServiceSettings):
    model_config = _group("SECRETARY_AVATAR_")

    port: int = 8081


class UiSettings(ServiceSettings):
    model_config = _group("SECRETARY_UI_")

    port: int = 8085


class RealtimeSettings(ServiceSettings):
    model_config = _group("SECRETARY_REALTIME_")

    port: int = 8086


class Settings(BaseSettings):
    """The whole stack's settings; one group per service."""

    model_config = _group("SECRETARY_")

    host: str = "127.0.0.1"
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where assembled and downloaded models are kept.",
    )
    max_upload_mb: float = Field(default=100.0, gt=0, description="Largest request body, in MB.")
    log_level: str = "info"

    stt: SttSettings = Field(default_factory=SttSettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    avatar: AvatarSettings = Field(default_factory=AvatarSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    realtime: RealtimeSettings = Field(default_factory=RealtimeSettings)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"
