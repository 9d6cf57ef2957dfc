"""G.711 against the standard's values, and against audioop where Python still has it."""

from __future__ import annotations

import warnings

import numpy as np

from secretary import g711
from tests.helpers import needs

with warnings.catch_warnings():  # deprecated since 3.11, gone in 3.13
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop as AUDIOOP
    except ImportError:
        AUDIOOP = None


def test_mu_law_known_values() -> None:
    assert g711.ulaw_encode(np.array([0], np.int16)) == b"\xff"
    assert g711.ulaw_decode(b"\xff\x7f\x00\x80").tolist() == [0, 0, -32124, 32124]
    # full scale clips to the outermost code, either sign
    assert g711.ulaw_encode(np.array([32767, -32768], np.int16)) == b"\x80\x00"
    assert g711.ulaw_decode(b"\xfe\x7e").tolist() == [8, -8]  # the smallest steps


def test_a_law_known_values() -> None:
    assert g711.alaw_encode(np.array([0], np.int16)) == b"\xd5"
    assert g711.alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]
    assert g711.alaw_encode(np.array([32767, -32768], np.int16)) == b"\xaa\x2a"


def test_decode_then_encode_gives_every_code_back() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert g711.alaw_encode(g711.alaw_decode(codes)) == codes.tobytes()
    back = np.frombuffer(g711.ulaw_encode(g711.ulaw_decode(codes)), np.uint8)
    assert (back == codes)[codes != 0x7F].all()  # 0x7f is mu-law's negative zero
    assert back[0x7F] == 0xFF


def test_float_and_bytes_input() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0], np.float32)
    pcm = (samples * 32767).astype(np.int16)
    assert g711.ulaw_encode(samples) == g711.ulaw_encode(pcm) == g711.ulaw_encode(pcm.tobytes())
    error = np.abs(g711.alaw_decode(g711.alaw_encode(pcm)).astype(int) - pcm)
    assert (error <= np.abs(pcm) / 16 + 8).all()  # within the segment's step


@needs(AUDIOOP is not None, "Python's audioop (up to Python 3.12; CI runs 3.11)")
def test_same_as_audioop_on_every_sample() -> None:
    every = np.arange(-32768, 32768, dtype=np.int16).tobytes()
    assert g711.ulaw_encode(every) == AUDIOOP.lin2ulaw(every, 2)
    assert g711.alaw_encode(every) == AUDIOOP.lin2alaw(every, 2)
    codes = bytes(range(256))
    assert g711.ulaw_decode(codes).tobytes() == AUDIOOP.ulaw2lin(codes, 2)
    assert g711.alaw_decode(codes).tobytes() == AUDIOOP.alaw2lin(codes, 2)
