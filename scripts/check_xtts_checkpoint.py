"""Check the published XTTS v2 model end to end, where its files have been downloaded.

    python scripts/check_xtts_checkpoint.py [CHECKPOINT]     (default: coqui/XTTS-v2)

CHECKPOINT is a folder holding the downloaded ``coqui/XTTS-v2`` files or the hub id (it is
downloaded where there is internet). The engine loads it through the same code the service
uses, speaks a sentence with the default speaker and one with a voice cloned from a real
clip, and Whisper base transcribes both: each must come back within a word error rate of
0.3. Exits 1 if not. The test suite covers the same engine on a tiny model it builds,
since the real weights cannot be downloaded where the tests run; this script is the check
for a GPU box (needs ``pip install -e '.[xtts,test]'``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tests.helpers import SPEECH, reference_text, wer  # noqa: E402

from secretary import audio  # noqa: E402
from secretary.catalog import ModelStore  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.stt.engine import TranscriptionOptions, collect  # noqa: E402
from secretary.stt.whisper import WhisperEngine  # noqa: E402
from secretary.tts.engine import SpeakerReference, SynthesisRequest  # noqa: E402
from secretary.tts.xtts import XttsEngine  # noqa: E402

MAX_WER = 0.3
SENTENCE = "The quick brown fox jumps over the lazy dog."
CLONE_CLIP = SPEECH / "en_cmu_arctic_aew_a0001.wav"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="coqui/XTTS-v2")
    args = parser.parse_args()

    settings = Settings()
    tts = settings.tts.model_copy(update={"xtts_model": args.checkpoint})
    store = ModelStore(settings.models_dir)
    engine = XttsEngine(tts, store)
    engine.load()
    whisper = WhisperEngine(settings.stt, store)

    clip = audio.decode(CLONE_CLIP, sample_rate=22050)
    key = hashlib.sha256(clip.samples.tobytes()).hexdigest()
    cloned = SpeakerReference(clip.samples, clip.sample_rate, key)
    failed = False
    for label, request in (
        ("default speaker", SynthesisRequest(SENTENCE, "en")),
        ("cloned voice", SynthesisRequest(reference_text(CLONE_CLIP), "en", reference=cloned)),
    ):
        samples = np.concatenate(list(engine.synthesize(request)))
        heard = collect(whisper.transcribe(
            audio.resample(samples, engine.sample_rate, audio.WHISPER_SAMPLE_RATE),
            TranscriptionOptions(language="en"),
        ))
        error = wer(request.text, heard.text, "en")
        failed |= error > MAX_WER
        print(f"{label:16} WER {error:.2f} ({'FAILED' if error > MAX_WER else 'ok'}): "
              f"{heard.text!r}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
