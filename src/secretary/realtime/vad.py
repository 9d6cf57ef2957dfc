"""Streaming turn detection: Silero VAD (the ONNX model faster-whisper ships), fed 32 ms
at a time with its recurrent state carried over, so each frame costs a fraction of a
millisecond and the decision is never more than one frame behind the microphone.

``TurnDetector`` turns frame probabilities into the Realtime API's two events: speech
started (after ``min_speech_ms`` above the threshold, dated back by the prefix padding) and
speech stopped (after ``silence_duration_ms`` below it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import av
import numpy as np

RATE = 16000  # what Silero and Whisper take
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


@dataclass(frozen=True)
class VadEvent:
    kind: str  # "started" or "stopped"
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
    def now_ms(self) -> int:
        return self.frames * FRAME * 1000 // RATE

    def feed(self, samples: np.ndarray) -> list[VadEvent]:
        config, events = self.config, []
        frame_ms = FRAME * 1000 / RATE
        # Hysteresis as Silero's own segmenter does: silence begins at a frame well under
        # the threshold and lasts until one over it, so a breath or a rustle after the last
        # word (0.35-0.5) neither starts silence nor ends it.
        low = max(config.threshold - 0.15, 0.01)
        for prob in self.stream.feed(samples):
            self.frames += 1
            if not self.speaking:
                self._above = self._above + 1 if prob >= config.threshold else 0
                if self._above * frame_ms >= config.min_speech_ms:
                    self.speaking = True
                    self._below = 0
                    self._start_frame = self.frames - self._above
                    self._last_speech_frame = self.frames
                    began = (self.frames - self._above) * frame_ms
                    events.append(VadEvent("started", max(0, int(began))))
            else:
                if prob >= config.threshold or (prob >= low and not self._below):
                    self._below = 0
                    self._last_speech_frame = self.frames
                else:
                    self._below += 1
                if self._below * frame_ms >= config.silence_duration_ms:
                    self.speaking = False
                    self._above = 0
                    end = (self.frames - self._below) * frame_ms
                    events.append(VadEvent("stopped", int(end)))
        return events


class Resampler:
    """Mono float32 chunks from one rate to another, one FFmpeg resampler for the stream
    (no clicks at chunk edges)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate, self.to_rate = from_rate, to_rate
        self._resampler = (av.AudioResampler(format="flt", layout="mono", rate=to_rate)
                           if from_rate != to_rate else None)

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, np.float32)
        if self._resampler is None or len(samples) == 0:
            return samples
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt",
                                           layout="mono")
        frame.sample_rate = self.from_rate
        frame.pts = None
        return self._convert(frame)

    def flush(self) -> np.ndarray:
        """The samples still inside the resampler (at the end of a stream)."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._convert(None)

    def _convert(self, frame: av.AudioFrame | None) -> np.ndarray:
        assert self._resampler is not None
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
