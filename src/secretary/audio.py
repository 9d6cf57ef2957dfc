"""Audio in and out for the whole project, on PyAV.

PyAV bundles FFmpeg's libraries in its wheel, so every format a browser or a user sends
(WAV, FLAC, MP3, OGG/Opus, WebM/Opus, M4A/AAC) decodes with no system FFmpeg, and the same
library encodes MP3, Opus and AAC for the text-to-speech answers.

Decoding resamples through 16-bit PCM, the way faster-whisper's own ``decode_audio`` does,
so a file sent to the service gives Whisper exactly the samples it would get from a direct
``WhisperModel.transcribe(path)`` call.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import av
import av.error
import numpy as np

from secretary.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaError

WHISPER_SAMPLE_RATE = 16000

AudioFormat = Literal["wav", "flac", "mp3", "opus", "aac", "pcm"]
AUDIO_FORMATS: tuple[AudioFormat, ...] = ("wav", "flac", "mp3", "opus", "aac", "pcm")

MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "pcm": "audio/pcm",
}

# Samples buffered before resampling, as faster-whisper does: fewer, larger resampler calls.
_GROUP_SAMPLES = 500_000


class AudioDecodeError(InvalidRequestError):
    """The bytes are not audio that FFmpeg can read."""

    code = "invalid_audio"


class NoAudioStreamError(UnsupportedMediaError):
    """The file opened fine but holds no audio (an image, a video without sound)."""

    code = "no_audio_stream"


class EmptyAudioError(InvalidRequestError):
    code = "empty_audio"


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, in [-1, 1]
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


Source = bytes | str | Path | BinaryIO


def _open_input(source: Source) -> BinaryIO | str:
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise EmptyAudioError("the uploaded file is empty")
        return io.BytesIO(source)
    if isinstance(source, Path):
        return str(source)
    return source


def _frames_ignoring_bad_packets(container: av.container.InputContainer, stream: av.AudioStream):
    """Decode frames, skipping corrupt packets; a truncated upload keeps what decoded."""
    decoded_any = False
    iterator = iter(container.decode(stream))
    while True:
        try:
            frame = next(iterator)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue
        except av.error.FFmpegError as exc:
            if decoded_any:
                return  # truncated tail: keep what came before it
            raise AudioDecodeError(f"could not decode the audio: {exc}") from exc
        decoded_any = True
        yield frame


def decode(source: Source, sample_rate: int = WHISPER_SAMPLE_RATE, *,
           max_seconds: float | None = None, field: str | None = None) -> DecodedAudio:
    """Decode any audio file to mono float32 at ``sample_rate``.

    With ``max_seconds``, decoding stops as soon as the audio passes that length
    (``PayloadTooLargeError``, 413): a small file of hours of silence costs no more memory
    than the limit allows. Raises ``EmptyAudioError`` (400) for an empty file or one with
    no samples, ``AudioDecodeError`` (400) for bytes FFmpeg cannot read, and
    ``NoAudioStreamError`` (415) for a readable file with no audio stream.
    """
    handle = _open_input(source)
    try:
        container = av.open(handle, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(f"could not read the file as audio: {_reason(exc)}") from exc
    except (OSError, ValueError) as exc:  # unreadable path, closed handle
        raise AudioDecodeError(f"could not read the file: {exc}") from exc

    with container:
        if not container.streams.audio:
            kinds = sorted({s.type for s in container.streams}) or ["nothing"]
            raise NoAudioStreamError(
                f"the file has no audio stream (it holds {', '.join(kinds)}; "
                f"format {container.format.name})"
            )
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        fifo = av.AudioFifo()
        chunks: list[np.ndarray] = []
        limit = None if max_seconds is None else int(max_seconds * sample_rate) + 1
        total = 0

        def drain(frames: list[av.AudioFrame]) -> None:
            nonlocal total
            for out in frames:
                chunks.append(out.to_ndarray().reshape(-1))
                total += len(chunks[-1])
            if limit is not None and total > limit:
                chunks.clear()
                raise _too_long(field, max_seconds or 0)

        try:
            for frame in _frames_ignoring_bad_packets(container, stream):
                frame.pts = None  # timestamps of odd files trip the FIFO's continuity check
                fifo.write(frame)
                if fifo.samples >= _GROUP_SAMPLES:
                    drain(resampler.resample(fifo.read()))
            if fifo.samples > 0:
                drain(resampler.resample(fifo.read()))
            drain(resampler.resample(None))
        except av.error.FFmpegError as exc:
            raise AudioDecodeError(f"could not decode the audio: {_reason(exc)}") from exc

    if not chunks:
        raise EmptyAudioError("the audio contains no samples")
    pcm = np.concatenate(chunks)
    if pcm.size == 0:
        raise EmptyAudioError("the audio contains no samples")
    return DecodedAudio(from_pcm16(pcm), sample_rate)


def _too_long(field: str | None, max_seconds: float) -> PayloadTooLargeError:
    where = f"{field}: " if field else ""
    return PayloadTooLargeError(
        f"{where}the audio lasts more than the limit of {max_seconds:.0f} s", param=field)


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


# --------------------------------------------------------------------------- encoding


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit integer samples (clipped)."""
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype(np.int16)


