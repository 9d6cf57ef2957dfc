"""The Realtime API over WebRTC (aiortc): an SDP offer in, an SDP answer out; the client's
microphone track in; the reply's audio track and the secretary's face as a video track
out (``media.py``); the JSON events on the data channel ``oai-events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import numpy as np

from secretary.audio import from_pcm16
from secretary.errors import InvalidRequestError, SecretaryError
from secretary.realtime.client_events import SessionUpdate
from secretary.realtime.media import Clock, Playout, RtcOutput, media_tracks
from secretary.realtime.protocol import ProtocolError, new_id
from secretary.realtime.server_events import ErrorEvent
from secretary.realtime.service import Lease, RealtimeService
from secretary.realtime.settings import IceServer

log = logging.getLogger(__name__)

_pcs: dict[str, Any] = {}  # peer connections alive, by call id (kept from collection)


class Call:
    """One WebRTC session: the peer connection, its tracks and its Realtime session."""

    def __init__(self, service: RealtimeService) -> None:
        self.service = service
        self.id = new_id("rtc")
        self.playout = Playout()
        self.clock = Clock()
        self.channel: Any = None
        self.pending: list[str] = []
        self.lease: Lease | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.face: Any = None
        self.closed = False

    async def send(self, event: dict[str, Any]) -> None:
        text = json.dumps(event, ensure_ascii=False)
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(text)
        else:
            self.pending.append(text)

    def _flush(self) -> None:
        for text in self.pending:
            self.channel.send(text)
        self.pending.clear()

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("WebRTC call %s: %r", self.id, task.exception(),
                      exc_info=task.exception())

    async def consume(self, track: Any) -> None:
        """The microphone: decoded frames to the session."""
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if self.lease is None:
                continue
            data = frame.to_ndarray()
            samples = from_pcm16(data) if data.dtype == np.int16 else data.astype(np.float32)
            channels = len(frame.layout.channels)
            samples = samples.reshape(-1, channels).mean(axis=1) if (
                frame.format.is_packed and channels > 1) else samples.reshape(channels, -1)[0]
            await self.lease.session.push_audio(samples, frame.sample_rate)

    async def watch(self) -> None:
        assert self.lease is not None
        reason = await self.service.watch(self.lease)
        await self.send(ErrorEvent.of(ProtocolError(reason, code="session_expired",
                                                    type="server_error")).as_json())
        await asyncio.sleep(0.2)
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        _pcs.pop(self.id, None)
        if self.lease is not None:
            await self.service.release(self.lease)
        with contextlib.suppress(Exception):
            await self.pc.close()
        for task in list(self.tasks):
            task.cancel()


class _EachPacket:
    """An audio receive buffer that hands each packet to the decoder as it arrives.

    aiortc's own holds four 20 ms frames, then waits for the next packet to know a frame is
    whole, to smooth playback: 100 ms of delay on every turn. The microphone's audio here
    is only heard by the VAD and Whisper, which are not played back and do not mind a
    missing packet, and an Opus packet is a whole frame; so packets go on at once, in
    order, a late or repeated one dropped."""

    capacity = 16

    def __init__(self) -> None:
        self.last: int | None = None

    def add(self, packet: Any) -> tuple[bool, Any]:
        from aiortc.jitterbuffer import JitterFrame

        if self.last is not None:
            ahead = (packet.sequence_number - self.last) & 0xFFFF
            if ahead == 0 or ahead >= 0x8000:
                return False, None  # a repeat, or older than what was decoded
        self.last = packet.sequence_number
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)


_BUFFER = "_RTCRtpReceiver__jitter_buffer"  # private in aiortc: checked, not assumed


def prompt_audio_input(receiver: Any) -> bool:
    """Give an audio receiver the ``_EachPacket`` buffer; False where aiortc has changed
    and its own is kept."""
    from aiortc.jitterbuffer import JitterBuffer

    if isinstance(getattr(receiver, _BUFFER, None), JitterBuffer):
        setattr(receiver, _BUFFER, _EachPacket())
        return True
    log.warning("aiortc's receiver has changed: its audio buffer adds up to 100 ms a turn")
    return False


async def hang_up(call_id: str) -> None:
    """End a call by the id its answer's ``Location`` named (404 when there is none)."""
    from secretary.errors import NotFoundError

    call = _pcs.get(call_id)
    if call is None:
        raise NotFoundError(f"no call {call_id!r} in progress", param="call_id")
    await call.close()


