"""The browser UI end to end, in a real headless Chromium.

The whole stack runs as ``secretary serve`` in a subprocess (STT, TTS, avatar and the UI
over HTTPS with its self-signed certificate); a real speech clip is the browser's
microphone. Chromium is Debian's ``chromium`` package driven by Playwright (no browser
download); on a developer's machine without it the browser tests are skipped with that
reason, while CI installs it and runs them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from secretary import audio
from secretary.avatar.landmarks import Landmarker
from secretary.catalog import ModelStore
from secretary.tts.app import create_app as create_tts_app
from secretary.ui.app import create_app as create_ui_app
from tests.conversation.scripted import said, scripted_chat
from tests.helpers import (
    FACES,
    SPEECH,
    child_environment,
    free_port,
    needs,
    reference_text,
    running_server,
    stop_process,
    wer,
)
from tests.ui.support import ui_settings

PORTRAIT = FACES / "pexels_woman_neutral.jpg"

# Read at import: the session fixture in conftest.py clears SECRETARY_* variables later.
CHROMIUM = Path(os.environ.get("SECRETARY_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOT_DIR = os.environ.get("SECRETARY_TEST_SCREENSHOT_DIR")
MIC_CLIP = SPEECH / "en_librispeech_1272-128104-0000_quilter.wav"
MIC_RATE = 48000  # Chromium's fake capture reads 16-bit PCM WAV; 48 kHz is its native rate
STACK_SERVICES = ("stt", "tts", "avatar", "ui")
# The Face Landmarker's jawOpen of the drawn avatar, sampled over a reply. Measured: the
# talking face reached 0.10 to 0.27 in about a third of the samples and fell to 0.02 to
# 0.05 between words; the same face with its mouth kept shut (head motion and blinks
# only) stayed at 0.01 to 0.04.
OPEN_JAW, CLOSED_JAW = 0.08, 0.05
STARTUP_POLLS = 600  # 0.5 s apart: five minutes and more for the models to load

needs_chromium = needs(
    CHROMIUM.exists(),
    f"Chromium at {CHROMIUM}: Debian's chromium package (apt-get install -y chromium), "
    "or SECRETARY_TEST_CHROMIUM",
)


@dataclass
class Stack:
    https_url: str
    http_url: str
    service_urls: dict[str, str]
    certificate: Path


def _wait_until_healthy(url: str, process: subprocess.Popen, log: Path,
                        verify: ssl.SSLContext | bool = True) -> None:
    for _ in range(STARTUP_POLLS):
        if process.poll() is not None:
            raise RuntimeError(f"secretary serve exited early:\n{log.read_text()[-4000:]}")
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{url}/health", timeout=5, verify=verify)
            if answer.status_code == 200 and answer.json().get("status") == "ok":
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url}/health was not ok in time:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def stack(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``secretary serve`` with every service the UI uses, on free ports."""
    ports = {name: free_port() for name in (*STACK_SERVICES, "ui_http")}
    urls = {name: f"http://127.0.0.1:{ports[name]}" for name in ("stt", "tts", "avatar")}
    env = child_environment()
    env |= {
        "SECRETARY_CACHE_DIR": str(cache_dir),
        "SECRETARY_LOG_LEVEL": "warning",
        "SECRETARY_STT_PORT": str(ports["stt"]),
        "SECRETARY_TTS_PORT": str(ports["tts"]),
        "SECRETARY_AVATAR_PORT": str(ports["avatar"]),
        "SECRETARY_UI_PORT": str(ports["ui"]),
        "SECRETARY_UI_HTTP_PORT": str(ports["ui_http"]),
        "SECRETARY_UI_STATUS_POLL_SECONDS": "1",
        **{f"SECRETARY_UI_{name.upper()}_URL": url for name, url in urls.items()},
    }
    workdir = tmp_path_factory.mktemp("ui-stack")  # no .env file there
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "secretary", "serve", "--only", ",".join(STACK_SERVICES)],
            cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        http_url = f"http://127.0.0.1:{ports['ui_http']}"
        for url in (*urls.values(), http_url):
            _wait_until_healthy(url, process, log)
        certificate = cache_dir / "ui-tls" / "cert.pem"
        https_url = f"https://127.0.0.1:{ports['ui']}"
        _wait_until_healthy(https_url, process, log,
                            verify=ssl.create_default_context(cafile=certificate))
        yield Stack(https_url, http_url, urls, certificate)
    finally:
        stop_process(process, 30)


