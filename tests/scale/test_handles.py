"""The conversation's stages through deployment handles, without a cluster: which stages
a replica calls by handle, and failures in the HTTP stage's terms (a dead replica, the
called service's own error, a stream cut off), never an empty answer."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ray import exceptions as ray_errors

from secretary.conversation.stages import Cancel, Heard, StageError
from secretary.scale.deployments import handle_stages
from secretary.scale.handles import (
    CalledServiceError,
    HandleSpeaker,
    HandleTranscriber,
    stage_failure,
)
from secretary.web.client import UpstreamFailedError, status_failure
from tests.conftest import make_settings

ALL = ["stt", "tts", "avatar", "ui", "realtime"]


def test_speech_and_transcripts_go_by_handle_where_deployed_and_not_chosen(
        cache_dir: Path) -> None:
    settings = make_settings(cache_dir)
    assert handle_stages(settings, "realtime", ALL) == ("stt", "tts")
    assert handle_stages(settings, "ui", ["tts", "ui"]) == ("tts",)  # stt runs in the replica
    assert handle_stages(settings, "stt", ALL) == ()
    settings.ui.tts_url = "http://gpu-box:8082"  # chosen: kept on HTTP
    assert handle_stages(settings, "ui", ALL) == ("stt",)
    settings.ray.stage_calls = "http"
    assert handle_stages(settings, "ui", ALL) == ()


def test_a_dead_replica_is_the_http_stages_broken_upstream() -> None:
    error = stage_failure("transcribe", "the speech-to-text deployment 'stt'",
                          ray_errors.ActorDiedError())
    assert error.stage == "transcribe" and error.code == UpstreamFailedError.code
    assert "stopped before it finished" in error.message and "try again" in error.message


def test_the_called_services_error_reads_as_its_http_answer() -> None:
    where = "the text-to-speech deployment 'tts'"
    busy = CalledServiceError(503, "busy", "the tts service is busy; try again shortly")
    wrapped = ray_errors.RayTaskError("speak", "Traceback ...", busy)
    by_handle = stage_failure("speech", where, wrapped)
    over_http = StageError.of("speech", status_failure(
        where, 503, '{"error": {"message": "the tts service is busy; try again shortly"}}'))
    assert (by_handle.code, by_handle.message) == (over_http.code, over_http.message)


class _Response:
    def __init__(self, value: Any = None, error: Exception | None = None) -> None:
        self.value, self.error = value, error

    def __await__(self):
        async def answer() -> Any:
            if self.error is not None:
                raise self.error
            return self.value
        return answer().__await__()


class _Stream:
    def __init__(self, pieces: list[Any], error: Exception | None = None) -> None:
        self.pieces, self.error, self.cancelled = list(pieces), error, False

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> Any:
        await asyncio.sleep(0)
        if self.pieces:
            return self.pieces.pop(0)
        if self.error is not None:
            raise self.error
        raise StopAsyncIteration

    def cancel(self) -> None:
        self.cancelled = True


class _Method:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple] = []

    def remote(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.answer


class _Handle:
    def __init__(self, **methods: _Method) -> None:
        self.__dict__.update(methods)

    def options(self, **_: Any) -> _Handle:
        return self


async def test_a_transcript_by_handle_and_a_replica_lost_during_it() -> None:
    heard = Heard("hello", "en", 0.9, 1.0, 2)
    stage = HandleTranscriber("stt")
    method = _Method(_Response(heard))
    stage._handle = _Handle(transcribe=method)
    samples = np.zeros(16000, np.float64)
    assert await stage.transcribe(samples, "en", Cancel()) == heard
    sent, language = method.calls[0]
    assert sent.dtype == np.float32 and language == "en"
    stage._handle = _Handle(transcribe=_Method(_Response(error=ray_errors.ActorDiedError())))
    with pytest.raises(StageError) as failed:
        await stage.transcribe(samples, None, Cancel())
    assert failed.value.code == UpstreamFailedError.code and failed.value.message
    assert stage.describe() == {"where": "ray-serve:stt/stt", "via": "deployment handle"}


async def test_speech_by_handle_streams_and_a_cut_stream_is_an_error() -> None:
    piece = (np.ones(100, np.float32), 22050)
    stage = HandleSpeaker("tts")
    stage._handle = _Handle(speak=_Method(_Stream([piece, piece])))
    got = [p async for p in stage.speak("Hi.", "en", None, Cancel())]
    assert len(got) == 2 and got[0][1] == 22050
    cut = _Stream([piece], ray_errors.ActorDiedError())
    stage._handle = _Handle(speak=_Method(cut))
    got = []
    with pytest.raises(StageError) as failed:
        async for p in stage.speak("Hi.", "en", None, Cancel()):
            got.append(p)
    assert len(got) == 1 and failed.value.stage == "speech"
    assert failed.value.code == UpstreamFailedError.code


async def test_a_cancelled_turn_cancels_the_callees_stream() -> None:
    piece = (np.ones(100, np.float32), 22050)
    stream = _Stream([piece] * 5)
    stage = HandleSpeaker("tts")
    stage._handle = _Handle(speak=_Method(stream))
    cancel = Cancel()
    got = []
    async for p in stage.speak("Hi.", "en", None, cancel):
        got.append(p)
        cancel.set()
    assert len(got) == 1 and stream.cancelled


@pytest.mark.parametrize("service", ["ui", "realtime"])
def test_the_conversations_replicas_are_built_with_the_handle_stages(
        cache_dir: Path, service: str) -> None:
    from secretary.scale.deployments import build_app, replica_settings

    settings = replica_settings(make_settings(cache_dir), service, ALL,
                                "http://127.0.0.1:8000")
    app = build_app(service, settings, ("stt", "tts"))
    owner = app.state.service
    pipeline = owner.pipeline if service == "realtime" else owner.conversation.pipeline
    assert isinstance(pipeline.transcriber, HandleTranscriber)
    assert isinstance(pipeline.speaker, HandleSpeaker)
    assert pipeline.describe()["speech"]["via"] == "deployment handle"