# What aiortc raises for an offer it cannot read or answer (a codec it does not find ends in
# a StopIteration, which a coroutine turns into a RuntimeError).
_UNREADABLE = (ValueError, LookupError, TypeError, AssertionError, AttributeError, RuntimeError)


async def _discard(pc: Any) -> None:
    """Close the peer connection of a refused offer. aiortc can fail to close one it set up
    only in part, which must not turn the 400 into a 500."""
    with contextlib.suppress(Exception):
        await pc.close()


def peer_configuration(servers: tuple[IceServer, ...]) -> Any:
    """The peer connection's configuration: the STUN and TURN servers of
    ``SECRETARY_REALTIME_ICE_SERVERS``; None (aiortc's default STUN server) where there are
    none. aiortc uses the first STUN and the first TURN server of the list."""
    from aiortc import RTCConfiguration, RTCIceServer

    if not servers:
        return None
    return RTCConfiguration(iceServers=[
        RTCIceServer(urls=s.url, username=s.username, credential=s.credential)
        for s in servers])


async def answer(service: RealtimeService, sdp: str, *, model: str | None,
                 intent: str | None, config: dict[str, Any] | None = None) -> tuple[str, str]:
    """The SDP answer for an offer, and the call's id. Bad SDP is a 400; over the session
    limit a 503 (before anything is set up)."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    if not sdp.strip().startswith("v=0") or "m=" not in sdp:
        raise InvalidRequestError("the body must be an SDP offer (application/sdp)",
                                  param="sdp")
    service.check_capacity()
    if not service.loaded:
        await asyncio.to_thread(service.load)
    call = Call(service)
    pc = RTCPeerConnection(peer_configuration(service.options.ice_servers))
    call.pc = pc
    @pc.on("datachannel")
    def on_channel(channel: Any) -> None:
        call.channel = channel

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            if call.lease is not None:
                call.spawn(call.lease.session.handle(message))

        if channel.readyState == "open":
            call._flush()
        else:
            channel.on("open", call._flush)

    @pc.on("track")
    def on_track(track: Any) -> None:
        if track.kind == "audio":
            call.spawn(call.consume(track))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await call.close()

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
    except _UNREADABLE as exc:
        await _discard(pc)
        raise InvalidRequestError(f"the SDP offer could not be read: {exc}",
                                  param="sdp") from None
    kinds = [t.kind for t in pc.getTransceivers()]
    if "audio" not in kinds:
        await _discard(pc)
        raise InvalidRequestError("the SDP offer has no audio section", param="sdp")
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            prompt_audio_input(transceiver.receiver)
    reply_audio, face_track = media_tracks()
    pc.addTrack(reply_audio(call.playout, call.clock))
    renderer = service.face_renderer() if "video" in kinds else None
    if renderer is not None:
        call.face = face_track(call.playout, call.clock, renderer, service.options.video_fps,
                               service.face_executor)
        pc.addTrack(call.face)

    try:
        call.lease = await service.open(call.send, model=model, intent=intent,
                                        output=RtcOutput(call.playout))
    except SecretaryError:
        await _discard(pc)
        raise
    if config:
        await call.lease.session.handle(json.dumps(SessionUpdate(session=config).as_json()))
    call.spawn(call.watch())
    try:
        await pc.setLocalDescription(await pc.createAnswer())
    except _UNREADABLE as exc:
        # An offer aiortc read but cannot answer (a media section without a direction):
        # the session it was given ends here, so it does not hold a place.
        await call.close()
        raise InvalidRequestError(f"the SDP offer could not be answered: {exc}",
                                  param="sdp") from None
    _pcs[call.id] = call
    return pc.localDescription.sdp, call.id
