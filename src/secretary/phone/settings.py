"""The telephone's settings (``SECRETARY_PHONE_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from secretary.settings_base import ServiceSettings, group


class PhoneSettings(ServiceSettings):
    """A SIP endpoint that answers calls and speaks with the caller through a realtime
    session (the SECRETARY_REALTIME_* and SECRETARY_CONVERSATION_* settings apply)."""

    model_config = group("SECRETARY_PHONE_")

    http_port: int = Field(default=8089, description="HTTP port of /health, /metrics and "
                           "/api/calls.")
    host: str = Field(default="127.0.0.1", description="Address SIP (UDP, TCP, TLS) and "
                      "RTP listen on; loopback unless set.")
    port: int = Field(default=5060, ge=1, le=65535, description="SIP port, UDP and TCP.")
    rtp_port: int = Field(default=4000, ge=1024, le=65000, description="First RTP port "
                          "(each call takes the next free pair).")
    codecs: Annotated[list[str], NoDecode] = Field(
        default=["G722", "PCMU", "PCMA"], min_length=1,
        description="Codecs offered and accepted, first preferred (of PCMU, PCMA, G722); "
        "an offer with none of them is answered 488.")
    tls_port: int = Field(default=0, ge=0, le=65535, description="SIP over TLS port "
                          "(5061 is usual); 0: no TLS.")
    tls_cert: Path | None = Field(default=None, description="PEM certificate (chain) SIP over "
                                  "TLS serves; unset: a self-signed one made once in the "
                                  "cache dir.")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert.")
    tls_verify: bool = Field(default=True, description="Verify the registrar's TLS "
                             "certificate (and its name).")
    tls_ca: Path | None = Field(default=None, description="PEM file of the CAs the "
                                "registrar's certificate is checked against; unset: the "
                                "system's.")
    srtp: Literal["off", "optional", "mandatory"] = Field(
        default="optional", description="Encrypted media (SRTP, SDES or DTLS keys): off; "
        "optional (offered and taken where the other side has it, plain RTP otherwise); "
        "mandatory (only SRTP, and only on calls over TLS: others get 488).")
    narrowband_turns: Literal["words", "server_vad", "semantic_vad"] = Field(
        default="words", description="How the turns of PCMU and PCMA calls end: words, "
        "where the transcript reads as a finished sentence after the realtime service's "
        "end_of_turn_words_ms of silence, else after 500 ms, without Smart Turn "
        "(bench/endofturn.py --codec pcmu: half server_vad's wait on complete sentences, as "
        "many cut at spliced pauses of 400 and 700 ms, two more of 19 at 300 ms); server_vad, "
        "after 500 ms of silence; semantic_vad, by Smart Turn. Over PJSIP's 8 kHz track "
        "Smart Turn scored complete sentences 0.03-0.20 and a mid-sentence pause 0.29 "
        "(bench/phone.py), so it cannot tell them apart there; G.722 calls keep Smart Turn.")
    partials: bool = Field(
        default=False, description="Live partial transcripts of the caller's speech while "
        "they talk. Nothing in a call shows them, and with several calls at once they take "
        "the CPU the answers need.")
    registrar: str | None = Field(default=None, description="SIP registrar (host or "
                                  "host:port; sips:host or host;transport=tls registers over "
                                  "TLS) to register with; unset: direct calls only.")
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

    @field_validator("tls_cert", "tls_key", "tls_ca")
    @classmethod
    def _pem_file(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        try:
            head = value.read_bytes()[:65536]
        except OSError as exc:
            raise ValueError(f"{value} cannot be read: {exc.strerror}") from None
        if b"-----BEGIN " not in head:
            raise ValueError(f"{value} is not a PEM file")
        return value

    @model_validator(mode="after")
    def _tls_together(self) -> PhoneSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("SECRETARY_PHONE_TLS_CERT and SECRETARY_PHONE_TLS_KEY go together")
        if self.registrar and self.registrar_tls and not self.tls_port:
            raise ValueError("SECRETARY_PHONE_REGISTRAR registers over TLS (sips: or "
                             ";transport=tls): set SECRETARY_PHONE_TLS_PORT (e.g. 5061)")
        return self

    @property
    def registrar_uri(self) -> str | None:
        """The registrar as a SIP URI (``sip:`` added where it has no scheme)."""
        if not self.registrar:
            return None
        lower = self.registrar.lower()
        return self.registrar if lower.startswith(("sip:", "sips:")) else f"sip:{self.registrar}"

    @property
    def registrar_tls(self) -> bool:
        """Whether the registration goes over TLS (a ``sips:`` URI or ``;transport=tls``)."""
        uri = (self.registrar_uri or "").lower().replace(" ", "")
        return uri.startswith("sips:") or ";transport=tls" in uri
