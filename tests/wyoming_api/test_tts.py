"""Text-to-speech over Wyoming: the ``wyoming`` package's client against the real server.

What was said is checked by ear (Whisper base at temperature 0, as in the HTTP API's
tests), and the audio is the HTTP API's own for the same text and voice.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from wyoming.tts import SynthesizeVoice

from secretary import audio
from secretary.stt.engine import TranscriptionOptions, collect
from secretary.stt.whisper import WhisperEngine
from tests.helpers import wer
from tests.tts.test_api import ENGLISH, GERMAN
from tests.wyoming_api.client import describe, run, synthesize, synthesize_streaming
from tests.wyoming_api.conftest import Wyoming


def hear(whisper: WhisperEngine, samples: np.ndarray, rate: int, language: str) -> str:
    """Deterministic: beam search at temperature 0 with no fallback to sampling."""
    options = TranscriptionOptions(language=language, temperature=0.0)
    return collect(whisper.transcribe(audio.resample(samples, rate, 16000), options)).text


def test_info_lists_every_voice_with_its_languages(wyoming: Wyoming) -> None:
    info = run(describe(wyoming.tts_port))
    assert info.asr == [] and len(info.tts) == 1
    program = info.tts[0]
    assert program.name == "secretary" and program.supports_synthesize_streaming
    voices = {v.name: v for v in program.voices}
    joe = voices["en_US-joe-medium"]
    assert joe.installed and joe.languages == ["en", "en-US"]
    assert joe.attribution.name == "Piper"
    # eSpeak NG's voices, one per language, as the HTTP API's GET /voices lists them.
    assert voices["de"].languages == ["de"]
    assert voices["en-gb"].languages == ["en-GB", "en"]
    assert len(voices) > 100


def test_english_round_trip_is_the_http_apis_audio(wyoming: Wyoming, tts_url: str,
                                                   whisper: WhisperEngine) -> None:
    spoken = run(synthesize(wyoming.tts_port, ENGLISH))
    assert spoken.types == ["audio-start", "audio-stop"]
    start = spoken.events[0].data
    assert (start["rate"], start["width"], start["channels"]) == (22050, 2, 1)
    heard = hear(whisper, spoken.samples, spoken.rate, "en")
    assert wer(ENGLISH, heard, "en") <= 0.1, heard
    # The same samples as POST /synthesize (the same engine, route and sentence pauses),
    # to the last bit of 16-bit rounding.
    response = httpx.post(f"{tts_url}/synthesize", json={"text": ENGLISH, "language": "en"},
                          timeout=60)
    assert response.status_code == 200, response.text
    reference = audio.decode(response.content, 22050).samples
    assert len(reference) == len(spoken.samples)
    assert np.max(np.abs(reference - spoken.samples)) <= 2 / 32768


@pytest.mark.parametrize("voice", [SynthesizeVoice(name="de"), {"language": "de"},
                                   {"language": "de_DE"}], ids=["name", "language", "locale"])
def test_german_by_voice_name_or_language(voice: object, wyoming: Wyoming,
                                          whisper: WhisperEngine) -> None:
    """Home Assistant names the voice only; a voice speaks its own language (eSpeak NG's
    German here), and a language alone routes as the HTTP API does."""
    text = " ".join(GERMAN)
    spoken = run(synthesize(wyoming.tts_port, text, voice))
    assert spoken.types == ["audio-start", "audio-stop"], spoken.events[-1]
    heard = hear(whisper, spoken.samples, spoken.rate, "de")
    # The HTTP API's ceiling for eSpeak NG's German (measured 0.06; see tests/tts).
    assert wer(text, heard, "de") <= 0.32, heard


def test_streaming_synthesis_speaks_each_sentence_as_it_is_complete(
        wyoming: Wyoming, whisper: WhisperEngine) -> None:
    """Text arrives in pieces that cut words; the first sentence's audio comes back while
    the rest of the text is still being written, and the whole reply is heard."""
    chunks = ["The quick brown fox jum", "ps over the lazy dog. Please", " call me back ",
              "tomorrow morning."]
    spoken, before_stop = run(synthesize_streaming(wyoming.tts_port, chunks, wait_after=2))
    # Audio of the first sentence, then the rest once the stream ends.
    assert spoken.types == ["audio-start", "audio-stop", "audio-start", "audio-stop",
                            "synthesize-stopped"]
    assert before_stop > 2  # audio-start, chunks and audio-stop before synthesize-stop
    heard = hear(whisper, spoken.samples, spoken.rate, "en")
    assert wer(ENGLISH, heard, "en") <= 0.1, heard


def test_a_speaker_is_a_voice_of_the_same_engine(wyoming: Wyoming) -> None:
    spoken = run(synthesize(wyoming.tts_port, "Hello there.",
                            SynthesizeVoice(name="en-gb", speaker="en-us")))
    assert spoken.types == ["audio-start", "audio-stop"]
    refused = run(synthesize(wyoming.tts_port, "Hello there.",
                             SynthesizeVoice(name="en_US-joe-medium", speaker="nobody")))
    assert refused.types == ["error"]
    assert "nobody" in refused.events[-1].data["text"]


def test_metrics_count_requests(wyoming: Wyoming) -> None:
    run(synthesize(wyoming.tts_port, "One more."))
    body = httpx.get(f"{wyoming.url}/metrics", timeout=10).text
    assert 'secretary_wyoming_request_seconds_count{kind="tts"}' in body
    assert "secretary_wyoming_first_audio_seconds_count" in body
