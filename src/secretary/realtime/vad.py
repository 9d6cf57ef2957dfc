"""Streaming turn detection: Silero VAD (the ONNX model faster-whisper ships), fed 32 ms
at a time with its recurrent state carried over, so each frame costs a fraction of a
millisecond and the decision is never more than one frame behind the microphone.

``TurnDetector`` turns frame probabilities into the Realtime API's two events: speech
started (after ``min_speech_ms`` above the threshold, dated back by the prefix padding) and
speech stopped (after ``silence_duration_ms`` below it). With ``semantic`` set, a pause of
``ask_ms`` is a third event, ``paused``: the detector holds its later frames until the
caller answers with an end-of-turn model's verdict (``decide``), so the rule is the same
on any machine and at any feeding speed. A turn the model calls complete ends after
``complete_ms`` of silence; one it calls unfinished after ``silence_duration_ms``, unless
its words read as a finished sentence: with ``words_ms`` set, a pause called unfinished is
a fourth event, ``words``, once it has lasted ``words_ms``, held until the caller answers
(``decide_words``) from the transcript of the speech so far; finished words end the turn
there. The transcript started at the pause, so in real time the answer is there already.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from secretary.audio import WHISPER_SAMPLE_RATE

if TYPE_CHECKING:
    from secretary.turns.rule import EndOfTurnRule

RATE = WHISPER_SAMPLE_RATE  # what Silero and Whisper take
FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
_CONTEXT = 64  # samples of the previous frame the model sees


@cache
def _session() -> Any:
    import faster_whisper
    import onnxruntime

    path = Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                        sess_options=options)


def load() -> None:
    _session()


class SileroStream:
    """Speech probability per 32 ms frame of a 16 kHz stream."""

    def __init__(self) -> None:
        self.session = _session()
        self.h = np.zeros((1, 1, 128), np.float32)
        self.c = np.zeros((1, 1, 128), np.float32)
        self.context = np.zeros(_CONTEXT, np.float32)
        self.pending = np.zeros(0, np.float32)
        self._lock = threading.Lock()

    def feed(self, samples: np.ndarray) -> list[float]:
        with self._lock:
            self.pending = np.concatenate([self.pending, samples.astype(np.float32)])
            out: list[float] = []
            while len(self.pending) >= FRAME:
                frame, self.pending = self.pending[:FRAME], self.pending[FRAME:]
                x = np.concatenate([self.context, frame])[None, :]
                prob, self.h, self.c = self.session.run(
                    None, {"input": x, "h": self.h, "c": self.c})
                self.context = frame[-_CONTEXT:]
                out.append(float(np.asarray(prob).reshape(-1)[0]))
            return out


@dataclass
class VadConfig:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    min_speech_ms: int = 96  # a click or a cough is not a turn
    semantic: bool = False  # ask an end-of-turn model at each pause
    ask_ms: int = 64  # silence after which the model is asked
    complete_ms: int = 200  # silence that ends a turn the model calls complete
    complete_threshold: float = 0.5  # the model's probability that counts as complete
    words_ms: int = 0  # silence that ends an unfinished pause whose words read finished


def end_of_turn_config(rule: EndOfTurnRule, threshold: float = 0.5,
                       prefix_padding_ms: int = 300, *, eagerness: str = "auto",
                       narrowband: bool = False, words_only: bool = False) -> VadConfig:
    """A detector config for turns ended by ``rule``: the model's verdict with the rule's
    waits, or with ``words_only`` (where the model cannot tell, as on a narrowband call) the
    words alone, a pause whose words read unfinished waiting server_vad's silence."""
    if words_only:  # no verdict counts as complete
        long_ms, complete_threshold = VadConfig.silence_duration_ms, 1.0
    else:
        long_ms = rule.incomplete_wait(eagerness)
        complete_threshold = rule.threshold_for(narrowband)
    return VadConfig(threshold, prefix_padding_ms, long_ms, semantic=True, ask_ms=rule.ask_ms,
                     complete_ms=rule.complete_ms, complete_threshold=complete_threshold,
                     words_ms=rule.words_ms)


@dataclass(frozen=True)
class VadEvent:
    # "started", "paused" (semantic: ask the model, then ``decide``), "words" (ask whether
    # the transcript reads finished, then ``decide_words``) or "stopped"
    kind: str
    at_ms: int  # on the input buffer's clock (ms of audio since the session began)


