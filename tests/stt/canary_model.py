"""Build a randomly initialised Canary model and save it as a ``.nemo`` archive.

The published checkpoints cannot be downloaded here, so the tests build one of the same
family: NeMo's multitask encoder-decoder (FastConformer encoder, Transformer decoder) with
Canary's aggregate tokenizer (a special-token model for the prompt plus one SentencePiece
model per language, trained here on the transcripts in tests/data) and Canary's prompt
format. The defaults make it tiny; ``size="1b"`` gives canary-1b's layer counts and widths
for speed checks, where weight values do not matter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPEECH = Path(__file__).resolve().parents[1] / "data" / "speech"
LANGUAGES = ("en", "de", "es", "fr")

# Encoder layers, encoder width, decoder layers, decoder width, attention heads.
SIZES = {"tiny": (1, 32, 1, 32, 2), "1b": (24, 1024, 24, 1024, 8)}

# The prompt tokens of canary-1b ("canary") and of the flash models ("canary2").
_CANARY2_TOKENS = ["<|startofcontext|>", "<|emo:undefined|>", "<|emo:neutral|>", "<|emo:angry|>",
                   "<|emo:happy|>", "<|emo:sad|>", "<|itn|>", "<|noitn|>", "<|timestamp|>",
                   "<|notimestamp|>", "<|diarize|>", "<|nodiarize|>"]


def _tokenizers(folder: Path, prompt_format: str) -> dict[str, Any]:
    from nemo.collections.common.tokenizers.canary_tokenizer import CanaryTokenizer
    from nemo.collections.common.tokenizers.sentencepiece_tokenizer import create_spt_model

    special = ["translate", "transcribe", *LANGUAGES]
    if prompt_format == "canary2":
        special += _CANARY2_TOKENS
    CanaryTokenizer.build_special_tokenizer(special, folder / "spl_tokens", force_rebuild=True)
    langs: dict[str, Any] = {"spl_tokens": {"dir": str(folder / "spl_tokens"), "type": "bpe"}}
    for lang in LANGUAGES:
        clips = sorted(SPEECH.glob(f"{lang}_*.txt"))
        text = "\n".join(p.read_text(encoding="utf-8") for p in clips)
        out = folder / lang
        out.mkdir(parents=True, exist_ok=True)
        (out / "text.txt").write_text(text, encoding="utf-8")
        create_spt_model(str(out / "text.txt"), vocab_size=40, sample_size=-1,
                         do_lower_case=False, output_dir=str(out))
        langs[lang] = {"dir": str(out), "type": "bpe"}
    return langs


def config(folder: Path, *, size: str = "tiny", prompt_format: str = "canary") -> dict[str, Any]:
    enc_layers, enc_hidden, dec_layers, dec_hidden, heads = SIZES[size]
    cfg: dict[str, Any] = {
        "sample_rate": 16000,
        "prompt_format": prompt_format,
        # No external timestamps model; NeMo would otherwise look for one in the archive it
        # last restored, which fails for a model built from a config after any restore.
        "restore_timestamps_model": False,
        "model_defaults": {"asr_enc_hidden": enc_hidden, "lm_enc_hidden": dec_hidden,
                           "lm_dec_hidden": dec_hidden},
        "tokenizer": {
            "dir": None, "type": "agg", "langs": _tokenizers(folder / "tokenizers", prompt_format),
            "custom_tokenizer": {
                "_target_": "nemo.collections.common.tokenizers.canary_tokenizer.CanaryTokenizer"},
        },
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": 16000, "normalize": "per_feature", "window_size": 0.025,
            "window_stride": 0.01, "features": 128 if size == "1b" else 80, "n_fft": 512,
            "dither": 1e-5, "pad_to": 0,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": 128 if size == "1b" else 80, "feat_out": -1, "n_layers": enc_layers,
            "d_model": enc_hidden, "subsampling": "dw_striding", "subsampling_factor": 8,
            "subsampling_conv_channels": 256 if size == "1b" else 16, "ff_expansion_factor": 4,
            "self_attention_model": "rel_pos", "n_heads": heads, "att_context_size": [-1, -1],
            "xscaling": True, "untie_biases": True, "conv_kernel_size": 9,
            "conv_norm_type": "batch_norm", "dropout": 0.1, "dropout_pre_encoder": 0.1,
            "dropout_emb": 0.0, "dropout_att": 0.1,
        },
        "transf_decoder": {
            "_target_": "nemo.collections.asr.modules.transformer.get_nemo_transformer",
            "model_name": None, "pretrained": False, "encoder": None,
            "pre_ln_final_layer_norm": True,
            "config_dict": {
                "max_sequence_length": 512, "num_token_types": 0, "embedding_dropout": 0.1,
                "learn_positional_encodings": False, "hidden_size": dec_hidden,
                "inner_size": 4 * dec_hidden, "num_layers": dec_layers,
                "num_attention_heads": heads, "ffn_dropout": 0.1, "attn_score_dropout": 0.1,
                "attn_layer_dropout": 0.1, "hidden_act": "relu", "pre_ln": True,
                "vocab_size": None,
            },
        },
        "head": {
            "_target_": "nemo.collections.asr.parts.submodules.token_classifier.TokenClassifier",
            "num_layers": 1, "activation": "relu", "log_softmax": True,
            "hidden_size": dec_hidden, "num_classes": None, "dropout": 0.0,
            "use_transformer_init": True,
        },
        # Canary's published decoding: beam search of width 1; a random decoder runs to
        # the length cap, so the cap stays small.
        "decoding": {"strategy": "beam", "return_best_hypothesis": True,
                     "beam": {"beam_size": 1, "len_pen": 0.0,
                              "max_generation_delta": 50 if size == "1b" else 12}},
        "loss": {"_target_": "nemo.collections.common.losses.smoothed_cross_entropy."
                             "SmoothedCrossEntropyLoss", "label_smoothing": 0.0, "pad_id": None},
    }
    if prompt_format == "canary2":
        cfg["prompt_defaults"] = [{"role": "user", "slots": {
            "decodercontext": "", "emotion": "<|emo:undefined|>", "source_lang": "<|en|>",
            "target_lang": "<|en|>", "pnc": "<|pnc|>", "itn": "<|noitn|>",
            "timestamp": "<|notimestamp|>", "diarize": "<|nodiarize|>"}}]
    return cfg


def build(folder: Path, name: str = "canary-tiny", *, size: str = "tiny",
          prompt_format: str = "canary", seed: int = 3) -> Path:
    """Save a randomly initialised Canary as ``folder/<name>.nemo`` and return its path.

    With seed 3 the tiny model writes text (other seeds' often end at once), and different
    text for different prompts, so a test can see text and prompt travel."""
    import torch
    from nemo.collections.asr.models import EncDecMultiTaskModel
    from omegaconf import OmegaConf

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = EncDecMultiTaskModel(OmegaConf.create(config(folder, size=size,
                                                         prompt_format=prompt_format)))
    path = folder / f"{name}.nemo"
    model.save_to(str(path))
    return path


def place_in_hub_cache(archive: Path, cache_root: Path, repo: str) -> Path:
    """Lay ``archive`` out in the hub cache (``cache_root/hub``) the way a download of
    ``repo``'s ``<name>.nemo`` leaves it, so a lookup by name finds it offline."""
    revision = "0" * 40
    base = cache_root / "hub" / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / "main").write_text(revision)
    snapshot = base / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    target = snapshot / f"{repo.rsplit('/', 1)[1]}.nemo"
    target.write_bytes(archive.read_bytes())
    return target
