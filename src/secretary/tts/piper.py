"""Piper as a text-to-speech engine: fast neural voices on a CPU.

Voices are resolved through the model store: the packaged ``en_US-joe-medium`` offline,
any voice by the path of its ``.onnx`` file, others by name from the hub where online.
Speed is Piper's length scale (a phoneme lasts ``length_scale`` times its predicted
duration), so speed 2 halves every phoneme instead of resampling the audio.
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
from secretary.tts.engine import SynthesisRequest, Voice
from secretary.tts.models import PiperVoices
from secretary.voice_routes import piper_voice_id

log = logging.getLogger(__name__)


@dataclass
class _LoadedVoice:
    info: Voice
    piper: Any  # piper.PiperVoice
    sample_rate: int


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
    ) -> None:
        if not voices:
            raise ValueError("PiperEngine needs at least one voice")
        self._names = list(dict.fromkeys(voices))
        self.store = store
        self.noise_w = noise_w
        # Piper's audio noise; 0 (with noise_w 0) makes the same text give the same samples.
        self.noise_scale = noise_scale
        self.use_cuda = use_cuda
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
                loaded[info.id] = _LoadedVoice(info, voice, voice.config.sample_rate)
                log.info("Piper voice %s loaded from %s", info.id, model_path)
            if not loaded:
                raise ModelUnavailableError("no Piper voice could be loaded: "
                                            + "; ".join(failures))
            self.failures = failures
            self._voices = loaded

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
        from piper.config import SynthesisConfig

        self.load()
        if request.reference is not None:
            raise NotImplementedByEngineError("Piper cannot clone voices")
        voice = self._voice_for(request)
        config = SynthesisConfig(
            length_scale=voice.piper.config.length_scale / request.speed,
            noise_w_scale=self.noise_w,
            noise_scale=self.noise_scale,
        )
        produced = False
        # Piper splits its input into sentences itself and yields one chunk per sentence.
        for chunk in voice.piper.synthesize(request.text, config):
            produced = True
            yield audio.resample(chunk.audio_float_array, voice.sample_rate, self.sample_rate)
        if not produced:
            yield np.zeros(0, np.float32)


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
