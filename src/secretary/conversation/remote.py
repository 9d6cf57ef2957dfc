"""The stages over HTTP: the speech and avatar services elsewhere (a GPU box, replicas
behind a load balancer), called with their public APIs.

Speech comes back as streamed 16-bit PCM, so the first sentence's audio is passed on as it
arrives. The avatar service answers a clip with an MP4; its frames are decoded and sent
on with their times, so both kinds of avatar stage give the runner the same frames.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import av
import cv2
import httpx
import numpy as np

from secretary import audio
from secretary.conversation.blocking import Lane, check
from secretary.conversation.stages import Cancel, Frame, Heard, Look, Speech, StageError
from secretary.errors import redact_url
from secretary.web.client import error_text, http_failure, new_client, status_failure

_ANIMATE_RATE = 24000  # the avatar service's audio track rate


class _RemoteStage:
    """A stage that calls one service: its URL and an HTTP client kept for its calls."""

    label = ""  # the service, as errors name it

    def __init__(self, url: str, timeout: float, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        # The services share SECRETARY_API_KEY: a stage presents the first one.
        self.client = new_client(timeout, {"Authorization": f"Bearer {api_key}"}
                                 if api_key else None)
        self.where = f"the {self.label} service at {redact_url(self.url)}"

    def failure(self, stage: str, exc: httpx.HTTPError) -> StageError:
        """The call could not be made or its answer broke off."""
        return StageError.of(stage, http_failure(self.where, exc))

    def refusal(self, stage: str, answer: httpx.Response) -> StageError:
        """The service answered with an error status."""
        return StageError.of(stage, status_failure(self.where, answer.status_code, answer.text))

    def describe(self) -> dict[str, Any]:
        return {"where": self.url}

    def load(self) -> None:
        pass

    async def aclose(self) -> None:
        await self.client.aclose()


class RemoteTranscriber(_RemoteStage):
    label = "speech-to-text"

    async def transcribe(self, samples: np.ndarray, language: str | None,
                         cancel: Cancel) -> Heard:
        # 16-bit PCM is what the service's decoder would make of any upload: the model sees
        # the same samples as in-process.
        wav = audio.encode(samples, audio.WHISPER_SAMPLE_RATE, "wav")
        # ``final``: the service's fitted window for a whole short utterance.
        data = {"final": "true", **({"language": language} if language else {})}
        try:
            answer = await self.client.post(
                f"{self.url}/transcribe", files={"file": ("speech.wav", wav, "audio/wav")},
                data=data)
        except httpx.HTTPError as exc:
            raise self.failure("transcribe", exc) from None
        if answer.status_code != 200:
            raise self.refusal("transcribe", answer)
        body = answer.json()
        return Heard(text=str(body.get("text", "")).strip(), language=body.get("language", ""),
                     language_probability=float(body.get("language_probability", 0.0)),
                     duration=float(body.get("duration", len(samples) / audio.WHISPER_SAMPLE_RATE)),
                     window=int(body.get("window", 30)))


class RemoteSpeaker(_RemoteStage):
    label = "text-to-speech"

    async def speak(self, text: str, language: str, voice: str | None,
                    cancel: Cancel) -> AsyncIterator[tuple[np.ndarray, int]]:
        body: dict[str, Any] = {"text": text, "language": language, "format": "pcm",
                                "stream": True}
        if voice:
            body["voice"] = voice
        try:
            async with self.client.stream("POST", f"{self.url}/synthesize",
                                          json=body) as answer:
                if answer.status_code != 200:
                    await answer.aread()
                    raise self.refusal("speech", answer)
                rate = int(answer.headers.get("x-sample-rate", "22050"))
                # Network reads split the audio anywhere; pass it on in pieces of at least
                # a quarter second (whole samples), which the avatar can animate.
                piece = int(rate * 0.25) * 2
                buffered = b""
                async for data in answer.aiter_bytes():
                    if cancel:
                        return
                    buffered += data
                    if len(buffered) >= piece:
                        usable = len(buffered) - len(buffered) % 2
                        yield audio.from_pcm16(buffered[:usable]), rate
                        buffered = buffered[usable:]
                if len(buffered) >= 2:
                    yield audio.from_pcm16(buffered[: len(buffered) - len(buffered) % 2]), rate
        except httpx.HTTPError as exc:
            raise self.failure("speech", exc) from None


class RemoteAnimator(_RemoteStage):
    label = "avatar"

    def __init__(self, url: str, timeout: float, fps: int, size: int,
                 jpeg_quality: int, api_key: str | None = None) -> None:
        super().__init__(url, timeout, api_key)
        self.fps = fps
        self.size = size
        self.jpeg_quality = jpeg_quality
        self.lane = Lane("avatar-decode")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fps": self.fps, "size": self.size}

    async def prepare(self, portrait: bytes) -> str:
        # A small render checks the photo holds a face (the service caches its analysis).
        try:
            answer = await self.client.post(
                f"{self.url}/api/render", files={"source_image": ("portrait", portrait)},
                data={"size": "64"})
        except httpx.HTTPError as exc:
            raise self.failure("avatar", exc) from None
        if answer.status_code != 200:
            raise StageError("avatar", error_text(answer.text, f"HTTP {answer.status_code}"),
                             "portrait_rejected")
        return "remote"

    async def frames(self, look: Look, speech: Speech, cancel: Cancel) -> AsyncIterator[Frame]:
        if speech.duration < 1 / self.fps:
            return  # shorter than a frame: nothing to show
        samples = audio.resample(speech.samples, speech.sample_rate, _ANIMATE_RATE)
        wav = audio.encode(samples, _ANIMATE_RATE, "wav")
        form = {"fps": str(self.fps), "size": str(self.size), "expression": look.expression,
                "intensity": str(look.intensity)}
        try:
            answer = await self.client.post(
                f"{self.url}/api/animate", data=form,
                files={"source_image": ("portrait", look.photo),
                       "audio": ("speech.wav", wav, "audio/wav")})
        except httpx.HTTPError as exc:
            raise self.failure("avatar", exc) from None
        if answer.status_code != 200:
            raise self.refusal("avatar", answer)
        video = answer.content
        async for frame in self.lane.iterate(lambda: self._decode(video, speech, cancel),
                                             cancel):
            yield frame

    def _decode(self, video: bytes, speech: Speech, cancel: Cancel) -> Iterator[Frame]:
        params = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        with av.open(io.BytesIO(video)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                check(cancel)
                ok, buffer = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"), params)
                if ok:
                    yield Frame(buffer.tobytes(), speech.start + index / self.fps,
                                speech.sentence)
