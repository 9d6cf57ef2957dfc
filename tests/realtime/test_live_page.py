"""Live mode through the browser UI: the page's own server forwards the WebRTC signalling
to the realtime service; in real Chromium, under the page's own Content Security Policy,
with a clip as the microphone, the page's meter follows the microphone, the page shows the
transcript and the reply, and the face talks while the reply plays."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from secretary import audio
from secretary.avatar.landmarks import Landmarker
from secretary.realtime.app import create_app as create_realtime_app
from secretary.realtime.service import RealtimeService
from secretary.ui.app import create_app as create_ui_app
from tests.helpers import SPEECH, running_server
from tests.realtime.conftest import realtime_settings
from tests.ui.support import ui_settings
from tests.ui.test_browser import (  # noqa: F401 - landmarker: a fixture
    CHROMIUM,
    QUIET_CHROMIUM,
    close_page,
    landmarker,
    landmarker_jaw,
    needs_chromium,
    open_page,
)

MIC_RATE = 48000


@pytest.fixture(scope="module")
def live_urls(cache_dir: Path) -> Iterator[dict[str, str]]:
    service = RealtimeService(realtime_settings(cache_dir))
    service.load()
    with running_server(create_realtime_app(service=service)) as realtime:
        ui = create_ui_app(ui_settings(cache_dir, realtime_url=realtime))
        with running_server(ui) as page:
            yield {"realtime": realtime, "ui": page}


async def test_the_ui_forwards_the_offer_and_the_answer(live_urls: dict[str, str]) -> None:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(timeout=60) as client:
        answer = await client.post(f"{live_urls['ui']}/api/realtime/calls",
                                   content=pc.localDescription.sdp,
                                   headers={"Content-Type": "application/sdp"})
        assert answer.status_code == 201, answer.text
        assert answer.text.startswith("v=0") and "m=audio" in answer.text
        bad = await client.post(f"{live_urls['ui']}/api/realtime/calls", content=b"nonsense",
                                headers={"Content-Type": "application/sdp"})
        assert bad.status_code == 400 and bad.json()["error"]["message"]
    await pc.close()


async def test_realtime_down_is_a_clear_503(cache_dir: Path) -> None:
    from tests.helpers import free_port

    ui = create_ui_app(ui_settings(cache_dir, realtime_url=f"http://127.0.0.1:{free_port()}"))
    with running_server(ui) as page:
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(f"{page}/api/realtime/calls", content=b"v=0\r\n",
                                       headers={"Content-Type": "application/sdp"})
    assert answer.status_code == 503
    assert "secretary serve --only realtime" in answer.json()["error"]["message"]


@dataclass
class LiveSample:
    state: str  # the page's live-state
    picture: bytes  # the face video, as drawn on the page (PNG)


def _state(page) -> tuple[str, int, int, float]:
    """The live state, the user's and the secretary's lines in the log, the meter's level."""
    return tuple(page.evaluate("""() => [
        document.querySelector('[data-testid=live-state]').dataset.state,
        document.querySelectorAll('[data-testid=live-log] li.you').length,
        document.querySelectorAll('[data-testid=live-log] li.secretary').length,
        Number(document.querySelector('[data-testid=live-level]').dataset.level)]"""))


# The microphone's level meter (0 at -60 dBFS, 1 at -10 dBFS). Measured: 1.00 at
# the loudest of the clip, 0.00 in the silence the fake microphone plays after it.
SPEAKING_LEVEL, QUIET_LEVEL = 0.4, 0.1
# jawOpen (the Face Landmarker) of the face video. Measured: 0.09 to 0.30 in most samples
# while it spoke, 0.01 to 0.02 once it listened again; the same face with its mouth kept
# shut (head motion and blinks only) stayed at 0.01 to 0.02 while it spoke.
OPEN_JAW, CLOSED_JAW = 0.08, 0.05


@pytest.mark.browser
@needs_chromium
def test_live_mode_in_chromium(live_urls: dict[str, str],
                               landmarker: Landmarker,  # noqa: F811 - the fixture
                               tmp_path: Path) -> None:
    """Under the page's own Content Security Policy (any violation fails the test): the
    meter follows the microphone, the transcript and the reply appear, and the face's mouth
    moves while it speaks and rests while it listens."""
    from playwright.sync_api import sync_playwright

    clip = audio.decode(SPEECH / "en_cheetah_platforms.wav", MIC_RATE).samples
    quiet = np.zeros(MIC_RATE, np.float32)
    wav = tmp_path / "microphone.wav"
    wav.write_bytes(audio.encode(np.concatenate([quiet, quiet, clip, *[quiet] * 12]),
                                 MIC_RATE, "wav"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required", *QUIET_CHROMIUM])
        try:
            page = open_page(browser, live_urls["ui"])
            page.get_by_test_id("live-start").click()
            page.wait_for_selector('[data-testid="live-state"][data-state="listening"]',
                                   timeout=30000)
            # While the user speaks: the meter's level, until the transcript is in.
            heard: list[float] = []
            for _ in range(1200):  # 0.05 s apart: a minute at most
                _, you, _, level = _state(page)
                heard.append(level)
                if you:
                    break
                page.wait_for_timeout(50)
            you = page.locator('[data-testid="live-log"] li.you')
            assert you.count() >= 1, heard
            assert "platforms" in you.first.inner_text().lower()
            reply = page.locator('[data-testid="live-log"] li.secretary')
            reply.first.wait_for(timeout=60000)
            assert "platforms" in reply.first.inner_text().lower()
            page.wait_for_function(
                "() => document.querySelector('[data-testid=live-video]').videoWidth > 0",
                timeout=30000)
            # The face and the meter while the reply plays and for a while after it, when
            # the secretary listens again and the microphone hears the silence.
            video = page.get_by_test_id("live-video")
            samples: list[LiveSample] = []
            quiet_levels: list[float] = []
            listening_after = 0
            for _ in range(300):
                state, _, replies, level = _state(page)
                quiet_levels.append(level)
                samples.append(LiveSample(state, video.screenshot()))
                if state == "listening" and replies:
                    listening_after += 1
                    if listening_after >= 15:
                        break
                page.wait_for_timeout(100)
            page.get_by_test_id("live-hangup").click()
            page.wait_for_selector('[data-testid="live-state"][data-state="off"]')
            close_page(page)
        finally:
            browser.close()
    # The meter follows the microphone: high while the user spoke, low in the silence.
    print("level while speaking:", max(heard), "quiet:", max(quiet_levels))
    assert max(heard) >= SPEAKING_LEVEL, heard
    assert max(quiet_levels) <= QUIET_LEVEL, quiet_levels
    # The face talks while it speaks and rests while it listens; a frozen video, or one
    # that moves only its head, shows the same mouth in both.
    speaking = [round(landmarker_jaw(landmarker, s.picture), 3) for s in samples
                if s.state == "speaking"]
    listening = [round(landmarker_jaw(landmarker, s.picture), 3) for s in samples
                 if s.state == "listening"][-10:]  # settled: the last second
    print("jaw speaking:", speaking, "listening:", listening)
    assert sum(j >= OPEN_JAW for j in speaking) >= 3, (speaking, listening)
    assert len(listening) == 10 and max(listening) <= CLOSED_JAW, (speaking, listening)