@pytest.fixture(scope="module")
def microphone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clip as Chromium's fake microphone plays it: 16-bit PCM WAV, half a second of
    silence before the speech and three after, so the page hears the pause that ends the
    recording. ``%noloop`` (below) keeps it from starting over."""
    decoded = audio.decode(MIC_CLIP, MIC_RATE)
    silence = np.zeros(MIC_RATE // 2, dtype=np.float32)
    padded = np.concatenate([silence, decoded.samples, silence, silence, silence,
                             silence, silence, silence])
    path = tmp_path_factory.mktemp("microphone") / "microphone.wav"
    path.write_bytes(audio.encode(padded, MIC_RATE, "wav"))
    return path


QUIET_CHROMIUM = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def browser(playwright, microphone_wav: Path):
    """Chromium whose microphone is the clip, granted without a prompt."""
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone_wav}%noloop",
            *QUIET_CHROMIUM,
        ],
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: SECRETARY_TEST_SCREENSHOT_DIR (``docs`` refreshes the
    README's picture) or the test's temporary folder."""
    path = Path(SCREENSHOT_DIR) if SCREENSHOT_DIR else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_page(browser, url: str):
    # The page's own Content Security Policy applies: the tests wait on functions (no
    # string evaluation) and read media the way a person can (the download link, the
    # picture as drawn), since the policy's connect-src 'self' forbids fetch() of blob: URLs.
    context = browser.new_context(ignore_https_errors=True, accept_downloads=True,
                                  viewport={"width": 1280, "height": 900})
    page = context.new_page()
    # The page's own code must keep to its policy too: every violation is reported on the
    # console, and ``_close`` fails the test on any.
    page.csp_violations = []
    page.on("console", lambda message: page.csp_violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    page.goto(url)
    return page


def close_page(page) -> None:
    violations = list(page.csp_violations)
    page.context.close()
    assert not violations, violations


def _media(page, testid: str) -> dict:
    return page.evaluate(
        """(id) => { const m = document.querySelector(`[data-testid="${id}"]`);
        return {currentTime: m.currentTime, duration: m.duration, paused: m.paused,
                ended: m.ended, readyState: m.readyState, error: m.error && m.error.code,
                width: m.videoWidth || 0, hidden: m.hidden}; }""",
        testid,
    )


def _hear(stack: Stack, wav: bytes) -> dict:
    """The judge: the stack's own speech-to-text, decoding deterministically (temperature 0,
    no fallback to sampling), so the same audio always gives the same words."""
    response = httpx.post(f"{stack.service_urls['stt']}/v1/audio/transcriptions", timeout=120,
                          files={"file": ("audio.wav", wav, "audio/wav")},
                          data={"model": "whisper-1", "language": "en", "temperature": "0"})
    assert response.status_code == 200, response.text
    return response.json()


def _downloaded(page, testid: str) -> bytes:
    """What the page's download link saves (a blob: URL), captured as a download."""
    with page.expect_download() as download:
        page.get_by_test_id(testid).click()
    return Path(download.value.path()).read_bytes()


def _drawn_image(page, testid: str) -> np.ndarray:
    """The picture an <img> shows, as BGR pixels: drawn onto a canvas in the page and read
    back as PNG (a blob: image drawn by its own origin leaves the canvas readable)."""
    url = page.evaluate(
        """(id) => { const img = document.querySelector(`[data-testid="${id}"]`);
        const canvas = document.createElement("canvas");
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        canvas.getContext("2d").drawImage(img, 0, 0);
        return canvas.toDataURL("image/png"); }""",
        testid,
    )
    png = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def _expect_badges(page, states: dict[str, str], timeout: float = 60_000) -> None:
    from playwright.sync_api import expect

    for name, value in states.items():
        expect(page.get_by_test_id(f"status-{name}")).to_have_attribute(
            "data-state", value, timeout=timeout)


@pytest.fixture(scope="module")
def landmarker(cache_dir: Path) -> Iterator[Landmarker]:
    """mediapipe's Face Landmarker: the judge of how open a drawn face's mouth is."""
    judge = Landmarker(ModelStore(cache_dir / "models").face_landmarker_path())
    judge.load()
    yield judge
    judge.close()


def landmarker_jaw(landmarker: Landmarker, picture: bytes) -> float:
    """The ``jawOpen`` blendshape (0 closed to 1 wide open) of the face in a PNG or JPEG."""
    image = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR)
    face = landmarker.detect(image)
    assert face is not None, "the judge found no face in the picture"
    return face.blendshapes["jawOpen"]


