"""The shared audio module: every upload format in, every answer format out."""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper import decode_audio

from secretary import audio
from tests.helpers import FACES, SPEECH, speech_clips


@pytest.mark.parametrize("clip", speech_clips(), ids=lambda p: p.name)
def test_decode_gives_whisper_exactly_what_faster_whisper_decodes(clip) -> None:
    ours = audio.decode(clip)
    theirs = decode_audio(str(clip))
    assert ours.sample_rate == 16000
    assert ours.samples.dtype == np.float32
    np.testing.assert_array_equal(ours.samples, theirs)


def test_decode_from_bytes_equals_decode_from_path() -> None:
    clip = SPEECH / "en_jfk_ask_not.flac"  # 44.1 kHz stereo, 24 bit
    from_path = audio.decode(clip)
    from_bytes = audio.decode(clip.read_bytes())
    np.testing.assert_array_equal(from_path.samples, from_bytes.samples)
    assert from_path.duration == pytest.approx(11.0, abs=1e-3)


def _tone(seconds: float = 2.0, rate: int = 24000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "aac"])
@pytest.mark.parametrize("rate", [16000, 22050, 24000])
def test_encode_decodes_back_with_duration_and_pitch(fmt: str, rate: int) -> None:
    tone = _tone(rate=rate)
    data = audio.encode(tone, rate, fmt)
    back = audio.decode(data, sample_rate=rate)
    # ADTS carries no gapless info: AAC keeps its priming frame and padding (two frames of
    # 1024 samples at most). The others come back to within a few milliseconds.
    tolerance = 2 * 1024 / rate + 0.005 if fmt == "aac" else 0.03
    assert back.duration == pytest.approx(2.0, abs=tolerance)
    spectrum = np.abs(np.fft.rfft(back.samples))
    peak_hz = np.argmax(spectrum) * rate / len(back.samples)
    assert peak_hz == pytest.approx(440, abs=5)
    assert 0.3 < np.max(np.abs(back.samples)) < 0.6


def test_pcm_is_raw_little_endian_int16() -> None:
    tone = _tone(0.1)
    data = audio.encode(tone, 24000, "pcm")
    assert len(data) == len(tone) * 2
    values = np.frombuffer(data, "<i2")
    np.testing.assert_allclose(values / 32767.0, tone, atol=1e-4)


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "aac", "pcm"])
def test_stream_encoder_emits_early_and_matches_whole_encode(fmt: str) -> None:
    tone = _tone(3.0)
    encoder = audio.StreamEncoder(fmt, 24000)
    pieces = [encoder.write(tone[i:i + 12000]) for i in range(0, len(tone), 12000)]
    pieces.append(encoder.close())
    assert pieces[0] or pieces[1], "nothing came out until the end"
    streamed = b"".join(pieces)
    if fmt == "pcm":
        assert streamed == audio.encode(tone, 24000, "pcm")
        return
    back = audio.decode(streamed, sample_rate=24000)
    whole = audio.decode(audio.encode(tone, 24000, fmt), sample_rate=24000)
    # A stream cannot carry MP3's gapless header (written at the start, known at the end),
    # so the decoder keeps the encoder delay: two MPEG-2 frames of 576 samples at most.
    tolerance = 2 * 576 / 24000 + 0.001 if fmt == "mp3" else 0.025
    assert abs(back.duration - whole.duration) < tolerance


def test_opus_uses_a_rate_opus_supports() -> None:
    assert audio.codec_sample_rate("opus", 22050) == 24000
    assert audio.codec_sample_rate("mp3", 22050) == 22050
    assert audio.codec_sample_rate("wav", 22050) == 22050


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", audio.EmptyAudioError),
        (b"\x00" * 64, audio.AudioDecodeError),
        (np.random.default_rng(0).bytes(10_000), audio.AudioDecodeError),
        ((FACES / "noface_coffee_cup.png").read_bytes(), audio.NoAudioStreamError),
        ((FACES / "pexels_woman_neutral.jpg").read_bytes(), audio.NoAudioStreamError),
        (audio.wav_header(16000, 0), audio.EmptyAudioError),
    ],
    ids=["empty", "zeros", "random", "png", "jpeg", "zero-length-wav"],
)
def test_bad_input_raises_the_right_error(data: bytes, error: type) -> None:
    with pytest.raises(error) as info:
        audio.decode(data)
    assert 400 <= info.value.status_code < 500


def test_truncated_upload_keeps_what_decoded() -> None:
    data = (SPEECH / "en_jfk_ask_not.flac").read_bytes()
    partial = audio.decode(data[: len(data) // 2])
    assert 4.0 < partial.duration < 7.0


def test_resample_keeps_duration() -> None:
    tone = _tone(1.0, rate=22050)
    out = audio.resample(tone, 22050, 16000)
    assert len(out) == pytest.approx(16000, abs=32)
    assert audio.rms_dbfs(np.zeros(10, np.float32)) == float("-inf")
