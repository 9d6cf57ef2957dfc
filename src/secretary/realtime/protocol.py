"""The OpenAI Realtime protocol's vocabulary: the session configuration in both shapes (GA,
and the beta one older clients use), ids, and the checks client values get.

Plain data: the events themselves are typed in ``server_events.py`` and ``client_events.py``;
the transport (a WebSocket or a WebRTC data channel) only moves their JSON.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field
from typing import Any

from secretary.validation import text_problem

INPUT_RATE = 24000  # the only PCM rate the protocol names
OUTPUT_RATE = 24000


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class ProtocolError(Exception):
    """A client event that cannot be applied: answered with an ``error`` event, and the
    session goes on."""

    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None,
                 type: str = "invalid_request_error", event_id: str | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.param, self.type = message, code, param, type
        self.event_id = event_id  # the client event at fault, where it is known


def check_event_text(text: str, param: str) -> None:
    """A ``ProtocolError`` naming the first NUL, control character or lone surrogate in
    ``text``, as the HTTP APIs answer 400 (the speech engines fail on them)."""
    problem = text_problem(text, param)
    if problem is not None:
        raise ProtocolError(problem, param=param)


def decode_pcm16(data: Any, max_bytes: int, pcm: bool = True) -> bytes:
    """The bytes of an append's base64 audio (``pcm``: 16-bit samples; else G.711's
    8-bit codes)."""
    if not isinstance(data, str):
        raise ProtocolError("audio must be a base64 string of the session's input format",
                            param="audio")
    if len(data) > max_bytes * 4 // 3 + 4:
        raise ProtocolError(f"one append may carry at most {max_bytes} bytes of audio",
                            code="audio_too_large", param="audio")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("audio is not valid base64", param="audio") from None
    if pcm and len(raw) % 2:
        raise ProtocolError("16-bit PCM has an even number of bytes", param="audio")
    return raw


EAGERNESS = ("low", "medium", "high", "auto")


@dataclass
class TurnDetection:
    """``server_vad`` ends a turn after a fixed silence; ``semantic_vad`` asks the
    end-of-turn model at each pause, and ``eagerness`` sets how long an unfinished
    sentence is waited for."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    type: str = "server_vad"
    eagerness: str = "auto"

    def as_json(self) -> dict[str, Any]:
        common = {"create_response": self.create_response,
                  "interrupt_response": self.interrupt_response}
        if self.type == "semantic_vad":
            return {"type": "semantic_vad", "eagerness": self.eagerness, **common}
        return {"type": "server_vad", "threshold": self.threshold,
                "prefix_padding_ms": self.prefix_padding_ms,
                "silence_duration_ms": self.silence_duration_ms, **common,
                "idle_timeout_ms": None}


