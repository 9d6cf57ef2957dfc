"""Piper's sentence in pieces: the first piece is short, the pieces together are the
samples Piper's own call makes for the whole sentence, every sentence is at the voice's
one level, and a graph that cannot be cut (or whose pieces would differ) is run whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from secretary.catalog import ModelStore
from secretary.config import Settings
from secretary.tts import piper_pieces
from secretary.tts.engine import SynthesisRequest
from secretary.tts.models import PIPER_PACKAGED_VOICE
from secretary.tts.piper import PiperEngine
from secretary.tts.service import create_engine
from tests.conftest import same_speech_every_run

LONG = ("I have put lunch with Anna on Friday at noon, and I will remind you an hour "
        "before it starts.")
QUIET = "The quick brown fox jumps over the lazy dog near the river."
LOUD = "Ask not what your country can do for you."


def _piper_itself(engine: PiperEngine, text: str) -> np.ndarray:
    """Piper's own call on the same files, noise off, not scaled to its peak."""
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    voice = PiperVoice.load(*engine.store.piper_voice(PIPER_PACKAGED_VOICE))
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=False)
    return np.concatenate([c.audio_float_array for c in voice.synthesize(text, config)])


def test_the_first_piece_is_short_and_the_pieces_are_the_whole_sentence(
        piper_engine: PiperEngine) -> None:
    graph = piper_engine.graph()
    assert graph.pieces
    pieces = list(piper_engine.synthesize(SynthesisRequest(LONG, "en")))
    whole = np.concatenate(pieces)
    # 4.6 s of speech; its first piece is a quarter second, so it can be played after
    # a quarter of the decoding.
    assert len(whole) / piper_engine.sample_rate > 4
    assert len(pieces) >= 2
    assert len(pieces[0]) == piper_pieces.SPANS[0] * graph.hop
    expected = graph.level(_piper_itself(piper_engine, LONG))
    assert len(whole) == len(expected)
    error = np.sum((whole - expected) ** 2) / np.sum(expected ** 2)
    # Measured: 130 dB (float rounding); a span decoded without its context is 40-70 dB.
    assert 10 * np.log10(1 / max(error, 1e-30)) > 90


def test_every_sentence_at_the_voices_one_level(piper_engine: PiperEngine) -> None:
    """Not scaled to each sentence's own peak (Piper's default): the sentences keep the
    loudness the voice gives them, raised alike, and none goes past full scale."""
    graph = piper_engine.graph()
    assert graph.gain > 1
    ours = {t: np.concatenate(list(piper_engine.synthesize(SynthesisRequest(t, "en"))))
            for t in (QUIET, LOUD)}
    raw = {t: _piper_itself(piper_engine, t) for t in (QUIET, LOUD)}

    def rms(x: np.ndarray) -> float:
        return float(np.sqrt(np.mean(x ** 2)))

    assert rms(ours[QUIET]) / rms(ours[LOUD]) == pytest.approx(
        rms(raw[QUIET]) / rms(raw[LOUD]), rel=0.01)
    assert np.abs(ours[QUIET]).max() == pytest.approx(np.abs(raw[QUIET]).max() * graph.gain,
                                                      rel=0.01)
    assert max(np.abs(x).max() for x in ours.values()) <= 1.0


def _engine(path: Path, settings: Settings) -> PiperEngine:
    engine = PiperEngine([str(path)], ModelStore(settings.models_dir), noise_w=0.0,
                         noise_scale=0.0)
    engine.load()
    return engine


def test_a_graph_without_a_decoder_to_cut_is_run_whole(piper_engine: PiperEngine,
                                                       tts_settings: Settings,
                                                       tmp_path: Path) -> None:
    """A voice whose decoder is not where VITS puts it: the same samples, whole."""
    model_path, config_path = piper_engine.store.piper_voice(PIPER_PACKAGED_VOICE)
    model = onnx.load(str(model_path))
    for weight in model.graph.initializer:
        if weight.name == "dec.conv_pre.weight":
            weight.name = "renamed.weight"
    for node in model.graph.node:
        node.input[:] = ["renamed.weight" if n == "dec.conv_pre.weight" else n
                         for n in node.input]
    copy = tmp_path / "en_US-renamed-medium.onnx"
    onnx.save(model, str(copy))
    copy.with_name(copy.name + ".json").write_bytes(config_path.read_bytes())
    engine = _engine(copy, tts_settings)
    assert not engine.graph().pieces
    request = SynthesisRequest(LONG, "en")
    pieces = list(engine.synthesize(request))
    assert len(pieces) == 1
    assert np.allclose(pieces[0], np.concatenate(list(piper_engine.synthesize(request))),
                       atol=1e-4)


def test_the_setting_runs_the_graph_whole(piper_engine: PiperEngine,
                                          tts_settings: Settings) -> None:
    """``SECRETARY_TTS_PIPER_PIECES=false``: one piece per sentence, the same samples."""
    settings = same_speech_every_run(tts_settings.model_copy(deep=True))
    settings.tts.piper_pieces = False
    engine = create_engine("piper", settings, ModelStore(settings.models_dir), [])
    engine.load()
    assert isinstance(engine, PiperEngine) and not engine.graph().pieces
    request = SynthesisRequest(LONG, "en")
    ours = list(engine.synthesize(request))
    assert len(ours) == 1
    assert np.allclose(ours[0], np.concatenate(list(piper_engine.synthesize(request))),
                       atol=1e-4)


def test_pieces_that_would_differ_from_the_whole_are_not_used(
        tts_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans decoded without context click at their edges: the check at load hears it."""
    monkeypatch.setattr(piper_pieces, "CONTEXT", 0)
    engine = PiperEngine([PIPER_PACKAGED_VOICE], ModelStore(tts_settings.models_dir))
    assert not engine.graph().pieces
    assert len(list(engine.synthesize(SynthesisRequest(LONG, "en")))) == 1
