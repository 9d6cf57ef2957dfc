"""The STT HTTP API: both request styles, every output format, the OpenAI client, errors."""

from __future__ import annotations

import io
import re
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from secretary import audio
from secretary.stt.app import create_app
from secretary.stt.engine import TranscriptionOptions
from secretary.stt.whisper import WhisperEngine
from tests.conftest import make_settings
from tests.helpers import SPEECH, expected_device_and_compute_type, running_server, wer

JFK = SPEECH / "en_jfk_ask_not.flac"
GERMAN = SPEECH / "de_thorsten_plan_geklappt.wav"
JFK_TEXT = (SPEECH / "en_jfk_ask_not.txt").read_text().strip()


@pytest.fixture(scope="module")
def client(stt_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stt_url}/v1", api_key="not-needed", max_retries=0)


def _wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    return audio.encode(samples, rate, "wav")


def test_health_reports_model_and_device(stt_url: str) -> None:
    body = httpx.get(f"{stt_url}/health").json()
    assert body["status"] == "ok"
    assert body["service"] == "stt"
    assert body["model"] == "base"
    device, compute_type = expected_device_and_compute_type()
    assert body["device"] == device
    assert body["compute_type"] == compute_type
    assert body["loaded"] is True


def test_transcribe_segments_and_words(stt_url: str) -> None:
    with open(JFK, "rb") as f:
        response = httpx.post(f"{stt_url}/transcribe", files={"file": (JFK.name, f)},
                              data={"timestamps": "word"}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["language"] == "en"
    assert 0.5 < body["language_probability"] <= 1
    assert body["duration"] == pytest.approx(11.0, abs=0.01)
    assert wer(JFK_TEXT, body["text"], "en") < 0.1
    words = [w for s in body["segments"] for w in s["words"]]
    assert [w["word"] for w in words][:4] == ["And", "so", "my", "fellow"]
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w["start"] <= w["end"] <= 11.0 for w in words)
    # "country" is the last word, said at the very end of the clip.
    assert words[-1]["word"].startswith("country") and words[-1]["end"] > 9.0


def test_openai_client_json_and_text(client: openai.OpenAI) -> None:
    with open(JFK, "rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert wer(JFK_TEXT, result.text, "en") < 0.1
    with open(JFK, "rb") as f:
        text = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                  response_format="text")
    assert text.strip() == result.text


def test_openai_verbose_json_with_words_and_segments(client: openai.OpenAI) -> None:
    with open(GERMAN, "rb") as f:
        result = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert result.language == "german"
    assert result.duration == pytest.approx(2.04, abs=0.01)
    assert [w.word for w in result.words] == ["Euer", "Plan", "hat", "ja", "toll", "geklappt."]
    assert len(result.segments) == 1
    assert result.segments[0].text.strip() == result.text


def test_openai_srt_and_vtt(client: openai.OpenAI) -> None:
    with open(JFK, "rb") as f:
        srt = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                 response_format="srt")
    blocks = srt.strip().split("\n\n")
    assert blocks[0].startswith("1\n00:00:")
    times = re.findall(r"(\d\d:\d\d:\d\d,\d\d\d) --> (\d\d:\d\d:\d\d,\d\d\d)", srt)
    assert len(times) == len(blocks)
    with open(JFK, "rb") as f:
        vtt = client.audio.transcriptions.create(model="whisper-1", file=f,
                                                 response_format="vtt")
    assert vtt.startswith("WEBVTT\n")
    assert re.search(r"\d\d:\d\d:\d\d\.\d\d\d --> \d\d:\d\d:\d\d\.\d\d\d", vtt)
    # Same cues in both formats.
    assert len(re.findall("-->", vtt)) == len(times)


def test_openai_translation_to_english(client: openai.OpenAI) -> None:
    with open(GERMAN, "rb") as f:
        result = client.audio.translations.create(model="whisper-1", file=f)
    # "Euer Plan hat ja toll geklappt." -> "Your plan worked (out) great."
    words = set(re.findall(r"[a-z]+", result.text.lower()))
    assert {"your", "plan"} <= words
    assert not words & {"euer", "hat", "geklappt"}


def test_openai_streaming_events(client: openai.OpenAI) -> None:
    with open(JFK, "rb") as f:
        stream = client.audio.transcriptions.create(model="whisper-1", file=f, stream=True)
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert deltas and len(done) == 1 and events[-1].type == "transcript.text.done"
    assert "".join(deltas).strip() == done[0].text
    assert wer(JFK_TEXT, done[0].text, "en") < 0.1


