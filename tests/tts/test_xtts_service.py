"""The service with the XTTS engine configured, as on a GPU box: routing to XTTS, voice
cloning through the HTTP API, streaming. XTTS runs on the tiny randomly initialised model
that ``test_xtts`` builds, so its audio is noise: these tests check what the service
controls (which engine serves, formats, rates, lengths within the token cap), not words.
They run where the xtts extra is installed.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from secretary import audio
from secretary.config import Settings
from secretary.tts.app import create_app
from secretary.tts.espeak import EspeakEngine
from secretary.tts.piper import PiperEngine
from tests.conftest import make_settings
from tests.helpers import SPEECH, needs, running_server
from tests.tts.test_xtts import CAP, XTTS_INSTALLED, build_tiny_checkpoint

pytestmark = needs(XTTS_INSTALLED, "the xtts extra: pip install '.[xtts]'")

CLIP = SPEECH / "en_cmu_arctic_aew_a0001.wav"
# The most audio one sentence can give: CAP GPT tokens of 1024 samples at 22.05 kHz.
MAX_SECONDS_PER_SENTENCE = CAP * 1024 / 22050 + 0.2


@pytest.fixture(scope="module")
def xtts_url(tts_settings: Settings, piper_engine: PiperEngine, espeak_engine: EspeakEngine,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("xtts-tiny"))
    settings = make_settings(tts_settings.cache_dir)
    settings.tts.routes = "en=piper:en_US-joe-medium,de=xtts,*=xtts|espeak"
    settings.tts.xtts_model = str(checkpoint)
    settings.tts.xtts_device = "cpu"
    settings.tts.xtts_max_mel_tokens = CAP
    settings.tts.xtts_stream_chunk_size = 4
    app = create_app(settings, {"piper": piper_engine, "espeak": espeak_engine})
    with running_server(app) as url:
        yield url


def test_xtts_voices_clone(xtts_url: str) -> None:
    voices = httpx.get(f"{xtts_url}/voices").json()["voices"]
    xtts = [v for v in voices if v["engine"] == "xtts"]
    assert "Claribel Dervla" in {v["id"] for v in xtts}
    assert all(v["clones"] and "de" in v["languages"] for v in xtts)
    assert httpx.get(f"{xtts_url}/health").json()["engines"]["xtts"]["loaded"]


@pytest.mark.parametrize(("language", "engine"), [("de", "xtts"), ("es", "xtts"),
                                                  ("en", "piper"), ("sv", "espeak")])
def test_the_table_sends_each_language_to_its_engine(xtts_url: str, language: str,
                                                     engine: str) -> None:
    response = httpx.post(f"{xtts_url}/synthesize", timeout=120,
                          json={"text": "Eins. Zwei.", "language": language})
    assert response.status_code == 200, response.text
    assert response.headers["x-engine"] == engine
    if engine == "xtts":
        assert response.headers["x-sample-rate"] == "24000"
        duration = audio.decode(response.content, 24000).duration
        assert 0 < duration <= 2 * MAX_SECONDS_PER_SENTENCE + 0.5  # two capped sentences


@pytest.mark.parametrize("language", ["en", "de"])
def test_cloning_through_the_api(xtts_url: str, language: str) -> None:
    # English is routed to Piper, which cannot clone: the service takes XTTS instead.
    response = httpx.post(f"{xtts_url}/synthesize-with-voice-clone", timeout=120,
                          data={"text": "Hello there.", "language": language,
                                "format": "mp3"},
                          files={"speaker_audio": ("me.wav", CLIP.read_bytes())})
    assert response.status_code == 200, response.text
    assert response.headers["x-engine"] == "xtts"
    assert response.headers["content-type"] == "audio/mpeg"
    assert 0 < audio.decode(response.content, 24000).duration <= MAX_SECONDS_PER_SENTENCE + 0.2


def test_streamed_cloning(xtts_url: str) -> None:
    with httpx.stream("POST", f"{xtts_url}/synthesize-with-voice-clone", timeout=120,
                      data={"text": "Guten Tag. Wie geht es?", "language": "de",
                            "stream": "true"},
                      files={"speaker_audio": ("me.wav", CLIP.read_bytes())}) as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
        pieces = list(response.iter_bytes())
    assert len(pieces) > 1
    assert audio.decode(b"".join(pieces), 24000).duration > 0
