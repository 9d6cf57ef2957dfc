"""XTTS v2 (coqui-tts) as a text-to-speech engine: 17 languages, voice cloning, streaming.

The checkpoint is the published ``coqui/XTTS-v2`` (or a local copy of it), resolved by the
model store and loaded the way coqui-tts documents: ``Xtts(config)`` (what the deprecated
``Xtts.init_from_config`` does) and ``load_checkpoint(config, checkpoint_dir=...)``. torch
and coqui-tts are imported in ``load()`` only, so the service starts without the ``xtts``
extra until XTTS is routed to.

Decisions:
- Sampling uses the official defaults (temperature 0.75, repetition penalty 10, top-k 50,
  top-p 0.85) from settings, not the checkpoint's ``config.json``, so every checkpoint
  speaks with the same settings; a request may override them through ``options``.
- Generation is capped per call (``model.gpt.max_gen_mel_tokens``, 240 tokens or about 11 s):
  a model that never emits its stop token cannot run on.
- Conditioning latents are computed from the decoded reference clip with the two model
  methods that coqui's ``get_conditioning_latents`` calls, with the checkpoint's own
  lengths. That function reads files through torchaudio/torchcodec (system FFmpeg); the
  service has already decoded the clip. Latents are cached per clip (LRU, by content hash).
- The service splits text into sentences; a sentence longer than XTTS's per-language
  character limit is split further here with the same splitter, since XTTS truncates
  past it, and so is one whose tokens would pass the GPT's text-token limit.
- coqui-tts spells numbers with num2words, which has no Hindi and no Czech ordinals (and
  coqui reads every Czech number before a full stop as an ordinal), so such text would
  fail inside the model: Hindi gets Devanagari digits, which pass through, and a Czech
  number ending a sentence is read as a cardinal.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from secretary import audio
from secretary.config import TtsSettings
from secretary.errors import InvalidRequestError, ModelUnavailableError
from secretary.tts.engine import SpeakerReference, SynthesisRequest, Voice
from secretary.tts.models import XttsCheckpoints
from secretary.tts.text import split_sentences

log = logging.getLogger(__name__)

LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn",
             "hu", "ko", "ja", "hi")
_LANGUAGE_ALIASES = {"zh": "zh-cn"}
SAMPLE_RATE = 24000
# XTTS computes speaker latents from 22.05 kHz audio.
CONDITIONING_SAMPLE_RATE = 22050
# coqui-tts skips reference chunks shorter than this, and fails when none is left.
MIN_REFERENCE_SECONDS = 0.33
INSTALL_HINT = "pip install 'secretary[xtts]'"

_DEVANAGARI_DIGITS = str.maketrans("0123456789", "०१२३४५६७८९")
_CZECH_NUMBER_BEFORE_STOP = re.compile(r"(\d)\.(?=\s|$)")

# Options a request may override, with the range each accepts.
_OPTION_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (1e-3, 10.0),
    "repetition_penalty": (1e-3, 100.0),
    "top_k": (0, 10_000),
    "top_p": (1e-3, 1.0),
}


def xtts_language(language: str) -> str:
    """The XTTS language code for ``language`` (``zh`` -> ``zh-cn``), or a 400 naming all."""
    code = language.strip().lower()
    code = _LANGUAGE_ALIASES.get(code, code)
    if code not in LANGUAGES:
        raise InvalidRequestError(
            f"XTTS does not speak language {language!r}; it speaks {', '.join(LANGUAGES)}",
            param="language",
        )
    return code


def torch_device(device: str) -> str:
    import torch

    if device != "auto":
        if device == "cuda" and not torch.cuda.is_available():
            raise ModelUnavailableError(
                "SECRETARY_TTS_XTTS_DEVICE is 'cuda' but torch sees no CUDA device"
            )
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class XttsEngine:
    name = "xtts"

    def __init__(self, settings: TtsSettings, store: XttsCheckpoints) -> None:
        self.settings = settings
        self.store = store
        self.device = settings.xtts_device
        self.checkpoint_dir: Path | None = None
        self._model: Any = None
        self._speakers: dict[str, str] = {}  # lower-case name -> name as in the checkpoint
        self._load_lock = threading.Lock()
        self._latents: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._latents_lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    @property
    def sample_rate(self) -> int:
        if self._model is not None:
            return int(self._model.args.output_sample_rate)
        return SAMPLE_RATE

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        """The loaded coqui-tts ``Xtts`` model (loading it first if needed)."""
        self.load()
        return self._model

    def load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            try:
                import torch
                from TTS.tts.configs.xtts_config import XttsConfig
                from TTS.tts.models.xtts import Xtts
            except ImportError as exc:
                raise ModelUnavailableError(
                    f"the XTTS engine needs coqui-tts and torch, which are not installed "
                    f"({exc}); install them with {INSTALL_HINT}"
                ) from exc

            folder = self.store.xtts_checkpoint(self.settings.xtts_model)
            device = torch_device(self.settings.xtts_device)
            log.info("loading XTTS from %s on %s", folder, device)
            try:
                config = XttsConfig()
                config.load_json(str(folder / "config.json"))
                model = Xtts(config)
                model.load_checkpoint(config, checkpoint_dir=str(folder), eval=True)
            except (RuntimeError, OSError, KeyError, ValueError) as exc:
                # Unreadable files and shape mismatches; the message names the cause.
                raise ModelUnavailableError(
                    f"could not load the XTTS checkpoint in {str(folder)!r}: {exc}"
                ) from exc
            model.to(torch.device(device))
            # Never more than the model's positional capacity allows.
            model.gpt.max_gen_mel_tokens = min(
                self.settings.xtts_max_mel_tokens, model.gpt.max_gen_mel_tokens
            )
            speakers = model.speaker_manager.speakers if model.speaker_manager else {}
            self._speakers = {name.lower(): name for name in speakers}
            if speakers and self.settings.xtts_speaker.lower() not in self._speakers:
                some = ", ".join(list(speakers)[:5])
                raise ModelUnavailableError(
                    f"the default XTTS speaker {self.settings.xtts_speaker!r} "
                    f"(SECRETARY_TTS_XTTS_SPEAKER) is not in the checkpoint; it has {some}, ..."
                )
            self.device = device
            self.checkpoint_dir = folder
            self._model = model

    # ------------------------------------------------------------------ voices
    def voices(self) -> list[Voice]:
        names = list(self._speakers.values()) if self.loaded else [self.settings.xtts_speaker]
        return [
            Voice(id=name, engine=self.name, languages=LANGUAGES, clones=True,
                  description="XTTS v2 built-in speaker; clones a voice from a reference clip")
            for name in names
        ]

    # ------------------------------------------------------------------ synthesis
    def synthesize(self, request: SynthesisRequest) -> Iterator[np.ndarray]:
        """Yield float32 chunks at 24 kHz as XTTS generates them."""
        # Everything a request can get wrong is checked before the first chunk.
        language = xtts_language(request.language)
        sampling = self.sampling_options(request.options)
        if not request.text.strip():
            raise InvalidRequestError("the text to speak is empty", param="text")
        self.load()
        pieces = self.text_pieces(request.text, language)
        gpt_latent, speaker_embedding = self.speaker_latents(request)
        return self._generate(pieces, language, gpt_latent, speaker_embedding, request.speed,
                              sampling)

    def text_pieces(self, text: str, language: str) -> list[str]:
        """``text`` as pieces XTTS takes in one call: within the language's character
        limit and the GPT's text-token limit, numbers in a form coqui-tts can spell."""
        model = self.model
        base = language.split("-")[0]
        if base == "hi":
            text = text.translate(_DEVANAGARI_DIGITS)
        elif base == "cs":
            text = _CZECH_NUMBER_BEFORE_STOP.sub(r"\1 .", text)
        limit = model.tokenizer.char_limits.get(base, 250)
        pending = split_sentences(text, max_chars=limit)
        pieces: list[str] = []
        while pending:
            piece = pending.pop(0)
            try:
                tokens = model.tokenizer.encode(piece.strip().lower(), language)
            except NotImplementedError as exc:  # num2words cannot spell something here
                raise InvalidRequestError(
                    f"XTTS cannot read {piece!r} in {language!r} (coqui-tts's number "
                    "spelling fails on it); write the numbers out as words", param="text",
                ) from exc
            if len(tokens) >= model.args.gpt_max_text_tokens and len(piece) > 1:
                pending[:0] = split_sentences(piece, max_chars=len(piece) // 2)
                continue
            pieces.append(piece)
        return pieces

    def _generate(self, pieces: list[str], language: str, gpt_latent: Any,
                  speaker_embedding: Any, speed: float, sampling: dict[str, Any]
                  ) -> Iterator[np.ndarray]:
        model = self._model
        chunk_size = self.settings.xtts_stream_chunk_size
        for piece in pieces:
            if chunk_size > 0:
                for chunk in model.inference_stream(
                    piece, language, gpt_latent, speaker_embedding,
                    stream_chunk_size=chunk_size, speed=speed, **sampling,
                ):
                    samples = chunk.detach().float().cpu().numpy().reshape(-1)
                    if samples.size:
                        yield samples
            else:
                out = model.inference(piece, language, gpt_latent, speaker_embedding,
                                      speed=speed, **sampling)
                yield np.asarray(out["wav"], dtype=np.float32).reshape(-1)

    def sampling_options(self, options: dict[str, float]) -> dict[str, Any]:
        """The official sampling settings, with a request's valid overrides applied."""
        settings = self.settings
        sampling: dict[str, Any] = {
            "temperature": settings.xtts_temperature,
            "repetition_penalty": settings.xtts_repetition_penalty,
            "top_k": settings.xtts_top_k,
            "top_p": settings.xtts_top_p,
        }
        for key, value in options.items():
            if key not in _OPTION_RANGES:
                raise InvalidRequestError(
                    f"unknown XTTS option {key!r}; options: {', '.join(_OPTION_RANGES)}",
                    param="options",
                )
            low, high = _OPTION_RANGES[key]
            if not isinstance(value, int | float) or not low <= value <= high:
                raise InvalidRequestError(
                    f"XTTS option {key} must be a number from {low:g} to {high:g}, got {value!r}",
                    param="options",
                )
            sampling[key] = int(value) if key == "top_k" else float(value)
        return sampling

    # ------------------------------------------------------------------ speakers
    def speaker_latents(self, request: SynthesisRequest) -> tuple[Any, Any]:
        """GPT conditioning latents and speaker embedding: the reference clip's, else the
        named built-in speaker's, else the default speaker's."""
        if request.reference is not None:
            return self._clone_latents(request.reference)
        name = request.voice or self.settings.xtts_speaker
        key = self._speakers.get(name.lower())
        if key is None:
            known = ", ".join(sorted(self._speakers.values())[:8]) or "none in this checkpoint"
            raise InvalidRequestError(
                f"unknown XTTS speaker {name!r}; built-in speakers include {known}, or send a "
                "reference clip to clone a voice", param="voice",
            )
        speaker = self._model.speaker_manager.speakers[key]
        return speaker["gpt_cond_latent"], speaker["speaker_embedding"]

    def _clone_latents(self, reference: SpeakerReference) -> tuple[Any, Any]:
        with self._latents_lock:
            if reference.key in self._latents:
                self._latents.move_to_end(reference.key)
                return self._latents[reference.key]
        latents = self.compute_latents(reference.samples, reference.sample_rate)
        with self._latents_lock:
            self._latents[reference.key] = latents
            while len(self._latents) > self.settings.xtts_latent_cache_size:
                self._latents.popitem(last=False)
        return latents

    def compute_latents(self, samples: np.ndarray, sample_rate: int) -> tuple[Any, Any]:
        """What coqui's ``get_conditioning_latents`` computes from one clip, from samples."""
        import torch

        model = self.model
        config = model.config
        if len(samples) < MIN_REFERENCE_SECONDS * sample_rate:
            raise InvalidRequestError(
                f"the reference clip lasts {len(samples) / sample_rate:.2f} s; XTTS needs at "
                f"least {MIN_REFERENCE_SECONDS} s", param="reference",
            )
        if sample_rate != CONDITIONING_SAMPLE_RATE:
            samples = audio.resample(samples, sample_rate, CONDITIONING_SAMPLE_RATE)
        samples = np.clip(samples[: CONDITIONING_SAMPLE_RATE * int(config.max_ref_len)], -1, 1)
        clip = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
        clip = clip.to(model.device)
        speaker_embedding = model.get_speaker_embedding(clip, CONDITIONING_SAMPLE_RATE)
        gpt_latent = model.get_gpt_cond_latents(
            clip, CONDITIONING_SAMPLE_RATE, length=config.gpt_cond_len,
            chunk_length=config.gpt_cond_chunk_len,
        )
        return gpt_latent, speaker_embedding

    @property
    def cached_references(self) -> int:
        with self._latents_lock:
            return len(self._latents)
