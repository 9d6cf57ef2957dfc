"""MP4 output: H.264 video and AAC audio with PyAV (its wheel carries libx264).

Audio is muxed alongside the video as frames are added (each frame brings the audio up to
its end time), so the file interleaves well and a streamed fragment always carries the
sound of the pictures in it. Video timestamps count frames at ``fps`` from zero and audio
timestamps count samples from zero: both tracks start together, which is the sync.

``fragmented=True`` writes fragmented MP4 (``empty_moov`` plus a fragment every few
frames) to a non-seekable sink, so bytes can go to the client while rendering goes on;
browsers play it progressively. Otherwise a regular MP4 with its index at the front
(``faststart``) is written; FFmpeg moves the index by re-reading the file, so it goes
through a temporary file rather than memory.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from secretary.audio import ByteSink

VIDEO_CODEC = "libx264"
AUDIO_CODEC = "aac"
AUDIO_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
MEDIA_TYPE = "video/mp4"
AAC_PRIMING_SAMPLES = 1024  # FFmpeg's AAC encoder delay


def even(width: int, height: int) -> tuple[int, int]:
    """H.264 in 4:2:0 needs even dimensions."""
    return max(2, width - width % 2), max(2, height - height % 2)


class Mp4Writer:
    def __init__(self, width: int, height: int, fps: int, audio: np.ndarray | None,
                 sample_rate: int, *, fragmented: bool = False, crf: int = 23) -> None:
        self.width, self.height = even(width, height)
        self.fps = fps
        self.fragmented = fragmented
        self._frames = 0
        self._audio = None if audio is None else np.clip(audio, -1, 1).astype(np.float32)
        if fragmented and self._audio is not None:
            # Fragmented MP4 has no edit list to hide the AAC encoder's priming samples;
            # start the sound that much later so the decoded track lines up with the video.
            self._audio = self._audio[AAC_PRIMING_SAMPLES:]
        self._audio_sent = 0
        self.sample_rate = sample_rate
        self._sink: ByteSink | None = None
        self._folder: Path | None = None
        if fragmented:
            self._sink = ByteSink()
            movflags = "frag_keyframe+empty_moov+default_base_moof"
            options = {"movflags": movflags, "frag_duration": str(int(0.4 * 1e6))}
            target: ByteSink | str = self._sink
        else:
            self._folder = Path(tempfile.mkdtemp(prefix="secretary-avatar-"))
            target = str(self._folder / "out.mp4")
            options = {"movflags": "faststart"}
        try:
            self._container = av.open(target, mode="w", format="mp4", options=options)
        except BaseException:
            self._cleanup()
            raise
        video = self._container.add_stream(VIDEO_CODEC, rate=fps)
        video.width, video.height = self.width, self.height
        video.pix_fmt = "yuv420p"
        video.time_base = Fraction(1, fps)
        # zerolatency: no frame lookahead, so each frame's packet comes out at once.
        video.options = {"preset": "veryfast", "tune": "zerolatency", "crf": str(crf),
                         "g": str(2 * fps)}
        video.thread_count = 1
        self._video = video
        self._audio_stream = None
        if self._audio is not None:
            if sample_rate not in AUDIO_RATES:
                raise ValueError(f"AAC does not take {sample_rate} Hz")
            stream = self._container.add_stream(AUDIO_CODEC, rate=sample_rate)
            stream.layout = "mono"
            stream.bit_rate = 96_000
            stream.time_base = Fraction(1, sample_rate)
            self._audio_stream = stream

    def _take(self) -> bytes:
        return self._sink.take() if self._sink is not None else b""

    def _cleanup(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def add(self, bgr: np.ndarray) -> bytes:
        """Encode one frame (BGR uint8) and the audio that plays during it."""
        image = bgr[: self.height, : self.width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        frame.pts = self._frames
        self._frames += 1
        for packet in self._video.encode(frame):
            self._container.mux(packet)
        end = int(round(self._frames * self.sample_rate / self.fps))
        self._send_audio(end - (AAC_PRIMING_SAMPLES if self.fragmented else 0))
        return self._take()

    def _send_audio(self, until: int) -> None:
        if self._audio is None or self._audio_stream is None:
            return
        until = min(until, len(self._audio))
        if until <= self._audio_sent:
            return
        chunk = self._audio[self._audio_sent:until]
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._audio_sent
        frame.time_base = Fraction(1, self.sample_rate)
        self._audio_sent = until
        for packet in self._audio_stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> bytes:
        """Flush the encoders and finish the file; returns the remaining (or all) bytes."""
        if self._audio is not None:
            self._send_audio(len(self._audio))
        for packet in self._video.encode(None):
            self._container.mux(packet)
        if self._audio_stream is not None:
            for packet in self._audio_stream.encode(None):
                self._container.mux(packet)
        self._container.close()
        if self._folder is None:
            return self._take()
        try:
            return (self._folder / "out.mp4").read_bytes()
        finally:
            self._cleanup()

    def abort(self) -> None:
        """Drop an unfinished file (the client went away or rendering failed)."""
        with contextlib.suppress(av.error.FFmpegError, OSError, ValueError):
            self._container.close()
        self._cleanup()