@dataclass
class ReplySample:
    frames: int  # frames drawn so far
    frame_time: float  # the reply's time of the frame on the canvas
    audio_time: float  # the reply audio's currentTime
    picture: bytes  # the canvas, as PNG

    def __repr__(self) -> str:
        return f"({self.frames}, {self.frame_time:.3f}, {self.audio_time:.3f})"


def _reply_samples(page, pause_ms: int = 150, most: int = 80) -> list[ReplySample]:
    """The avatar canvas, read every ``pause_ms`` from now until the reply audio ends."""
    samples = []
    for _ in range(most):
        sample = page.evaluate("""() => {
            const c = document.querySelector('[data-testid=avatar-canvas]');
            const a = document.querySelector('[data-testid=reply-audio]');
            return {frames: Number(c.dataset.frames), time: Number(c.dataset.time),
                    audio: a.currentTime, ended: a.ended, png: c.toDataURL('image/png')}; }""")
        if sample["ended"]:
            break
        samples.append(ReplySample(sample["frames"], sample["time"], sample["audio"],
                                   base64.b64decode(sample["png"].split(",", 1)[1])))
        page.wait_for_timeout(pause_ms)
    return samples


@needs_chromium
def test_full_flow_speaks_back_with_a_talking_avatar(stack: Stack, browser, landmarker,
                                                     screenshot_dir: Path) -> None:
    """Talk mode through the streaming turn: the reply plays from its first audio piece,
    and the avatar's frames follow the audio's clock."""
    from playwright.sync_api import expect

    page = open_page(browser, stack.https_url)  # HTTPS with the self-signed certificate
    assert page.evaluate("() => window.isSecureContext")
    _expect_badges(page, {"stt": "up", "tts": "up", "avatar": "up"})
    turns: list = []
    page.on("response", lambda r: turns.append(r) if r.url.endswith("/api/turn") else None)

    page.get_by_test_id("full-flow").click()
    # The level meter follows the microphone while the clip plays.
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=mic-level]').dataset.level) > 0.4",
        timeout=20_000)
    expect(page.get_by_test_id("transcript")).not_to_be_empty(timeout=120_000)
    # The server's voice detector heard the speaker finish (not the 1.3 s loudness rule).
    expect(page.get_by_test_id("recorder")).to_have_attribute("data-stopped-by", "vad")
    transcript = page.get_by_test_id("transcript").inner_text()
    assert wer(reference_text(MIC_CLIP), transcript, "en") <= 0.15, transcript
    expect(page.get_by_test_id("detected-language")).to_have_text("en")
    # No chat model configured: the secretary reads the transcript back.
    expect(page.get_by_test_id("reply-text")).to_have_text(transcript, timeout=30_000)

    # The reply plays in the reply <audio>, fed piece by piece; the face moves with it.
    page.wait_for_function(
        "() => document.querySelector('[data-testid=reply-audio]').currentTime > 0.8",
        timeout=120_000)
    canvas = page.get_by_test_id("avatar-canvas")
    expect(canvas).to_be_visible()
    expect(page.get_by_test_id("portrait")).to_be_hidden()
    samples = _reply_samples(page)
    drawn = [s.frames for s in samples]
    assert drawn == sorted(drawn) and drawn[-1] - drawn[0] >= 10, drawn  # moving
    # On the audio's clock: a frame is never drawn before its time in the audio (20 fps
    # frames, drawn from 20 ms before), and the frame on screen moves on with the audio.
    # How far behind it may lag is measured by bench/avsync.py.
    ahead = [s for s in samples if s.frame_time > s.audio_time + 0.02 + 0.001]
    assert not ahead, ahead
    assert len({s.frame_time for s in samples}) >= len(samples) // 2, samples
    # The face talks: its mouth opens and closes over the reply (the Face Landmarker as
    # the judge); head motion, blinks or a picture that stops changing would not do it.
    jaw = [round(landmarker_jaw(landmarker, s.picture), 3) for s in samples]
    print("jaw over the reply:", jaw)
    opened = sum(j >= OPEN_JAW for j in jaw)
    closed = sum(j <= CLOSED_JAW for j in jaw)
    assert opened >= 3 and closed >= 3, jaw
    page.screenshot(path=str(screenshot_dir / "ui.png"), full_page=True)
    # The page measured the wait from the end of the recording to the reply's first
    # sound (bench/turn.py reports it): playing began after the recording stopped.
    assert float(page.get_by_test_id("reply-audio").get_attribute("data-latency")) > 0

    speech = _media(page, "reply-audio")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=reply-audio]').ended", timeout=60_000)
    expect(page.get_by_test_id("stop")).to_be_disabled()  # heard out: nothing to stop
    for step in ("listen", "transcribe", "think", "speak", "animate"):
        expect(page.locator(f'#steps li[data-step="{step}"]')).to_have_attribute(
            "data-status", "done")
    expect(page.get_by_test_id("notice")).to_be_hidden()
    assert speech["error"] is None

    # What the page was sent is speech saying the reply.
    assert len(turns) == 1
    events = [json.loads(line) for line in turns[0].body().decode().splitlines() if line]
    mp3 = b"".join(base64.b64decode(e["data"]) for e in events if e["type"] == "audio")
    played = _hear(stack, mp3)
    assert wer(transcript, played["text"], "en") <= 0.25, played["text"]
    assert abs(speech["duration"] - audio.decode(mp3).duration) < 0.3
    close_page(page)


