"""Text-to-speech speed, measured side by side in one run.

    python bench/tts.py [--rounds 3]

For each engine (Piper for English, eSpeak NG for German; XTTS too when
SECRETARY_TTS_ROUTES sends a language to it) and the same four-sentence paragraph, prints:
  1. real-time factor of direct engine calls, sentence by sentence (the baseline),
  2. the HTTP service, whole file (WAV): overhead = service / direct,
  3. the HTTP service, streamed: time to the first audio byte, and its ratio to the
     whole-file time (target: under 1/3).
Runs alternate (direct, whole, streamed, direct, ...) so machine noise hits all alike; the
medians over rounds are reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import running_server  # noqa: E402

from secretary.config import Settings  # noqa: E402
from secretary.tts.app import create_app  # noqa: E402
from secretary.tts.engine import SynthesisRequest, TtsEngine  # noqa: E402
from secretary.tts.service import TtsService  # noqa: E402
from secretary.tts.text import split_sentences  # noqa: E402

PARAGRAPHS = {
    "en": ("Good morning, this is your secretary speaking. You have three new messages "
           "waiting for you. The first one is from your dentist about next week. "
           "Shall I read them to you now, or later today?"),
    "de": ("Guten Morgen, hier spricht Ihre Sekretärin. Sie haben drei neue Nachrichten. "
           "Die erste ist von Ihrem Zahnarzt wegen nächster Woche. "
           "Soll ich sie Ihnen jetzt vorlesen oder später?"),
}


def direct(engine: TtsEngine, sentences: list[str], language: str) -> tuple[float, float]:
    """Seconds to synthesize, seconds of audio."""
    started = time.perf_counter()
    samples = 0
    for sentence in sentences:
        for chunk in engine.synthesize(SynthesisRequest(sentence, language)):
            samples += len(chunk)
    return time.perf_counter() - started, samples / engine.sample_rate


def whole(client: httpx.Client, url: str, text: str, language: str) -> float:
    started = time.perf_counter()
    response = client.post(f"{url}/synthesize", json={"text": text, "language": language},
                          timeout=300)
    response.raise_for_status()
    return time.perf_counter() - started


def streamed(client: httpx.Client, url: str, text: str, language: str
             ) -> tuple[float, float]:
    """Seconds to the first audio byte, seconds to the end."""
    started = time.perf_counter()
    first = None
    body = {"text": text, "language": language, "stream": True}
    with client.stream("POST", f"{url}/synthesize", json=body, timeout=300) as response:
        response.raise_for_status()
        for piece in response.iter_raw():
            if first is None and len(piece) > 44:  # past the WAV header: audio
                first = time.perf_counter() - started
    return first or float("nan"), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    # The user's settings and model cache: SECRETARY_* variables apply.
    settings = Settings()
    service = TtsService(settings)
    service.load_all()
    engines = service.available_engines()
    catalog = {name: engine.voices() for name, engine in engines.items()}
    plan = [(language, text, service.router.resolve(language, None, catalog).engine)
            for language, text in PARAGRAPHS.items()]
    if "xtts" in engines:
        plan.append(("es", "Buenos días. ¿Cómo está usted? Tengo tres mensajes para "
                           "usted. ¿Se los leo ahora?", "xtts"))
    app = create_app(settings, engines)
    # One kept-alive connection, as a real client holds: connection set-up is not
    # the service's overhead.
    with running_server(app) as url, httpx.Client() as client:
        print(f"{args.rounds} rounds, medians (and their range); four-sentence paragraph "
              "per engine\n")
        header = (f"{'engine':8} {'lang':4} {'audio s':>7} {'direct s':>8} {'RTF':>6} "
                  f"{'whole s':>7} {'overhead':>8} {'stream 1st s':>12} "
                  f"{'stream end s':>12} {'1st/whole':>9}")
        print(header)
        print("-" * len(header))
        for language, text, engine_name in plan:
            engine = engines[engine_name]
            sentences = split_sentences(text, settings.tts.max_sentence_chars)
            direct(engine, sentences, language)  # warm up
            whole(client, url, text, language)
            runs: dict[str, list[float]] = {k: [] for k in
                                            ("direct", "audio", "whole", "first", "end")}
            for _ in range(args.rounds):
                seconds, audio_seconds = direct(engine, sentences, language)
                runs["direct"].append(seconds)
                runs["audio"].append(audio_seconds)
                runs["whole"].append(whole(client, url, text, language))
                first, end = streamed(client, url, text, language)
                runs["first"].append(first)
                runs["end"].append(end)
            m = {k: statistics.median(v) for k, v in runs.items()}
            print(f"{engine_name:8} {language:4} {m['audio']:7.2f} {m['direct']:8.3f} "
                  f"{m['direct'] / m['audio']:6.3f} {m['whole']:7.3f} "
                  f"{m['whole'] / m['direct']:8.2f} {m['first']:12.3f} {m['end']:12.3f} "
                  f"{m['first'] / m['whole']:9.2f}")
            rounds = list(zip(runs["direct"], runs["audio"], runs["whole"], runs["first"],
                              strict=True))
            spread = {
                "RTF": [d / a for d, a, _, _ in rounds],
                "overhead": [w / d for d, _, w, _ in rounds],
                "stream 1st s": [f for _, _, _, f in rounds],
                "1st/whole": [f / w for _, _, w, f in rounds],
            }
            print(f"{'':13} range over rounds: " + ", ".join(
                f"{k} {min(v):.3g}-{max(v):.3g}" for k, v in spread.items()))
        print("\nRTF = direct seconds / audio seconds (below 1: faster than real time); "
              "overhead = service whole file / direct; target 1st/whole < 0.33")


if __name__ == "__main__":
    main()
