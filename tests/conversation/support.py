"""Helpers for the conversation tests: recordings made from real clips, and a client that
reads a turn's event stream."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from secretary import audio
from tests.helpers import SPEECH, reference_text

PORTRAIT = Path(__file__).parents[2] / "src" / "secretary" / "ui" / "static" / "portrait.png"
# Two sentences, spoken by two speakers with a pause between: a reply of two sentences.
TWO_SENTENCE_CLIPS = ("en_cheetah_platforms.wav", "en_cmu_arctic_aew_a0003.wav")


def recording(*names: str, pause: float = 0.6) -> tuple[bytes, str]:
    """A WAV of the clips one after the other, and what is said in it."""
    rate = audio.WHISPER_SAMPLE_RATE
    gap = np.zeros(int(pause * rate), np.float32)
    parts: list[np.ndarray] = [gap]
    for name in names:
        parts += [audio.decode(SPEECH / name).samples, gap]
    text = " ".join(reference_text(SPEECH / name) for name in names)
    return audio.encode(np.concatenate(parts), rate, "wav"), text


def silence(seconds: float = 2.0) -> bytes:
    rate = audio.WHISPER_SAMPLE_RATE
    return audio.encode(np.zeros(int(seconds * rate), np.float32), rate, "wav")


def turn_events(url: str, wav: bytes, *, stop_after: str | None = None, timeout: float = 120,
                **form: Any) -> list[dict[str, Any]]:
    """POST /api/turn and read its events; ``stop_after`` closes the stream at the first
    event of that type (the listener pressing Stop)."""
    events: list[dict[str, Any]] = []
    data = {"session": "test", **{k: str(v) for k, v in form.items()}}
    with httpx.stream("POST", f"{url}/api/turn", files={"audio": ("speech.wav", wav)},
                      data=data, timeout=timeout) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("application/x-ndjson")
        for line in answer.iter_lines():
            if not line.strip():
                continue
            events.append(json.loads(line))
            if stop_after and events[-1]["type"] == stop_after:
                break
    return events


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def reply_audio(events: list[dict[str, Any]]) -> audio.DecodedAudio:
    """The reply's MP3 stream, put together and decoded."""
    data = b"".join(base64.b64decode(e["data"]) for e in of_type(events, "audio"))
    return audio.decode(data)


def metric(url: str, name: str, **labels: str) -> float:
    """One sample's value from the server's /metrics (0 where it is not there yet)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{wanted}}}" if wanted else name):
            return float(value)
    return 0.0