@needs_chromium
def test_speech_to_text_only_with_record_and_stop(stack: Stack, browser) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, stack.https_url)
    _expect_badges(page, {"stt": "up"})
    expect(page.get_by_test_id("stop")).to_be_disabled()
    page.get_by_test_id("record").click()
    expect(page.get_by_test_id("stop")).to_be_enabled(timeout=10_000)
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=mic-level]').dataset.level) > 0.4",
        timeout=20_000)
    page.wait_for_timeout(7_500)  # the clip is 6.4 s; this mode records until Stop
    page.get_by_test_id("stop").click()
    expect(page.get_by_test_id("transcript")).not_to_be_empty(timeout=120_000)
    transcript = page.get_by_test_id("transcript").inner_text()
    assert wer(reference_text(MIC_CLIP), transcript, "en") <= 0.15, transcript
    expect(page.get_by_test_id("detected-language")).to_have_text("en")
    segments = page.get_by_test_id("segments").locator("li")
    assert segments.count() >= 1
    assert " s" in segments.first.locator("time").text_content()  # timings shown
    expect(page.get_by_test_id("reply-text")).to_be_empty()  # transcription only
    close_page(page)


@needs_chromium
def test_text_to_speech_only(stack: Stack, browser) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, stack.http_url)  # plain HTTP on localhost works as well
    _expect_badges(page, {"tts": "up"})
    text = "The meeting with the design team has moved to Thursday afternoon."
    page.get_by_test_id("tts-text").fill(text)
    page.get_by_test_id("tts-language").select_option("en")
    page.get_by_test_id("tts-speak").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=tts-audio]').currentTime > 0.5", timeout=60_000)
    played = _media(page, "tts-audio")
    assert 1.5 < played["duration"] < 10
    assert page.get_by_test_id("tts-download").get_attribute("href").startswith("blob:")
    saved = _downloaded(page, "tts-download")
    assert saved.startswith(b"RIFF")  # the WAV the page asked for
    heard = _hear(stack, saved)
    assert wer(text, heard["text"], "en") <= 0.25, heard["text"]

    # German goes to another engine; the page only names the language.
    page.get_by_test_id("tts-language").select_option("de")
    page.get_by_test_id("tts-text").fill("Guten Morgen, Ihr Termin ist um neun Uhr.")
    page.get_by_test_id("tts-speak").click()
    page.wait_for_function(
        "() => { const a = document.querySelector('[data-testid=tts-audio]');"
        " return a.src.startsWith('blob:') && a.currentTime > 0.3 && a.duration > 1; }",
        timeout=60_000)
    expect(page.get_by_test_id("notice")).to_be_hidden()
    close_page(page)


