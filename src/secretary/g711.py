"""G.711 (ITU-T): mu-law (PCMU) and A-law (PCMA), 8-bit telephone samples.

``audioop`` left Python in 3.13; these are the same conversions as its ``lin2ulaw``,
``ulaw2lin``, ``lin2alaw`` and ``alaw2lin`` on 16-bit samples, as numpy lookups: 256
entries to decode, 65536 (one per 16-bit sample) to encode, built once on first use.
"""

from __future__ import annotations

from functools import cache

import numpy as np

_ULAW_BIAS = 0x84  # added to the magnitude before the segment search (16-bit scale)
_ULAW_CLIP = 8159  # largest 14-bit magnitude
_ULAW_SEGMENTS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENTS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


def _ulaw_byte(sample: int) -> int:
    value = sample >> 2  # 14 bits
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = _segment(value, _ULAW_SEGMENTS)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0xF)) ^ mask


def _ulaw_sample(byte: int) -> int:
    u = ~byte & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return _ULAW_BIAS - t if u & 0x80 else t - _ULAW_BIAS


def _alaw_byte(sample: int) -> int:
    value = sample >> 3  # 13 bits
    if value >= 0:
        mask = 0xD5
    else:
        mask, value = 0x55, -value - 1
    seg = _segment(value, _ALAW_SEGMENTS)
    if seg >= 8:
        return 0x7F ^ mask
    low = (value >> 1) if seg < 2 else (value >> seg)
    return ((seg << 4) | (low & 0x0F)) ^ mask


def _alaw_sample(byte: int) -> int:
    a = byte ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


@cache
def _tables(law: str) -> tuple[np.ndarray, np.ndarray]:
    """(decode: 256 int16, encode: 65536 uint8 indexed by sample + 32768)."""
    to_sample, to_byte = (_ulaw_sample, _ulaw_byte) if law == "ulaw" else (
        _alaw_sample, _alaw_byte)
    decode = np.array([to_sample(b) for b in range(256)], np.int16)
    encode = np.array([to_byte(s) for s in range(-32768, 32768)], np.uint8)
    return decode, encode


def _pcm(samples: np.ndarray | bytes) -> np.ndarray:
    if isinstance(samples, bytes | bytearray | memoryview):
        return np.frombuffer(samples, np.int16)
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        return samples
    # float32 in [-1, 1], as the rest of Secretary keeps audio
    return (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)


def _codes(data: np.ndarray | bytes) -> np.ndarray:
    if isinstance(data, bytes | bytearray | memoryview):
        return np.frombuffer(data, np.uint8)
    return np.asarray(data, np.uint8)


def ulaw_encode(samples: np.ndarray | bytes) -> bytes:
    """16-bit PCM (int16 array, its bytes, or float32 in [-1, 1]) to mu-law bytes."""
    return _tables("ulaw")[1][_pcm(samples).astype(np.int32) + 32768].tobytes()


def ulaw_decode(data: np.ndarray | bytes) -> np.ndarray:
    """Mu-law bytes to int16 samples."""
    return _tables("ulaw")[0][_codes(data)]


def alaw_encode(samples: np.ndarray | bytes) -> bytes:
    """16-bit PCM (int16 array, its bytes, or float32 in [-1, 1]) to A-law bytes."""
    return _tables("alaw")[1][_pcm(samples).astype(np.int32) + 32768].tobytes()


def alaw_decode(data: np.ndarray | bytes) -> np.ndarray:
    """A-law bytes to int16 samples."""
    return _tables("alaw")[0][_codes(data)]


ENCODERS = {"pcmu": ulaw_encode, "g711_ulaw": ulaw_encode,
            "pcma": alaw_encode, "g711_alaw": alaw_encode}
DECODERS = {"pcmu": ulaw_decode, "g711_ulaw": ulaw_decode,
            "pcma": alaw_decode, "g711_alaw": alaw_decode}


def decode(law: str, data: bytes) -> np.ndarray:
    """G.711 codes (``law``: pcmu or pcma, as the Realtime API names them) to float32."""
    return DECODERS[law](data).astype(np.float32) / 32768.0


def encode(law: str, samples: np.ndarray) -> bytes:
    """float32 samples to G.711 codes (pcmu or pcma)."""
    return ENCODERS[law](samples)