def to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as 16-bit little-endian PCM (clipped)."""
    return to_int16(samples).astype("<i2", copy=False).tobytes()


def from_pcm16(data: bytes | np.ndarray) -> np.ndarray:
    """16-bit PCM (little-endian bytes, or an int16 array) as float32 samples in [-1, 1)."""
    pcm = np.frombuffer(data, "<i2") if isinstance(data, bytes | bytearray | memoryview) \
        else np.asarray(data, np.int16)
    return pcm.astype(np.float32) / 32768.0


def wav_header(sample_rate: int, data_bytes: int | None, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV header. ``data_bytes=None`` writes the 'unknown length' header
    that streaming players accept (sizes set to the maximum)."""
    unknown = data_bytes is None
    data_size = 0xFFFFFFFF if unknown else data_bytes
    riff_size = 0xFFFFFFFF if unknown else 36 + data_bytes
    byte_rate = sample_rate * channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


@dataclass(frozen=True)
class _Codec:
    container: str
    codec: str
    sample_format: str
    rates: tuple[int, ...]  # rates the codec accepts; the nearest one at or above is used
    bit_rate: int | None = None


_CODECS: dict[str, _Codec] = {
    "flac": _Codec("flac", "flac", "s16", ()),
    "mp3": _Codec("mp3", "libmp3lame", "s16p", (8000, 11025, 12000, 16000, 22050, 24000,
                                                  32000, 44100, 48000), 64_000),
    "opus": _Codec("ogg", "libopus", "s16", (8000, 12000, 16000, 24000, 48000), 48_000),
    "aac": _Codec("adts", "aac", "fltp", (8000, 11025, 12000, 16000, 22050, 24000, 32000,
                                          44100, 48000), 64_000),
}


def codec_sample_rate(fmt: str, sample_rate: int) -> int:
    """The rate a format will carry ``sample_rate`` audio at (Opus only knows a few)."""
    codec = _CODECS.get(fmt)
    if codec is None or not codec.rates or sample_rate in codec.rates:
        return sample_rate
    higher = [r for r in codec.rates if r >= sample_rate]
    return min(higher) if higher else max(codec.rates)


