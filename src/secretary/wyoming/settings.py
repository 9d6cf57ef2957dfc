"""The Wyoming servers' settings (``SECRETARY_WYOMING_*``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from secretary.settings_base import ServiceSettings, group


class WyomingSettings(ServiceSettings):
    """Home Assistant's Wyoming protocol over TCP, in front of the speech-to-text and
    text-to-speech services (their engines, routes and limits: the SECRETARY_STT_* and
    SECRETARY_TTS_* settings apply) and of the secretary itself as a conversation agent
    (its skills and chat model: the SECRETARY_CONVERSATION_*, _CALENDAR_* and _UI_CHAT_*
    settings apply)."""

    model_config = group("SECRETARY_WYOMING_")

    port: int = Field(default=8088, description="HTTP port of /health and /metrics.")
    host: str | None = Field(
        default=None, description="Address the Wyoming servers listen on; unset: SECRETARY_HOST."
    )
    stt_port: int = Field(
        default=10300, ge=0, le=65535, description="Speech-to-text over Wyoming; 0 turns it off."
    )
    tts_port: int = Field(
        default=10200, ge=0, le=65535, description="Text-to-speech over Wyoming; 0 turns it off."
    )
    handle_port: int = Field(
        default=10500, ge=0, le=65535,
        description="The secretary as a conversation agent over Wyoming (transcript in, "
        "handled out); 0 turns it off.",
    )
    zeroconf: bool = Field(
        default=False,
        description="Announce the servers over mDNS (_wyoming._tcp) so Home Assistant finds "
        "them; needs a host other than loopback.",
    )
    zeroconf_name: str = Field(
        default="secretary", min_length=1, max_length=50,
        description="Announced names are '<name>-stt', '<name>-tts' and '<name>-handle'.",
    )
    zeroconf_address: str | None = Field(
        default=None,
        description="IPv4 address to announce; unset: the listening host, or the address of "
        "the default route when listening on 0.0.0.0.",
    )
    max_audio_seconds: float = Field(
        default=120.0, gt=0, le=3600,
        description="Longest audio one transcribe may send (it is held in memory until "
        "audio-stop).",
    )
    max_payload_bytes: int = Field(
        default=1 << 20, ge=4096, description="Largest audio chunk (event payload) accepted."
    )
    max_data_bytes: int = Field(
        default=256 << 10, ge=4096, description="Largest event data (JSON) accepted."
    )
    max_connections: int = Field(
        default=64, ge=1, description="Open connections per server; more are refused."
    )
    idle_timeout: float = Field(
        default=120.0, gt=0, description="Seconds a connection may stay silent before it "
        "is closed.",
    )
    samples_per_chunk: int = Field(
        default=1024, ge=64, le=65536, description="Audio samples per audio-chunk sent."
    )

    @model_validator(mode="after")
    def _check_ports(self) -> WyomingSettings:
        ports = (("STT", self.stt_port), ("TTS", self.tts_port), ("HANDLE", self.handle_port))
        for index, (first, port) in enumerate(ports):
            for second, other in ports[index + 1:]:
                if port and port == other:
                    raise ValueError(f"SECRETARY_WYOMING_{first}_PORT and _{second}_PORT "
                                     "must differ")
        return self
