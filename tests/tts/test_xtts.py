"""The XTTS v2 engine on a tiny randomly initialised XTTS model that the test builds.

The published checkpoint cannot be downloaded here, so the test builds a checkpoint folder
of the same shape (``config.json``, ``model.pth`` holding the weights under ``"model"``
without the inference-only GPT copy, ``vocab.json``, ``speakers_xtts.pth``) with a few
layers and channels, and the engine loads it through the same model-store and
``load_checkpoint`` path as the real one. Its audio is noise, so the tests check what the
engine controls: lengths against the token cap, streaming, speed, cloning latents and
their cache, errors. ``scripts/check_xtts_checkpoint.py`` runs the published model,
where its files have been downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import shutil
import sys
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import numpy as np
import pytest

from secretary import audio
from secretary.catalog import ModelStore
from secretary.config import TtsSettings
from secretary.errors import InvalidRequestError, ModelUnavailableError
from secretary.tts.app import create_app
from secretary.tts.engine import SpeakerReference, SynthesisRequest
from secretary.tts.xtts import LANGUAGES, XttsEngine
from tests.conftest import make_settings
from tests.helpers import SPEECH, needs, running_server

XTTS_INSTALLED = importlib.util.find_spec("TTS") is not None
needs_xtts = needs(XTTS_INSTALLED, "the xtts extra: pip install '.[xtts]'")

# Small enough to synthesize in a few seconds on two cores, large enough for several chunks.
CAP = 16
STREAM_CHUNK = 4
# One GPT audio token is 1024 samples at 22.05 kHz, decoded at 24 kHz.
SAMPLES_PER_TOKEN = 1024 * 24000 / 22050
SENTENCE = "The quick brown fox jumps over the lazy dog."

BUILT_IN = ("Claribel Dervla", "Ana Florence")  # named like two of the published speakers
CLIPS = [SPEECH / "en_cmu_arctic_aew_a0001.wav", SPEECH / "en_cmu_arctic_axb_a0004.wav",
         SPEECH / "de_thorsten_plan_geklappt.wav"]


def build_tiny_checkpoint(folder: Path) -> Path:
    """A randomly initialised XTTS v2 of 2 GPT layers and 64 channels, saved like the
    published checkpoint."""
    import torch
    import TTS
    from tokenizers import Tokenizer
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    folder.mkdir(parents=True, exist_ok=True)
    # coqui-tts's BPE vocabulary plus what the published vocab.json adds: the start token
    # and the language tags the tokenizer prefixes ("[en]...").
    tokenizer = Tokenizer.from_file(
        str(Path(TTS.__file__).parent / "tts/utils/assets/tortoise/tokenizer.json"))
    tokenizer.add_special_tokens(["[START]", *(f"[{code}]" for code in LANGUAGES)])
    tokenizer.save(str(folder / "vocab.json"))

    config = XttsConfig()
    args = config.model_args
    args.gpt_layers, args.gpt_n_model_channels, args.gpt_n_heads = 2, 64, 2
    args.decoder_input_dim = 64
    # The text-token count must equal the vocabulary's, start and stop tokens inside it.
    args.gpt_number_text_tokens = max(tokenizer.get_vocab().values()) + 1
    args.gpt_start_text_token = tokenizer.token_to_id("[START]")
    args.gpt_stop_text_token = tokenizer.token_to_id("[STOP]")
    # The published model's audio vocabulary and conditioning.
    args.gpt_num_audio_tokens, args.gpt_start_audio_token, args.gpt_stop_audio_token = (
        1026, 1024, 1025)
    args.gpt_use_perceiver_resampler = True
    config.gpt_cond_len, config.gpt_cond_chunk_len, config.max_ref_len = 30, 4, 30
    config.save_json(str(folder / "config.json"))

    torch.manual_seed(0)
    model = Xtts(config)
    model.eval()
    state = {key: value for key, value in model.state_dict().items()
             if not key.startswith(("gpt.gpt_inference.", "gpt.gpt.wte."))}
    torch.save({"model": state}, folder / "model.pth")

    # Built-in speakers: latents of real clips, stored as speakers_xtts.pth stores them.
    speakers = {}
    for name, clip in zip(BUILT_IN, CLIPS, strict=False):
        samples = torch.from_numpy(audio.decode(clip, sample_rate=22050).samples)[None]
        speakers[name] = {
            "gpt_cond_latent": model.get_gpt_cond_latents(
                samples, 22050, length=config.gpt_cond_len,
                chunk_length=config.gpt_cond_chunk_len),
            "speaker_embedding": model.get_speaker_embedding(samples, 22050),
        }
    torch.save(speakers, folder / "speakers_xtts.pth")
    return folder


def xtts_settings(checkpoint: Path | str, **overrides: Any) -> TtsSettings:
    values: dict[str, Any] = {
        "xtts_model": str(checkpoint), "xtts_device": "cpu", "xtts_max_mel_tokens": CAP,
        "xtts_stream_chunk_size": 0, "xtts_latent_cache_size": 2,
    }
    return TtsSettings(_env_file=None, **{**values, **overrides})


def reference(clip: Path) -> SpeakerReference:
    decoded = audio.decode(clip, sample_rate=22050)
    key = hashlib.sha256(decoded.samples.tobytes()).hexdigest()
    return SpeakerReference(decoded.samples, decoded.sample_rate, key)


def synthesize(engine: XttsEngine, request: SynthesisRequest, seed: int = 0
               ) -> list[np.ndarray]:
    import torch

    torch.manual_seed(seed)  # the same audio tokens for the same seed
    return list(engine.synthesize(request))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("xtts-tiny"))


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> XttsEngine:
    engine = XttsEngine(xtts_settings(tiny_checkpoint),
                        ModelStore(tmp_path_factory.mktemp("models")))
    engine.load()
    return engine


@pytest.fixture
def streaming(engine: XttsEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[XttsEngine]:
    settings = engine.settings.model_copy(update={"xtts_stream_chunk_size": STREAM_CHUNK})
    monkeypatch.setattr(engine, "settings", settings)
    yield engine


# ---------------------------------------------------------------------- loading
@needs_xtts
def test_loads_the_checkpoint_folder_like_the_published_one(engine: XttsEngine) -> None:
    model = engine.model
    assert engine.loaded and engine.sample_rate == 24000
    # load_checkpoint rebuilt the inference GPT that the checkpoint leaves out.
    assert model.gpt.gpt_inference is not None
    assert model.gpt.max_gen_mel_tokens == CAP
    voices = {v.id: v for v in engine.voices()}
    assert set(voices) == set(BUILT_IN)
    assert all(v.clones and v.engine == "xtts" and len(v.languages) == 17
               for v in voices.values())
    assert {"de", "zh-cn", "ja", "hi"} <= set(voices["Claribel Dervla"].languages)


@needs_xtts
def test_default_settings_cap_generation_at_240_tokens_with_official_sampling(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    defaults = TtsSettings(_env_file=None)
    engine = XttsEngine(defaults.model_copy(update={"xtts_model": str(tiny_checkpoint)}),
                        ModelStore(tmp_path))
    engine.load()
    assert engine.model.gpt.max_gen_mel_tokens == 240
    assert engine.sampling_options({}) == {
        "temperature": 0.75, "repetition_penalty": 10.0, "top_k": 50, "top_p": 0.85}
    assert engine.voices()[0].id == "Claribel Dervla"


@needs_xtts
def test_a_folder_without_the_checkpoint_files_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    engine = XttsEngine(xtts_settings(tmp_path), ModelStore(tmp_path / "models"))
    with pytest.raises(ModelUnavailableError, match=r"lacks model\.pth, vocab\.json"):
        engine.load()
    assert not engine.loaded


@needs_xtts
def test_a_config_that_does_not_match_the_weights_is_a_clear_error(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mismatch"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_args"]["gpt_layers"] = 3
    (folder / "config.json").write_text(json.dumps(config))
    engine = XttsEngine(xtts_settings(folder), ModelStore(tmp_path / "models"))
    with pytest.raises(ModelUnavailableError, match="could not load the XTTS checkpoint"):
        engine.load()
    assert not engine.loaded

    engine = XttsEngine(xtts_settings(tiny_checkpoint, xtts_speaker="Nobody"),
                        ModelStore(tmp_path / "models"))
    with pytest.raises(ModelUnavailableError, match="SECRETARY_TTS_XTTS_SPEAKER"):
        engine.load()


def test_without_the_extra_loading_names_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Importing a module whose sys.modules entry is None raises ImportError, as a missing
    # package does.
    for module in ("torch", "TTS", "TTS.tts.configs.xtts_config", "TTS.tts.models.xtts"):
        monkeypatch.setitem(sys.modules, module, None)
    engine = XttsEngine(xtts_settings(tmp_path), ModelStore(tmp_path))
    assert engine.voices()[0].id == "Claribel Dervla"  # cheap, no import
    with pytest.raises(ModelUnavailableError, match=r"pip install 'secretary\[xtts\]'"):
        engine.load()
    with pytest.raises(ModelUnavailableError, match=r"secretary\[xtts\]"):
        list(engine.synthesize(SynthesisRequest(SENTENCE, "en")))


def test_without_a_downloaded_checkpoint_the_hub_id_is_a_clear_error(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with pytest.raises(ModelUnavailableError, match="SECRETARY_TTS_XTTS_MODEL"):
        store.xtts_checkpoint("coqui/XTTS-v2", download=False)


# ---------------------------------------------------------------------- synthesis
def assert_plausible(chunks: list[np.ndarray], cap: int = CAP) -> np.ndarray:
    assert chunks and all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    samples = np.concatenate(chunks)
    assert np.isfinite(samples).all()
    # At least one audio token, at most the cap (the decoder rounds down to its hop).
    assert 0.9 * SAMPLES_PER_TOKEN <= len(samples) <= cap * SAMPLES_PER_TOKEN, len(samples)
    assert np.abs(samples).max() > 0
    return samples


@needs_xtts
def test_synthesizes_a_sentence_at_24_khz_within_the_token_cap(engine: XttsEngine) -> None:
    with mock.patch.object(engine.model, "inference", wraps=engine.model.inference) as spy:
        chunks = synthesize(engine, SynthesisRequest(SENTENCE, "en"))
    assert len(chunks) == 1 and spy.call_count == 1  # generated whole: one chunk
    assert_plausible(chunks)
    # The official sampling settings reach the model.
    kwargs = spy.call_args.kwargs
    assert (kwargs["temperature"], kwargs["repetition_penalty"], kwargs["top_k"],
            kwargs["top_p"]) == (0.75, 10.0, 50, 0.85)


@needs_xtts
def test_streams_chunks_as_the_tokens_come(streaming: XttsEngine) -> None:
    import torch

    engine = streaming
    decoder = engine.model.hifigan_decoder
    with mock.patch.object(decoder, "forward", wraps=decoder.forward) as spy:
        torch.manual_seed(0)
        stream = engine.synthesize(SynthesisRequest(SENTENCE, "en"))
        first = next(stream)
        # The first chunk came after one decoder run, before the sentence was generated.
        assert spy.call_count == 1
        chunks = [first, *stream]
    assert len(chunks) > 1 and spy.call_count == len(chunks)
    assert len(first) <= (STREAM_CHUNK + 1) * SAMPLES_PER_TOKEN
    streamed = assert_plausible(chunks)

    # Same seed, same tokens: streamed audio is as long as the sentence generated whole.
    engine.settings = engine.settings.model_copy(update={"xtts_stream_chunk_size": 0})
    whole = np.concatenate(synthesize(engine, SynthesisRequest(SENTENCE, "en")))
    assert abs(len(streamed) - len(whole)) <= SAMPLES_PER_TOKEN, (len(streamed), len(whole))


@needs_xtts
def test_speed_is_passed_through(engine: XttsEngine) -> None:
    normal = np.concatenate(synthesize(engine, SynthesisRequest(SENTENCE, "en"), seed=3))
    fast = np.concatenate(synthesize(engine, SynthesisRequest(SENTENCE, "en", speed=2.0),
                                     seed=3))
    assert len(fast) / len(normal) == pytest.approx(0.5, abs=0.05)


@needs_xtts
def test_named_speakers_and_request_options(engine: XttsEngine) -> None:
    with mock.patch.object(engine.model, "inference", wraps=engine.model.inference) as spy:
        synthesize(engine, SynthesisRequest(SENTENCE, "en", voice="ana florence",
                                            options={"temperature": 0.5, "top_k": 10}))
    args, kwargs = spy.call_args
    speakers = engine.model.speaker_manager.speakers
    assert args[2] is speakers["Ana Florence"]["gpt_cond_latent"]
    assert args[3] is speakers["Ana Florence"]["speaker_embedding"]
    assert (kwargs["temperature"], kwargs["top_k"], kwargs["top_p"]) == (0.5, 10, 0.85)


@needs_xtts
def test_cloning_computes_latents_once_per_clip(engine: XttsEngine) -> None:
    model = engine.model
    clip_a, clip_b, clip_c = (reference(clip) for clip in CLIPS)
    with mock.patch.object(model, "get_gpt_cond_latents",
                           wraps=model.get_gpt_cond_latents) as gpt_spy, \
            mock.patch.object(model, "get_speaker_embedding",
                              wraps=model.get_speaker_embedding) as embedding_spy, \
            mock.patch.object(model, "inference", wraps=model.inference) as inference_spy:
        assert_plausible(synthesize(engine, SynthesisRequest(SENTENCE, "en",
                                                             reference=clip_a)))
        assert gpt_spy.call_count == embedding_spy.call_count == 1
        assert_plausible(synthesize(engine, SynthesisRequest("Another sentence.", "en",
                                                             reference=clip_a)))
        assert gpt_spy.call_count == embedding_spy.call_count == 1  # cache hit
        # The clip's own latents condition the model, not a built-in speaker's.
        first, second = inference_spy.call_args_list
        assert first.args[2] is second.args[2]
        assert first.args[2] is not model.speaker_manager.speakers["Claribel Dervla"][
            "gpt_cond_latent"]
        assert first.args[2].shape[-1] == model.args.gpt_n_model_channels

        # A bounded LRU (size 2 here): a, b, a (hit), c (evicts b), b (computed again).
        for clip in (clip_b, clip_a, clip_c, clip_b):
            engine.speaker_latents(SynthesisRequest(SENTENCE, "en", reference=clip))
        assert gpt_spy.call_count == 4
    assert engine.cached_references == 2


@needs_xtts
def test_over_long_text_is_split_at_the_language_limit(engine: XttsEngine) -> None:
    # Japanese allows 71 characters per call (the text is romanised first, by cutlet); one
    # long run-on sentence has no sentence end or space to split at.
    text = "今日はいい天気ですね、散歩に行きましょう、" * 6
    with mock.patch.object(engine.model, "inference", wraps=engine.model.inference) as spy:
        chunks = synthesize(engine, SynthesisRequest(text, "ja"))
    pieces = [call.args[0] for call in spy.call_args_list]
    assert len(pieces) >= 2 and len(chunks) == len(pieces)
    assert all(len(piece) <= 71 for piece in pieces)
    assert "".join(pieces) == text


@needs_xtts
@pytest.mark.parametrize("language", LANGUAGES)
def test_speaks_every_language(engine: XttsEngine, language: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.model.gpt, "max_gen_mel_tokens", 2)  # the text path is tested
    # Numbers too: coqui-tts spells them with num2words, which lacks Hindi and Czech
    # ordinals (and reads a Czech number before a full stop as one).
    text = {"zh-cn": "你好，我有 3 个苹果。", "ja": "こんにちは、3 つ。", "ko": "안녕하세요 3.",
            "ar": "مرحبا 3.", "hi": "मेरे पास 42 सेब हैं।", "ru": "Привет, 42.",
            "cs": "Mám jich 42. Dnes je 3. května.", "de": "Am 3. Mai, 42 Äpfel.",
            }.get(language, "Hello 42, 1st.")
    with mock.patch.object(engine.model, "inference", wraps=engine.model.inference) as spy:
        chunks = synthesize(engine, SynthesisRequest(text, language))
    assert_plausible(chunks, cap=2 * spy.call_count)
    spoken = " ".join(call.args[0] for call in spy.call_args_list)
    if language == "hi":
        assert "४२" in spoken


# ---------------------------------------------------------------------- errors
@needs_xtts
@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (SynthesisRequest(SENTENCE, "xx"), "does not speak language 'xx'.*zh-cn"),
        (SynthesisRequest(SENTENCE, "en", voice="Nobody"), "unknown XTTS speaker 'Nobody'"),
        (SynthesisRequest(SENTENCE, "en", options={"beams": 2}), "unknown XTTS option"),
        (SynthesisRequest(SENTENCE, "en", options={"top_p": 2}), "top_p must be"),
        (SynthesisRequest("  ", "en"), "empty"),
        (SynthesisRequest(SENTENCE, "en", reference=SpeakerReference(
            np.zeros(2000, np.float32), 22050, "short")), "at least 0.33 s"),
    ],
)
def test_bad_requests_are_clear_400s(engine: XttsEngine, request_: SynthesisRequest,
                                     message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as error:
        list(engine.synthesize(request_))
    assert error.value.status_code == 400
    # The engine still serves afterwards.
    assert_plausible(synthesize(engine, SynthesisRequest("Still here.", "zh")))


# ---------------------------------------------------------------------- through the service
@needs_xtts
def test_the_service_clones_with_xtts_over_http(engine: XttsEngine, cache_dir: Path) -> None:
    settings = make_settings(cache_dir, tts=TtsSettings(_env_file=None, routes="*=xtts"))
    clip = (SPEECH / "fr_cheetah_mer_jaune.wav").read_bytes()  # used by no other test here
    model = engine.model
    with running_server(create_app(settings, {"xtts": engine})) as url, \
            mock.patch.object(model, "get_gpt_cond_latents",
                              wraps=model.get_gpt_cond_latents) as spy:
        for stream in ("false", "true"):
            response = httpx.post(
                f"{url}/synthesize-with-voice-clone", timeout=300,
                data={"text": "Hallo. Wie geht es dir?", "language": "de", "stream": stream},
                files={"speaker_audio": ("me.wav", clip)})
            assert response.status_code == 200, response.text
            with wave.open(io.BytesIO(response.content)) as wav:
                assert wav.getframerate() == 24000
            samples = audio.decode(response.content, sample_rate=24000).samples
            # Two sentences, each within the cap, and a pause between them.
            assert 2 * 0.9 * SAMPLES_PER_TOKEN <= len(samples) <= 2.5 * CAP * SAMPLES_PER_TOKEN
        assert spy.call_count == 1  # the clip's latents were computed once for both

        bad = httpx.post(f"{url}/synthesize",
                         json={"text": "Hallo.", "language": "xx"}, timeout=60)
        assert bad.status_code == 400 and "language" in bad.json()["error"]["message"]
        assert httpx.get(f"{url}/health", timeout=60).status_code == 200
