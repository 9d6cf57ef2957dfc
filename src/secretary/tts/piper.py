"""Piper as a text-to-speech engine: fast neural voices on a CPU.

Voices are resolved through the model store: the packaged ``en_US-joe-medium`` offline,
any voice by the path of its ``.onnx`` file, others by name from the hub where online.
Speed is Piper's length scale (a phoneme lasts ``length_scale`` times its predicted
duration), so speed 2 halves every phoneme instead of resampling the audio.

A sentence comes in pieces, its first after about a quarter second of it is decoded
(``piper_pieces``), and at one level per voice: Piper's own loudness, raised so the
voice's loudest check sentence peaks at 0.9. (Piper itself scales each sentence to its
own peak, which needs the whole sentence first and makes sentences differ in loudness.)
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from secretary import audio
from secretary.errors import (
    InvalidRequestError,
    ModelUnavailableError,
    NotImplementedByEngineError,
)
from secretary.tts import piper_pieces
from secretary.tts.engine import SynthesisRequest, Voice
from secretary.tts.models import PiperVoices
from secretary.tts.piper_pieces import VoiceGraph
from secretary.voice_routes import piper_voice_id

log = logging.getLogger(__name__)


@dataclass
class _LoadedVoice:
    info: Voice
    piper: Any  # piper.PiperVoice
    sample_rate: int
    graph: VoiceGraph


class PiperEngine:
    name = "piper"

    def __init__(
        self,
        voices: Sequence[str],
        store: PiperVoices,
        *,
        noise_w: float | None = None,
        noise_scale: float | None = None,
        use_cuda: bool = False,
        pieces: bool = True,
    ) -> None:
        if not voices:
            raise ValueError("PiperEngine needs at least one voice")
        self._names = list(dict.fromkeys(voices))
        self.store = store
        self.noise_w = noise_w
        # Piper's audio noise; 0 (with noise_w 0) makes the same text give the same samples.
        self.noise_scale = noise_scale
        self.use_cuda = use_cuda
        self.pieces = pieces  # a sentence in pieces where the voice's graph can be cut
        self._voices: dict[str, _LoadedVoice] = {}
        self.failures: list[str] = []  # voices that could not be loaded, with the reason
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        """The first voice's rate; other voices are resampled to it."""
        self.load()
        return next(iter(self._voices.values())).sample_rate

    @property
    def loaded(self) -> bool:
        return bool(self._voices)

    def load(self) -> None:
        with self._lock:
            if self._voices:
                return
            from piper import PiperVoice

            loaded: dict[str, _LoadedVoice] = {}
            failures: list[str] = []
            for name in self._names:
                try:
                    model_path, config_path = self.store.piper_voice(name)
                    config = json.loads(config_path.read_text(encoding="utf-8"))
                    voice = PiperVoice.load(model_path, config_path, use_cuda=self.use_cuda)
                    graph = piper_pieces.load(
                        model_path, voice.session,
                        lambda text, v=voice: list(_feeds(v, text, _scales(0.0, 1.0, 0.0))),
                        cut=self.pieces)
                    voice.session = None  # the graph holds what runs; Piper phonemizes
                except (ModelUnavailableError, OSError, ValueError, KeyError,
                        RuntimeError) as exc:
                    # One voice that cannot load must not silence the others.
                    message = getattr(exc, "message", None) or str(exc)
                    failures.append(f"{name}: {message}")
                    log.error("Piper voice %s is unavailable: %s", name, message)
                    continue
                info = Voice(
                    id=piper_voice_id(name),
                    engine=self.name,
                    languages=_languages(config),
                    description=_describe(config),
                )
                loaded[info.id] = _LoadedVoice(info, voice, voice.config.sample_rate, graph)
                log.info("Piper voice %s loaded from %s", info.id, model_path)
            if not loaded:
                raise ModelUnavailableError("no Piper voice could be loaded: "
                                            + "; ".join(failures))
            self.failures = failures
            self._voices = loaded

    def graph(self, voice: str | None = None) -> VoiceGraph:
        """How a voice (the first, by default) is run: in pieces or whole."""
        self.load()
        return (self._voices[voice] if voice else next(iter(self._voices.values()))).graph

    def voices(self) -> list[Voice]:
        self.load()
        return [v.info for v in self._voices.values()]

    def _voice_for(self, request: SynthesisRequest) -> _LoadedVoice:
        if request.voice:
            found = self._voices.get(request.voice)
            if found is None:
                raise InvalidRequestError(f"Piper has no voice {request.voice!r}",
                                          param="voice")
            return found
        primary = request.language.lower().split("-")[0]
        for candidate in self._voices.values():
            if primary in candidate.info.languages:
                return candidate
        raise InvalidRequestError(f"no Piper voice speaks {request.language!r}",
                                  param="language")

    def synthesize(self, request: SynthesisRequest) -> Iterator[np.ndarray]:
        self.load()
        if request.reference is not None:
            raise NotImplementedByEngineError("Piper cannot clone voices")
        voice = self._voice_for(request)
        config = voice.piper.config
        scales = _scales(config.noise_scale if self.noise_scale is None else self.noise_scale,
                         config.length_scale / request.speed,
                         config.noise_w_scale if self.noise_w is None else self.noise_w)
        resampler = audio.Resampler(voice.sample_rate, self.sample_rate)
        produced = False
        for feeds in _feeds(voice.piper, request.text, scales):
            for samples in voice.graph.speak(feeds):
                out = resampler.push(voice.graph.level(samples))
                if len(out):
                    produced = True
                    yield out
        tail = resampler.flush()
        if len(tail) or not produced:
            yield tail


def _scales(noise: float, length: float, noise_w: float) -> np.ndarray:
    return np.array([noise, length, noise_w], np.float32)


def _feeds(piper: Any, text: str, scales: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
    """The voice graph's inputs for each sentence of ``text`` (Piper splits it)."""
    speaker = None
    if piper.config.num_speakers > 1:
        speaker = np.array([piper.config.default_speaker_id], np.int64)
    for phonemes in piper.phonemize(text):
        if not phonemes:
            continue
        ids = piper.phonemes_to_ids(phonemes)
        feeds = {"input": np.array([ids], np.int64),
                 "input_lengths": np.array([len(ids)], np.int64), "scales": scales}
        if speaker is not None:
            feeds["sid"] = speaker
        yield feeds


def _languages(config: dict[str, Any]) -> tuple[str, ...]:
    language = config.get("language") or {}
    family = language.get("family") or config.get("espeak", {}).get("voice", "")
    code = (language.get("code") or "").replace("_", "-").lower()
    return tuple(dict.fromkeys(c for c in (family.split("-")[0].lower(), code) if c))


def _describe(config: dict[str, Any]) -> str:
    language = config.get("language") or {}
    quality = config.get("audio", {}).get("quality", "")
    parts = ["Piper", config.get("dataset", ""), language.get("name_english", ""),
             f"({language.get('country_english', '')})" if language.get("country_english")
             else "", quality]
    return " ".join(p for p in parts if p)
