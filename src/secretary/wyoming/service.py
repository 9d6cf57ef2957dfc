"""The Wyoming service layer: what Home Assistant's protocol asks of the speech services
and of the secretary as a conversation agent.

Plain Python over the same ``SttService`` and ``TtsService`` the HTTP APIs use (their
engines, model loading, language checks, routing table, sentence splitting and work
queues), so a Wyoming request is served, limited and refused exactly like an HTTP one; and
over the conversation brain the browser uses (``handle.py`` speaks to it).
The connection handlers (``handlers.py``, ``handle.py``) only speak the protocol.
"""

from __future__ import annotations

import inspect
import io
import itertools
import time
import wave
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np
from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice

from secretary import __version__, audio
from secretary.config import Settings
from secretary.conversation.stages import Brain
from secretary.errors import InvalidRequestError
from secretary.stt.engine import Transcription, TranscriptionOptions
from secretary.stt.service import SttService
from secretary.tts.routing import Route
from secretary.tts.service import Job, TtsService
from secretary.tts.text import split_sentences
from secretary.validation import has_speech

PROGRAM = "secretary"
_SECRETARY = Attribution(name="Secretary", url="")
_ENGINE_ATTRIBUTION = {
    "faster-whisper": Attribution(name="OpenAI Whisper, SYSTRAN faster-whisper",
                                  url="https://github.com/SYSTRAN/faster-whisper"),
    "piper": Attribution(name="Piper", url="https://github.com/OHF-Voice/piper1-gpl"),
    "espeak": Attribution(name="eSpeak NG", url="https://github.com/espeak-ng/espeak-ng"),
    "xtts": Attribution(name="Coqui XTTS v2", url="https://huggingface.co/coqui/XTTS-v2"),
}
# PCM widths a WAV file can carry (8-bit unsigned, 16/24/32-bit signed).
PCM_WIDTHS = (1, 2, 3, 4)
MAX_RATE = 192_000
MAX_CHANNELS = 8
AUTO_LANGUAGE = "auto"


@dataclass(frozen=True)
class PcmFormat:
    rate: int
    width: int
    channels: int

    @property
    def bytes_per_second(self) -> int:
        return self.rate * self.width * self.channels

    @classmethod
    def parse(cls, data: dict[str, Any], event: str) -> PcmFormat:
        values = {}
        for key, low, high in (("rate", 1000, MAX_RATE), ("width", 1, 4),
                               ("channels", 1, MAX_CHANNELS)):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidRequestError(
                    f"{event}: {key} must be an integer from {low} to {high}, not {value!r}",
                    param=key)
            values[key] = value
        return cls(**values)

    def wav(self, pcm: bytes) -> bytes:
        """The PCM as a WAV file, for the decoder the HTTP uploads go through."""
        frame = self.width * self.channels
        out = io.BytesIO()
        with wave.open(out, "wb") as writer:
            writer.setnchannels(self.channels)
            writer.setsampwidth(self.width)
            writer.setframerate(self.rate)
            writer.writeframes(pcm[: len(pcm) - len(pcm) % frame])
        return out.getvalue()


def language_tag(code: str) -> str:
    """A language as Home Assistant lists it: ``en``, ``en-US``, ``zh-yue``."""
    primary, _, region = code.replace("_", "-").partition("-")
    return f"{primary}-{region.upper()}" if len(region) == 2 else code.replace("_", "-")


def text_field(data: dict[str, Any], key: str, event: str, *, required: bool = False
               ) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"{event}: {key} must be a string, not {value!r}", param=key)
    return value


