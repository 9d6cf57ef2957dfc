"""GPU speed of the production engines, on randomly initialised models of the real sizes.

    python bench/gpu.py [--engines whisper-hf,faster-whisper,xtts,canary] [--rounds 3]

Speed does not depend on weight values, so this needs no downloads: it builds Whisper
large-v3 (transformers, as the original setup ran it), XTTS v2 and Canary-1b with their
published layer counts and widths and random weights, and prints for each: load time,
time per request (and per second of audio where that applies), first-chunk latency for
XTTS streaming, and peak GPU memory. faster-whisper runs the packaged Whisper base on the
GPU where CTranslate2 finds the CUDA 12 libraries (a large-v3 conversion needs its
tokenizer files). An engine whose package is missing is reported and skipped.

The original setup's figures, for comparison: XTTS v2 0.5-0.7 s per sentence; Whisper
large-v3 on the GPU well under real time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

ROWS: list[tuple[str, str, str]] = []
# --smoke: the same code paths on the CPU with tiny sizes, to check the script itself.
SMOKE = False
DEVICE = "cuda"


def report(engine: str, measure: str, value: str) -> None:
    ROWS.append((engine, measure, value))
    print(f"{engine:<16} {measure:<34} {value}", flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    import torch

    sync = torch.cuda.synchronize if DEVICE == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def peak_memory(engine: str) -> None:
    import torch

    if DEVICE != "cuda":
        return
    report(engine, "peak GPU memory", f"{torch.cuda.max_memory_allocated() / 1024**3:.2f} GiB")
    torch.cuda.reset_peak_memory_stats()


def median(values: list[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------------- Whisper (transformers)
def whisper_hf(rounds: int, tokens: int = 100) -> None:
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    config = WhisperConfig(  # large-v3
        vocab_size=51866, num_mel_bins=128, d_model=1280, encoder_layers=32,
        decoder_layers=32, encoder_attention_heads=20, decoder_attention_heads=20,
        encoder_ffn_dim=5120, decoder_ffn_dim=5120, max_source_positions=1500,
        max_target_positions=448, decoder_start_token_id=50258)
    if SMOKE:
        config.update({"d_model": 64, "encoder_layers": 1, "decoder_layers": 1,
                       "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                       "encoder_ffn_dim": 128, "decoder_ffn_dim": 128})
        tokens = 5

    def load() -> Any:
        with torch.device(DEVICE):
            model = WhisperForConditionalGeneration(config)
        return (model.half() if DEVICE == "cuda" else model).eval()

    seconds, model = timed(load)
    report("whisper large-v3", "build on GPU (fp16)", f"{seconds:.1f} s")
    # One 30 s window of log-mel features.
    features = torch.randn(1, 128, 3000, device=DEVICE,
                           dtype=torch.float16 if DEVICE == "cuda" else torch.float32)

    @torch.inference_mode()
    def request() -> None:
        encoded = model.model.encoder(features).last_hidden_state
        ids = torch.tensor([[50258]], device=DEVICE)
        past = None
        for _ in range(tokens):  # greedy, a fixed number of tokens: the same work each run
            out = model(encoder_outputs=(encoded,), decoder_input_ids=ids[:, -1:],
                        past_key_values=past, use_cache=True)
            past = out.past_key_values
            ids = torch.cat([ids, out.logits[:, -1:].argmax(-1)], dim=1)

    request()  # warm-up
    times = [timed(request)[0] for _ in range(rounds)]
    report("whisper large-v3", f"30 s window, {tokens} tokens", f"{median(times):.2f} s "
           f"({median(times) / 30:.3f} s per s of audio)")
    peak_memory("whisper large-v3")
    torch.cuda.empty_cache()


# ---------------------------------------------------------------------- faster-whisper
def faster_whisper(rounds: int) -> None:
    import ctranslate2
    import numpy as np

    if ctranslate2.get_cuda_device_count() == 0:
        report("faster-whisper", "skipped", "CTranslate2 sees no CUDA device")
        return
    from faster_whisper import WhisperModel

    from secretary import audio
    from secretary.config import Settings
    from secretary.stt.models import WhisperModels

    settings = Settings(_env_file=None)
    path = WhisperModels(settings.models_dir).whisper_path("base")
    try:
        seconds, model = timed(lambda: WhisperModel(str(path), device="cuda",
                                                    compute_type="float16"))
    except (RuntimeError, ValueError) as exc:
        report("faster-whisper", "skipped", f"no CUDA 12 libraries? {exc}")
        return
    report("faster-whisper", "load base on GPU (fp16)", f"{seconds:.1f} s")
    clip = audio.decode(ROOT / "tests/data/speech/en_jfk_ask_not.flac").samples
    clip = np.tile(clip, 3)
    run = lambda: list(model.transcribe(clip, beam_size=5, temperature=0.0)[0])  # noqa: E731
    run()
    times = [timed(run)[0] for _ in range(rounds)]
    duration = len(clip) / 16000
    report("faster-whisper", f"base, {duration:.0f} s of speech", f"{median(times):.2f} s "
           f"({median(times) / duration:.3f} s per s of audio)")


# ---------------------------------------------------------------------- XTTS v2
def xtts(rounds: int, tokens: int = 65) -> None:
    import torch
    import TTS
    from tokenizers import Tokenizer
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.models.xtts import Xtts

    from secretary import audio
    from secretary.tts.xtts import LANGUAGES

    folder = Path(tempfile.mkdtemp(prefix="xtts-bench-"))
    tokenizer = Tokenizer.from_file(
        str(Path(TTS.__file__).parent / "tts/utils/assets/tortoise/tokenizer.json"))
    tokenizer.add_special_tokens(["[START]", *(f"[{code}]" for code in LANGUAGES)])
    tokenizer.save(str(folder / "vocab.json"))
    config = XttsConfig()  # the model arguments default to XTTS v2's sizes
    args = config.model_args
    args.gpt_number_text_tokens = max(tokenizer.get_vocab().values()) + 1
    args.gpt_start_text_token = tokenizer.token_to_id("[START]")
    args.gpt_stop_text_token = tokenizer.token_to_id("[STOP]")
    args.gpt_num_audio_tokens, args.gpt_start_audio_token, args.gpt_stop_audio_token = (
        1026, 1024, 1025)
    args.gpt_use_perceiver_resampler = True
    if SMOKE:
        args.gpt_layers, args.gpt_n_model_channels, args.gpt_n_heads = 2, 64, 2
        args.decoder_input_dim = 64
        tokens = 8
    config.save_json(str(folder / "config.json"))
    model = Xtts(config)
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(("gpt.gpt_inference.", "gpt.gpt.wte."))}
    torch.save({"model": state}, folder / "model.pth")

    def load() -> Any:
        loaded = Xtts.init_from_config(config)
        loaded.load_checkpoint(config, checkpoint_dir=str(folder), eval=True)
        return loaded.to(DEVICE)

    seconds, model = timed(load)
    report("xtts v2", "load checkpoint to GPU", f"{seconds:.1f} s")
    # A stop token from random weights is rare: capping the tokens fixes the work to a
    # sentence of about 3 s (1024 samples at 22.05 kHz per token).
    model.gpt.max_gen_mel_tokens = tokens
    samples = torch.from_numpy(audio.decode(
        ROOT / "tests/data/speech/en_cmu_arctic_aew_a0001.wav", sample_rate=22050).samples)[None]
    samples = samples.to(DEVICE)
    latent = model.get_gpt_cond_latents(samples, 22050, length=config.gpt_cond_len,
                                        chunk_length=config.gpt_cond_chunk_len)
    speaker = model.get_speaker_embedding(samples, 22050)
    sentence = "Good morning, this is your secretary speaking."

    def whole() -> None:
        model.inference(sentence, "en", latent, speaker, temperature=0.75, top_k=50, top_p=0.85,
                        repetition_penalty=10.0)

    def first_chunk() -> None:
        stream = model.inference_stream(sentence, "en", latent, speaker, stream_chunk_size=20)
        next(iter(stream))

    whole()
    times = [timed(whole)[0] for _ in range(rounds)]
    report("xtts v2", f"one sentence ({tokens} tokens, ~3 s)", f"{median(times):.2f} s "
           "(original setup: 0.5-0.7 s)")
    firsts = [timed(first_chunk)[0] for _ in range(rounds)]
    report("xtts v2", "first streamed chunk (20 tokens)", f"{median(firsts):.2f} s")
    peak_memory("xtts v2")
    torch.cuda.empty_cache()


# ---------------------------------------------------------------------- Canary-1b
def canary(rounds: int) -> None:
    import importlib.util

    if importlib.util.find_spec("nemo") is None:
        report("canary-1b", "skipped", "NeMo is not installed (pip install '.[canary]')")
        return
    import numpy as np
    import torch
    from tests.stt import canary_model

    from secretary import audio
    from secretary.config import CanarySettings
    from secretary.stt.canary import CanaryEngine
    from secretary.stt.engine import TranscriptionOptions, collect
    from secretary.stt.models import CanaryModels

    folder = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    archive = canary_model.build(folder, "canary-1b", size="tiny" if SMOKE else "1b")
    settings = CanarySettings(_env_file=None, model=str(archive), device=DEVICE)
    engine = CanaryEngine(settings, CanaryModels(folder))
    seconds, _ = timed(engine.load)
    report("canary-1b", "restore .nemo to GPU", f"{seconds:.1f} s")
    clip = audio.decode(ROOT / "tests/data/speech/en_jfk_ask_not.flac").samples
    clip = np.tile(clip, 2)
    duration = len(clip) / 16000
    run = lambda: collect(engine.transcribe(clip, TranscriptionOptions(language="en")))  # noqa: E731
    run()
    times = [timed(run)[0] for _ in range(rounds)]
    report("canary-1b", f"{duration:.0f} s of audio (token cap)", f"{median(times):.2f} s "
           f"({median(times) / duration:.3f} s per s of audio)")
    peak_memory("canary-1b")
    torch.cuda.empty_cache()


ENGINES = {"whisper-hf": whisper_hf, "faster-whisper": faster_whisper, "xtts": xtts,
           "canary": canary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny models on the CPU: checks the script, measures nothing")
    args = parser.parse_args()
    import torch

    global SMOKE, DEVICE
    SMOKE, DEVICE = args.smoke, "cpu" if args.smoke else "cuda"
    if not SMOKE and not torch.cuda.is_available():
        sys.exit("no CUDA device: this benchmark is for a GPU machine")
    card = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "CPU smoke run"
    print(f"# {card}, torch {torch.__version__}", flush=True)
    for name in args.engines.split(","):
        try:
            ENGINES[name](args.rounds)
        except Exception as exc:  # one engine's failure must not hide the others' figures
            report(name, "failed", f"{type(exc).__name__}: {exc}")
    print("\n| engine | measure | value |\n|---|---|---|")
    for row in ROWS:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
