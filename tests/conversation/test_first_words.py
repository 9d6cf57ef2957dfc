"""The reply's first words go to speech before its first sentence is complete: a long first
sentence is cut after a few words (never on a short word like "at", never leaving its
last word alone), and the piece after the cut follows without the sentence pause."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from secretary import audio
from secretary.conversation.build import build_pipeline
from secretary.conversation.metrics import TurnMetrics
from secretary.conversation.reply import Audio, ReplyOptions, ReplyStream, Sentence
from secretary.conversation.sentences import Fragment, SentenceSplitter
from secretary.conversation.stages import Heard
from secretary.stt.engine import TranscriptionOptions, collect
from secretary.stt.whisper import WhisperEngine
from tests.conftest import make_settings, same_speech_every_run
from tests.helpers import wer

SENTENCE = "Today only platforms one and three are used by the trains of the morning."
# Heard back whole by the Whisper judge both cut and uncut (measured; the cut cost other
# long sentences a word: "Tomorrow morning you have | a meeting" was heard "have and").
SPOKEN = "I have added a reminder to call your sister before dinner on Friday evening."


def split(text: str, *, words: int = 4, clause: int = 24, by_word: bool = False) -> list[str]:
    splitter = SentenceSplitter(250, clause, words)
    if by_word:  # as a chat model streams it
        tokens = text.split(" ")
        out = [s for i, t in enumerate(tokens) for s in splitter.feed(("" if i == 0 else " ") + t)]
    else:  # as a template or the read-back gives it: at once
        out = splitter.feed(text)
    return out + splitter.flush()


def test_a_long_first_sentence_is_cut_after_its_first_words() -> None:
    pieces = split(SENTENCE)
    assert pieces == ["Today only platforms one", "and three are used by the trains of the "
                      "morning."]
    assert isinstance(pieces[0], Fragment) and not isinstance(pieces[1], Fragment)
    # Streamed word by word, the cut is the same.
    assert split(SENTENCE, by_word=True) == pieces
    # Later sentences stay whole.
    two = split(SENTENCE + " The second one leaves at seven in the morning.")
    assert two[1:] == ["and three are used by the trains of the morning.",
                       "The second one leaves at seven in the morning."]
    # A short first sentence is said whole: its speech is quick anyway.
    assert split("Today only platforms 1 and 3 are used. Then more.") == [
        "Today only platforms 1 and 3 are used.", "Then more."]


def test_the_cut_never_ends_on_a_function_word_nor_leaves_one_word_alone() -> None:
    assert split("Okay, lunch with Anna on Friday at one is in your calendar from now on.")[
        0] == "Okay, lunch with Anna"
    assert split("Put it on the list for me, and the other one on the list for Monday.")[
        0] == "Put it on the list"
    assert split("Ich habe den Termin am Freitag um drei Uhr in den Kalender eingetragen.")[
        0] == "Ich habe den Termin"
    # Never on a number: "Platform 1 | and" would be heard as "won".
    assert split("Today only platforms 1 and 3 are used by the trains of the morning.")[
        0] == "Today only platforms 1 and 3 are used"
    # Long, but six words: no cut leaves two words after it.
    assert split("Extraordinarily complicated arrangements notwithstanding, everyone came.") == [
        "Extraordinarily complicated arrangements notwithstanding,", "everyone came."]
    # 0 turns it off.
    assert split(SENTENCE, words=0) == [SENTENCE]


def test_a_clause_that_comes_first_is_the_cut() -> None:
    text = "Of course, I will book the room, and send the invite to everyone on the team."
    assert split(text, words=9) == ["Of course, I will book the room,",
                                    "and send the invite to everyone on the team."]
    # A clause after the first words: the words win, the clause is no cut of its own.
    assert split(text, words=4) == ["Of course, I will", "book the room, and send the invite "
                                    "to everyone on the team."]


@pytest.fixture(scope="module")
def pipeline(cache_dir: Path) -> Any:
    settings = make_settings(cache_dir)
    same_speech_every_run(settings)
    settings.conversation.brain = "echo"
    settings.conversation.avatar = False
    built = build_pipeline(settings, TurnMetrics())
    built.speaker.load()
    return built


async def reply_pieces(pipeline: Any, words: int, text: str) -> list[Sentence | Audio]:
    heard = Heard(text=text, language="en", language_probability=1.0, duration=3.0)
    stream = ReplyStream(pipeline.brain, pipeline.speaker, "first-words", heard, voice=None,
                         trim_lead=True, options=ReplyOptions(first_words=words))
    return [piece async for piece in stream]


def quiet_runs(samples: np.ndarray, rate: int) -> list[float]:
    """The lengths in seconds of the silences inside ``samples`` (10 ms frames under
    -40 dB), its lead-in and tail left out."""
    frame = rate // 100
    level = [float(np.sqrt(np.mean(samples[i:i + frame] ** 2)))
             for i in range(0, len(samples) - frame, frame)]
    loud = [v > 0.01 for v in level]
    first, last = loud.index(True), len(loud) - loud[::-1].index(True)
    runs, run = [], 0
    for flag in loud[first:last]:
        if flag:
            if run:
                runs.append(run / 100)
            run = 0
        else:
            run += 1
    return runs


async def test_the_piece_after_the_cut_follows_as_one_sentence(
        pipeline: Any, judge: WhisperEngine) -> None:
    cut = await reply_pieces(pipeline, 4, SPOKEN)
    whole = await reply_pieces(pipeline, 0, SPOKEN)
    assert [p.text for p in cut if isinstance(p, Sentence)] == [
        "I have added a reminder", "to call your sister before dinner on Friday evening."]
    assert cut[0] == Sentence("I have added a reminder", 0, flows_on=True)
    assert [p.text for p in whole if isinstance(p, Sentence)] == [SPOKEN]
    # The first sound is ready sooner: its sentence is the speech of five words, not of
    # fourteen (the engine yields a sentence in pieces, so they are summed).
    def first_sentence(pieces: list[Any]) -> float:
        return sum(p.duration for p in pieces if isinstance(p, Audio) and p.sentence == 0
                   and not p.sentence_end)

    assert first_sentence(cut) < 0.5 * first_sentence(whole)
    rate = next(p for p in cut if isinstance(p, Audio)).rate
    joined = np.concatenate([p.samples for p in cut if isinstance(p, Audio)
                             and not p.sentence_end])
    reference = np.concatenate([p.samples for p in whole if isinstance(p, Audio)
                                and not p.sentence_end])
    # No sentence pause at the cut (0.2 s, plus the voice's own quiet ends): at most a
    # break between words.
    assert max(quiet_runs(joined, rate)) < 0.2
    assert sum(p.sentence_end for p in cut if isinstance(p, Audio)) == 1
    # Heard back as well as the sentence said whole (both measured without an error; the
    # margin is one word of fourteen; Whisper base in float32, greedy).
    options = TranscriptionOptions(language="en", temperature=0.0, beam_size=1)
    heard = [collect(judge.transcribe(resample(x, rate), options)).text
             for x in (joined, reference)]
    assert wer(SPOKEN, heard[0], "en") <= wer(SPOKEN, heard[1], "en") + 0.08, heard


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    resampler = audio.Resampler(rate, audio.WHISPER_SAMPLE_RATE)
    return np.concatenate([resampler.push(samples), resampler.flush()])
