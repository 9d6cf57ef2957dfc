"""The realtime service's settings (``SECRETARY_REALTIME_*``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_settings import NoDecode

from secretary.settings_base import ServiceSettings, group

_ICE_VARIABLE = "SECRETARY_REALTIME_ICE_SERVERS"
# What aiortc and browsers both read: a host name or IPv4 address, an optional port, and for
# TURN an optional transport.
_ICE_URL = re.compile(r"(?P<scheme>stuns?|turns?):(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>\d{1,5}))?"
                      r"(?:\?transport=(?P<transport>udp|tcp))?")
_ICE_SYNTAX = ("write 'turn:host:3478?transport=udp|username|credential' or 'stun:host:3478', "
               "','-separated, or a JSON list like a browser's iceServers")


@dataclass(frozen=True)
class IceServer:
    """One STUN or TURN server: its URL, and for TURN the long-term credentials."""

    url: str
    username: str | None = None
    credential: str | None = field(default=None, repr=False)

    def __str__(self) -> str:  # the setting's own form, the credential hidden
        return f"{self.url}|{self.username}|***" if self.username else self.url

    def as_browser(self) -> dict[str, Any]:
        """The entry of a browser's ``RTCConfiguration.iceServers``."""
        entry: dict[str, Any] = {"urls": [self.url]}
        if self.username is not None:
            entry.update(username=self.username, credential=self.credential)
        return entry


def _ice_server(url: Any, username: Any, credential: Any, where: str) -> IceServer:
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{_ICE_VARIABLE}: {where} has no URL; {_ICE_SYNTAX}")
    url = url.strip()
    match = _ICE_URL.fullmatch(url)
    if match is None:
        raise ValueError(f"{_ICE_VARIABLE}: {url[:80]!r} is not a stun:, stuns:, turn: or "
                         f"turns: URL with a host name or IPv4 address; {_ICE_SYNTAX}")
    scheme, port = match["scheme"], match["port"]
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"{_ICE_VARIABLE}: the port of {url!r} is not 1 to 65535")
    if scheme.startswith("stun"):
        if match["transport"]:
            raise ValueError(f"{_ICE_VARIABLE}: {url!r}: a STUN URL takes no transport")
        if username or credential:
            raise ValueError(f"{_ICE_VARIABLE}: {url!r}: a STUN server takes no credentials")
        return IceServer(url)
    if scheme == "turns" and match["transport"] == "udp":
        raise ValueError(f"{_ICE_VARIABLE}: {url!r}: turns: runs over TLS, so over TCP only")
    if not (isinstance(username, str) and username and isinstance(credential, str)
            and credential):
        raise ValueError(f"{_ICE_VARIABLE}: {url!r}: a TURN server needs a username and a "
                         f"credential ('{url}|username|credential')")
    return IceServer(url, username, credential)


def parse_ice_servers(text: str) -> tuple[IceServer, ...]:
    """``SECRETARY_REALTIME_ICE_SERVERS`` as servers (``ValueError`` naming the variable):
    ','-separated ``url`` or ``url|username|credential``, or a JSON list of objects with
    ``urls`` (a URL or a list of them), ``username`` and ``credential``."""
    text = text.strip()
    if not text:
        return ()
    if text.startswith("["):
        try:
            entries = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{_ICE_VARIABLE}: not valid JSON ({exc})") from None
        found: list[IceServer] = []
        for index, entry in enumerate(entries):
            where = f"entry {index + 1}"
            if not isinstance(entry, dict):
                raise ValueError(f"{_ICE_VARIABLE}: {where} is not an object; {_ICE_SYNTAX}")
            urls = entry.get("urls", entry.get("url"))
            for url in urls if isinstance(urls, list) else [urls]:
                found.append(_ice_server(url, entry.get("username"), entry.get("credential"),
                                         where))
        return tuple(found)
    found = []
    for index, item in enumerate(text.split(",")):
        if not item.strip():
            continue
        url, *secret = item.split("|")
        if len(secret) not in (0, 2):
            raise ValueError(f"{_ICE_VARIABLE}: {url.strip()[:80]!r} has {len(secret) + 1} "
                             "'|'-separated parts; write 'url' or 'url|username|credential'")
        username, credential = secret or (None, None)
        found.append(_ice_server(url, username and username.strip(),
                                 credential and credential.strip(), f"entry {index + 1}"))
    return tuple(found)


IceServers = Annotated[tuple[IceServer, ...], NoDecode,
                       BeforeValidator(lambda v: parse_ice_servers(v) if isinstance(v, str)
                                       else v)]


