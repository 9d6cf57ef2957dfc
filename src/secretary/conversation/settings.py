"""The conversation pipeline's settings (``SECRETARY_CONVERSATION_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings

from secretary.settings_base import group


class ConversationSettings(BaseSettings):
    """One spoken turn on the UI server (``POST /api/turn``): where its stages run and how."""

    model_config = group("SECRETARY_CONVERSATION_")

    stages: Literal["local", "remote"] = Field(
        default="local",
        description="'local' runs the engines inside the UI server (no extra HTTP hop, no "
        "re-encoding); 'remote' calls the services at SECRETARY_UI_STT_URL, _TTS_URL and "
        "_AVATAR_URL (a GPU box, replicas behind a load balancer).",
    )
    stt_stage: Literal["local", "remote"] | None = Field(
        default=None, description="Overrides 'stages' for speech-to-text.")
    tts_stage: Literal["local", "remote"] | None = Field(
        default=None, description="Overrides 'stages' for text-to-speech.")
    avatar_stage: Literal["local", "remote"] | None = Field(
        default=None, description="Overrides 'stages' for the avatar.")
    brain: Literal["skills", "echo"] = Field(
        default="skills",
        description="'skills': the secretary's calendar, to-do, reminder, note and memory "
        "skills answer first, then the chat model when one is configured (else a short "
        "'what I can do'); 'echo' reads the transcript back (for tests).",
    )
    preload: bool = Field(default=True, description="Load in-process engines at start-up.")
    end_of_speech_ms: int = Field(
        default=500, ge=100, le=5000,
        description="Talk mode stops listening after this much non-speech, as Silero VAD on "
        "the server hears it, where Smart Turn is off or absent (with it, Talk mode ends "
        "turns as the realtime service does; a loudness rule with 1.3 s is the fallback).")
    fast_final: bool = Field(
        default=True,
        description="Encode a short utterance in a window fitted to it instead of Whisper's "
        "30 s (several times faster), guarded against loops by a fallback to the full window.",
    )
    # bench/fast_final.py: greedy in an 8 s window reads the test clips as well as beam 5
    # in 15 s (English better, one French and one Spanish word worse) in half the time.
    fast_final_min_window: int = Field(default=8, ge=1, le=30,
                                       description="Shortest fitted window, in seconds.")
    beam_size: int = Field(default=1, ge=1, description="Beam size of the final transcript.")
    # bench/realtime.py on two cores: one thread answered in 0.82-0.92x the time of
    # CTranslate2's own choice (three runs); a short decode gains nothing from more, and the
    # other cores are left to the turn model, the voice, partials and other sessions.
    stt_threads: int = Field(
        default=1, ge=0,
        description="CTranslate2 threads for each of the conversation's own Whisper "
        "transcriptions (finals and partials; SECRETARY_STT_NUM_WORKERS of them run at once); "
        "0: as SECRETARY_STT_CPU_THREADS.")
    history_turns: int = Field(
        default=8, ge=0, description="Exchanges kept per page session for the chat model.")
    max_sessions: int = Field(default=256, ge=1, description="Page sessions remembered (LRU).")
    first_clause_chars: int = Field(
        default=24, ge=0,
        description="The reply's first sentence goes to speech at its first clause break past "
        "this many characters, so speech starts sooner; 0 waits for the whole sentence.",
    )
    first_words: int = Field(
        default=0, ge=0,
        description="Above 0, a first sentence over 60 characters also goes to speech after "
        "this many words where that comes first (at least two more follow; never ending on "
        "a word like 'at' or on a number): its first sound comes sooner, by about 1.6 ms a "
        "character on two cores, but the cut costs a word now and then (heard back by "
        "Whisper, 3 of 4 long sentences lost one at 4 words), so it is off by default.",
    )
    sentence_pause_ms: int = Field(default=200, ge=0,
                                   description="Silence after each reply sentence.")
    speech_cache: int = Field(
        default=64, ge=0, description="Sentences whose speech is kept, in this process, to "
        "be played again when the same words are said in the same voice (a telephone "
        "greeting at every call, confirmations, reminders); 0: none. Where speech comes "
        "from the TTS service over HTTP, nothing is kept.")
    chat_max_tokens: int = Field(default=200, ge=1,
                                 description="Cap on the chat model's reply, in tokens.")
    chat_temperature: float | None = Field(
        default=None, ge=0, description="Sampling temperature sent to the chat model; unset "
        "leaves the server's default.")
    chat_tool_choice: str = Field(
        default="auto", min_length=1, max_length=64,
        description="With the skills and a chat model: 'auto' offers the skills as tools the "
        "model may call, 'none' offers none, 'required' makes it call one, a tool's name "
        "(add_event, remember, ...) forces that one.",
    )
    avatar: bool = Field(default=True, description="Send avatar frames with the reply.")
    avatar_fps: int = Field(default=20, ge=1, le=60, description="Avatar frames per second.")
    avatar_size: int = Field(default=384, ge=64, le=1024,
                             description="Longest side of avatar frames, in pixels.")
    avatar_jpeg_quality: int = Field(default=80, ge=10, le=100,
                                     description="JPEG quality of avatar frames.")
    max_audio_seconds: float = Field(default=60.0, gt=0,
                                     description="Longest recording a turn accepts.")
    max_turns: int = Field(
        default=2, ge=1, description="Turns processed at once; past this /api/turn answers 503.")
    max_portraits: int = Field(default=32, ge=1,
                               description="Uploaded portraits kept in memory (LRU).")

    def stage(self, name: Literal["stt", "tts", "avatar"]) -> Literal["local", "remote"]:
        override = {"stt": self.stt_stage, "tts": self.tts_stage,
                    "avatar": self.avatar_stage}[name]
        return override or self.stages
