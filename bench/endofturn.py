"""End of turn: the VAD-only rule against Smart Turn, on complete sentences and on the
same sentences with a pause in the middle.

    python bench/endofturn.py [--pause-ms 700] [--complete-ms 200] [--incomplete-ms 1200]
                              [--codec none|pcmu|pcma] [--thresholds 0.5,0.3,0.2,0.1]

Every clip of tests/data/speech (en, de, fr, es) goes through the realtime service's own
``TurnDetector`` at the sample level (no server, no clock: the rule is judged on the
audio), once as it is (with 2 s of silence after it) and once with ``--pause-ms`` of
silence spliced in at the word boundary nearest its middle (Whisper base's word times):
  - delay: silence heard after the speech's end before the turn ends, complete clips;
  - cut-offs: paused clips whose pause ended the turn (a false end of turn: one turn more
    than the clip makes without it);
  - long waits: complete clips the model called unfinished (they wait the long silence);
  - the model's CPU time per decision (one thread), with its feature preparation.
Rules side by side: ``vad-500`` (500 ms of silence, today's default without the model),
``vad-200`` (a short silence without the model), ``smart-turn`` (the model asked after
``--ask-ms`` of silence, 64 as the service does; a complete verdict ends the turn after
``--complete-ms``, an unfinished one after ``--incomplete-ms``), at ``--threshold`` or at
each of ``--thresholds`` (``smart-0.3``: the model's probability from which a pause counts
as complete). ``smart+words`` is ``smart-turn`` with the service's words rule: a pause the
model calls unfinished ends after ``--words-ms`` where Whisper's transcript of the speech up
to the pause (as the early final transcript hears it) reads as a finished sentence.
``words`` is the telephone's rule for PCMU and PCMA calls (``SECRETARY_PHONE_NARROWBAND_TURNS
=words``): no model; a pause ends after ``--words-ms`` where the words read finished, else
after server_vad's 500 ms.

``--codec pcmu`` (or ``pcma``) sends every signal through the telephone's round trip
first, as a G.711 session hears it: 16 kHz to 8 kHz, mu-law (A-law) codes, decoded and
resampled back to 16 kHz with the service's own ``g711`` and ``Resampler``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from secretary import audio, g711  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.realtime.vad import (  # noqa: E402
    FRAME,
    RATE,
    TurnDetector,
    VadConfig,
    end_of_turn_config,
)
from secretary.stt.models import WhisperModels  # noqa: E402
from secretary.turns.models import SmartTurnModels  # noqa: E402
from secretary.turns.rule import EndOfTurnRule  # noqa: E402
from secretary.turns.smartturn import SmartTurn  # noqa: E402
from secretary.turns.words import reads_finished  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "speech"


def clips() -> list[Path]:
    return sorted(p for p in SPEECH.iterdir() if p.suffix in (".wav", ".flac"))


# Words after which a speaker is plainly not done ("on Friday at ...", "und dann ...").
FUNCTION_WORDS = {
    "en": {"at", "the", "to", "of", "and", "a", "for", "on", "in", "my", "your", "is", "are",
           "can", "but", "i", "that", "what", "only", "will"},
    "de": {"der", "die", "das", "in", "auf", "am", "um", "und", "diesem", "hat", "sind",
           "einen", "wieder", "als", "wurde"},
    "fr": {"de", "la", "le", "au", "et", "des", "sont", "il", "les", "c'est", "numéro"},
    "es": {"de", "la", "y", "son", "a", "que", "las", "un", "muy", "era"},
}


def pause_point(samples: np.ndarray, language: str, whisper: object) -> tuple[int, str]:
    """The sample where a function word nearest the middle of the speech ends (any word
    where the clip has none), and that word."""
    segments, _ = whisper.transcribe(samples, language=language, word_timestamps=True,
                                     beam_size=1)
    words = [w for s in segments for w in s.words][:-1]
    if not words:
        return len(samples) // 2, ""
    middle = (words[0].start + words[-1].end) / 2
    wanted = FUNCTION_WORDS[language]
    chosen = [w for w in words if w.word.strip(" ,.").lower() in wanted] or words
    word = min(chosen, key=lambda w: abs(w.end - middle))
    return int(word.end * RATE), word.word.strip()


def telephone(samples: np.ndarray, codec: str) -> np.ndarray:
    """``samples`` (16 kHz) as a session hears them over ``codec`` (pcmu, pcma): down to
    8 kHz, G.711 codes, decoded and resampled to 16 kHz as the input buffer does."""
    if codec == "none":
        return samples
    down = audio.Resampler(RATE, 8000)
    narrow = np.concatenate([down.push(samples), down.flush()])
    decoded = g711.decode(codec, g711.encode(codec, narrow))
    up = audio.Resampler(8000, RATE)
    wide = np.concatenate([up.push(decoded), up.flush()])
    # The same length, so the spliced pause and the speech's end stay where they were.
    return np.pad(wide, (0, max(0, len(samples) - len(wide))))[:len(samples)]


def run(samples: np.ndarray, config: VadConfig, model: SmartTurn | None,
        costs: list[float], asked: dict[tuple[int, int], float] | None = None,
        words: Words | None = None) -> list[tuple[int, int]]:
    """(speech end, decision) in ms of audio for each turn the detector ends. ``asked``
    keeps the model's verdicts on ``samples`` (the same pause under another threshold is
    the same question); ``words`` reads the speech up to a pause."""
    asked = {} if asked is None else asked
    detector = TurnDetector(config)
    turns: list[tuple[int, int]] = []
    start = paused = 0
    step = FRAME  # frame by frame, so the decision is dated to its frame
    for offset in range(0, len(samples), step):
        pending = detector.feed(samples[offset:offset + step])
        while pending:
            event = pending.pop(0)
            if event.kind == "started":
                start = event.at_ms
            elif event.kind == "paused" and model is None:  # the words rule alone
                pending += detector.decide(0.0)
                paused = event.at_ms
            elif event.kind == "paused":
                key = (start, event.at_ms)
                if key not in asked:
                    began = time.perf_counter()
                    asked[key] = model.complete(
                        samples[start * RATE // 1000:event.at_ms * RATE // 1000])
                    costs.append(time.perf_counter() - began)
                pending += detector.decide(asked[key])
                paused = event.at_ms
            elif event.kind == "words":
                assert words is not None
                pending += detector.decide_words(words.finished(samples, start, paused))
            else:
                turns.append((event.at_ms, detector.now_ms))
    return turns


class Words:
    """Whether the speech from an utterance's start to its pause reads as a finished
    sentence, transcribed as the service's early final transcript is (300 ms of padding
    before the start, greedy, Silero's filter); each span once."""

    def __init__(self, whisper: object, language: str) -> None:
        self.whisper, self.language = whisper, language
        self.read: dict[tuple[int, int], bool] = {}

    def finished(self, samples: np.ndarray, start_ms: int, at_ms: int) -> bool:
        key = (start_ms, at_ms)
        if key not in self.read:
            span = samples[max(0, start_ms - 300) * RATE // 1000:at_ms * RATE // 1000]
            segments, _ = self.whisper.transcribe(span, language=self.language, beam_size=1,
                                                  temperature=0.0, vad_filter=True)
            self.read[key] = reads_finished(" ".join(s.text.strip() for s in segments))
        return self.read[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pause-ms", type=int, default=700)
    parser.add_argument("--complete-ms", type=int, default=200)
    parser.add_argument("--incomplete-ms", type=int, default=1200)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--thresholds", default="",
                        help="','-separated Smart Turn thresholds, one rule each "
                        "(instead of --threshold)")
    parser.add_argument("--codec", choices=("none", "pcmu", "pcma"), default="none",
                        help="hear every clip through this G.711 round trip (8 kHz)")
    parser.add_argument("--words-ms", type=int, default=250,
                        help="the smart+words rule's wait for finished words (the service's "
                        "SECRETARY_REALTIME_END_OF_TURN_WORDS_MS), and the words rule's")
    parser.add_argument("--ask-ms", type=int, default=64,
                        help="silence after which Smart Turn is asked (the realtime service "
                        "asks at SECRETARY_REALTIME_END_OF_TURN_ASK_MS)")
    parser.add_argument("--verbose", action="store_true", help="a line per clip")
    args = parser.parse_args()

    from faster_whisper import WhisperModel

    settings = Settings()
    whisper = WhisperModel(str(WhisperModels(settings.models_dir).whisper_path("base")),
                           compute_type="int8", cpu_threads=1)
    with tempfile.TemporaryDirectory() as scratch:
        model = SmartTurn(SmartTurnModels(settings.models_dir or Path(scratch))
                          .smart_turn_path())
        model.load()
        thresholds = ([float(t) for t in args.thresholds.split(",") if t.strip()]
                      or [args.threshold])
        rules = {
            "vad-500": (VadConfig(silence_duration_ms=500), None),
            "vad-200": (VadConfig(silence_duration_ms=200), None),
        }
        for threshold in thresholds:
            name = "smart-turn" if len(thresholds) == 1 else f"smart-{threshold:g}"
            rules[name] = (end_of_turn_config(EndOfTurnRule(
                model, threshold, args.complete_ms, args.incomplete_ms, words_ms=0,
                ask_ms=args.ask_ms)), model)
        # The service's rules: the model with the words, and the telephone's narrowband one
        # (the words alone, else server_vad's silence).
        rule = EndOfTurnRule(model, thresholds[0], args.complete_ms, args.incomplete_ms,
                             args.words_ms, ask_ms=args.ask_ms)
        if len(thresholds) == 1:
            rules["smart+words"] = (end_of_turn_config(rule), model)
        rules["words"] = (end_of_turn_config(rule, words_only=True), None)
        tail = np.zeros(2 * RATE, np.float32)
        gap = np.zeros(args.pause_ms * RATE // 1000, np.float32)
        rows: dict[tuple[str, str], dict[str, list[float]]] = {}
        costs: list[float] = []
        for path in clips():
            samples = audio.decode(path, RATE).samples
            language = path.name[:2]
            cut, word = pause_point(samples, language, whisper)
            paused = telephone(np.concatenate([samples[:cut], gap, samples[cut:], tail]),
                               args.codec)
            whole = telephone(np.concatenate([samples, tail]), args.codec)
            asked_whole: dict[tuple[int, int], float] = {}
            asked_paused: dict[tuple[int, int], float] = {}
            words_whole, words_paused = Words(whisper, language), Words(whisper, language)
            for name, (config, judge) in rules.items():
                row = rows.setdefault((language, name), {"delay": [], "cut": [], "long": []})
                turns = run(whole, config, judge, costs, asked_whole, words_whole)
                if turns:
                    end, decided = turns[-1]
                    row["delay"].append(decided - end)
                    row["long"].append(float(decided - end >= args.incomplete_ms))
                # A clip with pauses of its own may be several turns already: a cut-off
                # is one turn more than the clip makes without the spliced pause.
                cut_off = len(run(paused, config, judge, costs, asked_paused,
                                  words_paused)) > max(
                    1, len(turns))
                row["cut"].append(float(cut_off))
                if args.verbose and config.semantic:
                    print(f"{path.name:45} {name:11} pause after {word!r:16} "
                          f"{'cut off' if cut_off else 'one turn'}; whole clip: "
                          f"{(turns[-1][1] - turns[-1][0]) if turns else -1} ms")
        print(f"\ncodec: {args.codec}")
        print(f"{'lang':5}{'rule':12}{'clips':>6}{'delay p50':>11}{'delay max':>11}"
              f"{'long waits':>12}{'cut-offs':>10}")
        order = list(rules)
        for language in sorted({language for language, _ in rows}) + ["all"]:
            for name in order:
                found = [row for (lang, rule), row in rows.items()
                         if rule == name and language in (lang, "all")]
                row = {key: [v for r in found for v in r[key]] for key in found[0]}
                delays = row["delay"] or [float("nan")]
                print(f"{language:5}{name:12}{len(row['cut']):>6}"
                      f"{statistics.median(delays):>9.0f}ms{max(delays):>9.0f}ms"
                      f"{int(sum(row['long'])):>12}{int(sum(row['cut'])):>10}")
        print(f"\nSmart Turn per decision (one thread, with features): "
              f"p50 {statistics.median(costs) * 1000:.0f} ms, "
              f"max {max(costs) * 1000:.0f} ms over {len(costs)} decisions")


if __name__ == "__main__":
    main()