def test_openai_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "base" and "whisper-1" in ids
    assert client.models.retrieve("whisper-1").id == "whisper-1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_formats_decode_to_the_same_transcript(stt_url: str, tmp_path: Path) -> None:
    """The upload formats browsers and phones send all reach Whisper as the same speech."""
    decoded = audio.decode(JFK)
    texts = {}
    for fmt in ("mp3", "opus", "aac", "flac"):
        data = audio.encode(decoded.samples, decoded.sample_rate, fmt)
        response = httpx.post(f"{stt_url}/transcribe", files={"file": (f"clip.{fmt}", data)},
                              data={"language": "en"}, timeout=120)
        assert response.status_code == 200, (fmt, response.text)
        texts[fmt] = response.json()["text"]
    for fmt, text in texts.items():
        assert wer(JFK_TEXT, text, "en") < 0.1, (fmt, text)


def test_silence_and_noise_give_an_empty_transcript(client: openai.OpenAI) -> None:
    rng = np.random.default_rng(0)
    silence = np.zeros(16000 * 5, dtype=np.float32)
    noise = (rng.standard_normal(16000 * 5) * 0.05).astype(np.float32)
    for samples in (silence, noise):
        result = client.audio.transcriptions.create(
            model="whisper-1", file=("quiet.wav", _wav_bytes(samples)),
        )
        assert result.text == ""


@pytest.mark.parametrize(
    ("files", "data", "status", "code"),
    [
        ({"file": ("empty.wav", b"")}, {}, 400, "invalid_request"),
        ({"file": ("random.wav", np.random.default_rng(1).bytes(4096))}, {}, 400,
         "invalid_audio"),
        ({"file": ("picture.png", (SPEECH.parent / "faces" / "noface_coffee_cup.png")
                   .read_bytes())}, {}, 415, "no_audio_stream"),
        ({"file": ("zero.wav", _wav_bytes(np.zeros(0, dtype=np.float32)))}, {}, 400,
         "empty_audio"),
        ({"file": ("a.wav", GERMAN.read_bytes())}, {"language": "klingon"}, 400,
         "invalid_request"),
        ({"file": ("a.wav", GERMAN.read_bytes())}, {"temperature": "hot"}, 400,
         "invalid_request"),
        ({"file": ("a.wav", GERMAN.read_bytes())}, {"temperature": "3"}, 400,
         "invalid_request"),
        ({"file": ("a.wav", GERMAN.read_bytes())}, {"response_format": "docx"}, 400,
         "invalid_request"),
        ({"file": ("a.wav", GERMAN.read_bytes())}, {"model": "gpt-17"}, 400, "invalid_request"),
        ({"file": ("a.wav", GERMAN.read_bytes())}, {"timestamp_granularities[]": "char"}, 400,
         "invalid_request"),
        ({}, {"model": "whisper-1"}, 400, "invalid_request"),
    ],
    ids=["empty", "random-bytes", "png", "zero-seconds", "unknown-language", "wrong-type",
         "temperature-range", "unknown-format", "unknown-model", "bad-granularity",
         "missing-file"],
)
def test_bad_input_gets_a_clear_4xx(stt_url: str, files: dict, data: dict, status: int,
                                    code: str) -> None:
    response = httpx.post(f"{stt_url}/v1/audio/transcriptions", files=files or None,
                          data=data, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert len(error["message"]) > 10
    # ... and the service keeps serving.
    assert httpx.get(f"{stt_url}/health").json()["status"] == "ok"


def test_transcribe_rejects_bad_fields(stt_url: str) -> None:
    for data, param in (({"task": "summarize"}, "task"), ({"timestamps": "char"}, "timestamps"),
                        ({"vad_filter": "maybe"}, "vad_filter")):
        response = httpx.post(f"{stt_url}/transcribe", files={"file": ("a.wav",
                              GERMAN.read_bytes())}, data=data)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


def test_upload_over_the_limit_is_413(cache_dir: Path, whisper_engine: WhisperEngine) -> None:
    settings = make_settings(cache_dir, max_upload_mb=0.5)
    big = JFK.read_bytes()  # 1.1 MB
    with running_server(create_app(settings, whisper_engine)) as url:
        response = httpx.post(f"{url}/transcribe", files={"file": ("big.flac", big)})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        # A chunked upload without Content-Length is counted as it arrives.
        form = httpx.Request("POST", url, files={"file": ("big.flac", big)})
        body = form.read()

        def chunks():
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]

        response = httpx.post(f"{url}/transcribe", content=chunks(),
                              headers={"content-type": form.headers["content-type"]})
        assert response.status_code == 413

        small = GERMAN.read_bytes()
        ok = httpx.post(f"{url}/transcribe", files={"file": ("small.wav", small)}, timeout=60)
        assert ok.status_code == 200


