"""One conversation turn: the streamed pipeline against the old four-round-trip flow, side
by side in one run.

    python bench/turn.py [--rounds 3] [--browser]

Over several short English clips (the reply read back, English Piper, the mesh-warp
avatar), on one machine:
  1. the old flow, as the page ran it through the UI gateway: speech-to-text, /api/reply,
     the whole reply WAV from text-to-speech, then the WAV and the portrait to the avatar's
     /api/animate; the reply could play only when all four had answered;
  2. ``POST /api/turn`` with the engines in the UI server (``stages=local``);
  3. ``POST /api/turn`` with every stage over HTTP (``stages=remote``).
For each: end of upload -> first reply audio byte (client clock), and for the streamed
turns the server's own per-stage times. Runs alternate so machine noise hits all alike.
``--browser`` also drives headless Chromium with each clip as its microphone: Stop (the
Talk button's automatic stop) -> the reply <audio> playing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import SPEECH, running_server  # noqa: E402

from secretary import audio  # noqa: E402
from secretary.avatar.app import create_app as create_avatar_app  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.stt.app import create_app as create_stt_app  # noqa: E402
from secretary.tts.app import create_app as create_tts_app  # noqa: E402
from secretary.ui.app import create_app as create_ui_app  # noqa: E402

CLIPS = ("en_cheetah_platforms.wav", "en_cmu_arctic_aew_a0003.wav",
         "en_cmu_arctic_axb_a0004.wav", "en_cmu_arctic_axb_a0006.wav",
         "en_librispeech_1272-128104-0000_quilter.wav")
PORTRAIT = ROOT / "src" / "secretary" / "ui" / "static" / "portrait.png"
STAGES = ("decode", "transcribe", "first_sentence", "first_audio", "first_frame", "total")


def recording(name: str) -> bytes:
    """The clip as a recording: a little silence either side, 16 kHz WAV."""
    rate = audio.WHISPER_SAMPLE_RATE
    pad = np.zeros(int(0.3 * rate), np.float32)
    samples = np.concatenate([pad, audio.decode(SPEECH / name).samples, pad])
    return audio.encode(samples, rate, "wav")


def old_flow(http: httpx.Client, ui: str, wav: bytes) -> dict[str, float]:
    portrait = PORTRAIT.read_bytes()
    started = time.perf_counter()
    marks: dict[str, float] = {}
    heard = http.post(f"{ui}/api/stt/transcribe", files={"file": ("r.wav", wav)}).json()
    marks["transcribe"] = time.perf_counter() - started
    reply = http.post(f"{ui}/api/reply", json={"text": heard["text"],
                                                "language": heard["language"]}).json()
    speech = http.post(f"{ui}/api/tts/synthesize", json={
        "text": reply["text"], "language": heard["language"], "format": "wav"})
    speech.raise_for_status()
    marks["speech"] = time.perf_counter() - started
    video = http.post(f"{ui}/api/avatar/api/animate", data={"fps": "25"}, files={
        "source_image": ("portrait.png", portrait), "audio": ("reply.wav", speech.content)})
    video.raise_for_status()
    # The page played the reply only now, with the video beside it.
    marks["first_audio"] = time.perf_counter() - started
    return marks


def streamed(http: httpx.Client, ui: str, wav: bytes) -> dict[str, float]:
    started = time.perf_counter()
    first = None
    timings: dict[str, float] = {}
    with http.stream("POST", f"{ui}/api/turn", files={"audio": ("r.wav", wav)},
                     data={"session": "bench"}) as answer:
        answer.raise_for_status()
        for line in answer.iter_lines():
            if not line:
                continue
            event = json.loads(line)
            if event["type"] == "audio" and first is None:
                first = time.perf_counter() - started
            elif event["type"] == "error":
                raise RuntimeError(event["message"])
            elif event["type"] == "done":
                timings = event["timings"]
    assert first is not None, "no audio"
    return {"client_first_audio": first, **timings}


def browser_latency(ui: str, clips: list[str]) -> list[dict[str, float]]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as folder:
        for name in clips:
            rate = 48000
            pad = np.zeros(rate // 2, np.float32)
            samples = np.concatenate([pad, audio.decode(SPEECH / name, rate).samples,
                                      pad, pad, pad, pad, pad, pad])
            mic = Path(folder) / f"{name}.wav"
            mic.write_bytes(audio.encode(samples, rate, "wav"))
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}%noloop", "--no-sandbox",
                "--disable-gpu", "--autoplay-policy=no-user-gesture-required"])
            try:
                page = browser.new_page(bypass_csp=True)  # Playwright evaluates strings
                page.goto(ui)
                page.get_by_test_id("full-flow").click()
                page.wait_for_function(
                    "document.querySelector('[data-testid=reply-audio]').dataset.latency",
                    timeout=120_000)
                data = page.evaluate("""() => {
                    const a = document.querySelector('[data-testid=reply-audio]');
                    return {stop: Number(a.dataset.latency),
                            speech: Number(a.dataset.afterSpeech)}; }""")
                page.wait_for_function(
                    "document.querySelector('[data-testid=reply-audio]').ended",
                    timeout=120_000)
                results.append({"stop_to_audible": data["stop"],
                                "speech_end_to_audible": data["speech"]})
                print(f"  browser {name}: {data}", flush=True)
            finally:
                browser.close()
    return results


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--browser", action="store_true")
    args = parser.parse_args()

    settings = Settings()
    settings.conversation.speech_cache = 0  # every reply synthesized, as the first time
    wavs = {name: recording(name) for name in CLIPS}
    runs: dict[str, list[dict[str, float]]] = {"old": [], "local": [], "remote": []}
    with contextlib.ExitStack() as stack:
        stt = stack.enter_context(running_server(create_stt_app(settings)))
        tts = stack.enter_context(running_server(create_tts_app(settings)))
        avatar = stack.enter_context(running_server(create_avatar_app(settings)))
        local = settings.model_copy(deep=True)
        local.ui = local.ui.model_copy(update={"stt_url": stt, "tts_url": tts,
                                               "avatar_url": avatar})
        remote = local.model_copy(deep=True)
        remote.conversation = remote.conversation.model_copy(update={"stages": "remote"})
        ui_local = stack.enter_context(running_server(create_ui_app(local)))
        ui_remote = stack.enter_context(running_server(create_ui_app(remote)))
        http = stack.enter_context(httpx.Client(timeout=600))

        for wav in list(wavs.values())[:1]:  # warm-up: pools, caches, the portrait
            old_flow(http, ui_local, wav)
            streamed(http, ui_local, wav)
            streamed(http, ui_remote, wav)
        for round_ in range(args.rounds):
            for name, wav in wavs.items():
                runs["old"].append(old_flow(http, ui_local, wav))
                runs["local"].append(streamed(http, ui_local, wav))
                runs["remote"].append(streamed(http, ui_remote, wav))
                print(f"round {round_ + 1} {name}: old "
                      f"{runs['old'][-1]['first_audio']:.2f} s, local "
                      f"{runs['local'][-1]['client_first_audio']:.2f} s, remote "
                      f"{runs['remote'][-1]['client_first_audio']:.2f} s", flush=True)
        browser = browser_latency(ui_local, list(CLIPS)) if args.browser else []

    old = median([r["first_audio"] for r in runs["old"]])
    print(f"\n{len(CLIPS)} clips x {args.rounds} rounds; medians in seconds\n")
    print("| flow | end of upload -> first reply audio byte | speed-up vs old |")
    print("|---|---|---|")
    print(f"| old: four round trips through the gateway | {old:.2f} | 1.0x |")
    for key, label in (("local", "POST /api/turn, engines in-process"),
                       ("remote", "POST /api/turn, stages over HTTP")):
        value = median([r["client_first_audio"] for r in runs[key]])
        print(f"| {label} | {value:.2f} | {old / value:.1f}x |")
    print("\nPer stage (server clock, from the end of the upload):\n")
    print("| flow | " + " | ".join(STAGES) + " |")
    print("|---|" + "---|" * len(STAGES))
    for key in ("local", "remote"):
        print(f"| {key} | " + " | ".join(
            f"{median([r[s] for r in runs[key] if s in r]):.2f}" for s in STAGES) + " |")
    print(f"| old | - | {median([r['transcribe'] for r in runs['old']]):.2f} | - | "
          f"{old:.2f} (whole WAV at {median([r['speech'] for r in runs['old']]):.2f}) "
          "| - | - |")
    if browser:
        print(f"\nChromium, Stop -> reply audible: "
              f"{median([b['stop_to_audible'] for b in browser]):.2f} s; end of speech -> "
              f"audible: {median([b['speech_end_to_audible'] for b in browser]):.2f} s "
              f"(median of {len(browser)})")


if __name__ == "__main__":
    main()
