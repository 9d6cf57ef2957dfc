"""The secretary's skills: what a skill request costs in Live mode, and the template match.

    python bench/skills.py [--rounds 3]

- Voice-to-voice over WebSocket (the ``openai`` realtime client, clips fed at real-time
  pace, Smart Turn ending the turn as by default): a spoken skill request answered by the
  skills (the calendar on a real Radicale server in this process) against the same clip
  read back (``SECRETARY_CONVERSATION_BRAIN=echo``, the baseline), alternating on two
  servers in the same run. From the wall clock when the clip's last voiced audio was sent
  to the first reply audio received; p50 and p95, and the difference.
- The template match alone: milliseconds per ``IntentMatcher.match`` over the test
  phrases of both languages (the user's words are already text).

The request clips are Piper's English voice (eSpeak NG's German is heard too poorly by
Whisper base to time a skill with).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.realtime import ws_speech_turn  # noqa: E402
from tests.helpers import running_server  # noqa: E402
from tests.realtime.support import RATE  # noqa: E402

from secretary import audio  # noqa: E402
from secretary.calendar.app import create_app as create_calendar_app  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.conversation.stages import Cancel  # noqa: E402
from secretary.realtime.app import create_app as create_realtime_app  # noqa: E402
from secretary.realtime.service import RealtimeService  # noqa: E402
from secretary.skills.intents import IntentMatcher  # noqa: E402

REQUESTS = ("Remind me to call the dentist tomorrow at three.", "What's on tomorrow?",
            "Add buy milk to my list.", "Remember that my dentist is Doctor Weber.",
            "Who is my dentist?", "What time is it?")
PHRASES = {
    "en": ("Put lunch with Anna on Friday at one.", "What's on tomorrow?",
           "Move lunch with Anna to two.", "Cancel the dentist on Friday.",
           "Remind me to call the dentist tomorrow at 3 p.m.",
           "Remind me in ten minutes to stretch.", "Add buy milk to my list.",
           "What's on my list?", "Mark buy milk done.",
           "Note that the wifi password is on the fridge.",
           "Remember that my dentist is Dr. Weber.", "Who is my dentist?",
           "What time is it?", "Tell me a joke."),
    "de": ("Trag Mittagessen mit Anna am Freitag um 13 Uhr ein.", "Was steht morgen an?",
           "Verschieb das Mittagessen mit Anna auf 14 Uhr.", "Sag den Zahnarzt am Freitag ab.",
           "Erinnere mich morgen um 17 Uhr an den Zahnarzt.",
           "Erinnere mich in zehn Minuten ans Dehnen.", "Setz Milch kaufen auf meine Liste.",
           "Was steht auf meiner Liste?", "Hak Milch kaufen ab.",
           "Notiere, dass das WLAN-Passwort am Kühlschrank hängt.",
           "Merk dir, dass mein Zahnarzt Dr. Weber ist.", "Wer ist mein Zahnarzt?",
           "Wie spät ist es?", "Erzähl mir einen Witz."),
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def turn(url: str, speech: np.ndarray) -> float:
    """Seconds from the last voiced audio sent to the first reply audio received."""
    return (await ws_speech_turn(url, speech))["latency"]


async def request_clips(service: RealtimeService) -> list[np.ndarray]:
    speaker = service.pipeline.speaker
    clips = []
    for text in REQUESTS:
        pieces = [piece async for piece in speaker.speak(text, "en", None, Cancel())]
        samples = np.concatenate([samples for samples, _ in pieces])
        clips.append(audio.resample(samples, pieces[0][1], RATE))
    return clips


def match_times() -> dict[str, float]:
    matcher = IntentMatcher()
    now = datetime(2026, 12, 6, 18, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    out = {}
    for language, phrases in PHRASES.items():
        times = []
        for _ in range(5):
            for phrase in phrases:
                began = time.perf_counter()
                matcher.match(phrase, language, now)
                times.append((time.perf_counter() - began) * 1000)
        out[language] = statistics.mean(times)
        out[f"{language} p95"] = pct(times, 0.95)
    return out


def service_for(brain: str, calendar_url: str, data: Path) -> RealtimeService:
    settings = Settings(_env_file=None, data_dir=data, timezone="Europe/Berlin")
    settings.conversation.brain = brain
    settings.conversation.avatar = False
    settings.conversation.speech_cache = 0  # every reply synthesized, as the first time
    settings.realtime.face = False
    settings.tts.piper_noise_w = 0.0
    settings.tts.piper_noise_scale = 0.0
    settings.calendar = settings.calendar.model_copy(update={"url": calendar_url})
    service = RealtimeService(settings)
    service.load()
    return service


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    print("template match, ms per request:", {k: round(v, 2) for k, v in match_times().items()})
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        calendar_settings = Settings(_env_file=None, data_dir=data)
        with running_server(create_calendar_app(calendar_settings)) as calendar:
            services = {brain: service_for(brain, calendar + "/", data)
                        for brain in ("echo", "skills")}
            clips = await request_clips(services["echo"])
            latency: dict[str, list[float]] = {"echo": [], "skills": []}
            with running_server(create_realtime_app(service=services["echo"])) as echo, \
                    running_server(create_realtime_app(service=services["skills"])) as skills:
                urls = {"echo": echo, "skills": skills}
                for _ in range(args.rounds):
                    for speech in clips:
                        for brain in ("echo", "skills"):  # side by side, alternating
                            latency[brain].append(await turn(urls[brain], speech))
    rows: list[tuple[str, Any, Any]] = []
    for brain, values in latency.items():
        rows.append((brain, pct(values, 0.5), pct(values, 0.95)))
    print(f"voice-to-voice over WebSocket, {len(clips)} requests x {args.rounds} rounds:")
    for brain, p50, p95 in rows:
        print(f"  {brain:7s} p50 {p50:.3f} s  p95 {p95:.3f} s")
    print(f"  skills - echo: p50 {rows[1][1] - rows[0][1]:+.3f} s, "
          f"p95 {rows[1][2] - rows[0][2]:+.3f} s")


if __name__ == "__main__":
    asyncio.run(main())
