"""Speech-to-text over Wyoming: the ``wyoming`` package's client against the real server.

The transcripts must stay under the HTTP API's per-clip ceilings, and be the very text the
HTTP API gives for the same samples: one service behind both.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import httpx
import pytest
from wyoming.asr import Transcript

from secretary import audio
from secretary.stt.whisper import WhisperEngine
from tests.helpers import clip_language, speech_clips
from tests.stt.test_accuracy import BEYOND_BASE, WER_CEILING, clip_wer
from tests.wyoming_api.client import describe, pcm16, run, transcribe
from tests.wyoming_api.conftest import Wyoming

CLIPS = [c for c in speech_clips() if c.name not in BEYOND_BASE]


def test_info_lists_the_model_and_its_languages(wyoming: Wyoming,
                                                whisper_engine: WhisperEngine) -> None:
    info = run(describe(wyoming.stt_port))
    assert info.tts == [] and len(info.asr) == 1
    program = info.asr[0]
    assert program.name == "secretary" and program.installed
    assert program.requires_external_vad  # Home Assistant ends the audio (audio-stop)
    assert not program.supports_transcript_streaming
    [model] = program.models
    assert model.name == "base" and model.installed
    # The model's languages as ISO 639 codes (Whisper's 99, and Cantonese for models that
    # know it), the form Home Assistant lists them in.
    assert model.languages == sorted(whisper_engine.languages())
    assert len(model.languages) >= 99
    assert {"en", "de", "fr", "es", "zh", "ja"} <= set(model.languages)


def test_health_names_the_ports(wyoming: Wyoming) -> None:
    body = httpx.get(f"{wyoming.url}/health", timeout=10).json()
    assert body["status"] == "ok"
    assert body["stt"]["port"] == wyoming.stt_port
    assert body["tts"]["port"] == wyoming.tts_port
    assert body["stt"]["model"] == "base"


@pytest.mark.slow
@pytest.mark.parametrize("clip", CLIPS, ids=lambda p: p.name)
def test_clip_transcripts_within_the_http_ceilings(clip: Path, wyoming: Wyoming) -> None:
    """Detected language and word error rate, as Home Assistant sends speech (16 kHz,
    16-bit mono, 1024 samples a chunk, language auto)."""
    heard = run(transcribe(wyoming.stt_port, pcm16(clip), "auto"))
    assert heard.event.type == "transcript", heard.event
    transcript = Transcript.from_event(heard.event)
    assert transcript.language == clip_language(clip)
    measured = clip_wer(clip, transcript.text)
    assert measured <= WER_CEILING[clip.name], f"WER {measured:.3f}: {transcript.text!r}"


@pytest.mark.parametrize("name", ["en_jfk_ask_not.flac", "de_thorsten_plan_geklappt.wav",
                                  "fr_leopard_consulat.wav"])
def test_same_text_as_the_http_api(name: str, wyoming: Wyoming, stt_url: str) -> None:
    """The same samples through Wyoming and through POST /transcribe give the same text."""
    pcm = pcm16(Path(__file__).parents[1] / "data" / "speech" / name)
    heard = run(transcribe(wyoming.stt_port, pcm))
    wav = io.BytesIO()
    with wave.open(wav, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(16000)
        writer.writeframes(pcm)
    response = httpx.post(f"{stt_url}/transcribe", files={"file": ("a.wav", wav.getvalue())},
                          timeout=300)
    assert response.status_code == 200, response.text
    assert heard.event.data["text"] == response.json()["text"]
    assert heard.event.data["language"] == response.json()["language"]


def test_other_formats_are_converted(wyoming: Wyoming) -> None:
    """44.1 kHz stereo 16-bit, as a satellite might send: resampled and mixed like an
    upload (the JFK clip is that format on disk)."""
    clip = next(c for c in CLIPS if c.name == "en_jfk_ask_not.flac")
    with open(clip, "rb") as f:
        import av

        with av.open(f) as container:
            stream = container.streams.audio[0]
            rate, channels = stream.rate, stream.channels
    samples = audio.decode(clip, rate).samples  # mono at the clip's rate
    stereo = audio.to_pcm16(samples.repeat(2))  # both channels the same
    assert (rate, channels) == (44100, 2)
    heard = run(transcribe(wyoming.stt_port, stereo, "en", rate=rate, channels=2))
    assert clip_wer(clip, heard.event.data["text"]) <= WER_CEILING[clip.name], heard.event


@pytest.mark.parametrize("language", ["de", "de-DE", "de_DE", "DE"])
def test_language_hint_in_any_regional_form(language: str, wyoming: Wyoming) -> None:
    clip = next(c for c in CLIPS if c.name == "de_thorsten_plan_geklappt.wav")
    heard = run(transcribe(wyoming.stt_port, pcm16(clip), language))
    assert heard.event.data["language"] == "de"
    assert clip_wer(clip, heard.event.data["text"]) <= WER_CEILING[clip.name]


def test_without_transcribe_the_language_is_detected(wyoming: Wyoming) -> None:
    """transcribe is optional in the protocol."""
    clip = next(c for c in CLIPS if c.name == "fr_cheetah_mer_jaune.wav")
    heard = run(transcribe(wyoming.stt_port, pcm16(clip), send_transcribe=False))
    assert heard.event.data["language"] == "fr"
    assert clip_wer(clip, heard.event.data["text"]) <= WER_CEILING[clip.name]


def test_no_audio_gives_an_empty_transcript(wyoming: Wyoming) -> None:
    heard = run(transcribe(wyoming.stt_port, b"", "en"))
    assert heard.event.type == "transcript"
    assert heard.event.data["text"] == ""
