"""Has the speaker finished? Silero VAD (the model faster-whisper ships) over the tail of
the microphone, for Talk mode's automatic stop.

A loudness threshold cannot tell a pause from a quiet room or a fan, so it has to wait long
(1.3 s) to be sure; Silero tells speech from noise. The page sends the recording's last
seconds (at most 8, what Smart Turn hears) every few hundred milliseconds while it listens;
this answers with how much of it is speech and how long the silence at its end has lasted
(the conversation service adds Smart Turn's verdict and the silence that ends the turn).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secretary.audio import WHISPER_SAMPLE_RATE, from_pcm16
from secretary.errors import InvalidRequestError

MAX_SECONDS = 10.0  # the page sends its last 8 s at most (what Smart Turn hears)


@dataclass(frozen=True)
class Endpoint:
    speech_seconds: float  # speech found in the clip
    trailing_silence: float  # seconds since the last speech (the whole clip if none)

    def as_json(self) -> dict[str, float | bool]:
        return {"speech": self.speech_seconds > 0,
                "speech_seconds": round(self.speech_seconds, 3),
                "trailing_silence": round(self.trailing_silence, 3)}


def pcm16(body: bytes) -> np.ndarray:
    """16 kHz mono 16-bit little-endian PCM, as the page sends it."""
    if not body:
        raise InvalidRequestError("the body is empty: send 16 kHz mono 16-bit PCM")
    if len(body) % 2:
        raise InvalidRequestError("16-bit PCM has an even number of bytes")
    if len(body) > MAX_SECONDS * WHISPER_SAMPLE_RATE * 2:
        raise InvalidRequestError(f"send at most {MAX_SECONDS:g} s of audio")
    return from_pcm16(body)


def endpoint(samples: np.ndarray) -> Endpoint:
    """Blocking (a few milliseconds for a second of audio)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    # Short speech and silence settings: this is about the last half second, not about
    # cutting a file into sentences.
    options = VadOptions(threshold=0.5, min_speech_duration_ms=90,
                         min_silence_duration_ms=100, speech_pad_ms=0)
    stamps = get_speech_timestamps(samples, options)
    duration = len(samples) / WHISPER_SAMPLE_RATE
    if not stamps:
        return Endpoint(0.0, duration)
    speech = sum(s["end"] - s["start"] for s in stamps) / WHISPER_SAMPLE_RATE
    return Endpoint(speech, duration - stamps[-1]["end"] / WHISPER_SAMPLE_RATE)
