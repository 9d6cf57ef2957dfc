"""The conversation's stages through Ray Serve deployment handles: no HTTP hop.

On Ray, the conversation (ui) and realtime replicas call the speech-to-text and speech
deployments' replicas with Python calls (``DeploymentHandle``): the samples go as an
array, speech comes back as float32 chunks streamed as they are synthesized
(``handle.options(stream=True)``), and Serve's router picks the replica (least loaded of
two, any node) as the proxy does for HTTP.

Each side is here: ``transcribe_final`` and ``speech_chunks`` run on the callee's replica
with its service (the same queue, limits, batching and engine as ``POST /transcribe`` with
``final`` and ``POST /synthesize``); ``HandleTranscriber`` and ``HandleSpeaker`` are the
stages that call them. Handles are made on first use (``serve.get_deployment_handle``):
each service is its own Serve application, so there is no ``.bind()`` graph to pass
them through, and a replica may start before the deployment it calls.

Failures look as they do over HTTP: an error of the called service, or a replica that
died during the call, is a ``StageError`` with the code and message shape the HTTP stage
gives (``web.client``'s upstream errors), so a realtime session gets an ``error`` event
and a UI turn its JSON error, never an empty answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import numpy as np

from secretary.audio import WHISPER_SAMPLE_RATE
from secretary.conversation.stages import Cancel, Heard, StageError
from secretary.errors import InvalidRequestError, SecretaryError
from secretary.stt.engine import TranscriptionOptions
from secretary.stt.fastfinal import FastFinalPolicy, final_transcript
from secretary.web.client import UpstreamFailedError, UpstreamUnavailableError

log = logging.getLogger(__name__)

# The handle methods of the service replicas (``deployments.ServiceReplica``).
TRANSCRIBE = "transcribe"
SPEAK = "speak"


class CalledServiceError(Exception):
    """A service's own error (a ``SecretaryError``) raised in the called replica, as it
    crosses the handle: plain arguments, so it unpickles on the caller whatever the
    error's class takes."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def of(cls, exc: SecretaryError) -> CalledServiceError:
        return cls(exc.status_code, exc.code, exc.message)


# ---------------------------------------------------------------------- callee side
async def transcribe_final(service: Any, samples: np.ndarray, language: str | None) -> Heard:
    """On a speech-to-text replica: ``POST /transcribe`` with ``final`` for samples that
    are decoded already (16 kHz mono float32), as a ``Heard``."""
    try:
        await service.ensure_loaded()
        samples = np.asarray(samples, dtype=np.float32)
        duration = len(samples) / WHISPER_SAMPLE_RATE
        limit = service.group.max_audio_seconds
        if duration > limit:
            raise InvalidRequestError(f"the utterance lasts {duration:.1f} s; this service "
                                      f"takes at most {limit:g} s")
        options = service.check_options(TranscriptionOptions(
            language=service.check_language(language)))
        options = replace(options, temperature=0.0)
        policy = FastFinalPolicy(enabled=service.engine.name == "faster-whisper")
        done = await service.queue.run(final_transcript, service.engine, samples, options,
                                       policy)
    except SecretaryError as exc:
        raise CalledServiceError.of(exc) from None
    info = done.transcription.info
    return Heard(text=done.transcription.text.strip(), language=info.language,
                 language_probability=float(info.language_probability),
                 duration=float(info.duration), window=int(done.window))


async def speech_chunks(service: Any, text: str, language: str | None, voice: str | None
                        ) -> AsyncIterator[tuple[np.ndarray, int]]:
    """On a speech replica: ``POST /synthesize`` of ``text`` as (float32 samples, sample
    rate) pieces, each as the engine gives it (the HTTP answer's audio before its 16-bit
    encoding). The queue's place is taken before the first piece (a full queue refuses
    at once) and given back when the stream ends or its caller goes."""
    try:
        sentences = service.sentences(text, "text")
        route = await service.route(language or service.settings.tts.default_language, voice)
        job = service.job(route, sentences, 1.0)
        pieces = service.queue.stream(lambda: service.audio_chunks(job))
        async for chunk in pieces:
            yield chunk, job.sample_rate
    except SecretaryError as exc:
        raise CalledServiceError.of(exc) from None


# ---------------------------------------------------------------------- caller side
def stage_failure(stage: str, where: str, exc: BaseException) -> StageError:
    """A failed handle call as the stage's error, in the HTTP stage's terms: the called
    service's own error as its answer (``answered HTTP 503: ...``), a replica that died or
    could not be reached as a broken or unreachable upstream."""
    from ray import exceptions as ray_errors
    from ray.serve import exceptions as serve_errors

    cause: BaseException | None = exc
    if isinstance(exc, ray_errors.RayTaskError):
        cause = exc.cause
    failure: SecretaryError
    if isinstance(cause, CalledServiceError):
        failure = UpstreamFailedError(f"{where} answered HTTP {cause.status}: {cause.message}")
    elif isinstance(exc, ray_errors.RayActorError | ray_errors.ActorUnavailableError):
        failure = UpstreamFailedError(
            f"{where} failed: the replica serving this request stopped before it finished "
            "(it is being replaced); try again")
    elif isinstance(exc, serve_errors.BackPressureError | serve_errors.DeploymentUnavailableError):
        failure = UpstreamUnavailableError(f"{where} is not available now ({exc}); try again "
                                           "shortly")
    else:
        reason = " ".join(str(cause or exc).split())[:300] or type(exc).__name__
        failure = UpstreamFailedError(f"{where} failed ({reason})")
    return StageError.of(stage, failure)


class _HandleStage:
    """A stage that calls one Serve deployment by handle, made on first use."""

    label = ""  # the service, as errors name it

    def __init__(self, deployment: str, app_name: str | None = None) -> None:
        self.deployment = deployment
        self.app_name = app_name or deployment
        self.where = f"the {self.label} deployment {self.deployment!r} on Ray Serve"
        self._handle: Any = None

    @property
    def handle(self) -> Any:
        if self._handle is None:
            from ray import serve

            self._handle = serve.get_deployment_handle(self.deployment, self.app_name)
        return self._handle

    def describe(self) -> dict[str, Any]:
        return {"where": f"ray-serve:{self.app_name}/{self.deployment}",
                "via": "deployment handle"}

    def load(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class HandleTranscriber(_HandleStage):
    label = "speech-to-text"

    async def transcribe(self, samples: np.ndarray, language: str | None,
                         cancel: Cancel) -> Heard:
        try:
            heard = await getattr(self.handle, TRANSCRIBE).remote(
                np.asarray(samples, dtype=np.float32), language)
        except Exception as exc:
            raise stage_failure("transcribe", self.where, exc) from None
        if not isinstance(heard, Heard):  # a stage answers its own type, or fails clearly
            raise StageError("transcribe", f"{self.where} gave a broken answer "
                             f"({type(heard).__name__})", UpstreamFailedError.code)
        return heard


class HandleSpeaker(_HandleStage):
    label = "text-to-speech"

    async def speak(self, text: str, language: str, voice: str | None,
                    cancel: Cancel) -> AsyncIterator[tuple[np.ndarray, int]]:
        stream = getattr(self.handle.options(stream=True), SPEAK).remote(text, language, voice)
        finished = False
        try:
            async for samples, rate in stream:
                if cancel:
                    break
                yield samples, rate
            else:
                finished = True
        except Exception as exc:
            finished = True
            raise stage_failure("speech", self.where, exc) from None
        finally:
            if not finished:  # the turn stopped: the callee stops at its next piece
                stream.cancel()