class GatedEngine:
    """The real Whisper engine behind a gate the test opens: it makes "the engine is busy"
    a certainty instead of a race, while the transcriptions themselves stay real."""

    def __init__(self, engine: WhisperEngine) -> None:
        self._engine = engine
        self.name = engine.name
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    @property
    def loaded(self) -> bool:
        return self._engine.loaded

    def load(self) -> None:
        self._engine.load()

    def describe(self):
        return self._engine.describe()

    def languages(self):
        return self._engine.languages()

    def check(self, options: TranscriptionOptions) -> TranscriptionOptions:
        return self._engine.check(options)

    def transcribe(self, samples: np.ndarray, options: TranscriptionOptions):
        self.entered.release()
        self.gate.wait(timeout=120)
        return self._engine.transcribe(samples, options)


def test_full_queue_answers_503_and_loses_nothing(cache_dir: Path,
                                                  whisper_engine: WhisperEngine) -> None:
    settings = make_settings(cache_dir)
    settings.stt.max_concurrency = 1
    settings.stt.max_queue = 1
    engine = GatedEngine(whisper_engine)
    clip = GERMAN.read_bytes()
    with running_server(create_app(settings, engine)) as url:
        def post() -> httpx.Response:
            return httpx.post(f"{url}/transcribe", files={"file": ("a.wav", clip)}, timeout=120)

        with ThreadPoolExecutor(4) as pool:
            try:
                running = pool.submit(post)
                assert engine.entered.acquire(timeout=30)  # first job is inside the engine
                waiting = pool.submit(post)
                # Wait until the second is queued, then a third finds the queue full.
                for _ in range(200):
                    if httpx.get(f"{url}/health").json()["queue"]["in_progress"] == 2:
                        break
                    threading.Event().wait(0.05)
                else:
                    pytest.fail("the second request never reached the queue")
                rejected = post()
                assert rejected.status_code == 503
                assert int(rejected.headers["retry-after"]) >= 1
                assert rejected.json()["error"]["code"] == "busy"
            finally:
                engine.gate.set()  # a failure above must not leave the jobs waiting 120 s
            accepted = [running.result(), waiting.result()]
        for response in accepted:
            assert response.status_code == 200
            assert response.json()["text"] == "Euer Plan hat ja toll geklappt."
        metrics = httpx.get(f"{url}/metrics").text
        assert 'status="503"' in metrics


def test_wav_writer_matches_stdlib(tmp_path: Path) -> None:
    samples = np.sin(np.linspace(0, 100, 1600)).astype(np.float32) * 0.5
    with wave.open(io.BytesIO(_wav_bytes(samples))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (
            16000, 1, 2, 1600)


def test_model_loads_on_first_use_when_preload_is_off(cache_dir: Path) -> None:
    from secretary.catalog import ModelStore

    settings = make_settings(cache_dir)
    settings.stt.preload = False
    engine = WhisperEngine(settings.stt, ModelStore(settings.models_dir))
    with running_server(create_app(settings, engine)) as url:
        assert httpx.get(f"{url}/health").json()["loaded"] is False
        response = httpx.post(f"{url}/transcribe", files={"file": ("a.wav", GERMAN.read_bytes())},
                              data={"language": "de"}, timeout=120)
        assert response.status_code == 200, response.text
        assert response.json()["text"] == "Euer Plan hat ja toll geklappt."
        assert httpx.get(f"{url}/health").json()["loaded"] is True


def test_whisper_translates_into_english_only(stt_url: str) -> None:
    with open(GERMAN, "rb") as f:
        response = httpx.post(f"{stt_url}/transcribe", files={"file": (GERMAN.name, f)},
                              data={"task": "translate", "target_language": "fr"}, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "target_language" and "into English only" in error["message"]
