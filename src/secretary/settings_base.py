"""What every settings group is built from: a prefix of its own (read from the environment
and ``.env``), and for a service, where it listens and how much work it takes. A leaf: the
groups live beside what they configure, and ``secretary.config`` puts them together."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def group(prefix: str) -> SettingsConfigDict:
    # validate_assignment: a value set in code is parsed like one from the environment.
    return SettingsConfigDict(
        env_prefix=prefix, env_file=".env", env_file_encoding="utf-8", extra="ignore",
        validate_assignment=True,
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
