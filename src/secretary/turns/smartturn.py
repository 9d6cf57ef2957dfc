"""Smart Turn v3: whether a pause ends the speaker's turn, from the sound of the words.

A Whisper-tiny encoder with a classifier head, as ONNX. It hears the last 8 seconds of the
utterance (16 kHz, zeros in front of a shorter one) as Whisper's 80-bin log-mel features of
the waveform scaled to zero mean and unit variance, and answers the probability that the
speaker is done. faster-whisper's feature extractor computes Whisper's features in numpy,
so neither PyTorch nor transformers is needed here.
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from secretary.audio import WHISPER_SAMPLE_RATE

RATE = WHISPER_SAMPLE_RATE  # its encoder is Whisper's
WINDOW_SECONDS = 8
_WINDOW = WINDOW_SECONDS * RATE
_FRAMES = _WINDOW // 160  # Whisper's hop is 10 ms


class EndOfTurnModel(Protocol):
    """Decides whether the speaker is done from the utterance's audio."""

    def complete(self, samples: np.ndarray) -> float:
        """The probability that the utterance ``samples`` (16 kHz mono float32, up to the
        pause) is a finished turn."""
        ...


def features(samples: np.ndarray) -> np.ndarray:
    """Whisper's log-mel features (80 x 800) of the last 8 s of ``samples``."""
    window = np.asarray(samples, np.float32)[-_WINDOW:]
    window = np.pad(window, (_WINDOW - len(window), 0))
    window = (window - window.mean()) / np.sqrt(window.var() + 1e-7)
    return _extractor()(window, padding=0)[:, :_FRAMES].astype(np.float32)


@cache
def _extractor() -> Any:
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor(feature_size=80, chunk_length=WINDOW_SECONDS)


class SmartTurn:
    """The ONNX model on the CPU, one thread per decision (it runs while the user is
    silent, beside the early transcript)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.threads = threads
        self._session: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        import onnxruntime

        with self._lock:
            if self._session is not None:
                return
            options = onnxruntime.SessionOptions()
            options.inter_op_num_threads = 1
            options.intra_op_num_threads = self.threads
            options.log_severity_level = 4
            self._session = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"], sess_options=options)

    def complete(self, samples: np.ndarray) -> float:
        if self._session is None:
            self.load()
        scores = self._session.run(None, {"input_features": features(samples)[None]})[0]
        return float(np.asarray(scores).reshape(-1)[0])
