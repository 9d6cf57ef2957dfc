"""faster-whisper as a speech-to-text engine.

The model is resolved through the model store (embedded ``base`` offline, any other size
or hub id where there is internet), loaded once, and shared by all requests: CTranslate2
runs ``num_workers`` transcriptions in parallel on one loaded model.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from secretary.config import SttSettings
from secretary.errors import InvalidRequestError, ModelUnavailableError
from secretary.stt.engine import Segment, TranscriptionInfo, TranscriptionOptions, Word
from secretary.stt.models import WhisperModels

log = logging.getLogger(__name__)

# The temperature fallback schedule Whisper uses when a decode looks like a failure.
_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def ctranslate2_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "default":
        return compute_type
    return "float16" if device == "cuda" else "int8"


class WhisperEngine:
    name = "faster-whisper"

    def __init__(self, settings: SttSettings, store: WhisperModels) -> None:
        self.settings = settings
        self.store = store
        self.device = ctranslate2_device(settings.device)
        self.compute_type = resolve_compute_type(settings.compute_type, self.device)
        self._model: Any = None
        self._batched: Any = None
        self._lock = threading.Lock()
        self._languages: frozenset[str] = frozenset()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from faster_whisper import BatchedInferencePipeline, WhisperModel

            path = self.store.whisper_path(self.settings.model)
            log.info("loading Whisper %s from %s on %s/%s", self.settings.model, path,
                     self.device, self.compute_type)
            try:
                model = WhisperModel(
                    str(path),
                    device=self.device,
                    compute_type=self.compute_type,
                    cpu_threads=self.settings.cpu_threads,
                    num_workers=self.settings.num_workers,
                )
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelUnavailableError(
                    f"could not load Whisper model {self.settings.model!r} from {path} on "
                    f"{self.device}/{self.compute_type}: {exc}"
                ) from exc
            self._languages = frozenset(model.supported_languages)
            if self.settings.batch_size > 0:
                self._batched = BatchedInferencePipeline(model)
            self._model = model

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.settings.model,
            "device": self.device,
            "compute_type": self.compute_type,
            "loaded": self.loaded,
        }

    def languages(self) -> frozenset[str]:
        self.load()
        return self._languages

    def check(self, options: TranscriptionOptions) -> TranscriptionOptions:
        if options.task == "translate" and options.target_language not in (None, "en"):
            raise InvalidRequestError(
                f"Whisper translates into English only, not {options.target_language!r}; "
                "leave target_language out or set it to 'en'",
                param="target_language",
            )
        return options

    def transcribe(
        self, audio: np.ndarray, options: TranscriptionOptions
    ) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        self.load()
        vad = self.settings.vad_filter if options.vad_filter is None else options.vad_filter
        temperature: float | tuple[float, ...] = (
            _FALLBACK_TEMPERATURES if options.temperature is None else options.temperature
        )
        kwargs: dict[str, Any] = {
            "language": options.language,
            "task": options.task,
            "beam_size": options.beam_size or self.settings.beam_size,
            "word_timestamps": options.word_timestamps,
            "initial_prompt": options.initial_prompt or None,
            "temperature": temperature,
            "vad_filter": vad,
        }
        if self._batched is not None and vad:
            # Batched decoding of VAD chunks: much faster on long files, same text quality.
            segments, info = self._batched.transcribe(
                audio, batch_size=self.settings.batch_size, **kwargs
            )
        else:
            segments, info = self._model.transcribe(audio, **kwargs)
        result_info = TranscriptionInfo(
            language=info.language,
            language_probability=float(info.language_probability),
            duration=float(info.duration),
            duration_after_vad=float(info.duration_after_vad),
        )
        return result_info, (_convert(s) for s in segments)


def _convert(segment: Any) -> Segment:
    words = None
    if segment.words is not None:
        words = [Word(float(w.start), float(w.end), w.word, float(w.probability))
                 for w in segment.words]
    return Segment(
        id=int(segment.id),
        start=float(segment.start),
        end=float(segment.end),
        text=segment.text,
        words=words,
        seek=int(segment.seek),
        tokens=list(segment.tokens),
        temperature=float(segment.temperature or 0.0),
        avg_logprob=float(segment.avg_logprob),
        compression_ratio=float(segment.compression_ratio),
        no_speech_prob=float(segment.no_speech_prob),
    )
