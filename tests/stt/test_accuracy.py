"""Word error rate and language detection on real speech, through the real server.

The service must give exactly what faster-whisper gives when called directly on the same
file with the same settings (so decoding and parameters are wired right), and stay under
per-clip ceilings that a regression (wrong sample rate, channel mix-up, truncated audio)
would break.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from faster_whisper import WhisperModel

from secretary.catalog import ModelStore
from secretary.config import Settings
from tests.helpers import (
    clip_language,
    expected_device_and_compute_type,
    reference_text,
    speech_clips,
    wer,
)

# Ceilings per clip for Whisper base (int8, beam 5, VAD on). Measured WER in the comment;
# ceilings leave room for numeric noise across CPUs, not for broken audio (WER near 1).
WER_CEILING: dict[str, float] = {
    "de_cheetah_werbung.wav": 0.35,  # 0.17: "ein" for "einen"
    "de_leopard_leichenhalle.wav": 0.45,  # 0.30: "liegt in der" for "liegenden"
    "de_thorsten_plan_geklappt.wav": 0.2,  # 0.00
    "de_thorsten_schoko_bonbons.wav": 0.35,  # 0.17: "Bombongs"
    "de_thorsten_whisper_mist.wav": 0.35,  # 0.00, whispered at -41 dBFS
    "en_cheetah_platforms.wav": 0.15,  # 0.00
    "en_cmu_arctic_aew_a0001.wav": 0.4,  # 0.25: "fill up" for "Philip"
    "en_cmu_arctic_aew_a0003.wav": 0.15,  # 0.00
    "en_cmu_arctic_axb_a0004.wav": 0.15,  # 0.00
    "en_cmu_arctic_axb_a0006.wav": 0.25,  # 0.08
    "en_jfk_ask_not.flac": 0.1,  # 0.00, 44.1 kHz stereo FLAC
    "en_librispeech_1272-128104-0000_quilter.wav": 0.1,  # 0.00
    "en_sr_one_two_three.wav": 0.0,  # digit string, compared as digits
    "en_vosk_digits.wav": 0.15,  # digit string, compared as digits
    "es_leopard_arenas.wav": 0.15,  # 0.00
    "fr_cheetah_mer_jaune.wav": 0.15,  # 0.00
    "fr_leopard_consulat.wav": 0.3,  # 0.15
    "fr_sr_dictee.flac": 0.3,  # 0.14 ("1" for "un")
}
# Whisper base mishears this short, noisy clip (it detects Greek or Hindi, and even with
# language="es" gives "Uno menachia cabrera..."). It still takes part in the
# request path; large-v3 is the answer for it, not a looser ceiling.
BEYOND_BASE = {"es_cheetah_homenaje.wav"}

_DIGIT_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}


def _digits(text: str) -> str | None:
    """Spoken digit strings are compared digit by digit: Whisper writes '1-0-0' or '1, 2,
    3' and the English normaliser folds numbers in ways that make word counts meaningless."""
    words = re.findall(r"[a-z]+|\d", text.lower())
    if not words or not all(w in _DIGIT_WORDS or w.isdigit() for w in words):
        return None
    return "".join(_DIGIT_WORDS.get(w, w) for w in words)


def clip_wer(clip: Path, hypothesis: str) -> float:
    reference = reference_text(clip)
    ref_digits = _digits(reference)
    if ref_digits is not None:
        import jiwer

        hyp_digits = "".join(re.findall(r"\d", hypothesis)) or _digits(hypothesis) or ""
        return jiwer.cer(ref_digits, hyp_digits)
    return wer(reference, hypothesis, clip_language(clip))


@pytest.fixture(scope="module")
def direct_model(stt_settings: Settings) -> WhisperModel:
    """faster-whisper loaded on its own, as a user would, from the same model folder, on
    the device and compute type the service's defaults choose on this machine."""
    path = ModelStore(stt_settings.models_dir).whisper_path("base")
    device, compute_type = expected_device_and_compute_type()
    return WhisperModel(str(path), device=device, compute_type=compute_type)


@pytest.mark.slow
@pytest.mark.parametrize("clip", speech_clips(), ids=lambda p: p.name)
def test_service_matches_direct_faster_whisper(clip: Path, stt_url: str,
                                               direct_model: WhisperModel) -> None:
    with open(clip, "rb") as f:
        response = httpx.post(f"{stt_url}/transcribe", files={"file": (clip.name, f)},
                              timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()

    segments, info = direct_model.transcribe(str(clip), beam_size=5, vad_filter=True)
    direct_text = "".join(s.text for s in segments).strip()
    assert body["duration"] == pytest.approx(info.duration, abs=0.01)
    if clip.name in BEYOND_BASE:
        # Every greedy decode of this clip fails Whisper's quality checks, so it falls back
        # to sampling at higher temperatures: two runs legitimately differ.
        return

    assert body["text"] == direct_text
    assert body["language"] == info.language
    expected_language = clip_language(clip)
    assert body["language"] == expected_language, f"detected {body['language']}"
    measured = clip_wer(clip, body["text"])
    assert measured <= WER_CEILING[clip.name], f"WER {measured:.3f}: {body['text']!r}"


def test_every_clip_has_a_ceiling() -> None:
    names = {p.name for p in speech_clips()}
    assert names == set(WER_CEILING) | BEYOND_BASE


@pytest.mark.parametrize("language", ["en", "de", "fr", "es"])
def test_language_hint_is_used(language: str, stt_url: str) -> None:
    """With the language given, a clip of that language transcribes under its ceiling and
    the answer reports the language asked for with probability 1."""
    clip = next(c for c in speech_clips(language) if c.name not in BEYOND_BASE
                and _digits(reference_text(c)) is None)
    with open(clip, "rb") as f:
        response = httpx.post(f"{stt_url}/transcribe", files={"file": (clip.name, f)},
                              data={"language": language}, timeout=300)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == language
    assert body["language_probability"] == 1.0
    assert clip_wer(clip, body["text"]) <= WER_CEILING[clip.name]
