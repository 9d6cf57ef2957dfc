"""The telephone's settings (``SECRETARY_PHONE_*``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from secretary.settings_base import ServiceSettings, group


class PhoneSettings(ServiceSettings):
    """A SIP endpoint that answers calls and speaks with the caller through a realtime
    session (the SECRETARY_REALTIME_* and SECRETARY_CONVERSATION_* settings apply)."""

    model_config = group("SECRETARY_PHONE_")

    http_port: int = Field(default=8089, description="HTTP port of /health, /metrics and "
                           "/api/calls.")
    host: str = Field(default="127.0.0.1", description="Address SIP (UDP and TCP) and RTP "
                      "listen on; loopback unless set.")
    port: int = Field(default=5060, ge=1, le=65535, description="SIP port, UDP and TCP.")
    rtp_port: int = Field(default=4000, ge=1024, le=65000, description="First RTP port "
                          "(each call takes the next free pair).")
    codecs: Annotated[list[str], NoDecode] = Field(
        default=["G722", "PCMU", "PCMA"], min_length=1,
        description="Codecs offered and accepted, first preferred (of PCMU, PCMA, G722); "
        "an offer with none of them is answered 488.")
    registrar: str | None = Field(default=None, description="SIP registrar (host or "
                                  "host:port) to register with; unset: direct calls only.")
    user: str = Field(default="secretary", min_length=1,
                      description="SIP user name (the registered account and the local URI).")
    password: SecretStr | None = Field(default=None,
                                       description="Password for the registrar's digest auth.")
    register_retry_s: float = Field(default=30.0, gt=0, description="First wait before a "
                                    "refused registration is retried; doubles each time.")
    register_retry_max_s: float = Field(default=600.0, gt=0,
                                        description="Longest wait between registrations.")
    answer_delay_s: float = Field(default=0.5, ge=0, le=60,
                                  description="Ringing before the call is answered.")
    language: str = Field(default="en", description="Language the greeting is said in "
                          "(en or de).")
    greeting: str = Field(default="Hello, this is the secretary. How can I help you?",
                          description="Said in English when a call is answered; empty: none.")
    greeting_de: str = Field(
        default="Hallo, hier ist das Sekretariat. Wie kann ich Ihnen helfen?",
        description="Said in German when a call is answered; empty: none.")
    instructions: str = Field(
        default="You are answering the telephone for your user. Take a message: who is "
        "calling, what about, and how to call back.",
        description="What the brain is told about a call (the caller's name and number are "
        "added).")
    max_call_s: float = Field(default=600.0, gt=0, description="Longest call; hung up after.")
    max_calls: int = Field(default=2, ge=1, le=30, description="Calls at once; more are "
                           "answered 486 Busy Here.")
    silence_hangup_s: float = Field(default=30.0, gt=0, description="A call without sound "
                                    "from either side this long is hung up.")
    transfer_to: str | None = Field(
        default=None, description="SIP URI a caller who asks for a person is transferred to "
        "(blind REFER); unset: no transfers.")
    max_invites_per_minute: int = Field(default=20, ge=1, description="INVITEs one address "
                                        "may send a minute; more are answered 503.")
    webhook: str | None = Field(default=None, description="URL each finished call is POSTed "
                                "to as JSON.")
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of the webhook.")

    @field_validator("codecs", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            known = {"PCMU", "PCMA", "G722"}
            wrong = [c for c in value if str(c).upper() not in known]
            if wrong:
                raise ValueError(f"unknown codec(s) {', '.join(map(str, wrong))}; known: "
                                 "PCMU, PCMA, G722")
            value = [str(c).upper() for c in value]
        return value