class ByteSink(io.RawIOBase):
    """A write-only, non-seekable file for PyAV: bytes are taken out as they are muxed,
    which is what lets an encoded stream (audio here, MP4 in the avatar) go to the client
    before it is finished."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data) -> int:  # type: ignore[override]
        self._buffer.extend(data)
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


class StreamEncoder:
    """Encode mono float32 audio chunk by chunk; each call returns the bytes ready so far.

    ``write`` and ``close`` together give a complete file; the pieces can be sent as they
    come (chunked HTTP), so the first audio reaches the listener before synthesis ends.
    """

    def __init__(self, fmt: str, sample_rate: int, *, whole_file: bool = False) -> None:
        if fmt not in AUDIO_FORMATS:
            raise InvalidRequestError(
                f"unsupported audio format {fmt!r}; use one of {', '.join(AUDIO_FORMATS)}",
                param="format",
            )
        self.format = fmt
        self.input_rate = sample_rate
        self.sample_rate = codec_sample_rate(fmt, sample_rate)
        self._header_sent = False
        self._closed = False
        self._pts = 0
        if fmt in ("wav", "pcm"):
            return
        spec = _CODECS[fmt]
        # A whole file goes to a seekable buffer so muxers can finish their headers (the MP3
        # gapless header, FLAC's STREAMINFO); a stream cannot go back, so they are left out.
        self._sink: ByteSink | io.BytesIO = io.BytesIO() if whole_file else ByteSink()
        self._container = av.open(self._sink, mode="w", format=spec.container)
        self._stream = self._container.add_stream(spec.codec, rate=self.sample_rate)
        self._stream.layout = "mono"
        if spec.bit_rate:
            self._stream.bit_rate = spec.bit_rate
        self._resampler = av.AudioResampler(
            format=spec.sample_format, layout="mono", rate=self.sample_rate
        )

    def write(self, samples: np.ndarray) -> bytes:
        if self._closed:
            raise RuntimeError("encoder is closed")
        if self.format == "pcm":
            return to_pcm16(samples)
        if self.format == "wav":
            head = b""
            if not self._header_sent:
                head = wav_header(self.sample_rate, None)
                self._header_sent = True
            return head + to_pcm16(samples)
        if len(samples) == 0:
            return b""
        frame = av.AudioFrame.from_ndarray(
            to_int16(samples).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = self.input_rate
        frame.pts = None
        self._encode(self._resampler.resample(frame))
        return self._take()

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        if self.format == "pcm":
            return b""
        if self.format == "wav":
            return b"" if self._header_sent else wav_header(self.sample_rate, None)
        self._encode(self._resampler.resample(None))
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._take()

    def _take(self) -> bytes:
        if isinstance(self._sink, ByteSink):
            return self._sink.take()
        return self._sink.getvalue() if self._closed else b""

    def _encode(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            frame.pts = self._pts
            self._pts += frame.samples
            for packet in self._stream.encode(frame):
                self._container.mux(packet)


def encode(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode a whole clip. WAV gets exact sizes in its header (players seek with them)."""
    if fmt == "wav":
        pcm = to_pcm16(samples)
        return wav_header(sample_rate, len(pcm)) + pcm
    encoder = StreamEncoder(fmt, sample_rate, whole_file=True)
    return encoder.write(samples) + encoder.close()


def encode_chunks(chunks: Iterator[np.ndarray], sample_rate: int, fmt: str) -> Iterator[bytes]:
    """Encode an iterator of audio chunks into an iterator of file pieces."""
    encoder = StreamEncoder(fmt, sample_rate)
    for chunk in chunks:
        data = encoder.write(chunk)
        if data:
            yield data
    tail = encoder.close()
    if tail:
        yield tail


class Resampler:
    """Mono float32 chunks from one rate to another, one FFmpeg resampler for the stream
    (no clicks at chunk edges)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate, self.to_rate = from_rate, to_rate
        self._resampler = (av.AudioResampler(format="flt", layout="mono", rate=to_rate)
                           if from_rate != to_rate else None)

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, np.float32)
        if self._resampler is None or len(samples) == 0:
            return samples
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt",
                                           layout="mono")
        frame.sample_rate = self.from_rate
        frame.pts = None
        return self._convert(frame)

    def flush(self) -> np.ndarray:
        """The samples still inside the resampler (at the end of a stream)."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._convert(None)

    def _convert(self, frame: av.AudioFrame | None) -> np.ndarray:
        assert self._resampler is not None
        out = [f.to_ndarray().reshape(-1) for f in self._resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def resample_stream(chunks: Iterable[np.ndarray], from_rate: int, to_rate: int
                    ) -> Iterator[np.ndarray]:
    """Resample a stream of mono float32 chunks with FFmpeg's resampler. One resampler
    serves the whole stream, so chunk edges leave no clicks."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)

    def convert(frame: av.AudioFrame | None) -> np.ndarray:
        out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)

    for chunk in chunks:
        if len(chunk) == 0:
            continue
        frame = av.AudioFrame.from_ndarray(
            np.asarray(chunk, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = from_rate
        frame.pts = None
        yield convert(frame)
    yield convert(None)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a whole mono float32 clip with FFmpeg's resampler."""
    if from_rate == to_rate or len(samples) == 0:
        return np.asarray(samples, dtype=np.float32)
    return np.concatenate(list(resample_stream([samples], from_rate, to_rate)))


def rms_dbfs(samples: np.ndarray) -> float:
    """Loudness of a clip in dB relative to full scale (-inf for digital silence)."""
    if len(samples) == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def decode_field(data: bytes, field: str, sample_rate: int = WHISPER_SAMPLE_RATE,
                 max_seconds: float | None = None) -> DecodedAudio:
    """``decode`` with the request field named in its errors (blocking)."""
    try:
        return decode(data, sample_rate, max_seconds=max_seconds, field=field)
    except (AudioDecodeError, NoAudioStreamError, EmptyAudioError) as exc:
        exc.message = f"{field}: {exc.message}"
        exc.param = field
        raise
