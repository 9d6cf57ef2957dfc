"""Live mode through the browser UI: the page's own server forwards the WebRTC signalling
to the realtime service; in real Chromium, with a clip as the microphone, the page shows
the transcript and the reply and plays the talking face."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from secretary import audio
from secretary.realtime.app import create_app as create_realtime_app
from secretary.realtime.service import RealtimeService
from secretary.ui.app import create_app as create_ui_app
from tests.helpers import SPEECH, running_server
from tests.realtime.conftest import realtime_settings
from tests.ui.support import ui_settings
from tests.ui.test_browser import CHROMIUM, QUIET_CHROMIUM, needs_chromium

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


@pytest.mark.browser
@needs_chromium
def test_live_mode_in_chromium(live_urls: dict[str, str], tmp_path: Path) -> None:
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
            page = browser.new_page()
            page.goto(live_urls["ui"])
            page.get_by_test_id("live-start").click()
            page.wait_for_selector('[data-testid="live-state"][data-state="listening"]',
                                   timeout=30000)
            you = page.locator('[data-testid="live-log"] li.you')
            you.first.wait_for(timeout=60000)
            assert "platforms" in you.first.inner_text().lower()
            reply = page.locator('[data-testid="live-log"] li.secretary')
            reply.first.wait_for(timeout=60000)
            assert "platforms" in reply.first.inner_text().lower()
            # The face: a playing video whose pixels change while it talks.
            video = page.get_by_test_id("live-video")
            page.wait_for_function(
                "() => document.querySelector('[data-testid=live-video]').videoWidth > 0",
                timeout=30000)
            first = video.screenshot()
            page.wait_for_timeout(700)
            second = video.screenshot()
            assert first != second
            level = float(page.get_by_test_id("live-level").get_attribute("data-level"))
            assert level >= 0.0
            page.get_by_test_id("live-hangup").click()
            page.wait_for_selector('[data-testid="live-state"][data-state="off"]')
        finally:
            browser.close()
