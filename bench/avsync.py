"""The talking face against the reply's sound in the browser: how far the frame on the
avatar canvas is from the audio playing while Chromium plays a streamed turn.

    python bench/avsync.py [--rounds 1] [--interval-ms 100] [--chromium /usr/bin/chromium]

The UI server runs with its stages in-process (speech-to-text, the reply read back, Piper,
the mesh-warp avatar at 20 frames a second). Headless Chromium takes each clip as its
microphone and presses Talk; while the reply plays, the page is read every
``--interval-ms``: the reply time of the frame on the canvas and the audio's currentTime,
in the same instant. Prints, per clip, the samples read, the median, 90th percentile and
largest lag of the picture behind the sound, and the frames drawn per second of audio.
The page draws a frame once the audio is within 20 ms of its time, so at 20 frames a
second a lag of up to one frame (50 ms) is the design; more is the page falling behind.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import SPEECH, running_server  # noqa: E402

from secretary import audio  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.ui.app import create_app as create_ui_app  # noqa: E402

CLIPS = ("en_cheetah_platforms.wav", "en_cmu_arctic_aew_a0003.wav",
         "en_librispeech_1272-128104-0000_quilter.wav")
MIC_RATE = 48000

READ = """() => {
    const c = document.querySelector('[data-testid=avatar-canvas]');
    const a = document.querySelector('[data-testid=reply-audio]');
    return {frames: Number(c.dataset.frames), frame: Number(c.dataset.time),
            audio: a.currentTime, ended: a.ended}; }"""


def microphone(name: str, folder: Path) -> Path:
    """The clip as Chromium's fake microphone: half a second of silence before, three
    after (the pause that ends the recording)."""
    pad = np.zeros(MIC_RATE // 2, np.float32)
    samples = np.concatenate([pad, audio.decode(SPEECH / name, MIC_RATE).samples, *[pad] * 6])
    path = folder / f"{Path(name).stem}.wav"
    path.write_bytes(audio.encode(samples, MIC_RATE, "wav"))
    return path


def one_turn(playwright, chromium: str, ui: str, mic: Path, interval_ms: int) -> list[dict]:
    browser = playwright.chromium.launch(executable_path=chromium, args=[
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}%noloop", "--no-sandbox", "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required"])
    try:
        page = browser.new_page()
        page.goto(ui)
        page.get_by_test_id("full-flow").click()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=reply-audio]').currentTime > 0.2",
            timeout=180_000)
        samples = []
        while True:
            sample = page.evaluate(READ)
            if sample["ended"]:
                return samples
            samples.append(sample)
            page.wait_for_timeout(interval_ms)
    finally:
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    rows: list[tuple[str, list[float], float]] = []
    settings = Settings()
    settings.conversation.speech_cache = 0  # every reply synthesized, as the first time
    with running_server(create_ui_app(settings)) as ui, sync_playwright() as playwright, \
            tempfile.TemporaryDirectory() as folder:
        mics = {name: microphone(name, Path(folder)) for name in CLIPS}
        one_turn(playwright, args.chromium, ui, mics[CLIPS[0]], args.interval_ms)  # warm-up
        for round_ in range(args.rounds):
            for name, mic in mics.items():
                samples = one_turn(playwright, args.chromium, ui, mic, args.interval_ms)
                lags = [s["audio"] - s["frame"] for s in samples]
                played = samples[-1]["audio"] - samples[0]["audio"]
                drawn = samples[-1]["frames"] - samples[0]["frames"]
                rows.append((name, lags, drawn / played if played > 0 else float("nan")))
                print(f"round {round_ + 1} {name}: {len(lags)} samples, median lag "
                      f"{statistics.median(lags) * 1000:.0f} ms", flush=True)

    print(f"\n{len(CLIPS)} clips x {args.rounds} rounds; a sample every {args.interval_ms} ms "
          "while the reply plays; lag = audio time - frame time, in ms\n")
    print("| clip | samples | median lag | p90 lag | largest lag | frames drawn per s |")
    print("|---|---|---|---|---|---|")
    for name, lags, rate in rows:
        ms = np.array(lags) * 1000
        print(f"| {Path(name).stem} | {len(ms)} | {np.median(ms):.0f} | "
              f"{np.percentile(ms, 90):.0f} | {ms.max():.0f} | {rate:.1f} |")
    every = np.concatenate([np.array(lags) for _, lags, _ in rows]) * 1000
    print(f"| all | {len(every)} | {np.median(every):.0f} | {np.percentile(every, 90):.0f} | "
          f"{every.max():.0f} | {statistics.median(r for _, _, r in rows):.1f} |")


if __name__ == "__main__":
    main()
