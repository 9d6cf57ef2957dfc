"""The text-to-speech service layer: engines, routing, sentences, encoding.

Shared by both HTTP APIs (and the benchmark): a request becomes a ``Job`` (the route, the
engine, the sentences), and a job becomes either one encoded file or an iterator of file
pieces whose first piece holds the first sentence. All blocking work (synthesis and
encoding) runs in the work queue's engine pool.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from secretary import audio
from secretary.config import Settings
from secretary.errors import (
    InvalidRequestError,
    ModelUnavailableError,
    SecretaryError,
)
from secretary.tts.engine import SpeakerReference, SynthesisRequest, TtsEngine, Voice
from secretary.tts.models import PIPER_PACKAGED_VOICE, TtsModels
from secretary.tts.routing import OPENAI_VOICES, Route, Router, Target, language_tag
from secretary.tts.text import split_sentences
from secretary.validation import check_text, has_speech
from secretary.web.queue import Ticket, WorkQueue, check_cancelled
from secretary.web.service_base import queue_health

log = logging.getLogger(__name__)

MIN_SPEED, MAX_SPEED = 0.25, 4.0
# The OpenAI speech model names; all of them mean "the engines routed here".
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# XTTS conditions on 22.05 kHz audio; other cloning engines resample from here.
REFERENCE_SAMPLE_RATE = 22050


@dataclass(frozen=True)
class Job:
    route: Route
    engine: TtsEngine
    sentences: list[str]
    speed: float = 1.0
    reference: SpeakerReference | None = None

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate


def create_engine(name: str, settings: Settings, store: TtsModels,
                  piper_voices: list[str]) -> TtsEngine:
    """Build an engine by name; XTTS is imported only here, when it is configured."""
    tts = settings.tts
    if name == "piper":
        from secretary.tts.piper import PiperEngine

        return PiperEngine(piper_voices or [PIPER_PACKAGED_VOICE], store,
                           noise_w=tts.piper_noise_w,
                           noise_scale=tts.piper_noise_scale, pieces=tts.piper_pieces)
    if name == "espeak":
        from secretary.tts.espeak import EspeakEngine

        return EspeakEngine()
    if name == "xtts":
        try:
            module = importlib.import_module("secretary.tts.xtts")
        except ImportError as exc:
            raise ModelUnavailableError(
                f"the XTTS engine needs its optional packages ({exc}); install them with "
                "pip install 'secretary[xtts]'"
            ) from exc
        return module.XttsEngine(tts, store)
    raise ModelUnavailableError(f"unknown text-to-speech engine {name!r}")


class TtsService:
    """Engines (created and loaded on first need), the router, and the work queue."""

    name = "tts"
    title = "Secretary text-to-speech"

    def __init__(self, settings: Settings, engines: dict[str, TtsEngine] | None = None) -> None:
        self.settings = settings
        tts = settings.tts
        self.preload = tts.preload
        self.piper_voices = _piper_voice_names(tts.routes, tts.openai_voices, tts.piper_voices)
        self.router = Router(tts.routes, tts.openai_voices)
        self.store = TtsModels(settings.models_dir)
        self.queue = WorkQueue("tts", tts.max_concurrency, tts.max_queue, retry_after=2)
        self.engine_names = list(dict.fromkeys([*self.router.engines, *(engines or {})]))
        self._engines: dict[str, TtsEngine] = dict(engines or {})
        self._failures: dict[str, SecretaryError] = {}
        self.created = int(time.time())

    # ------------------------------------------------------------------ engines
    def engine(self, name: str) -> TtsEngine:
        """The engine, created on first use; a failed creation is remembered and re-raised."""
        if name in self._failures:
            raise self._failures[name]
        if name not in self._engines:
            try:
                self._engines[name] = create_engine(name, self.settings, self.store,
                                                    self.piper_voices)
            except SecretaryError as exc:
                self._failures[name] = exc
                raise
        return self._engines[name]

    def load_engine(self, name: str) -> None:
        """Create and load (blocking); a failure is kept for /health and for requests."""
        try:
            engine = self.engine(name)
            if not engine.loaded:
                engine.load()
        except SecretaryError as exc:
            self._failures[name] = exc
            log.error("text-to-speech engine %s is unavailable: %s", name, exc.message)
        except Exception as exc:  # one broken engine must not stop the others
            log.exception("text-to-speech engine %s failed to load", name)
            self._failures[name] = ModelUnavailableError(
                f"the {name} engine failed to load: {type(exc).__name__}: {exc}")

    def load_all(self) -> None:
        for name in self.engine_names:
            self.load_engine(name)

    load = load_all  # what the app factory preloads

    def close(self) -> None:
        pass

    def model_ids(self) -> tuple[str, ...]:
        return OPENAI_MODELS

    def available_engines(self) -> dict[str, TtsEngine]:
        """The engines created without error so far."""
        return {name: engine for name, engine in self._engines.items()
                if name not in self._failures}

    @property
    def loaded(self) -> bool:
        return all(name in self._failures or (name in self._engines
                                              and self._engines[name].loaded)
                   for name in self.engine_names)

    async def catalog(self) -> dict[str, list[Voice]]:
        """Every available engine's voices; loads engines that are not loaded yet."""
        found: dict[str, list[Voice]] = {}
        for name in self.engine_names:
            if name in self._failures:
                continue
            if name not in self._engines or not self._engines[name].loaded:
                await self.queue.run(self.load_engine, name)
                if name in self._failures:
                    continue
            found[name] = self._engines[name].voices()
        return found

    def health(self) -> dict[str, object]:
        engines: dict[str, object] = {}
        for name in self.engine_names:
            if name in self._failures:
                engines[name] = {"available": False, "error": self._failures[name].message}
            else:
                engine = self._engines.get(name)
                entry: dict[str, object] = {"available": True,
                                            "loaded": bool(engine and engine.loaded)}
                failed_voices = getattr(engine, "failures", None)
                if failed_voices:
                    entry["failed_voices"] = list(failed_voices)
                engines[name] = entry
        status = "ok" if self.loaded else "loading"
        if self._failures:
            status = "degraded"
        return {
            "status": status,
            "service": "tts",
            "engines": engines,
            "routes": {lang: [str(t) for t in targets]
                       for lang, targets in self.router.routes.items()},
            "queue": queue_health(self.queue),
        }

    # ------------------------------------------------------------------ requests
    def sentences(self, text: str, param: str) -> list[str]:
        limit = self.settings.tts.max_text_chars
        if not text or not text.strip():
            raise InvalidRequestError(f"{param} is empty: give the text to speak", param=param)
        check_text(text, param)
        if len(text) > limit:
            raise InvalidRequestError(
                f"{param} has {len(text)} characters, more than the limit of {limit}",
                param=param,
            )
        if not has_speech(text):
            raise InvalidRequestError(f"{param} holds no words to speak", param=param)
        return split_sentences(text, self.settings.tts.max_sentence_chars)

    @staticmethod
    def check_speed(speed: float) -> float:
        if not MIN_SPEED <= speed <= MAX_SPEED:
            raise InvalidRequestError(
                f"speed must be between {MIN_SPEED} and {MAX_SPEED}, not {speed}",
                param="speed")
        return speed

    @staticmethod
    def check_format(fmt: str, param: str) -> str:
        if fmt not in audio.AUDIO_FORMATS:
            raise InvalidRequestError(
                f"{param} must be one of {', '.join(audio.AUDIO_FORMATS)}, not {fmt!r}",
                param=param)
        return fmt

    def _unavailable_candidate(self, language: str) -> SecretaryError | None:
        """The load error of the engine the table would pick first for ``language``."""
        for target in self.router.candidates(language):
            if target.engine in self._failures:
                return self._failures[target.engine]
            if target.engine in self._engines:
                return None
        return None

    async def route(self, language: str, voice: str | None) -> Route:
        catalog = await self.catalog()
        failure = self._unavailable_candidate(language_tag(language))
        if failure is not None and not voice:
            raise failure
        return self.router.resolve(language, voice, catalog)

    async def language_of_voice(self, voice: str) -> str:
        """A native voice that does not speak the default language speaks its own first one."""
        default = language_tag(self.settings.tts.default_language)
        if voice in OPENAI_VOICES:
            return default
        catalog = await self.catalog()
        for voices in catalog.values():
            for candidate in voices:
                if candidate.id == voice and candidate.languages:
                    codes = [c.split("-")[0] for c in candidate.languages]
                    return default if default.split("-")[0] in codes else candidate.languages[0]
        return default

    async def cloning_route(self, language: str) -> Route:
        return self.router.resolve_cloning(language, await self.catalog())

    async def reference(self, ticket: Ticket, data: bytes, field: str) -> SpeakerReference:
        """The voice to clone, decoded under ``ticket``'s place in the queue."""
        tts = self.settings.tts
        decoded = await ticket.decode(audio.decode_field, data, field, REFERENCE_SAMPLE_RATE,
                                      tts.max_reference_seconds)
        if decoded.duration < tts.min_reference_seconds:
            raise InvalidRequestError(
                f"{field}: the clip lasts {decoded.duration:.2f} s; a voice reference needs "
                f"at least {tts.min_reference_seconds:g} s of speech", param=field)
        if audio.rms_dbfs(decoded.samples) < -60:
            raise InvalidRequestError(f"{field}: the clip is silent", param=field)
        key = hashlib.sha256(decoded.samples.tobytes()).hexdigest()
        return SpeakerReference(decoded.samples, decoded.sample_rate, key)

    def job(self, route: Route, sentences: list[str], speed: float,
            reference: SpeakerReference | None = None) -> Job:
        return Job(route, self.engine(route.engine), sentences, speed, reference)

    # ------------------------------------------------------------------ synthesis (blocking)
    def audio_chunks(self, job: Job) -> Iterator[np.ndarray]:
        """The job's audio, sentence by sentence, with a short pause between sentences."""
        pause_seconds = self.settings.tts.sentence_pause_ms / 1000 / job.speed
        pause = np.zeros(int(job.sample_rate * pause_seconds), np.float32)
        for index, sentence in enumerate(job.sentences):
            check_cancelled()  # a client that left stops the work between sentences
            request = SynthesisRequest(
                text=sentence, language=job.route.language, voice=job.route.voice,
                speed=job.speed, reference=job.reference,
            )
            for position, chunk in enumerate(job.engine.synthesize(request)):
                if index > 0 and position == 0 and len(pause):
                    chunk = np.concatenate([pause, chunk])
                yield chunk

    def render(self, job: Job, fmt: str, rate: int | None = None) -> bytes:
        """The whole file at once (WAV gets exact sizes in its header)."""
        chunks = list(self.audio_chunks(job))
        samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        if rate is not None and rate != job.sample_rate:
            samples = audio.resample(samples, job.sample_rate, rate)
        return audio.encode(samples, rate or job.sample_rate, fmt)

    def stream(self, job: Job, fmt: str, rate: int | None = None) -> Iterator[bytes]:
        """File pieces as each sentence is synthesized."""
        chunks = self.audio_chunks(job)
        if rate is not None and rate != job.sample_rate:
            chunks = audio.resample_stream(chunks, job.sample_rate, rate)
        return audio.encode_chunks(chunks, rate or job.sample_rate, fmt)


def _piper_voice_names(routes: dict[str, tuple[Target, ...]], openai_voices: dict[str, Target],
                       extra: tuple[str, ...]) -> list[str]:
    """Every Piper voice the settings name, as it loads (a name or a path), in order: the
    first is Piper's default."""
    targets = [t for ts in routes.values() for t in ts] + list(openai_voices.values())
    named = [t.source or t.voice for t in targets if t.engine == "piper" and t.voice]
    return list(dict.fromkeys([*named, *extra]))


def output_rate(fmt: str, job: Job, rate: int | None = None) -> int:
    """The sample rate the client receives."""
    return audio.codec_sample_rate(fmt, rate or job.sample_rate)
