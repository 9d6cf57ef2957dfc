"""The speech-to-text service layer: the engine with its work queue and the validation
rules that depend on it.

Plain Python: it takes audio bytes and options and returns transcriptions (or streams of
text); the HTTP layer (``app.py``) only parses forms and formats answers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

from secretary import audio
from secretary.config import CanarySettings, Settings, SttSettings
from secretary.errors import InvalidRequestError, ModelUnavailableError, ServiceBusyError
from secretary.stt.engine import SttEngine, Transcription, TranscriptionOptions
from secretary.stt.fastfinal import FastFinalPolicy, Final, final_transcript
from secretary.stt.models import WHISPER_HUB_IDS, canary_hub_id
from secretary.web.queue import Ticket, check_cancelled
from secretary.web.service_base import EngineService

log = logging.getLogger(__name__)

# OpenAI model names that clients send by habit; they all mean "the model served here".
OPENAI_MODEL_ALIASES = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")


class SttService(EngineService):
    """The engine with its queue and the validation rules that depend on it.

    ``name`` picks the settings group: ``stt`` (Whisper, 8083) or ``canary`` (8084), the
    same APIs over another engine.
    """

    title = "Secretary speech-to-text"
    engine: SttEngine

    def __init__(self, settings: Settings, engine: SttEngine, name: str = "stt") -> None:
        self.group: SttSettings | CanarySettings = getattr(settings, name)
        super().__init__(name, settings, engine, self.group)
        if name != "stt":
            self.title = f"Secretary speech-to-text ({engine.name})"

    @property
    def model_name(self) -> str:
        return self.group.model

    def load(self) -> None:
        try:
            self.engine.load()
        except ModelUnavailableError as exc:
            if self.name == "stt":
                raise  # the embedded default always loads; anything else is misconfigured
            # Start anyway: /health says what is missing, requests get a 503 naming the fix.
            log.error("%s: %s", self.name, exc.message)

    def status(self) -> str:
        return "model_unavailable" if getattr(self.engine, "error", None) else "ok"

    def model_ids(self) -> tuple[str, ...]:
        return (self.model_name, *OPENAI_MODEL_ALIASES)

    # ------------------------------------------------------------------ validation
    def check_model(self, requested: str | None) -> None:
        if not requested:
            return
        served = {self.model_name, WHISPER_HUB_IDS.get(self.model_name, ""),
                  canary_hub_id(self.model_name), *OPENAI_MODEL_ALIASES}
        if requested not in served:
            raise InvalidRequestError(
                f"model {requested!r} is not served here; this service runs "
                f"{self.model_name!r} (also answers to {', '.join(OPENAI_MODEL_ALIASES)})",
                param="model",
            )

    def check_language(self, language: str | None) -> str | None:
        if language is None or language.strip() == "":
            return None
        code = language.strip().lower()
        if not self.engine.loaded:
            raise ServiceBusyError("the speech model is still loading; try again shortly")
        languages = self.engine.languages()
        if code not in languages:
            if len(languages) <= 12:  # a model of a few languages: name them all
                raise InvalidRequestError(
                    f"{self.engine.name} does not speak {language!r}; it transcribes "
                    f"{', '.join(sorted(languages))}", param="language")
            raise InvalidRequestError(
                f"unknown language code {language!r}; use an ISO 639-1 code such as "
                "'en', 'de', 'fr' or 'es', or leave it out to detect the language",
                param="language",
            )
        return code

    def check_options(self, options: TranscriptionOptions) -> TranscriptionOptions:
        """The options as the engine will run them; a 400 saying what it supports if it
        cannot (a translation direction, word timestamps)."""
        return self.engine.check(options)

    # ------------------------------------------------------------------ work
    async def ensure_loaded(self) -> None:
        if not self.engine.loaded:
            # First use when preloading is off: load in the engine pool, like any job.
            await self.queue.run(self.engine.load)

    async def decode(self, ticket: Ticket, data: bytes, field: str = "file"
                     ) -> audio.DecodedAudio:
        """Decode an upload under ``ticket``'s place: a full queue refuses before any
        decoding, and decoding stops at the length limit."""
        return await ticket.decode(audio.decode_field, data, field, audio.WHISPER_SAMPLE_RATE,
                                   self.group.max_audio_seconds)

    async def transcribe(self, data: bytes, options: TranscriptionOptions) -> Transcription:
        with self.queue.admit() as ticket:
            decoded = await self.decode(ticket, data)

            def job() -> Transcription:
                info, segments = self.engine.transcribe(decoded.samples, options)
                found = []
                for segment in segments:  # a client that left stops the work here
                    found.append(segment)
                    check_cancelled()
                return Transcription(info, found)

            return await self.queue.run(job, ticket=ticket)

    async def transcribe_final(self, data: bytes, options: TranscriptionOptions) -> Final:
        """A whole short utterance (a spoken turn), in a window fitted to it where that
        holds (``fastfinal``), decoded at temperature 0."""
        with self.queue.admit() as ticket:
            decoded = await self.decode(ticket, data)
            options = replace(options, temperature=0.0)
            # Only Whisper encodes in fixed windows; other engines decode the clip as it is.
            policy = FastFinalPolicy(enabled=self.engine.name == "faster-whisper")
            return await self.queue.run(final_transcript, self.engine, decoded.samples,
                                        options, policy, ticket=ticket)

    async def stream_text(self, data: bytes, options: TranscriptionOptions
                          ) -> AsyncIterator[str]:
        """The text of each segment as it is decoded. The queue's place is taken before
        this returns (503 before a response starts); see ``WorkQueue.stream``."""
        ticket = self.queue.admit()
        try:
            decoded = await self.decode(ticket, data)
        except BaseException:
            ticket.release()
            raise

        def texts() -> Iterator[str]:
            _, segments = self.engine.transcribe(decoded.samples, options)
            for segment in segments:
                yield segment.text

        return self.queue.stream(texts, ticket=ticket)
