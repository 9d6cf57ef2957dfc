"""Batched final transcripts equal the same transcripts decoded alone (the engine's own
single-clip path), for clips of different lengths and languages decoded in one batch."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from secretary import audio
from secretary.scale.batching import Clip, batchable, decode_batch
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