@dataclass
class SessionConfig:
    """The session's state in protocol terms; ``as_json`` writes the GA shape (or the beta
    one for beta clients)."""

    id: str
    model: str
    kind: str = "realtime"  # or "transcription"
    instructions: str = ""
    voice: str | None = None
    output_modalities: list[str] = field(default_factory=lambda: ["audio"])
    transcription: dict[str, Any] | None = field(
        default_factory=lambda: {"model": "whisper-1", "language": None, "prompt": None})
    turn_detection: TurnDetection | None = field(default_factory=TurnDetection)
    max_output_tokens: int | str = "inf"
    input_format: str = "pcm"  # pcm (24 kHz), pcmu or pcma (8 kHz)
    output_format: str = "pcm"
    tools: list[dict[str, Any]] = field(default_factory=list)  # the client's functions
    tool_choice: Any = "auto"

    @property
    def language(self) -> str | None:
        return (self.transcription or {}).get("language") or None

    def as_json(self, beta: bool = False) -> dict[str, Any]:
        fmt_in = format_json(self.input_format, beta)
        fmt_out = format_json(self.output_format, beta)
        turn = self.turn_detection.as_json() if self.turn_detection else None
        if beta:
            return {"id": self.id, "object": "realtime.session", "model": self.model,
                    "modalities": ["text", "audio"] if "audio" in self.output_modalities
                    else ["text"], "instructions": self.instructions, "voice": self.voice,
                    "input_audio_format": fmt_in, "output_audio_format": fmt_out,
                    "input_audio_transcription": self.transcription,
                    "turn_detection": turn, "max_response_output_tokens": self.max_output_tokens,
                    "tools": self.tools, "tool_choice": self.tool_choice}
        session: dict[str, Any] = {
            "type": self.kind, "id": self.id, "object": "realtime.session",
            "audio": {"input": {"format": fmt_in, "transcription": self.transcription,
                                "turn_detection": turn, "noise_reduction": None}},
        }
        if self.kind == "realtime":
            session.update({
                "model": self.model, "instructions": self.instructions,
                "output_modalities": self.output_modalities,
                "max_output_tokens": self.max_output_tokens,
                "tools": self.tools, "tool_choice": self.tool_choice,
            })
            session["audio"]["output"] = {"format": fmt_out, "voice": self.voice,
                                          "speed": 1.0}
        return session

    def update(self, body: Any) -> None:
        """Apply a ``session.update``'s ``session`` (GA or beta shape); raises
        ``ProtocolError`` and changes nothing where a value is invalid."""
        if not isinstance(body, dict):
            raise ProtocolError("session must be an object", param="session")
        changes: dict[str, Any] = {}
        kind = body.get("type")
        if kind is not None and kind not in ("realtime", "transcription"):
            raise ProtocolError(f"unknown session type {kind!r}", param="session.type")
        if kind is not None and kind != self.kind:
            raise ProtocolError(f"this is a {self.kind} session; its type cannot change",
                                param="session.type")
        if "instructions" in body:
            if not isinstance(body["instructions"], str) or len(body["instructions"]) > 16384:
                raise ProtocolError("instructions must be a string of at most 16384 "
                                    "characters", param="session.instructions")
            check_event_text(body["instructions"], "session.instructions")
            changes["instructions"] = body["instructions"]
        audio = body.get("audio") or {}
        if not isinstance(audio, dict):
            raise ProtocolError("audio must be an object", param="session.audio")
        audio_in = audio.get("input") or {}
        audio_out = audio.get("output") or {}
        for key, name, fmt in (
                ("input_format", "session.audio.input.format", audio_in.get("format")),
                ("output_format", "session.audio.output.format", audio_out.get("format")),
                ("input_format", "session.input_audio_format", body.get("input_audio_format")),
                ("output_format", "session.output_audio_format",
                 body.get("output_audio_format"))):
            found = _check_format(fmt, name)
            if found is not None:
                changes[key] = found
        voice = audio_out.get("voice", body.get("voice"))
        if voice is not None:
            if isinstance(voice, dict):
                voice = voice.get("id")
            if not isinstance(voice, str) or not voice or len(voice) > 128:
                raise ProtocolError("voice must be a voice name",
                                    param="session.audio.output.voice")
            changes["voice"] = voice
        modalities = body.get("output_modalities", body.get("modalities"))
        if modalities is not None:
            if (not isinstance(modalities, list)
                    or not set(modalities) <= {"text", "audio"} or not modalities):
                raise ProtocolError("output_modalities: ['audio'] or ['text']",
                                    param="session.output_modalities")
            changes["output_modalities"] = ["audio"] if "audio" in modalities else ["text"]
        for source in (audio_in, body):
            key = "transcription" if source is audio_in else "input_audio_transcription"
            if key in source:
                value = source[key]
                if value is not None and not isinstance(value, dict):
                    raise ProtocolError(f"{key} must be an object or null", param=key)
                if value is not None:
                    language = value.get("language")
                    if language is not None and (not isinstance(language, str)
                                                 or len(language) > 16):
                        raise ProtocolError("transcription language must be an ISO code",
                                            param=f"session.{key}.language")
                    value = {"model": value.get("model") or "whisper-1",
                             "language": language or None, "prompt": value.get("prompt")}
                changes["transcription"] = value
        for source in (audio_in, body):
            if "turn_detection" in source:
                changes["turn_detection"] = _turn_detection(source["turn_detection"],
                                                            self.turn_detection)
        tokens = body.get("max_output_tokens", body.get("max_response_output_tokens"))
        if tokens is not None:
            if tokens != "inf" and (not isinstance(tokens, int) or not 1 <= tokens <= 4096):
                raise ProtocolError("max_output_tokens: 1 to 4096 or 'inf'",
                                    param="session.max_output_tokens")
            changes["max_output_tokens"] = tokens
        if "tools" in body or "tool_choice" in body:
            # Here, not at the top: tools.py imports this module.
            from secretary.realtime.tools import check_offer, parse_tool_choice, parse_tools

            if "tools" in body:
                changes["tools"] = parse_tools(body["tools"], "session.tools")
            if "tool_choice" in body:
                changes["tool_choice"] = parse_tool_choice(body["tool_choice"],
                                                           "session.tool_choice")
            check_offer(changes.get("tools", self.tools),
                        changes.get("tool_choice", self.tool_choice), "session.tool_choice")
        for key, value in changes.items():
            setattr(self, key, value)


