"""Settings of the services on Ray Serve (``SECRETARY_RAY_*``).

Per-service numbers are written ``service=value`` separated by commas, ``*`` for every
service not named: ``SECRETARY_RAY_MAX_REPLICAS=stt=8,tts=4,*=1``. A leaf like every
settings group: Ray itself is imported only where the services are deployed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode

from secretary.settings_base import group

# The services that run on Ray Serve (Wyoming speaks TCP, which Serve's proxy does not carry).
SERVICE_NAMES = ("stt", "canary", "tts", "avatar", "ui", "realtime", "calendar")


def parse_service_numbers(text: str) -> dict[str, float]:
    """``stt=4,tts=2,*=1`` as ``{"stt": 4.0, "tts": 2.0, "*": 1.0}`` (ValueError naming the
    entry that is wrong)."""
    found: dict[str, float] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not value:
            raise ValueError(f"{item!r} is not 'service=number'")
        if name not in (*SERVICE_NAMES, "*"):
            raise ValueError(f"unknown service {name!r} in {item!r}; known: "
                             f"{', '.join(SERVICE_NAMES)} and * for the others")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} in {item!r} is not a number") from None
        if not number >= 0 or number == float("inf"):
            raise ValueError(f"{value!r} in {item!r} must be a number of 0 or more")
        found[name] = number
    return found


def _parsed(value: Any) -> Any:
    return parse_service_numbers(value) if isinstance(value, str) else value


ServiceNumbers = Annotated[dict[str, float], NoDecode, BeforeValidator(_parsed)]


class RaySettings(BaseSettings):
    """``secretary serve --ray``: the services as Ray Serve deployments behind Serve's
    proxy, one route prefix per service (/stt, /tts, /avatar, /realtime, /calendar,
    /canary; the browser UI at SECRETARY_RAY_UI_PREFIX)."""

    model_config = group("SECRETARY_RAY_")

    address: str = Field(
        default="local",
        description="The Ray cluster: 'local' starts one on this machine for the command, "
        "'auto' joins the one this machine is part of (ray start), or a cluster's address "
        "(host:6379, ray://host:10001). 'secretary serve --ray ADDRESS' overrides it.")
    port: int = Field(default=8000, ge=1, le=65535,
                      description="Port of Serve's HTTP proxy on every node (the host is "
                      "SECRETARY_HOST).")
    ui_prefix: str = Field(
        default="/", pattern=r"^/([A-Za-z0-9_-]+)?$",
        description="Route prefix of the browser UI. Its page loads /static/... and calls "
        "/api/... from the root, so the page itself works only at '/'; '/ui' serves its "
        "APIs there.")
    min_replicas: ServiceNumbers = Field(
        default="*=1", validate_default=True, json_schema_extra={"example": "stt=2,*=1"},
        description="Fewest replicas per service (service=number, '*' for the others); "
        "0 lets a service scale to nothing when idle.")
    max_replicas: ServiceNumbers = Field(
        default="stt=4,canary=2,tts=4,avatar=2,realtime=4,*=1", validate_default=True,
        description="Most replicas per service: replicas are added while the ongoing "
        "requests per replica stay above the target. The UI (page sessions) and the "
        "calendar (its files) keep one unless their state is shared.")
    target_ongoing_requests: ServiceNumbers = Field(
        default={}, validate_default=True, json_schema_extra={"example": "stt=2,tts=1"},
        description="Ongoing requests per replica the autoscaler aims for; unset: each "
        "service's own max_concurrency (realtime: three quarters of its max_sessions). A "
        "replica is sent at most its queue capacity (max_concurrency + max_queue) at once.")
    cpus: ServiceNumbers = Field(
        default="stt=0.5,canary=0.5,tts=0.5,avatar=0.25,realtime=0.25,*=0.1",
        validate_default=True,
        description="CPUs reserved per replica: a node takes replicas until their sum "
        "reaches its CPU count, and Ray gives each replica's engines as many threads "
        "(OMP_NUM_THREADS, at least 1; for Whisper unless its cpu_threads is set).")
    gpus: ServiceNumbers = Field(
        default="*=0", validate_default=True,
        json_schema_extra={"example": "stt=0.25,tts=0.5,avatar=0.25"},
        description="GPU fraction per replica: replicas whose fractions add up to 1 share "
        "one card.")
    upscale_delay_s: float = Field(default=10.0, ge=0,
                                   description="Load above the target this long adds replicas.")
    downscale_delay_s: float = Field(
        default=300.0, ge=0, description="Load below the target this long removes replicas.")
    metrics_window_s: float = Field(
        default=30.0, gt=0,
        description="The autoscaler averages the ongoing requests over this many seconds.")
    graceful_shutdown_s: float = Field(
        default=60.0, ge=0,
        description="A replica being removed finishes its requests in flight for up to "
        "this long (realtime sessions: raise it towards SECRETARY_REALTIME_MAX_SESSION_S).")
    max_queued_requests: int = Field(
        default=64, ge=-1,
        description="Requests held per service while every replica is at its capacity "
        "(they go to the first replica that frees up or is added); past this Serve answers "
        "503. -1: no limit.")
    stage_calls: Literal["handle", "http"] = Field(
        default="handle",
        description="How the conversation (ui) and realtime replicas call the speech-to-text "
        "and speech deployments: 'handle' with Ray Serve deployment handles (Python calls, "
        "no HTTP hop), 'http' through Serve's proxy. The avatar is called over HTTP.")
    stt_batch_size: int = Field(
        default=0, ge=0, le=64,
        description="Above 1, final transcripts (POST /transcribe with final, the "
        "conversation's and realtime's turns) arriving together are decoded as one batch "
        "of up to this many clips, and the Whisper windows of other transcriptions "
        "(/v1/audio/transcriptions...) are encoded and decoded together, each with the "
        "result it gets alone (gains on a GPU). 0: each alone.")
    stt_batch_wait_ms: float = Field(
        default=10.0, ge=0, le=1000,
        description="How long a batch waits for more clips or windows after its first.")

    @model_validator(mode="after")
    def _check(self) -> RaySettings:
        for name in SERVICE_NAMES:
            low, high = self.replicas(name)
            if low > high:
                raise ValueError(f"SECRETARY_RAY_MIN_REPLICAS of {name} ({low}) is above "
                                 f"SECRETARY_RAY_MAX_REPLICAS ({high})")
            if high < 1:
                raise ValueError(f"SECRETARY_RAY_MAX_REPLICAS of {name} must be 1 or more")
        for field in ("min_replicas", "max_replicas"):
            for name, value in getattr(self, field).items():
                if value != int(value):
                    raise ValueError(f"SECRETARY_RAY_{field.upper()} of {name} must be a "
                                     f"whole number, not {value:g}")
        for name, value in self.target_ongoing_requests.items():
            if value <= 0:
                raise ValueError(f"SECRETARY_RAY_TARGET_ONGOING_REQUESTS of {name} must be "
                                 "above 0")
        return self

    @staticmethod
    def _of(numbers: dict[str, float], service: str, default: float) -> float:
        return numbers.get(service, numbers.get("*", default))

    def replicas(self, service: str) -> tuple[int, int]:
        """(fewest, most) replicas of ``service``."""
        return (int(self._of(self.min_replicas, service, 1)),
                int(self._of(self.max_replicas, service, 1)))

    def target(self, service: str) -> float | None:
        """The configured target of ongoing requests per replica, or None (derived)."""
        return self._of(self.target_ongoing_requests, service, 0) or None

    def resources(self, service: str) -> tuple[float, float]:
        """(CPUs, GPUs) reserved per replica of ``service``."""
        return self._of(self.cpus, service, 0.1), self._of(self.gpus, service, 0.0)

    def route_prefix(self, service: str) -> str:
        return self.ui_prefix if service == "ui" else f"/{service}"
