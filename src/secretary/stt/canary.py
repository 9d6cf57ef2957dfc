"""NVIDIA Canary (NeMo's multitask encoder-decoder) as a speech-to-text engine.

Canary transcribes English, German, French and Spanish and translates between English and
each of the others. It is told the spoken language rather than detecting it, and its
decoder is prompted with the source language, the task, the target language and whether
to punctuate. The model is a ``.nemo`` archive: named on the hub (``nvidia/canary-1b``,
``canary-1b-flash``), found in the hub cache or downloaded, then restored with NeMo's own
``restore_from``, the path ``ASRModel.from_pretrained`` takes once it has the file.

Canary was trained on clips of up to 40 s, so longer audio is decoded in fixed windows;
each window becomes one segment. NeMo's ``transcribe`` switches the model's modes while it
runs, so one request decodes at a time.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from secretary.audio import WHISPER_SAMPLE_RATE as SAMPLE_RATE
from secretary.config import CanarySettings
from secretary.errors import InvalidRequestError, ModelUnavailableError
from secretary.stt.engine import Segment, TranscriptionInfo, TranscriptionOptions
from secretary.stt.models import CanaryModels

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'secretary[canary]'"

# Prompt and timestamp tokens (``<|en|>``, ``<|12|>``) that are not part of the text.
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]*\|>")
# Windows shorter than this are padded: the encoder subsamples 8x and needs a few frames.
_MIN_SAMPLES = SAMPLE_RATE // 4


def translation_supported(source: str, target: str) -> bool:
    """Canary's directions: transcription in each language, translation to and from English."""
    return source == target or "en" in (source, target)


def _language_code(token_language: str) -> str:
    # Newer checkpoints name their tokenizers by locale ("en-US"); requests use ISO 639-1.
    return token_language.split("-")[0].lower()


