"""Where a service answers: one address, plain HTTP or HTTPS."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Listener:
    """One address a service answers on; with a certificate and key it speaks HTTPS."""

    host: str
    port: int
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_certfile else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"
