"""Does Piper gain from batching sentences? One by one against one padded batch.

    python bench/tts_batch.py [--sentences 1,2,4,8] [--rounds 5]

Piper's ONNX model (VITS) takes a batch of phoneme-id sequences with their lengths. For N
sentences of a paragraph this runs the packaged voice (``en_US-joe-medium``) with noise
off (``noise_scale`` and ``noise_w`` 0, so the same input gives the same samples):
  one by one   N ``session.run`` calls of one sentence each, as ``PiperVoice.synthesize``
               does,
  batch        one ``session.run`` of the N sequences padded to the longest, each
               sentence's audio then cut to its own length where the model returns
               per-phoneme sample counts (the packaged voice returns only the padded
               audio, so its sentences come back as long as the longest).
It prints the median seconds of each over the rounds, their ratio, and how far a batched
sentence's samples are from the same sentence alone (largest absolute difference, and
whether the lengths match).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from secretary.config import Settings  # noqa: E402
from secretary.tts.models import PIPER_PACKAGED_VOICE, TtsModels  # noqa: E402

PARAGRAPH = [
    "Your meeting with Anna starts at three in the afternoon.",
    "I moved the dentist to Thursday morning, as you asked.",
    "There is nothing else on your calendar today.",
    "Would you like me to remind you an hour before?",
    "The train to Berlin leaves at a quarter past eight.",
    "Please bring the signed contract to the front desk.",
    "It will be sunny with a light breeze this evening.",
    "Thank you for calling, and have a good day.",
]


def load_voice():
    from piper import PiperVoice

    settings = Settings(_env_file=None)
    model, config = TtsModels(settings.models_dir).piper_voice(PIPER_PACKAGED_VOICE)
    return PiperVoice.load(model, config)


def phoneme_ids(voice, text: str) -> list[int]:
    ids: list[int] = []
    for phonemes in voice.phonemize(text):  # one sentence each here
        ids += voice.phonemes_to_ids(phonemes)
    return ids


def run(voice, batch: list[list[int]]) -> list[np.ndarray]:
    """One ``session.run`` over ``batch``; each sequence's samples, cut to its length."""
    longest = max(len(ids) for ids in batch)
    padded = np.zeros((len(batch), longest), dtype=np.int64)
    for row, ids in enumerate(batch):
        padded[row, :len(ids)] = ids
    args = {"input": padded,
            "input_lengths": np.array([len(ids) for ids in batch], dtype=np.int64),
            "scales": np.array([0.0, voice.config.length_scale, 0.0], dtype=np.float32)}
    if voice.config.num_speakers > 1:
        args["sid"] = np.zeros(len(batch), dtype=np.int64)
    result = voice.session.run(None, args)
    audio = result[0].reshape(len(batch), -1)
    if len(result) < 2:  # no per-phoneme sample counts: only one sequence is exact
        return [audio[0]] if len(batch) == 1 else list(audio)
    counts = result[1].reshape(len(batch), -1) * voice.config.hop_length
    lengths = [int(round(float(counts[row, :len(ids)].sum())))
               for row, ids in enumerate(batch)]
    return [audio[row, :n] for row, n in enumerate(lengths)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", default="1,2,4,8")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    voice = load_voice()
    outputs = [o.name for o in voice.session.get_outputs()]
    print(f"voice {PIPER_PACKAGED_VOICE}, outputs {outputs}, "
          f"threads {voice.session.get_session_options().intra_op_num_threads or 'default'}")
    run(voice, [phoneme_ids(voice, PARAGRAPH[0])])  # warm-up
    print("| sentences | one by one (s) | one batch (s) | batch / one by one | "
          "max sample difference | lengths equal |")
    print("|---|---|---|---|---|---|")
    for n in (int(x) for x in args.sentences.split(",")):
        texts = [PARAGRAPH[i % len(PARAGRAPH)] for i in range(n)]
        ids = [phoneme_ids(voice, t) for t in texts]
        single_times, batch_times = [], []
        alone: list[np.ndarray] = []
        together: list[np.ndarray] = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            alone = [run(voice, [one])[0] for one in ids]
            single_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            together = run(voice, ids)
            batch_times.append(time.perf_counter() - start)
        single, batched = statistics.median(single_times), statistics.median(batch_times)
        same_length = all(len(a) == len(b) for a, b in zip(alone, together, strict=True))
        difference = max(float(np.max(np.abs(a[:len(b)] - b[:len(a)])))
                         for a, b in zip(alone, together, strict=True))
        print(f"| {n} | {single:.3f} | {batched:.3f} | {batched / single:.2f} | "
              f"{difference:.2e} | {same_length} |")


if __name__ == "__main__":
    main()
