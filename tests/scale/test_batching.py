"""Batched final transcripts equal the same transcripts decoded alone (the engine's own
single-clip path), for clips of different lengths and languages decoded in one batch; and
``/v1/audio/transcriptions`` sent concurrently to the batched app (no cluster: Serve's
``@serve.batch`` runs on the app's own event loop) answer exactly what the single-machine
app answers, with their windows encoded and decoded in batches of more than one."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from secretary import audio
from secretary.scale.batching import Clip, batchable, create_batched_stt_app, decode_batch
from secretary.stt.app import create_app
from secretary.stt.engine import TranscriptionOptions, collect
from secretary.stt.fastfinal import FastFinalPolicy
from secretary.stt.models import WhisperModels
from secretary.stt.whisper import WhisperEngine
from tests.conftest import make_settings
from tests.helpers import SPEECH

# Different lengths (2 to 11 s: windows of 15 s) and languages, one given, others detected.
CLIPS = ("en_cmu_arctic_aew_a0001.wav", "de_thorsten_plan_geklappt.wav",
         "fr_leopard_consulat.wav", "es_leopard_arenas.wav", "en_jfk_ask_not.flac",
         "en_sr_one_two_three.wav")


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> WhisperEngine:
    engine = WhisperEngine(make_settings(cache_dir).stt,
                           WhisperModels(make_settings(cache_dir).models_dir))
    engine.load()
    return engine


def final_clip(name: str, language: str | None = None) -> Clip:
    """A clip with the options ``final_transcript`` gives its fitted-window decode."""
    samples = audio.decode(SPEECH / name).samples
    policy = FastFinalPolicy()
    duration = len(samples) / audio.WHISPER_SAMPLE_RATE
    options = TranscriptionOptions(language=language, temperature=0.0,
                                   window_seconds=policy.window(duration),
                                   max_new_tokens=policy.token_cap(duration))
    return Clip(samples, options)


def test_a_batch_gives_each_clip_what_it_gets_alone(engine: WhisperEngine) -> None:
    clips = [final_clip(name, "en" if index == 0 else None)
             for index, name in enumerate(CLIPS)]
    assert all(batchable(c.options) for c in clips)
    batched = decode_batch(engine, clips)
    assert len(batched) == len(clips)
    for name, clip, (info, segments) in zip(CLIPS, clips, batched, strict=True):
        alone = collect(engine.transcribe(clip.samples, clip.options))
        assert info.language == alone.info.language == name[:2], name
        assert [s.text for s in segments] == [s.text for s in alone.segments], name
        assert [s.tokens for s in segments] == [s.tokens for s in alone.segments], name
        assert segments and segments[0].text.strip(), name


def test_silence_and_a_capped_clip_in_a_batch(engine: WhisperEngine) -> None:
    speech = final_clip("en_jfk_ask_not.flac")
    silent = Clip(speech.samples * 0, speech.options)
    capped = replace(speech, options=replace(speech.options, max_new_tokens=3))
    batched = decode_batch(engine, [silent, capped, speech])
    assert batched[0][1] == []  # nothing said: no segment, as alone
    alone = collect(engine.transcribe(capped.samples, capped.options))
    assert [s.tokens for s in batched[1][1]] == [s.tokens for s in alone.segments]
    assert len(batched[1][1][0].tokens) == 3  # cut at its own cap, not the batch's


def test_whole_files_and_word_timestamps_are_not_batched() -> None:
    assert not batchable(TranscriptionOptions())
    assert not batchable(TranscriptionOptions(window_seconds=30))
    assert not batchable(TranscriptionOptions(window_seconds=15, word_timestamps=True))


# Several languages and lengths (2 to 11 s), each with a request of its own: detected or
# given language, a prompt, the fallback schedule or temperature 0, segment timestamps.
LOCAL = "http://127.0.0.1"

REQUESTS = (
    ("en_jfk_ask_not.flac", {"response_format": "verbose_json"}),
    ("de_thorsten_plan_geklappt.wav", {"response_format": "verbose_json"}),
    ("fr_leopard_consulat.wav", {"response_format": "verbose_json", "temperature": "0"}),
    ("es_leopard_arenas.wav", {"response_format": "verbose_json", "language": "es"}),
    ("en_cmu_arctic_aew_a0001.wav", {"response_format": "srt"}),
    ("de_thorsten_schoko_bonbons.wav", {"response_format": "verbose_json",
                                        "prompt": "Schokolade und Bonbons."}),
)


def _post(client: TestClient, name: str, form: dict[str, str]) -> tuple[int, str]:
    with open(SPEECH / name, "rb") as file:
        response = client.post("/v1/audio/transcriptions", data=form,
                               files={"file": (name, file.read())})
    return response.status_code, response.text


def _batch_sizes(metrics: str, step: str) -> tuple[float, float]:
    """The window batches of ``step``: how many, and how many windows in all."""
    def value(kind: str) -> float:
        match = re.search(rf'^secretary_stt_window_batch_size_{kind}{{step="{step}"}} (\S+)$',
                          metrics, re.MULTILINE)
        return float(match.group(1)) if match else 0.0
    return value("count"), value("sum")


def test_concurrent_transcriptions_are_batched_and_equal_single_ones(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ray import serve

    # Serve's batch queue only reads its replica's max_ongoing_requests (for a warning);
    # outside a deployment there is none, so give it one.
    replica = SimpleNamespace(_deployment_config=SimpleNamespace(max_ongoing_requests=64))
    monkeypatch.setattr(serve, "get_replica_context", lambda: replica)
    with TestClient(create_app(make_settings(cache_dir)), base_url=LOCAL) as single:
        alone = [_post(single, name, form) for name, form in REQUESTS]
    assert all(status == 200 for status, _ in alone), alone

    settings = make_settings(cache_dir)
    settings.ray.stt_batch_size = len(REQUESTS)
    settings.ray.stt_batch_wait_ms = 300  # long enough on a busy 2-core machine
    settings.stt.max_concurrency = len(REQUESTS)  # as the deployment sets it
    with TestClient(create_batched_stt_app(settings), base_url=LOCAL) as batched:
        _post(batched, *REQUESTS[0])  # warm-up, one alone
        before = {step: _batch_sizes(batched.get("/metrics").text, step)
                  for step in ("encode", "generate")}
        with ThreadPoolExecutor(len(REQUESTS)) as pool:
            together = list(pool.map(lambda r: _post(batched, *r), REQUESTS))
        metrics = batched.get("/metrics").text

    for (name, form), one, other in zip(REQUESTS, alone, together, strict=True):
        assert other == one, (name, form)  # the same body, byte for byte
    assert '"language":"german"' in alone[1][1] and "-->" in alone[4][1]
    for step in ("encode", "generate"):
        batches, windows = (now - then for now, then in
                            zip(_batch_sizes(metrics, step), before[step], strict=True))
        assert windows >= len(REQUESTS), (step, batches, windows)
        assert batches < windows, (step, batches, windows)  # a batch of more than one