class RealtimeSettings(ServiceSettings):
    """The live conversation service (OpenAI Realtime API over WebSocket and WebRTC). Its
    stages (where speech-to-text, the reply and speech run) follow SECRETARY_CONVERSATION_*."""

    model_config = group("SECRETARY_REALTIME_")

    port: int = 8086
    max_sessions: int = Field(
        default=4, ge=1, description="Sessions at once; past this a new one is refused "
        "(503 over HTTP, an error event and close over WebSocket).")
    idle_timeout_s: float = Field(
        default=300.0, gt=0, description="A session that sends nothing this long is closed.")
    max_session_s: float = Field(default=1800.0, gt=0,
                                 description="The longest a session may last.")
    max_event_kb: int = Field(default=1024, ge=16,
                              description="Largest client event (an audio append), in KiB.")
    max_buffer_s: float = Field(
        default=60.0, gt=0, description="Input audio held before a commit (manual turns).")
    partials: bool = Field(default=True,
                           description="Live partial transcripts while the user speaks.")
    partial_interval_ms: int = Field(default=350, ge=100,
                                     description="How often a partial is attempted.")
    barge_in_min_ms: int = Field(
        default=500, ge=0, description="Speech over the reply this long stops it; shorter "
        "speech stops it only when its transcript is not a backchannel ('yeah', 'mhm').")
    barge_in_grace_ms: int = Field(
        default=600, ge=0, description="Speech starting this soon after the reply begins "
        "is not a barge-in (the echo canceller settling).")
    early_final_ms: int = Field(
        default=32, ge=0, description="Silence after which the final transcript starts, "
        "before the turn's end is certain (it is kept if the turn ends, dropped if not); "
        "the default is one 32 ms VAD frame (bench/realtime.py: its text and the reply made "
        "ahead are ready about 30 ms sooner than after two frames).")
    reply_ahead: bool = Field(
        default=True, description="Start the reply to that early transcript while the "
        "silence runs, so its first audio is ready when the turn ends (dropped unheard if "
        "the user goes on).")
    end_of_turn: bool = Field(
        default=True, description="Smart Turn decides at each pause whether the user is "
        "done, from the sound of the words: sessions start with semantic_vad turn detection "
        "(false: server_vad, a fixed silence ends each turn).")
    end_of_turn_ask_ms: int = Field(
        default=64, ge=32, le=2000, description="Silence after which Smart Turn is asked, "
        "two VAD frames (bench/endofturn.py: asked after one, it cut one more clip at a "
        "spliced pause; over WebRTC's Opus it called a complete sentence unfinished).")
    end_of_turn_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Smart Turn's probability from which a pause "
        "ends a complete turn.")
    end_of_turn_threshold_narrowband: float = Field(
        default=0.25, gt=0, lt=1, description="The same for 8 kHz telephone audio: the "
        "audio/pcmu and audio/pcma input formats, and telephone calls over PCMU or PCMA "
        "(G.722 calls are wideband). The model, trained on wideband speech, calls more "
        "narrowband sentences unfinished (bench/endofturn.py --codec pcmu).")
    end_of_turn_complete_ms: int = Field(
        default=200, ge=32, le=2000, description="Silence that ends a turn Smart Turn calls "
        "complete.")
    end_of_turn_incomplete_ms: int = Field(
        default=1200, ge=100, le=10000, description="Silence that ends a turn Smart Turn "
        "calls unfinished (semantic_vad's eagerness auto and medium; low waits twice as "
        "long, high half).")
    end_of_turn_words_ms: int = Field(
        default=250, ge=0, le=10000, description="Silence that ends a turn Smart Turn calls "
        "unfinished when its transcript reads as a finished sentence (a full stop, not after "
        "'at' or 'um'); 0 waits the long silence. bench/endofturn.py, against 500: such "
        "sentences end after 256 ms of silence, not 512; as many cut at pauses of 700 ms "
        "spliced in after a function word, one more of 19 at 400 ms, two more at 300 ms.")
    audio_lead_ms: int = Field(
        default=300, ge=0, description="How far ahead of real time reply audio is sent over "
        "WebSocket (the client's jitter buffer).")
    face: bool = Field(default=True, description="Send the avatar as a WebRTC video track.")
    video_fps: int = Field(default=25, ge=5, le=30, description="Frames per second of the face.")
    video_size: int = Field(default=320, ge=64, le=768,
                            description="Longest side of the face video, in pixels.")
    preload: bool = Field(default=True, description="Load the engines at start-up.")
    ice_servers: IceServers = Field(
        default=(),
        json_schema_extra={"example": "turn:turn.example.org:3478?transport=udp|secretary|"
                           "s3cret,stun:turn.example.org:3478"},
        description="STUN and TURN servers for WebRTC, for the service's peer connections "
        "and Live mode's page: ','-separated 'turn:host:3478?transport=udp|username|"
        "credential' or 'stun:host:3478' (turns: for TLS), or a JSON list like a browser's "
        "iceServers. A TURN server (coturn) carries the media where the client cannot reach "
        "this machine's UDP ports. Empty: aiortc's default STUN server, and none in the page.")
