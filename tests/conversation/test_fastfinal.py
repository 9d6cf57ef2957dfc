"""The fast final transcript on the packaged Whisper base, and the sentence splitter that
feeds speech from a streamed reply."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from secretary import audio
from secretary.config import Settings
from secretary.conversation.sentences import SentenceSplitter
from secretary.stt.engine import TranscriptionOptions, collect
from secretary.stt.fastfinal import FULL_WINDOW, FastFinalPolicy, final_transcript
from secretary.stt.models import WhisperModels
from secretary.stt.whisper import WhisperEngine
from tests.conftest import make_settings
from tests.helpers import SPEECH, reference_text, wer

OPTIONS = TranscriptionOptions(temperature=0.0)


@pytest.fixture(scope="module")
def engine(cache_dir: Path) -> WhisperEngine:
    settings = Settings(_env_file=None, cache_dir=cache_dir)
    engine = WhisperEngine(settings.stt, WhisperModels(settings.models_dir))
    engine.load()
    return engine


@pytest.mark.parametrize("name", ["en_cheetah_platforms.wav", "de_thorsten_plan_geklappt.wav",
                                  "fr_cheetah_mer_jaune.wav"])
def test_a_short_utterance_is_read_in_a_fitted_window_as_well_as_in_the_full_one(
        engine: WhisperEngine, name: str) -> None:
    samples = audio.decode(SPEECH / name).samples
    language = name[:2]
    fast = final_transcript(engine, samples, OPTIONS, FastFinalPolicy())
    assert fast.window < FULL_WINDOW and not fast.fell_back
    assert fast.transcription.info.language == language
    full = collect(engine.transcribe(samples, OPTIONS))
    reference = reference_text(SPEECH / name)
    # bench/fast_final.py over every clip: within 0.01 WER per language. Per clip a word
    # may differ either way (French here: 'mer zone' for 'mer jaune'), not more.
    assert wer(reference, fast.transcription.text, language) <= wer(
        reference, full.text, language) + 0.1, (fast.transcription.text, full.text)


def test_a_window_too_short_for_the_clip_loops_and_falls_back_to_the_full_one(
        engine: WhisperEngine) -> None:
    """A window shorter than the speech makes Whisper repeat itself (on this clip with
    10 s for 11 s of speech); the guard notices and decodes with the full window."""
    samples = audio.decode(SPEECH / "en_jfk_ask_not.flac").samples
    policy = replace(FastFinalPolicy(), min_window=8, margin=-1.0)
    result = final_transcript(engine, samples, OPTIONS, policy)
    assert result.fell_back and result.window == FULL_WINDOW
    text = result.transcription.text
    assert wer(reference_text(SPEECH / "en_jfk_ask_not.flac"), text, "en") <= 0.1, text


def test_silence_gives_no_words_in_a_fitted_window(engine: WhisperEngine) -> None:
    import numpy as np

    result = final_transcript(engine, np.zeros(32000, np.float32), OPTIONS, FastFinalPolicy())
    assert result.transcription.text == ""


def test_sentences_leave_the_splitter_as_soon_as_the_next_one_begins() -> None:
    splitter = SentenceSplitter(first_clause_chars=0)
    reply = "Good morning! Your first meeting starts at nine. Dr. Smith is late."
    out = [splitter.feed(("" if i == 0 else " ") + token)
           for i, token in enumerate(reply.split(" "))]
    flat = [s for piece in out for s in piece]
    assert flat == ["Good morning!", "Your first meeting starts at nine."]
    assert out[2] == ["Good morning!"]  # out as the word after it arrives
    assert splitter.flush() == ["Dr. Smith is late."]  # an abbreviation is not an end


def test_the_first_sentence_may_be_cut_at_a_clause_to_start_speaking_sooner() -> None:
    splitter = SentenceSplitter(first_clause_chars=10)
    found = []
    for token in ["Of course", ", I will book", " the room for", " Thursday, and",
                  " send the invite."]:
        found += splitter.feed(token)
    found += splitter.flush()
    assert found == ["Of course, I will book the room for Thursday,", "and send the invite."]


@pytest.mark.parametrize("threads", [0, 2])
def test_the_conversation_transcribes_with_its_own_thread_count(
        cache_dir: Path, engine: WhisperEngine, threads: int) -> None:
    """The live conversation's Whisper runs one thread per transcription by default (short
    decodes are faster so on two cores, bench/realtime.py), whatever the STT service's
    setting, and reads a turn as the service's engine does; 0 takes the service's."""
    from secretary.conversation.build import build_pipeline
    from secretary.conversation.metrics import TurnMetrics

    settings = make_settings(cache_dir, stt={"cpu_threads": threads})
    settings.conversation.avatar = False
    transcriber = build_pipeline(settings, TurnMetrics()).transcriber
    assert transcriber.engine.settings.cpu_threads == 1  # type: ignore[attr-defined]
    settings.conversation.stt_threads = 0
    service_like = build_pipeline(settings, TurnMetrics()).transcriber
    assert service_like.engine.settings.cpu_threads == threads  # type: ignore[attr-defined]
    samples = audio.decode(SPEECH / "en_cheetah_platforms.wav").samples
    own = final_transcript(transcriber.engine, samples, OPTIONS,  # type: ignore[attr-defined]
                           FastFinalPolicy())
    assert own.transcription.text == final_transcript(
        engine, samples, OPTIONS, FastFinalPolicy()).transcription.text