@needs_chromium
def test_avatar_mode_with_an_uploaded_portrait(stack: Stack, browser) -> None:
    from playwright.sync_api import expect

    page = open_page(browser, stack.http_url)
    _expect_badges(page, {"avatar": "up"})
    # The expression list comes from the avatar service.
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=avatar-expression] option').length >= 5")
    page.get_by_test_id("avatar-upload").set_input_files(str(PORTRAIT))
    page.get_by_test_id("avatar-expression").select_option("surprised")
    page.get_by_test_id("avatar-render").click()
    image = page.get_by_test_id("avatar-image")
    expect(image).to_be_visible(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=avatar-image]').naturalWidth > 100")
    shown = _drawn_image(page, "avatar-image")
    # The uploaded photo, rendered by the service: the same pixels as asking it directly.
    intensity = page.get_by_test_id("avatar-intensity").input_value()
    direct = httpx.post(f"{stack.service_urls['avatar']}/api/render", timeout=120,
                        files={"source_image": ("p.jpg", PORTRAIT.read_bytes())},
                        data={"expression": "surprised", "intensity": intensity,
                              "format": "png"})
    assert direct.status_code == 200, direct.text
    expected = cv2.imdecode(np.frombuffer(direct.content, np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape == expected.shape
    assert np.abs(shown.astype(int) - expected).max() <= 2  # colour handling may round
    expect(page.get_by_test_id("notice")).to_be_hidden()

    # A photo without a face: the service's 422 message reaches the person.
    page.get_by_test_id("avatar-upload").set_input_files(str(FACES / "noface_coffee_cup.png"))
    page.get_by_test_id("avatar-render").click()
    expect(page.get_by_test_id("notice-text")).to_contain_text("face", timeout=60_000)
    page.get_by_test_id("avatar-default").click()
    expect(page.get_by_test_id("portrait")).to_have_attribute("src", "/static/portrait.png")
    close_page(page)


@needs_chromium
def test_stopped_service_shows_down_and_a_clear_message(browser, cache_dir: Path) -> None:
    from playwright.sync_api import expect

    settings = ui_settings(cache_dir)
    tts_server = running_server(create_tts_app(settings))
    tts_url = tts_server.__enter__()
    try:
        stt_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        settings.ui = settings.ui.model_copy(update={
            "tts_url": tts_url, "stt_url": stt_url,
            "avatar_url": f"http://127.0.0.1:{free_port()}", "status_poll_seconds": 0.5})
        # The turn's stages call the services over HTTP here, so a stopped one shows.
        settings.conversation = settings.conversation.model_copy(update={"stages": "remote"})
        with running_server(create_ui_app(settings)) as ui_url:
            page = open_page(browser, ui_url)
            _expect_badges(page, {"tts": "up", "stt": "down", "avatar": "down"})
            tts_server.__exit__(None, None, None)  # stop the text-to-speech service
            tts_server = None
            _expect_badges(page, {"tts": "down"}, timeout=15_000)

            page.get_by_test_id("tts-speak").click()
            expect(page.get_by_test_id("notice")).to_be_visible(timeout=15_000)
            message = page.get_by_test_id("notice-text").inner_text()
            assert "text-to-speech service" in message and "not reachable" in message
            assert tts_url in message

            # Talking with speech-to-text down: the recording is made, then a clear error.
            page.get_by_test_id("notice").get_by_role("button").click()
            page.get_by_test_id("full-flow").click()
            expect(page.get_by_test_id("notice-text")).to_contain_text(
                "speech-to-text service", timeout=60_000)
            expect(page.locator('#steps li[data-step="transcribe"]')).to_have_attribute(
                "data-status", "failed")
            close_page(page)
    finally:
        if tts_server is not None:
            tts_server.__exit__(None, None, None)


@needs_chromium
def test_an_unreachable_chat_model_is_named_on_the_page(browser, cache_dir: Path) -> None:
    from playwright.sync_api import expect

    port = free_port()  # nothing listens there
    settings = ui_settings(cache_dir, chat_url=f"http://127.0.0.1:{port}/v1",
                           chat_model="smollm2")
    with running_server(create_ui_app(settings)) as ui_url:
        page = open_page(browser, ui_url)
        page.get_by_test_id("full-flow").click()
        notice = page.get_by_test_id("notice-text")
        expect(notice).to_contain_text("chat model", timeout=120_000)
        expect(notice).to_contain_text(f"127.0.0.1:{port}")
        expect(notice).to_contain_text("not reachable")
        expect(page.get_by_test_id("transcript")).not_to_be_empty()  # heard, then failed
        expect(page.locator('#steps li[data-step="think"]')).to_have_attribute(
            "data-status", "failed")
        expect(page.get_by_test_id("full-flow")).to_be_enabled()
        close_page(page)


@needs_chromium
def test_stop_during_the_reply_stops_it_here_and_on_the_server(browser, cache_dir: Path) -> None:
    """A chat model that streams a long reply about as fast as it is spoken (so the server's
    turn is certainly still going, on any machine, when the listener presses Stop): the page
    stops playing, and the server ends the turn as cancelled, the rest never rendered."""
    from playwright.sync_api import expect

    # 30 sentences of some 3 s each, streamed a word every 0.25 s: 90 s for the whole reply.
    sentences = [f"This is sentence number {n} of a long reply that you may stop at any time."
                 for n in range(1, 31)]
    with scripted_chat() as chat:
        chat.pause = 0.25
        chat.scripts.append(said(" ".join(sentences)))
        settings = ui_settings(cache_dir, chat_url=chat.url, chat_model="secretary-llm")
        fps = settings.conversation.avatar_fps
        with running_server(create_ui_app(settings)) as ui_url:
            page = open_page(browser, ui_url)
            page.get_by_test_id("full-flow").click()
            page.wait_for_function(
                "() => document.querySelector('[data-testid=reply-audio]').currentTime > 0.3",
                timeout=120_000)
            page.get_by_test_id("stop").click()
            expect(page.get_by_test_id("stop")).to_be_disabled()
            media = _media(page, "reply-audio")
            assert media["paused"], (media, page.get_by_test_id("transcript").inner_text())
            for _ in range(150):  # 0.2 s apart: 30 s for the turn to wind down
                text = httpx.get(f"{ui_url}/metrics", timeout=10).text
                if 'secretary_turns_total{outcome="cancelled"} 1.0' in text:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"the turn was not cancelled: {text[-2000:]}")
            frames = next(float(line.split()[-1]) for line in text.splitlines()
                          if line.startswith("secretary_turn_frames_total "))
            assert 0 < frames < 30 * fps  # a third of the reply's 90 s at most
            expect(page.get_by_test_id("notice")).to_be_hidden()
            assert len(chat.requests) == 1
            close_page(page)


@needs_chromium
def test_stop_after_the_reply_streamed_still_silences_it(browser, cache_dir: Path) -> None:
    """Without the avatar the reply's stream ends seconds before its speech does: Stop stays
    on while the reply is heard, silences it, then goes off."""
    from playwright.sync_api import expect

    settings = ui_settings(cache_dir)
    settings.conversation = settings.conversation.model_copy(update={"avatar": False})
    with running_server(create_ui_app(settings)) as ui_url:
        page = open_page(browser, ui_url)
        page.get_by_test_id("full-flow").click()
        # The turn's timings come with its last event: the stream is over.
        expect(page.get_by_test_id("segments")).to_contain_text("whole turn", timeout=120_000)
        page.wait_for_function(
            "() => document.querySelector('[data-testid=reply-audio]').currentTime > 0.3",
            timeout=30_000)
        playing = _media(page, "reply-audio")
        assert not playing["paused"] and playing["duration"] - playing["currentTime"] > 1, playing
        expect(page.get_by_test_id("stop")).to_be_enabled()
        page.get_by_test_id("stop").click()
        expect(page.get_by_test_id("stop")).to_be_disabled()
        stopped = _media(page, "reply-audio")
        assert stopped["paused"] and not stopped["ended"], stopped
        page.wait_for_timeout(500)
        assert _media(page, "reply-audio")["currentTime"] == stopped["currentTime"]
        expect(page.get_by_test_id("notice")).to_be_hidden()
        close_page(page)


@needs_chromium
def test_denied_microphone_gets_a_clear_message(playwright, cache_dir: Path) -> None:
    from playwright.sync_api import expect

    # Without --use-fake-ui-for-media-stream nobody can answer the permission prompt: denied.
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=["--use-fake-device-for-media-stream",
                                             *QUIET_CHROMIUM])
    try:
        with running_server(create_ui_app(ui_settings(cache_dir))) as ui_url:
            page = open_page(browser, ui_url)
            page.get_by_test_id("full-flow").click()
            expect(page.get_by_test_id("notice-text")).to_contain_text(
                "Microphone access was denied", timeout=15_000)
            expect(page.locator('#steps li[data-step="listen"]')).to_have_attribute(
                "data-status", "failed")
            expect(page.get_by_test_id("full-flow")).to_be_enabled()
            assert page.evaluate("() => document.body.dataset.busy") == "false"
    finally:
        browser.close()