class CanaryEngine:
    name = "canary"

    def __init__(self, settings: CanarySettings, store: CanaryModels) -> None:
        self.settings = settings
        self.store = store
        self.device = settings.device
        self._model: Any = None
        self._languages: frozenset[str] = frozenset()
        # ISO code -> the model's own language name (identical for canary-1b).
        self._lang_names: dict[str, str] = {}
        self._prompt_slots: frozenset[str] = frozenset()
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self.error: str | None = None  # why the last load failed, for /health

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    def load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            try:
                self._load()
            except ModelUnavailableError as exc:
                self.error = exc.message
                raise
            self.error = None

    def _load(self) -> None:
        try:
            import torch
            from nemo.collections.asr.models import ASRModel
        except ImportError as exc:
            raise ModelUnavailableError(
                f"the Canary engine needs NVIDIA NeMo, which is not installed ({exc}): "
                f"{INSTALL_HINT}"
            ) from exc
        # After a failed start, look in the cache only: a request must not wait on the hub.
        path = self.store.canary_file(self.settings.model, download=self.error is None)
        device = self.settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("loading Canary %s from %s on %s", self.settings.model, path, device)
        try:
            model = ASRModel.restore_from(str(path), map_location=torch.device(device))
        except Exception as exc:  # NeMo raises many kinds; all mean the same to a caller
            raise ModelUnavailableError(
                f"could not load the Canary model {self.settings.model!r} from {path}: {exc}"
            ) from exc
        slots = frozenset(model.prompt.get_slots("user"))
        if not {"source_lang", "target_lang"} <= slots:
            raise ModelUnavailableError(
                f"{path} is a {type(model).__name__} with prompt format "
                f"{model.prompt_format!r}, not a Canary model (no source and target language)"
            )
        if model.cfg.decoding.get("beam", {}).get("beam_size") != self.settings.beam_size:
            decoding = model.cfg.decoding.copy()
            decoding.beam.beam_size = self.settings.beam_size
            model.change_decoding_strategy(decoding)
        model.eval()
        # Canary's aggregate tokenizer: one part per language beside the prompt tokens.
        names = [lang for lang in getattr(model.tokenizer, "langs", ()) if lang != "spl_tokens"]
        if not names:
            raise ModelUnavailableError(
                f"{path} has no per-language tokenizers, so it is not a Canary checkpoint "
                "this engine knows (canary-1b, canary-1b-flash, canary-180m-flash)")
        self._lang_names = {_language_code(lang): lang for lang in names}
        self._languages = frozenset(self._lang_names)
        self._prompt_slots = slots
        self.device = device
        self._model = model

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "engine": self.name,
            "model": self.settings.model,
            "device": self.device,
            "loaded": self.loaded,
        }
        if self.loaded:
            info["languages"] = sorted(self._languages)
        if self.error:
            info["error"] = self.error
        return info

    def languages(self) -> frozenset[str]:
        self.load()
        return self._languages

    def directions(self) -> list[str]:
        """Every translation this model does, as ``source->target``."""
        langs = sorted(self.languages())
        return [f"{s}->{t}" for s in langs for t in langs if s != t and translation_supported(s, t)]

    def check(self, options: TranscriptionOptions) -> TranscriptionOptions:
        languages = self.languages()
        source = options.language or self.settings.default_language
        if source not in languages:
            raise InvalidRequestError(
                f"Canary does not speak {source!r}; it transcribes {', '.join(sorted(languages))}",
                param="language",
            )
        target = source
        if options.task == "translate":
            target = options.target_language or "en"
            if target not in languages or not translation_supported(source, target):
                raise InvalidRequestError(
                    f"Canary cannot translate {source} speech into {target!r}; it translates "
                    f"{', '.join(self.directions())}",
                    param="target_language",
                )
        if options.word_timestamps:
            raise InvalidRequestError(
                "Canary gives no word timestamps, only one segment per window of "
                f"{self.settings.chunk_seconds:g} s; ask for segment timestamps",
                param="timestamp_granularities[]",
            )
        task = "transcribe" if target == source else "translate"
        return TranscriptionOptions(
            language=source, task=task, target_language=target,
            initial_prompt=options.initial_prompt, vad_filter=options.vad_filter,
        )

    def transcribe(
        self, audio: np.ndarray, options: TranscriptionOptions
    ) -> tuple[TranscriptionInfo, Iterator[Segment]]:
        options = self.check(options)
        duration = len(audio) / SAMPLE_RATE
        info = TranscriptionInfo(
            language=options.language or self.settings.default_language,
            # Given by the caller or the configuration, not detected.
            language_probability=1.0,
            duration=duration,
            duration_after_vad=duration,
        )
        return info, self._segments(audio, options)

    def prompt(self, options: TranscriptionOptions) -> dict[str, str]:
        """The decoder prompt's slot values for checked ``options``."""
        source = self._lang_names[options.language or self.settings.default_language]
        target = self._lang_names[options.target_language or options.language or "en"]
        slots = {"source_lang": source, "target_lang": target,
                 "pnc": "yes" if self.settings.pnc else "no"}
        if "task" in self._prompt_slots:  # canary-1b's format; newer ones infer it
            slots["task"] = "asr" if source == target else "ast"
        return slots

    def _segments(self, audio: np.ndarray, options: TranscriptionOptions) -> Iterator[Segment]:
        window = int(self.settings.chunk_seconds * SAMPLE_RATE)
        slots = self.prompt(options)
        for index, start in enumerate(range(0, max(len(audio), 1), window)):
            piece = np.asarray(audio[start:start + window], dtype=np.float32)
            if len(piece) < _MIN_SAMPLES:
                piece = np.pad(piece, (0, _MIN_SAMPLES - len(piece)))
            text = self._decode(piece, slots)
            yield Segment(
                id=index,
                start=start / SAMPLE_RATE,
                end=min(start + window, len(audio)) / SAMPLE_RATE,
                text=(" " + text) if text else "",
            )

    def _decode(self, samples: np.ndarray, slots: dict[str, str]) -> str:
        from nemo.collections.asr.models.aed_multitask_models import (
            MultiTaskTranscriptionConfig,
        )

        config = MultiTaskTranscriptionConfig(
            batch_size=1, verbose=False, prompt=dict(slots), enable_chunking=False,
            num_workers=0,  # no forked DataLoader worker: a fork of a threaded server can hang
        )
        with self._run_lock:
            hypotheses = self._model.transcribe([samples], override_config=config)
        result = hypotheses[0]
        text = result if isinstance(result, str) else result.text
        return " ".join(_SPECIAL_TOKEN.sub(" ", text).split())