class TurnDetector:
    def __init__(self, config: VadConfig) -> None:
        self.config = config
        self.stream = SileroStream()
        self.frames = 0  # frames seen
        self.speaking = False
        self._above = 0  # consecutive frames over the threshold
        self._below = 0  # consecutive frames under it (while speaking)
        self._last_speech_frame = 0
        self._start_frame = 0
        self._probs: deque[float] = deque()  # frame probabilities not judged yet
        self._asking = False  # held until ``decide``
        self._verdict: float | None = None  # the model's answer for the current pause
        self._words: bool | None = None  # whether its words read as a finished sentence

    @property
    def silence_ms(self) -> int:
        """How long the current utterance has been quiet (0 while voiced or outside one)."""
        return self._below * FRAME * 1000 // RATE if self.speaking else 0

    @property
    def voiced_ms(self) -> int:
        """Length of the current utterance up to its last voiced frame (0 outside one)."""
        if not self.speaking:
            return 0
        return (self._last_speech_frame - self._start_frame) * FRAME * 1000 // RATE

    @property
    def last_voice_ms(self) -> int:
        """Where the current utterance's last voiced frame ends (0 outside one)."""
        return self._last_speech_frame * FRAME * 1000 // RATE if self.speaking else 0

    @property
    def now_ms(self) -> int:
        return self.frames * FRAME * 1000 // RATE

    @property
    def waiting(self) -> bool:
        """Whether frames are held until ``decide`` answers a ``paused`` event."""
        return self._asking

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        self._probs.extend(self.stream.feed(samples))
        return self._run()

    def decide(self, complete: float) -> list[VadEvent]:
        """The end-of-turn model's probability that the paused utterance is complete; the
        frames held since the pause are then judged by it."""
        self._asking = False
        self._verdict = complete
        events: list[VadEvent] = []
        self._check_stop(events)
        return events + self._run()

    def decide_words(self, finished: bool) -> list[VadEvent]:
        """Whether the transcript of the utterance paused at a ``words`` event reads as a
        finished sentence; the frames held since are then judged by it."""
        self._asking = False
        self._words = finished
        events: list[VadEvent] = []
        self._check_stop(events)
        return events + self._run()

    def _asks_words(self) -> bool:
        config, verdict = self.config, self._verdict
        return (config.semantic and 0 < config.words_ms < config.silence_duration_ms
                and verdict is not None and verdict < config.complete_threshold
                and self._words is None and self.silence_ms >= config.words_ms)

    def _run(self) -> list[VadEvent]:
        config, events = self.config, []
        frame_ms = FRAME * 1000 / RATE
        # Hysteresis as Silero's own segmenter does: silence begins at a frame well under
        # the threshold and lasts until one over it, so a breath or a rustle after the last
        # word (0.35-0.5) neither starts silence nor ends it.
        low = max(config.threshold - 0.15, 0.01)
        while self._probs and not self._asking:
            prob = self._probs.popleft()
            self.frames += 1
            if not self.speaking:
                self._above = self._above + 1 if prob >= config.threshold else 0
                if self._above * frame_ms >= config.min_speech_ms:
                    self.speaking = True
                    self._below = 0
                    self._verdict = self._words = None
                    self._start_frame = self.frames - self._above
                    self._last_speech_frame = self.frames
                    began = (self.frames - self._above) * frame_ms
                    events.append(VadEvent("started", max(0, int(began))))
                continue
            if prob >= config.threshold or (prob >= low and not self._below):
                self._below = 0
                self._verdict = self._words = None  # speech again: a new pause, a new verdict
                self._last_speech_frame = self.frames
            else:
                self._below += 1
            if (config.semantic and self._verdict is None
                    and self._below * frame_ms >= config.ask_ms):
                self._asking = True
                events.append(VadEvent("paused", int(self.now_ms)))
                continue
            if self._asks_words():
                self._asking = True
                events.append(VadEvent("words", int(self.now_ms)))
                continue
            self._check_stop(events)
        return events

    def _check_stop(self, events: list[VadEvent]) -> None:
        if not self.speaking:
            return
        config = self.config
        frame_ms = FRAME * 1000 / RATE
        wait = config.silence_duration_ms
        if (config.semantic and self._verdict is not None
                and self._verdict >= config.complete_threshold):
            wait = min(wait, config.complete_ms)
        if self._words:
            wait = min(wait, config.words_ms)
        if self._below * frame_ms >= wait:
            self.speaking = False
            self._above = 0
            end = (self.frames - self._below) * frame_ms
            events.append(VadEvent("stopped", int(end)))