def test_forwarding_passes_answers_and_errors_through(stack: Stack) -> None:
    """Same status, same JSON error body through the UI as from the service itself."""
    image = (FACES / "codait_bryan_lowres.png").read_bytes()
    direct = httpx.post(f"{stack.service_urls['stt']}/transcribe",
                        files={"file": ("face.png", image, "image/png")})
    relayed = httpx.post(f"{stack.http_url}/api/stt/transcribe",
                         files={"file": ("face.png", image, "image/png")})
    assert direct.status_code == relayed.status_code == 415
    assert relayed.json() == direct.json()

    empty = httpx.post(f"{stack.http_url}/api/tts/synthesize", json={"text": ""})
    assert empty.status_code == 400 and empty.json()["error"]["message"]
    no_face = httpx.post(f"{stack.http_url}/api/avatar/api/render", files={
        "source_image": ("cup.png", (FACES / "noface_coffee_cup.png").read_bytes(),
                         "image/png")}, timeout=60)
    assert no_face.status_code == 422 and "face" in no_face.json()["error"]["message"]

    clip = SPEECH / "en_cmu_arctic_aew_a0003.wav"
    answer = httpx.post(f"{stack.http_url}/api/stt/transcribe", timeout=120,
                        files={"file": (clip.name, clip.read_bytes(), "audio/wav")})
    assert answer.status_code == 200
    assert wer(reference_text(clip), answer.json()["text"], "en") <= 0.2

    speech = httpx.post(f"{stack.https_url}/api/tts/synthesize", timeout=120,
                        verify=ssl.create_default_context(cafile=stack.certificate),
                        json={"text": "One two three.", "language": "en", "format": "wav"})
    assert speech.status_code == 200 and speech.headers["content-type"] == "audio/wav"
    assert 0.5 < audio.decode(speech.content).duration < 5


def test_page_is_served_same_origin_only(stack: Stack) -> None:
    page = httpx.get(f"{stack.http_url}/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    for testid in ("full-flow", "record", "stop", "transcript", "detected-language",
                   "reply-text", "reply-audio", "avatar-video", "tts-text", "tts-language",
                   "tts-speak", "tts-audio", "status-stt", "status-tts", "status-avatar"):
        assert f'data-testid="{testid}"' in page.text, testid
    portrait = httpx.get(f"{stack.http_url}/static/portrait.png")
    assert portrait.status_code == 200 and portrait.headers["content-type"] == "image/png"
