"""WebRTC through a TURN server: a real coturn on loopback, the realtime service configured
with it (SECRETARY_REALTIME_ICE_SERVERS), and an aiortc peer that may only use relayed
candidates, as a browser behind a NAT or a firewall would. The call must work end to end,
its media relayed by coturn."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aioice import stun
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from secretary import audio as sound
from secretary.realtime.service import RealtimeService
from secretary.ui.app import create_app as create_ui_app
from tests.helpers import SPEECH, free_port, needs, running_server, stop_process
from tests.realtime.rtc import ClipTrack, frames, offer, record_events
from tests.realtime.support import clip
from tests.ui.support import ui_settings
from tests.ui.test_browser import CHROMIUM, QUIET_CHROMIUM, close_page, needs_chromium, open_page

TURNSERVER = shutil.which("turnserver")
USER, PASSWORD = "u", "p"

pytestmark = needs(TURNSERVER is not None, "coturn's turnserver (Debian's coturn package)")


class Coturn:
    """A turnserver process on 127.0.0.1 and what it logs."""

    def __init__(self, port: int, process: subprocess.Popen[str]) -> None:
        self.port, self.process = port, process
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def log(self) -> str:
        return "\n".join(self.lines)

    def answers(self) -> bool:
        """Whether it answers a STUN Binding request on its UDP port."""
        request = stun.Message(message_method=stun.Method.BINDING,
                               message_class=stun.Class.REQUEST)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.5)
            sock.sendto(bytes(request), ("127.0.0.1", self.port))
            try:
                data = sock.recv(2048)
            except OSError:
                return False
        return stun.parse_message(data).transaction_id == request.transaction_id


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    if TURNSERVER is None:
        pytest.fail("turnserver is not installed (scripts/test.sh installs Debian's coturn)")
    folder: Path = tmp_path_factory.mktemp("coturn")
    port = free_port()
    command = [
        TURNSERVER, "-n",  # no configuration file: only what is given here
        "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
        "--listening-port", str(port), "--no-tls", "--no-dtls", "--no-rfc5780",
        "--lt-cred-mech", "--user", f"{USER}:{PASSWORD}", "--realm", "secretary",
        # The peers are on this machine: coturn refuses to relay to 127.0.0.0/8 otherwise.
        "--allow-loopback-peers",
        # -v: each allocation and, when it ends, the traffic it relayed, to stdout.
        "-v", "--no-cli", "--log-file", "stdout", "--simple-log",
        # Its state in the test's folder, not in /var.
        "--pidfile", str(folder / "turnserver.pid"), "--userdb", str(folder / "turndb"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, cwd=folder)
    server = Coturn(port, process)
    try:
        deadline = time.monotonic() + 20
        while not server.answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start:\n{server.log()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        stop_process(process)
        server.reader.join(timeout=5)


def _candidate_types(sdp: str) -> set[str]:
    return set(re.findall(r"^a=candidate:.* typ (\w+)", sdp, re.MULTILINE))


def _nominated(pc: RTCPeerConnection) -> Any:
    """The ICE candidate pair aioice chose for the call (aiortc bundles every track and the
    data channel on one transport). aiortc has no public way to ask; these are aiortc's and
    aioice's own attributes, so a change there fails this with its name."""
    transport = pc.getTransceivers()[0].sender.transport.transport
    connection = getattr(transport, "_connection", None)
    nominated = getattr(connection, "_nominated", None)
    assert nominated, "aiortc/aioice changed: no RTCIceTransport._connection._nominated"
    return nominated[1]


async def test_a_call_relayed_by_turn_works_end_to_end(
        coturn: Coturn, service: RealtimeService, url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The service's peer connections take their ICE servers from the setting, as text.
    monkeypatch.setattr(service.options, "ice_servers",
                        f"{coturn.url}|{USER}|{PASSWORD}")
    assert service.options.ice_servers[0].url == coturn.url

    # The client may use relayed candidates only: everything it sends goes through coturn.
    pc = RTCPeerConnection(RTCConfiguration(
        iceServers=[RTCIceServer(urls=coturn.url, username=USER, credential=PASSWORD)],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY))
    events: list[dict[str, Any]] = []
    audio: list[np.ndarray] = []
    done = record_events(pc.createDataChannel("oai-events"), events)

    async def read(track: Any) -> None:
        async for frame in frames(track):
            data = frame.to_ndarray().astype(np.float32) / 32768.0
            audio.append(data.reshape(-1, len(frame.layout.channels)).mean(axis=1))

    readers: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: readers.append(asyncio.create_task(read(track))))
    pc.addTrack(ClipTrack(clip("en_cheetah_platforms.wav")))
    answer = await offer(pc, f"{url}/v1/realtime/calls?model=secretary-realtime")
    assert answer.status_code == 201, answer.text
    try:
        assert _candidate_types(pc.localDescription.sdp) == {"relay"}, pc.localDescription.sdp
        # The server gathered a relayed candidate of its own from the configured TURN server.
        assert "relay" in _candidate_types(answer.text), answer.text
        try:
            await asyncio.wait_for(done.wait(), 90)
        except TimeoutError:
            raise AssertionError(f"no response.done: {[e['type'] for e in events]}, "
                                 f"{len(audio)} audio frames; coturn said:\n"
                                 f"{coturn.log()[-3000:]}") from None
        await asyncio.sleep(0.5)
        pair = _nominated(pc)
    finally:
        await pc.close()
        for reader in readers:
            reader.cancel()

    # The session ran over the relayed path: events on the data channel ...
    kinds = [e["type"] for e in events]
    for kind in ("session.created", "input_audio_buffer.speech_started",
                 "conversation.item.input_audio_transcription.completed",
                 "response.created", "response.done"):
        assert kind in kinds, kinds
    heard = next(e for e in events
                 if e["type"] == "conversation.item.input_audio_transcription.completed")
    assert "platforms" in heard["transcript"].lower(), heard
    assert events[-1]["response"]["status"] == "completed", events[-1]
    # ... and the reply's sound on the audio track.
    level = np.array([float(np.sqrt(np.mean(np.square(s)))) for s in audio])
    assert (level > 0.02).sum() * 0.02 > 1.0, "less than a second of reply audio arrived"

    # The pair ICE chose is a relayed one, through this coturn.
    assert pair.local_candidate.type == "relay", pair
    assert pair.local_candidate.host == "127.0.0.1"
    # coturn's own word: the user's allocations, and when the client's ends (its close
    # deletes it), the packets it relayed between the client and the service, each way.
    log = coturn.log()
    assert f"username=<{USER}>, lifetime=" in log and "ALLOCATE processed, success" in log, \
        log[-3000:]
    relayed = await _relayed_packets(coturn)
    assert any(sent > 100 and received > 100 for sent, received in relayed), (
        relayed, "\n".join(line for line in coturn.lines if "session" in line))


