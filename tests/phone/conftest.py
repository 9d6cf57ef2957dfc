from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from secretary import tls
from secretary.audio import decode, to_pcm16, wav_header
from secretary.phone.app import create_app
from secretary.phone.service import PhoneService
from tests.conftest import make_settings, same_speech_every_run
from tests.helpers import needs, running_server

# The SIP stack is the phone extra's wheel; scripts/test.sh installs it, so under CI the
# telephone's tests always run.
needs_pjsua2 = needs(importlib.util.find_spec("pjsua2") is not None,
                     "pjsua2-python (the phone extra: pip install 'secretary[phone]')")

CALLER = Path(__file__).with_name("caller.py")
SPEECH = Path(__file__).parents[1] / "data" / "speech"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp.bind(("127.0.0.1", port))  # SIP takes the same port on TCP
        return port


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        return tcp.getsockname()[1]


@dataclass
class Phone:
    service: PhoneService
    url: str  # HTTP: /health, /api/calls
    uri: str  # SIP: whom to call
    tls_uri: str = ""  # SIP over TLS
    cert: Path | None = None  # the certificate SIP over TLS serves

    def call(self, *args: str, timeout: float = 60, to: str | None = None) -> list[dict]:
        """Run the caller to the end (calling ``to``, else ``uri``); its events."""
        return call(to or self.uri, *args, timeout=timeout)

    def start_call(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(CALLER), "--to", self.uri, *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="session")
def phone(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phone]:
    """One telephone service for the session (one SIP endpoint per process)."""
    settings = make_settings(cache_dir, data_dir=tmp_path_factory.mktemp("phone-data"))
    same_speech_every_run(settings)
    settings.conversation.avatar = False
    settings.realtime.face = False
    port = free_udp_port()
    settings.phone.port = port
    settings.phone.rtp_port = 20000 + port % 20000
    settings.phone.answer_delay_s = 0.2
    settings.phone.max_calls = 1
    settings.phone.silence_hangup_s = 6.0
    settings.phone.transfer_to = "sip:human@127.0.0.1:5999"
    # SIP over TLS beside UDP and TCP, SRTP optional (the default): test_tls.py calls it.
    cert, key = tls.ensure_self_signed(tmp_path_factory.mktemp("phone-tls"), ["127.0.0.1"])
    tls_port = free_tcp_port()
    settings.phone = settings.phone.model_copy(
        update={"tls_port": tls_port, "tls_cert": cert, "tls_key": key})
    service = PhoneService(settings)
    with running_server(create_app(service=service)) as url:
        yield Phone(service, url, f"sip:secretary@127.0.0.1:{port}",
                    f"sip:secretary@127.0.0.1:{tls_port};transport=tls", cert)


def call(uri: str, *args: str, timeout: float = 60) -> list[dict]:
    """Run the caller to the end; its events."""
    done = subprocess.run([sys.executable, str(CALLER), "--to", uri, *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def clip(tmp_path: Path, name: str, rate: int = 16000) -> Path:
    """A speech clip as 16-bit mono WAV at ``rate`` (what PJSUA's player reads)."""
    samples = decode((SPEECH / name).read_bytes(), rate).samples
    samples = np.concatenate([samples, np.zeros(rate // 2, np.float32)])
    data = to_pcm16(samples)
    path = tmp_path / f"{Path(name).stem}-{rate}.wav"
    path.write_bytes(wav_header(rate, len(data)) + data)
    return path


def spoken(phone: Phone, text: str, tmp_path: Path, rate: int = 16000) -> Path:
    """``text`` said by the service's own voice, as a WAV clip the caller can play."""
    import asyncio

    from secretary.audio import resample
    from secretary.conversation.stages import Cancel

    async def speak() -> np.ndarray:
        parts = []
        async for chunk, chunk_rate in phone.service.realtime.pipeline.speaker.speak(
                text, "en", None, Cancel()):
            parts.append(resample(chunk, chunk_rate, rate))
        return np.concatenate(parts)

    samples = np.concatenate([asyncio.run(speak()), np.zeros(rate // 2, np.float32)])
    data = to_pcm16(samples)
    path = tmp_path / f"said-{abs(hash(text))}.wav"
    path.write_bytes(wav_header(rate, len(data)) + data)
    return path


def silence(tmp_path: Path, seconds: float, rate: int = 16000) -> Path:
    data = bytes(int(seconds * rate) * 2)
    path = tmp_path / f"silence-{seconds:g}.wav"
    path.write_bytes(wav_header(rate, len(data)) + data)
    return path
