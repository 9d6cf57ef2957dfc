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

from secretary.audio import WHISPER_SAMPLE_RATE
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
        if options.max_new_tokens is not None:
            kwargs["max_new_tokens"] = options.max_new_tokens
        if options.window_seconds is not None and options.window_seconds < 30:
            return self._transcribe_window(audio, options, vad, options.window_seconds)
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


    def _transcribe_window(self, audio: np.ndarray, options: TranscriptionOptions, vad: bool,
                           window: int) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        """One utterance encoded in a window of ``window`` seconds instead of 30, decoded in
        one pass without timestamps. faster-whisper always pads to 30 s (its
        ``chunk_length`` only splits the audio), so this calls CTranslate2 directly with the
        model's own feature extractor, tokenizer and prompt. Temperature 0, no fallback: the
        caller guards against loops (``secretary.stt.fastfinal``)."""
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens
        from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

        model = self._model
        duration = len(audio) / WHISPER_SAMPLE_RATE
        speech = audio
        if vad:
            stamps = get_speech_timestamps(audio, VadOptions())
            speech = np.concatenate(collect_chunks(audio, stamps)[0]) if stamps else audio[:0]
        info = TranscriptionInfo(language=options.language or "", language_probability=1.0,
                                 duration=duration,
                                 duration_after_vad=len(speech) / WHISPER_SAMPLE_RATE)
        if len(speech) == 0:
            return info, iter(())
        frames = window * WHISPER_SAMPLE_RATE // 160
        features = model.feature_extractor(speech)[:, :frames]
        encoded = model.encode(pad_or_trim(features, frames))
        language = options.language
        if language is None:
            ranked = model.model.detect_language(encoded)[0]
            language = ranked[0][0][2:-2]
            info = TranscriptionInfo(language, float(ranked[0][1]), duration,
                                     info.duration_after_vad)
        tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                              task=options.task, language=language)
        prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
        max_new = options.max_new_tokens or model.max_length // 2
        result = model.model.generate(
            encoded, [prompt], beam_size=options.beam_size or self.settings.beam_size,
            max_length=min(model.max_length, len(prompt) + max_new), return_scores=True,
            return_no_speech_prob=True, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        avg_logprob = float(result.scores[0]) if result.scores else 0.0
        # Whisper's own silence rule: likely no speech and an unconfident decode.
        if result.no_speech_prob > 0.6 and avg_logprob < -1.0:
            tokens = []
        text = tokenizer.decode(tokens)
        segment = Segment(id=1, start=0.0, end=round(duration, 3), text=text, tokens=tokens,
                          avg_logprob=avg_logprob, no_speech_prob=float(result.no_speech_prob))
        return info, iter([segment] if text.strip() else [])



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