async def _relayed_packets(coturn: Coturn, wait: float = 10.0) -> list[tuple[int, int]]:
    """(sent to the peer, received from it) in packets, for each allocation coturn has
    ended so far; waits for one that relayed something."""
    pattern = re.compile(rf"peer usage: realm=<secretary>, username=<{USER}>, "
                         r"rp=(\d+), rb=\d+, sp=(\d+)")
    deadline = time.monotonic() + wait
    while True:
        found = [(int(sent), int(received))
                 for received, sent in pattern.findall(coturn.log())]
        if any(sum(pair) for pair in found) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


# Live mode's page: RTCPeerConnection as the page made it, its configuration kept for the test
# and held to relayed candidates (a browser that cannot reach the service's UDP ports).
_RELAY_ONLY = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__liveConfigurations = [];
  window.__livePeers = [];
  window.RTCPeerConnection = function (configuration) {
    window.__liveConfigurations.push(JSON.parse(JSON.stringify(configuration || null)));
    const pc = new Native({ ...(configuration || {}), iceTransportPolicy: "relay" });
    window.__livePeers.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Native.prototype;
})();
"""

_SELECTED_PAIR = """async () => {
  const pc = window.__livePeers[window.__livePeers.length - 1];
  const stats = [...(await pc.getStats()).values()];
  const transport = stats.find((s) => s.type === "transport" && s.selectedCandidatePairId);
  const pair = stats.find((s) => s.id === transport.selectedCandidatePairId);
  const local = stats.find((s) => s.id === pair.localCandidateId);
  return { type: local.candidateType, address: local.address || local.ip,
           received: pair.bytesReceived, sent: pair.bytesSent };
}"""


@pytest.mark.browser
@needs_chromium
def test_live_mode_in_chromium_through_turn(
        coturn: Coturn, service: RealtimeService, url: str, cache_dir: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page takes the ICE servers from the UI's /api/config, gives them to its
    RTCPeerConnection, and Live mode works with relayed candidates only."""
    from playwright.sync_api import sync_playwright

    servers = f"{coturn.url}|{USER}|{PASSWORD}"
    monkeypatch.setattr(service.options, "ice_servers", servers)
    settings = ui_settings(cache_dir, realtime_url=url)
    settings.realtime.ice_servers = servers
    rate = 48000
    quiet = np.zeros(rate, np.float32)
    speech = sound.decode(SPEECH / "en_cheetah_platforms.wav", rate).samples
    wav = tmp_path / "microphone.wav"
    wav.write_bytes(sound.encode(np.concatenate([quiet, quiet, speech, *[quiet] * 12]),
                                 rate, "wav"))
    with running_server(create_ui_app(settings)) as page_url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop",
            "--autoplay-policy=no-user-gesture-required", *QUIET_CHROMIUM])
        try:
            page = open_page(browser, page_url)
            page.add_init_script(_RELAY_ONLY)
            page.reload()
            page.get_by_test_id("live-start").click()
            page.wait_for_selector('[data-testid="live-state"][data-state="listening"]',
                                   timeout=30000)
            reply = page.locator('[data-testid="live-log"] li.secretary')
            reply.first.wait_for(timeout=90000)
            heard = page.locator('[data-testid="live-log"] li.you').first.inner_text()
            configurations = page.evaluate("() => window.__liveConfigurations")
            pair = page.evaluate(_SELECTED_PAIR)
            page.get_by_test_id("live-hangup").click()
            page.wait_for_selector('[data-testid="live-state"][data-state="off"]')
            close_page(page)
        finally:
            browser.close()
    assert configurations == [{"iceServers": [
        {"urls": [coturn.url], "username": USER, "credential": PASSWORD}]}], configurations
    assert "platforms" in heard.lower(), heard
    assert pair["type"] == "relay" and pair["received"] > 10000 and pair["sent"] > 10000, pair