class WyomingService:
    """Info, transcription, synthesis and the conversation brain for the Wyoming servers;
    ``None`` for a side that is turned off."""

    name = "wyoming"
    title = "Secretary Wyoming (Home Assistant)"
    queue = None  # the work queues are the speech services' own

    def __init__(self, settings: Settings, stt: SttService | None,
                 tts: TtsService | None, brain: Brain | None = None) -> None:
        self.settings = settings
        self.stt = stt
        self.tts = tts
        self.brain = brain
        self.preload = bool((stt and stt.preload) or (tts and tts.preload))
        self.created = int(time.time())
        # Set by the servers: what /health reports about connections.
        self.connections: dict[str, int] = {}
        self.ports: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle
    def load(self) -> None:
        if self.stt is not None and self.stt.preload:
            self.stt.load()
        if self.tts is not None and self.tts.preload:
            self.tts.load_all()

    async def close(self) -> None:
        for side in (self.stt, self.tts):
            if side is not None:
                side.queue.shutdown()
        # The chat model's HTTP client: the brain's own close, else its chat model's.
        for part in (self.brain, getattr(self.brain, "chat", None)):
            close = getattr(part, "aclose", None)
            if close is not None:
                result = close()
                if inspect.isawaitable(result):
                    await result
                break

    def model_ids(self) -> tuple[str, ...]:
        return ()

    def health(self) -> dict[str, Any]:
        sides: dict[str, Any] = {}
        statuses = []
        for key, side in (("stt", self.stt), ("tts", self.tts)):
            if side is None:
                continue
            report = side.health()
            statuses.append(report["status"])
            sides[key] = {"port": self.ports.get(key),
                          "connections": self.connections.get(key, 0)} | report
        if self.brain is not None:
            sides["handle"] = {"port": self.ports.get("handle"),
                               "connections": self.connections.get("handle", 0),
                               "status": "ok", **self.brain.describe()}
        status = next((s for s in ("degraded", "loading") if s in statuses), "ok")
        return {"status": status, "service": "wyoming", **sides}

    # ------------------------------------------------------------------ speech-to-text
    async def stt_info(self) -> Info:
        stt = self._stt()
        await stt.ensure_loaded()
        engine = stt.engine.describe()
        model = AsrModel(
            name=stt.model_name,
            description=f"Whisper {stt.model_name} ({engine['device']}, "
                        f"{engine['compute_type']})",
            attribution=_ENGINE_ATTRIBUTION["faster-whisper"],
            installed=True,
            version=version("faster-whisper"),
            languages=sorted(stt.engine.languages()),
        )
        return Info(asr=[AsrProgram(
            name=PROGRAM, description="Secretary speech-to-text", attribution=_SECRETARY,
            installed=True, version=__version__, models=[model],
            supports_transcript_streaming=False, requires_external_vad=True,
        )])

    async def transcribe_options(self, data: dict[str, Any]) -> TranscriptionOptions:
        """A ``transcribe`` event's model and language, checked as the HTTP API checks
        them; ``auto`` (or none) detects the language."""
        stt = self._stt()
        await stt.ensure_loaded()
        stt.check_model(text_field(data, "name", "transcribe"))
        language = text_field(data, "language", "transcribe")
        if language is not None and language.strip().lower() in ("", AUTO_LANGUAGE):
            language = None
        if language is not None:
            # Home Assistant may send a regional tag (en-US); Whisper knows the language.
            code = language.strip().lower().replace("_", "-")
            known = stt.engine.languages()
            language = code if code in known else code.split("-")[0]
        return TranscriptionOptions(language=stt.check_language(language))

    async def transcribe(self, pcm: bytes, fmt: PcmFormat,
                         options: TranscriptionOptions) -> Transcription:
        stt = self._stt()
        await stt.ensure_loaded()
        return await stt.transcribe(fmt.wav(pcm), options)

    # ------------------------------------------------------------------ text-to-speech
    async def tts_info(self) -> Info:
        tts = self._tts()
        catalog = await tts.catalog()
        voices = [
            TtsVoice(
                name=voice.id,
                description=voice.description or voice.id,
                attribution=_ENGINE_ATTRIBUTION.get(engine, _SECRETARY),
                installed=True,
                version=None,
                languages=[language_tag(code) for code in voice.languages],
            )
            for engine, engine_voices in catalog.items() for voice in engine_voices
        ]
        return Info(tts=[TtsProgram(
            name=PROGRAM, description="Secretary text-to-speech", attribution=_SECRETARY,
            installed=True, version=__version__, voices=voices,
            supports_synthesize_streaming=True,
        )])

    async def route(self, voice: Any) -> Route:
        """The engine and voice for a ``synthesize``'s ``voice`` (name, language,
        speaker), through the same routing table as the HTTP API. Without a language, a
        named voice speaks its own; without either, the default language's voice speaks."""
        tts = self._tts()
        if voice is None:
            voice = {}
        if not isinstance(voice, dict):
            raise InvalidRequestError(f"voice must be an object, not {voice!r}", param="voice")
        name = text_field(voice, "name", "voice") or None
        language = text_field(voice, "language", "voice") or None
        speaker = text_field(voice, "speaker", "voice") or None
        if speaker is not None:
            name = await self._speaker(name, speaker)
        if language is None:
            language = (await tts.language_of_voice(name) if name
                        else tts.settings.tts.default_language)
        return await tts.route(language, name)

    async def _speaker(self, name: str | None, speaker: str) -> str:
        """A speaker is another voice of the same engine (XTTS's built-in speakers)."""
        catalog = await self._tts().catalog()
        for voices in catalog.values():
            ids = {v.id for v in voices}
            if (name is None or name in ids) and speaker in ids:
                return speaker
        raise InvalidRequestError(
            f"unknown speaker {speaker!r}" + (f" for voice {name!r}" if name else ""),
            param="speaker")

    def sentences(self, text: str) -> list[str]:
        return self._tts().sentences(text, "text")

    def split_stream(self, pending: str) -> tuple[list[str], str]:
        """Complete sentences of streamed text, and the rest that may still grow. The last
        piece is never complete: a sentence ends at the space after its full stop."""
        pieces = split_sentences(pending, self._tts().settings.tts.max_sentence_chars)
        if len(pieces) <= 1:
            return [], pending
        tail = pieces[-1] + (" " if pending[-1:].isspace() else "")
        return [p for p in pieces[:-1] if has_speech(p)], tail

    def job(self, route: Route, sentences: list[str]) -> Job:
        return self._tts().job(route, sentences, 1.0)

    def pcm(self, job: Job, *, leading_pause: bool = False) -> AsyncIterator[bytes]:
        """16-bit PCM at the engine's rate, ``samples_per_chunk`` samples a piece, as the
        engine makes it, through the TTS work queue (``ServiceBusyError`` when full)."""
        tts = self._tts()
        size = self.settings.wyoming.samples_per_chunk
        pause_ms = tts.settings.tts.sentence_pause_ms

        def pieces() -> Iterator[bytes]:
            chunks: Iterable[np.ndarray] = tts.audio_chunks(job)
            if leading_pause and pause_ms:
                # The sentences of one stream are as far apart as in the HTTP API's audio.
                pause = np.zeros(job.sample_rate * pause_ms // 1000, np.float32)
                chunks = itertools.chain([pause], chunks)
            for chunk in chunks:
                for start in range(0, len(chunk), size):
                    yield audio.to_pcm16(chunk[start:start + size])

        return tts.queue.stream(pieces)

    # ------------------------------------------------------------------ helpers
    def _stt(self) -> SttService:
        if self.stt is None:
            raise InvalidRequestError("speech-to-text is turned off here")
        return self.stt

    def _tts(self) -> TtsService:
        if self.tts is None:
            raise InvalidRequestError("text-to-speech is turned off here")
        return self.tts