# The audio formats, as the GA API names them and as the beta did: 16-bit PCM at 24 kHz,
# and telephone audio (G.711 mu-law and A-law, 8 kHz), which bridges such as Twilio's
# Media Streams carry.
G711_RATE = 8000
_GA_FORMATS = {"audio/pcm": "pcm", "audio/pcmu": "pcmu", "audio/pcma": "pcma"}
_BETA_FORMATS = {"pcm16": "pcm", "g711_ulaw": "pcmu", "g711_alaw": "pcma"}


def format_rate(name: str) -> int:
    return INPUT_RATE if name == "pcm" else G711_RATE


def format_json(name: str, beta: bool) -> Any:
    if beta:
        return next(k for k, v in _BETA_FORMATS.items() if v == name)
    ga = next(k for k, v in _GA_FORMATS.items() if v == name)
    return {"type": ga, "rate": INPUT_RATE} if name == "pcm" else {"type": ga}


def _check_format(fmt: Any, param: str) -> str | None:
    """The format's short name (pcm, pcmu, pcma), or None where none was given."""
    if fmt is None:
        return None
    if isinstance(fmt, str) and fmt in _BETA_FORMATS:
        return _BETA_FORMATS[fmt]
    if isinstance(fmt, dict) and fmt.get("type", "audio/pcm") in _GA_FORMATS:
        name = _GA_FORMATS[fmt.get("type", "audio/pcm")]
        rate = fmt.get("rate", format_rate(name))
        if rate != format_rate(name):
            raise ProtocolError(f"{fmt.get('type', 'audio/pcm')} is taken at "
                                f"{format_rate(name)} Hz, not {rate}",
                                code="unsupported_audio_format", param=param)
        return name
    name = fmt.get("type") if isinstance(fmt, dict) else fmt
    raise ProtocolError(f"audio format {name!r} is not supported here; use audio/pcm at "
                        f"{INPUT_RATE} Hz (pcm16), audio/pcmu or audio/pcma (g711_ulaw, "
                        "g711_alaw)", code="unsupported_audio_format", param=param)


def _turn_detection(value: Any, current: TurnDetection | None) -> TurnDetection | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProtocolError("turn_detection must be an object or null",
                            param="session.audio.input.turn_detection")
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise ProtocolError(f"unknown turn_detection type {kind!r}",
                            param="session.audio.input.turn_detection.type")
    eagerness = value.get("eagerness", "auto")
    if eagerness not in EAGERNESS:
        raise ProtocolError(f"turn_detection.eagerness is one of {', '.join(EAGERNESS)}",
                            param="session.audio.input.turn_detection.eagerness")
    base = current or TurnDetection()
    out = TurnDetection(base.threshold, base.prefix_padding_ms, base.silence_duration_ms,
                        base.create_response, base.interrupt_response, kind, eagerness)
    checks = {"threshold": (float, 0.0, 1.0), "prefix_padding_ms": (int, 0, 2000),
              "silence_duration_ms": (int, 100, 10000)}
    for key, (kind_, low, high) in checks.items():
        if value.get(key) is None:
            continue
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, int | float) or not (
                low <= number <= high):
            raise ProtocolError(f"turn_detection.{key} must be between {low} and {high}",
                                param=f"session.audio.input.turn_detection.{key}")
        setattr(out, key, kind_(number))
    for key in ("create_response", "interrupt_response"):
        if value.get(key) is not None:
            out.__setattr__(key, bool(value[key]))
    return out
