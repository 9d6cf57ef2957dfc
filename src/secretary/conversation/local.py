"""The stages with their engines in this process: no HTTP hop, no re-encoding.

Audio stays float32 from the decoder to Whisper, from the speech engine to the avatar and
to the one encoder that makes the listener's stream; frames go from the renderer to JPEG
once.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import cv2
import numpy as np

from secretary.audio import WHISPER_SAMPLE_RATE, from_pcm16, to_pcm16
from secretary.avatar.engine import AvatarEngine, Pose
from secretary.avatar.poses import talking_poses
from secretary.conversation.blocking import Lane, check
from secretary.conversation.stages import Cancel, Frame, Heard, Look, Speech, StageError
from secretary.errors import NotFoundError, SecretaryError
from secretary.stt.engine import SttEngine, TranscriptionOptions, collect
from secretary.stt.fastfinal import FastFinalPolicy, final_transcript
from secretary.tts.engine import SynthesisRequest
from secretary.tts.service import TtsService


class LocalTranscriber:
    def __init__(self, engine: SttEngine, policy: FastFinalPolicy, beam_size: int) -> None:
        self.engine = engine
        self.policy = policy
        self.beam_size = beam_size
        self.lane = Lane("stt")

    def describe(self) -> dict[str, Any]:
        return {"where": "in-process", **self.engine.describe(),
                "fast_final": self.policy.enabled}

    def load(self) -> None:
        self.engine.load()

    def languages(self) -> frozenset[str]:
        return self.engine.languages()

    async def transcribe(self, samples: np.ndarray, language: str | None,
                         cancel: Cancel) -> Heard:
        # Temperature 0 without the fallback schedule: the text is deterministic, and the
        # fitted window's own guard replaces the fallback.
        options = TranscriptionOptions(language=language, temperature=0.0,
                                       beam_size=self.beam_size, vad_filter=True)
        final = await self.lane.call(final_transcript, self.engine, samples, options,
                                     self.policy)
        result = final.transcription
        return Heard(text=result.text, language=result.info.language,
                     language_probability=result.info.language_probability,
                     duration=result.info.duration, window=final.window)

    def partial_text(self, samples: np.ndarray, language: str | None) -> str:
        """A quick reading of an utterance still being spoken (blocking: the realtime
        partials' own thread runs it). Greedy, no timestamps, a window fitted to the audio
        and a token cap: a partial is a guide, the final is exact."""
        duration = len(samples) / WHISPER_SAMPLE_RATE
        window = min(30, max(2, math.ceil(duration + 1)))
        options = TranscriptionOptions(language=language, temperature=0.0, beam_size=1,
                                       vad_filter=False, window_seconds=window,
                                       max_new_tokens=int(8 * duration) + 8)
        return collect(self.engine.transcribe(samples, options)).text


class LocalSpeaker:
    """Speech from the TTS engines in this process. A sentence said whole is kept (up to
    ``cache_size`` of them, the least recently said go first) and played again when the
    same words are asked for in the same voice: the telephone's greeting at every call
    costs its synthesis once."""

    # Longer speech is not kept; kept speech is 16-bit (at most 64 x 10 s x 22 kHz x 2
    # bytes, 28 MB, for the default cache; a few MB for sentences of a few seconds).
    MAX_CACHED_SECONDS = 10.0

    def __init__(self, service: TtsService, cache_size: int = 0) -> None:
        self.service = service
        self.lane = Lane("tts")
        self.cache_size = cache_size
        self.cache: OrderedDict[tuple[str, str, str, str], list[bytes]] = OrderedDict()

    def describe(self) -> dict[str, Any]:
        return {"where": "in-process", "routes": self.service.health()["routes"]}

    def load(self) -> None:
        self.service.load_all()

    async def speak(self, text: str, language: str, voice: str | None,
                    cancel: Cancel) -> AsyncIterator[tuple[np.ndarray, int]]:
        try:
            route = await self.service.route(language, voice)
            engine = self.service.engine(route.engine)
        except SecretaryError as exc:
            raise StageError("speech", f"no voice for {language!r}: {exc.message}",
                             "no_voice") from None
        key = (text, route.engine, route.language, route.voice or "")
        kept = self.cache.get(key)
        if kept is not None:
            self.cache.move_to_end(key)
            for pcm in kept:
                if cancel:
                    return
                yield from_pcm16(pcm), engine.sample_rate  # a fresh array each time
            return
        request = SynthesisRequest(text=text, language=route.language, voice=route.voice)
        chunks: list[bytes] = []
        async for chunk in self.lane.iterate(lambda: iter(engine.synthesize(request)), cancel):
            if self.cache_size:
                chunks.append(to_pcm16(chunk))
            yield chunk, engine.sample_rate
        # Only what was synthesized whole is kept: not a cancelled sentence, nor one whose
        # listener stopped early (the generator is closed before it gets here).
        if (self.cache_size and not cancel and chunks and sum(map(len, chunks))
                <= self.MAX_CACHED_SECONDS * engine.sample_rate * 2):
            self.cache[key] = chunks
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)


class LocalAnimator:
    def __init__(self, engine: AvatarEngine, fps: int, size: int, jpeg_quality: int) -> None:
        self.engine = engine
        self.fps = fps
        self.size = size
        self.jpeg_quality = jpeg_quality
        self.lane = Lane("avatar")

    def describe(self) -> dict[str, Any]:
        return {"where": "in-process", "engine": self.engine.name, "fps": self.fps,
                "size": self.size}

    def load(self) -> None:
        self.engine.load()

    async def aclose(self) -> None:
        self.engine.close()

    async def prepare(self, portrait: bytes) -> str:
        return (await self.lane.call(self.engine.prepare, portrait)).key

    def frames(self, look: Look, speech: Speech, cancel: Cancel) -> AsyncIterator[Frame]:
        return self.lane.iterate(lambda: self._render(look, speech, cancel), cancel)

    def _render(self, look: Look, speech: Speech, cancel: Cancel) -> Iterator[Frame]:
        key = self.engine.prepare(look.photo).key  # cached by content hash
        params = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        poses = talking_poses(speech.samples, speech.sample_rate, self.fps, look.expression,
                              look.intensity)
        for index, pose in enumerate(poses):
            check(cancel)
            rendered = self._render_pose(look.photo, key, pose)
            ok, buffer = cv2.imencode(".jpg", rendered, params)
            if ok:
                yield Frame(buffer.tobytes(), speech.start + index / self.fps, speech.sentence)

    def _render_pose(self, photo: bytes, key: str, pose: Pose) -> np.ndarray:
        try:
            return self.engine.render(key, pose, self.size).image
        except NotFoundError:  # evicted from the engine's cache by other work
            return self.engine.render(self.engine.prepare(photo).key, pose, self.size).image
