"""The realtime service's settings (``SECRETARY_REALTIME_*``)."""

from __future__ import annotations

from pydantic import Field

from secretary.settings_base import ServiceSettings, group


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
        default=96, ge=0, description="Silence after which the final transcript starts, "
        "before the turn's end is certain (it is kept if the turn ends, dropped if not); "
        "the default is three 32 ms VAD frames.")
    reply_ahead: bool = Field(
        default=True, description="Start the reply to that early transcript while the "
        "silence runs, so its first audio is ready when the turn ends (dropped unheard if "
        "the user goes on).")
    end_of_turn: bool = Field(
        default=True, description="Smart Turn decides at each pause whether the user is "
        "done, from the sound of the words: sessions start with semantic_vad turn detection "
        "(false: server_vad, a fixed silence ends each turn).")
    end_of_turn_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Smart Turn's probability from which a pause "
        "ends a complete turn.")
    end_of_turn_complete_ms: int = Field(
        default=200, ge=32, le=2000, description="Silence that ends a turn Smart Turn calls "
        "complete.")
    end_of_turn_incomplete_ms: int = Field(
        default=1200, ge=100, le=10000, description="Silence that ends a turn Smart Turn "
        "calls unfinished (semantic_vad's eagerness auto and medium; low waits twice as "
        "long, high half).")
    audio_lead_ms: int = Field(
        default=300, ge=0, description="How far ahead of real time reply audio is sent over "
        "WebSocket (the client's jitter buffer).")
    face: bool = Field(default=True, description="Send the avatar as a WebRTC video track.")
    video_fps: int = Field(default=25, ge=5, le=30, description="Frames per second of the face.")
    video_size: int = Field(default=320, ge=64, le=768,
                            description="Longest side of the face video, in pixels.")
    preload: bool = Field(default=True, description="Load the engines at start-up.")
