"""A Piper voice's sentence as pieces of audio, so its first sound comes early.

A Piper voice is VITS: a text encoder, a duration predictor and a normalising flow make
the sentence's frames, then the HiFi-GAN decoder makes the samples (two thirds of the
time, and it grows with the sentence). The decoder is convolutions over time, so a span
of frames decoded with a few frames of context either side gives the same samples as the
whole sentence decoded at once. The voice's one ONNX graph is cut before the decoder: the
head runs once per sentence, the decoder once per span, and the first span is short. A
graph that cannot be cut, or whose pieces do not match its whole, is run whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Frames per span (about 11.6 ms each at 22.05 kHz): a short first span for an early
# first sound, then long ones, as each span's context costs time. The decoder is 30 times
# faster than speech here, so the next span is ready long before the one before ends.
SPANS = (20, 150, 1000)
# Frames of context either side of a span: 12 gave the whole graph's samples to float
# rounding (130 dB against them), 8 did not (68 dB).
CONTEXT = 12
# Pieces that differ from the whole by more than this (signal to error) are not used.
MIN_MATCH_DB = 60.0
# Said once at load: the level check and the pieces' check.
CHECK_TEXT = ("Hello, how can I help you today? Ask not what your country can do for you. "
              "The quick brown fox jumps over the lazy dog near the river.")
PEAK = 0.9  # the loudest of the check's sentences is made this loud
MAX_GAIN = 4.0


@dataclass
class VoiceGraph:
    """How one voice is run: whole (one session), or cut into a head and a tail."""

    whole: Any = None  # onnxruntime.InferenceSession, where the graph is not cut
    head: Any = None
    tail: Any = None
    tail_inputs: tuple[str, ...] = ()
    hop: int = 256  # samples per frame
    gain: float = 1.0

    @property
    def pieces(self) -> bool:
        return self.tail is not None

    def speak(self, feeds: dict[str, np.ndarray]) -> Iterator[np.ndarray]:
        """The sentence's samples, unscaled: in spans where the graph is cut."""
        if self.tail is None:
            yield self.whole.run(None, feeds)[0].reshape(-1)
            return
        frames = self.head.run(None, feeds)[0]
        extra = {name: feeds[name] for name in self.tail_inputs[1:]}
        total, start, index = frames.shape[2], 0, 0
        while start < total:
            end = min(total, start + SPANS[min(index, len(SPANS) - 1)])
            lo, hi = max(0, start - CONTEXT), min(total, end + CONTEXT)
            out = self.tail.run(None, {
                self.tail_inputs[0]: np.ascontiguousarray(frames[:, :, lo:hi]), **extra,
            })[0].reshape(-1)
            yield out[(start - lo) * self.hop:(end - lo) * self.hop]
            start, index = end, index + 1

    def level(self, samples: np.ndarray) -> np.ndarray:
        """The voice's fixed gain, with a soft knee instead of clipping above 0.9."""
        out = samples * np.float32(self.gain)
        over = np.abs(out) > PEAK
        if over.any():
            loud = np.abs(out[over]) - PEAK
            out[over] = np.sign(out[over]) * (PEAK + (1 - PEAK) * np.tanh(loud / (1 - PEAK)))
        return out.astype(np.float32, copy=False)


def load(model_path: Path, whole: Any,
         feeds_for: Callable[[str], list[dict[str, np.ndarray]]], *,
         cut: bool = True) -> VoiceGraph:
    """The voice's graph (``whole``, its session), cut where it can be unless ``cut`` is
    false. ``feeds_for`` gives the graph's inputs for each sentence of a text, noise off."""
    import onnxruntime

    graph = VoiceGraph(whole)
    checks = feeds_for(CHECK_TEXT)
    said = [next(graph.speak(f)) for f in checks]  # whole: the level, and the pieces' check
    peak = max(float(np.abs(samples).max()) for samples in said)
    graph.gain = float(np.clip(PEAK / max(peak, 1e-3), 1.0, MAX_GAIN))
    if not cut:
        return graph
    try:
        head, tail, tail_inputs = _cut(model_path, list(checks[0]))
        providers = whole.get_providers()
        # The head runs once, then the tail: a head whose threads spun on after it
        # would hold the cores the tail needs (measured: 40% more time on 2 cores).
        quiet = onnxruntime.SessionOptions()
        quiet.add_session_config_entry("session.intra_op.allow_spinning", "0")
        pieces = VoiceGraph(None,
                            onnxruntime.InferenceSession(head, quiet, providers=providers),
                            onnxruntime.InferenceSession(tail, providers=providers),
                            tail_inputs, gain=graph.gain)
        index = max(range(len(checks)), key=lambda i: len(said[i]))
        longest, expected = checks[index], said[index]
        pieces.hop = max(1, len(expected) // pieces.head.run(None, longest)[0].shape[2])
        match = _match_db(expected, np.concatenate(list(pieces.speak(longest))))
    except Exception as exc:  # noqa: BLE001 - any graph that cannot be cut is run whole
        log.info("Piper voice %s is run whole: %s", model_path.name, exc)
        return graph
    if match < MIN_MATCH_DB:
        log.info("Piper voice %s is run whole: its pieces match at %.0f dB",
                 model_path.name, match)
        return graph
    log.info("Piper voice %s speaks in pieces (gain %.2f)", model_path.name, graph.gain)
    return pieces


def _match_db(expected: np.ndarray, got: np.ndarray) -> float:
    if len(got) != len(expected):
        return float("-inf")
    error = float(np.sum((expected - got) ** 2))
    return 10 * np.log10(float(np.sum(expected ** 2)) / max(error, 1e-20))


def _cut(model_path: Path, inputs: list[str]) -> tuple[bytes, bytes, tuple[str, ...]]:
    """The head (inputs -> the decoder's input frames) and the tail (those frames, with
    the speaker where there is one -> audio). The decoder is found by its first layer's
    weights, named as VITS names them."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(model_path))
    decoder = next((n for n in model.graph.node if "dec.conv_pre.weight" in n.input), None)
    if decoder is None:
        raise ValueError("no HiFi-GAN decoder found")
    frames = decoder.input[0]
    extractor = Extractor(model)
    head = extractor.extract_model(inputs, [frames])
    tail_inputs = (frames, *(name for name in inputs if name == "sid"))
    tail = extractor.extract_model(list(tail_inputs), [model.graph.output[0].name])
    return head.SerializeToString(), tail.SerializeToString(), tail_inputs
