"""The SIP endpoint: PJSIP's Python bindings (``pjsua2``) in a thread of their own.

One ``Endpoint`` per process, with a null sound device (no sound card: each call's audio
goes through an ``AudioMediaPort`` of its own), UDP and TCP transports on the configured
address (and TLS where a TLS port is set: the user's certificate, or a self-signed one kept
in the cache dir), and one account that takes calls (and registers where a registrar is set;
over TLS where its URI says ``sips:`` or ``;transport=tls``), with the SRTP policy. All
PJSIP calls happen on the endpoint's thread: other threads hand it work with ``submit``.
The call's audio comes and goes on PJSIP's media clock thread, as 20 ms frames of 16-bit
PCM at the conference bridge's rate (16 kHz), through the ``CallHandler`` the owner gives.

A call's audio port is kept when the call ends and serves the next one: PJSIP 2.15's
conference bridge removes ports asynchronously and keeps calling a port on its clock thread
until the removal is done, which races with the port's Python object being freed. Ports are
only dropped when the endpoint stops, after the library's clock is gone. For the same
reason a hang-up of ours first disconnects the call's audio and sends the BYE two frames
later, so the clock no longer mixes the stream that the hang-up destroys.

Refused before a call is made: over ``max_invites_per_minute`` from one address (503), over
``max_calls`` at once (486). PJSIP itself answers a malformed request 400 and an offer with
no codec in common 488, and so an offer of SRTP only where SRTP is off, or of plain RTP
(or SRTP over a plain transport) where SRTP is mandatory.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from secretary import tls
from secretary.phone.settings import PhoneSettings

log = logging.getLogger(__name__)

CLOCK_RATE = 16000  # the conference bridge's rate: each port's frames are at this rate
FRAME_MS = 20
KNOWN_CODECS = {"PCMU": "PCMU/8000", "PCMA": "PCMA/8000", "G722": "G722/16000"}
CERT_FOLDER = "phone-tls"  # in the cache dir: the self-signed certificate of SIP over TLS


class CallHandler(Protocol):
    """What the owner does with a call (called on the endpoint's and media threads)."""

    def answered(self, codec: str) -> None: ...

    def heard(self, pcm: bytes) -> None:
        """20 ms of the caller's audio, 16-bit mono at CLOCK_RATE (media thread)."""
        ...

    def speak(self, size: int) -> bytes:
        """``size`` bytes of audio for the caller, 16-bit mono at CLOCK_RATE (media thread)."""
        ...

    def dtmf(self, digit: str) -> None: ...

    def ended(self, reason: str) -> None: ...


class RateLimit:
    """At most ``limit`` events per ``window`` seconds for each key."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self.seen: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        times = self.seen[key]
        while times and now - times[0] > self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        if len(self.seen) > 10_000:  # forget quiet addresses
            for other in [k for k, v in self.seen.items() if not v]:
                del self.seen[other]
        return True


class CallHandle:
    """A call as the owner sees it: who, and what it may ask of it (any thread)."""

    def __init__(self, endpoint: SipEndpoint, call: Any, remote: str, source: str) -> None:
        self.endpoint = endpoint
        # Not the pj.Call itself (only the endpoint's thread may hold and drop those): its
        # id, which PJSUA reuses for the next call, and which object had it.
        self.call_id = int(call.getId())
        self.token = id(call)
        self.remote = remote  # the From header's value
        self.source = source  # address:port the INVITE came from

    def hangup(self, code: int = 200) -> None:
        self.endpoint.submit(lambda: self.endpoint._hangup(self.call_id, code, self.token))

    def transfer(self, uri: str) -> None:
        self.endpoint.submit(lambda: self.endpoint._transfer(self.call_id, uri, self.token))


class SipEndpoint:
    """PJSIP in its own thread: ``start`` returns once it listens (or raises)."""

    def __init__(self, options: PhoneSettings,
                 on_call: Callable[[CallHandle], CallHandler | None],
                 cache_dir: Path | None = None) -> None:
        self.options = options
        self.cache_dir = cache_dir  # where a self-signed TLS certificate is kept
        self.on_call = on_call
        self.commands: queue.Queue[Callable[[], None]] = queue.Queue()
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.calls: dict[int, Any] = {}  # pj.Call objects alive, by call id
        self.ended: list[Any] = []  # pj.Call objects of calls just ended
        self.ports: list[Any] = []  # audio ports of ended calls, for the next calls
        self.port_count = 0  # audio ports made; one is free again 0.5 s after its call
        self.flood = RateLimit(options.max_invites_per_minute)
        self.registration: dict[str, Any] = {"state": "off" if not options.registrar
                                             else "registering"}
        self.refused = {"busy": 0, "rate_limited": 0}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._retry = options.register_retry_s

    # ------------------------------------------------------------------ any thread
    def start(self, timeout: float = 20.0) -> None:
        self._thread = threading.Thread(target=self._main, name="sip-endpoint", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the SIP endpoint did not start")
        if self._error is not None:
            o = self.options
            # PJSIP's errors say what failed in their reason ("Address already in use").
            reason = getattr(self._error, "reason", "") or str(self._error) or repr(self._error)
            raise RuntimeError(f"the SIP endpoint could not start on {o.host}:{o.port} "
                               f"(SECRETARY_PHONE_HOST, _PORT, _TLS_PORT): {reason}")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, command: Callable[[], None]) -> None:
        self.commands.put(command)

    def active(self) -> int:
        return sum(1 for call in self.calls.values() if call.handler is not None)

    # ------------------------------------------------------------------ the endpoint's thread
    def _main(self) -> None:
        import pjsua2 as pj

        self.pj = pj
        try:
            self._create(pj)
        except Exception as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            # Released on this thread: PJSIP aborts the process if it is left to the
            # interpreter's exit, which runs on a thread it does not know.
            with contextlib.suppress(Exception):
                self.ep.libDestroy()
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                self.ep.libHandleEvents(10)
                self._run_commands()
        finally:
            self._shutdown()

    def _create(self, pj: Any) -> None:
        o = self.options
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        config = pj.EpConfig()
        config.uaConfig.threadCnt = 0  # events are handled on this thread
        config.uaConfig.mainThreadOnly = False
        config.uaConfig.maxCalls = 32  # the build's most; room to answer 486 and 503
        config.uaConfig.userAgent = "Secretary"
        config.logConfig.level = 2
        config.logConfig.consoleLevel = 1 if log.isEnabledFor(logging.DEBUG) else 0
        config.medConfig.clockRate = CLOCK_RATE
        config.medConfig.sndClockRate = CLOCK_RATE
        config.medConfig.noVad = True
        self.ep.libInit(config)
        transport = pj.TransportConfig()
        transport.port = o.port
        transport.boundAddress = o.host
        transport.publicAddress = o.host if o.host not in ("0.0.0.0", "::") else ""
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, transport)
        if o.tls_port:
            self.ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, self._tls_transport(pj))
        self.ep.audDevManager().setNullDev()
        wanted = [KNOWN_CODECS[c.upper()] for c in o.codecs if c.upper() in KNOWN_CODECS]
        if not wanted:
            raise ValueError("SECRETARY_PHONE_CODECS names none of PCMU, PCMA, G722")
        for codec in self.ep.codecEnum2():
            name = codec.codecId.rsplit("/", 1)[0]
            priority = 0
            if name in wanted:
                priority = 250 - wanted.index(name)
            self.ep.codecSetPriority(codec.codecId, priority)
        self.ep.libStart()
        account = pj.AccountConfig()
        registrar = o.registrar_uri
        if registrar:
            scheme, rest = registrar.split(":", 1)
            account.idUri = f"{scheme.lower()}:{o.user}@{rest.split(';', 1)[0]}"
        else:
            account.idUri = f"sip:{o.user}@{o.host}:{o.port}"
        account.mediaConfig.transportConfig.port = o.rtp_port
        account.mediaConfig.transportConfig.portRange = 1000
        account.mediaConfig.transportConfig.boundAddress = o.host
        self._srtp(pj, account.mediaConfig)
        if registrar:
            account.regConfig.registrarUri = registrar
            account.regConfig.retryIntervalSec = 0  # retried here, with backoff
            account.regConfig.timeoutSec = 300
            if o.password is not None:
                account.sipConfig.authCreds.append(pj.AuthCredInfo(
                    "digest", "*", o.user, 0, o.password.get_secret_value()))
        self.account = _account_class(pj)(self)
        self.account.create(account)
        log.info("SIP endpoint on %s:%d (UDP, TCP)%s, codecs %s, SRTP %s", o.host, o.port,
                 f", TLS on {o.tls_port}" if o.tls_port else "", ", ".join(wanted), o.srtp)

    def certificate(self) -> tuple[Path, Path]:
        """The TLS certificate and key: the user's, or a self-signed one in the cache dir."""
        o = self.options
        if o.tls_cert is not None and o.tls_key is not None:
            return o.tls_cert, o.tls_key
        if self.cache_dir is None:
            raise ValueError("SIP over TLS without SECRETARY_PHONE_TLS_CERT needs the cache "
                             "dir for a self-signed certificate")
        return tls.ensure_self_signed(self.cache_dir / CERT_FOLDER,
                                      tls.certificate_names(o.host))

    def _tls_transport(self, pj: Any) -> Any:
        o = self.options
        cert, key = self.certificate()
        config = pj.TransportConfig()
        config.port = o.tls_port
        config.boundAddress = o.host
        config.publicAddress = o.host if o.host not in ("0.0.0.0", "::") else ""
        config.tlsConfig.certFile = str(cert)
        config.tlsConfig.privKeyFile = str(key)
        config.tlsConfig.proto = pj.PJ_SSL_SOCK_PROTO_TLS1_2 | pj.PJ_SSL_SOCK_PROTO_TLS1_3
        # Callers bring no certificate; the registrar's is checked where tls_verify says so.
        config.tlsConfig.verifyClient = False
        config.tlsConfig.requireClientCert = False
        config.tlsConfig.verifyServer = o.tls_verify
        # PJSIP names each CA of the list to every TLS client that connects, and a whole
        # system bundle of them stalls the handshake: the system's CAs are loaded only where
        # they are needed (a registrar over TLS to verify, and no CA file of its own).
        ca = o.tls_ca
        if ca is None and o.tls_verify and o.registrar_tls:
            ca = system_ca_file()
            if ca is None:
                raise ValueError("no CA file to verify the registrar's certificate with: set "
                                 "SECRETARY_PHONE_TLS_CA")
        if ca is not None:
            config.tlsConfig.CaListFile = str(ca)
        return config

    def _srtp(self, pj: Any, media: Any) -> None:
        """The SRTP policy. SDES puts the media keys in the SDP, so mandatory SRTP also
        takes a TLS hop for the signalling (no key in the clear); optional SRTP is taken
        on any transport where the caller offers it, plain RTP otherwise."""
        media.srtpUse = {"off": pj.PJMEDIA_SRTP_DISABLED,
                         "optional": pj.PJMEDIA_SRTP_OPTIONAL,
                         "mandatory": pj.PJMEDIA_SRTP_MANDATORY}[self.options.srtp]
        media.srtpSecureSignaling = 1 if self.options.srtp == "mandatory" else 0

    def _run_commands(self) -> None:
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                break
            self._safely(command)
        now = time.monotonic()
        due = [t for t in self.timers if t[0] <= now]
        if due:
            self.timers = [t for t in self.timers if t[0] > now]
            for _, command in due:
                self._safely(command)

    @staticmethod
    def _safely(command: Callable[[], None]) -> None:
        try:
            command()
        except Exception:
            log.exception("SIP endpoint: a command failed")

    def later(self, delay: float, command: Callable[[], None]) -> None:
        self.timers.append((time.monotonic() + delay, command))

    def _shutdown(self) -> None:
        for call_id in list(self.calls):
            self._hangup(call_id, 503, at_once=True)
        deadline = time.monotonic() + 1.0
        while self.calls and time.monotonic() < deadline:
            self.ep.libHandleEvents(10)
        # The bridge's clock stops first (no sound device at all), so no port is called
        # while it is freed (see the module's note).
        with contextlib.suppress(Exception):
            self.ep.audDevManager().setNoDev()
        for call in [*self.calls.values(), *self.ended]:
            call.port = None
        self.calls.clear()
        self.ended.clear()
        self.ports.clear()
        self.account.shutdown()
        del self.account
        self.ep.libDestroy()
        del self.ep

    # ------------------------------------------------------------------ calls
    def incoming(self, account: Any, prm: Any) -> None:
        pj = self.pj
        call_id = int(prm.callId)  # prm is PJSIP's, gone once the callback returns
        call = _call_class(pj)(account, call_id, self)
        self.calls[call_id] = call
        source = str(prm.rdata.srcAddress)
        address = source.rsplit(":", 1)[0]
        info = call.getInfo()
        op = pj.CallOpParam()
        if not self.flood.allow(address):
            self.refused["rate_limited"] += 1
            log.warning("SIP: too many INVITEs from %s: 503", address)
            op.statusCode = 503
            op.reason = "Too many calls from this address"
            header = pj.SipHeader()
            header.hName, header.hValue = "Retry-After", "60"
            op.txOption.headers.append(header)
            call.answer(op)
            return
        if self.active() >= self.options.max_calls:
            self.refused["busy"] += 1
            log.info("SIP: call from %s refused, %d calls in progress: 486",
                     info.remoteUri, self.active())
            op.statusCode = 486
            call.answer(op)
            return
        handler = self.on_call(CallHandle(self, call, info.remoteUri, source))
        if handler is None:
            op.statusCode = 503
            call.answer(op)
            return
        call.handler = handler
        op.statusCode = 180
        call.answer(op)

        def pick_up() -> None:
            if call_id in self.calls and call.isActive():
                answer = pj.CallOpParam()
                answer.statusCode = 200
                call.answer(answer)

        self.later(self.options.answer_delay_s, pick_up)

    def _call(self, call_id: int, token: int | None) -> Any:
        call = self.calls.get(call_id)
        if call is None or (token is not None and id(call) != token) or not call.isActive():
            return None
        return call

    def _hangup(self, call_id: int, code: int, token: int | None = None,
                at_once: bool = False) -> None:
        call = self._call(call_id, token)
        if call is None:
            return
        if call.disconnect_audio() and not at_once:
            # Two frames for the bridge to apply the disconnection, then the BYE.
            self.later(2 * FRAME_MS / 1000, lambda: self._hangup(call_id, code, id(call)))
            return
        op = self.pj.CallOpParam()
        op.statusCode = code  # a final answer before the call is answered, else a BYE
        call.hangup(op)

    def port_for(self, handler: CallHandler) -> tuple[Any, bool]:
        """An audio port for a call's handler: one an ended call left, else a new one
        (then True: the caller creates it in the bridge)."""
        if self.ports:
            port = self.ports.pop()
            port.handler = handler
            return port, False
        self.port_count += 1
        return _port_class(self.pj)(handler), True

    def _transfer(self, call_id: int, uri: str, token: int | None = None) -> None:
        call = self._call(call_id, token)
        if call is not None:
            call.xfer(uri, self.pj.CallOpParam(True))

    def forget(self, call_id: int) -> None:
        """A call that ended (its object is dropped on this thread, later)."""
        call = self.calls.get(call_id)
        if call is None:
            return
        # PJSUA reuses the id at once, for the next call: the object leaves the table now,
        # and is dropped a little later (not inside its own callback). Its audio port, by
        # then out of the call's connections (the call's own port is gone), is kept.
        del self.calls[call_id]
        self.ended.append(call)

        def drop() -> None:
            self.ended.remove(call)
            if call.port is not None:  # its handler was let go when the call ended
                self.ports.append(call.port)
                call.port = None

        self.later(0.5, drop)

    # ------------------------------------------------------------------ registration
    def registered(self, code: int, reason: str, expires: int) -> None:
        if 200 <= code < 300 and expires > 0:
            if self.registration.get("state") != "registered":
                log.info("SIP: registered with %s", self.options.registrar)
            self.registration = {"state": "registered", "code": code}
            self._retry = self.options.register_retry_s
            return
        if 200 <= code < 300:
            self.registration = {"state": "unregistered", "code": code}
            return
        wait = self._retry
        self._retry = min(self._retry * 2, self.options.register_retry_max_s)
        self.registration = {"state": "failed", "code": code, "reason": reason,
                             "retry_in_s": wait}
        log.error("SIP: the registrar %s refused the registration of %r: %d %s; "
                  "retrying in %g s", self.options.registrar, self.options.user, code,
                  reason, wait)
        self.later(wait, lambda: self.account.setRegistration(True))


def system_ca_file() -> Path | None:
    """The system's CA bundle (OpenSSL's default file), or certifi's; None if neither."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    try:
        import certifi
    except ImportError:
        return None
    return Path(certifi.where())


def _account_class(pj: Any) -> type:
    class Account(pj.Account):
        def __init__(self, owner: SipEndpoint) -> None:
            super().__init__()
            self.owner = owner

        def onIncomingCall(self, prm: Any) -> None:  # noqa: N802
            try:
                self.owner.incoming(self, prm)
            except Exception:
                log.exception("SIP: an incoming call failed")

        def onRegState(self, prm: Any) -> None:  # noqa: N802
            self.owner.registered(int(prm.code), str(prm.reason), int(prm.expiration))

    return Account


_classes: dict[str, type] = {}


def _port_class(pj: Any) -> type:
    if "port" in _classes:
        return _classes["port"]

    class Port(pj.AudioMediaPort):
        """A call's audio, both ways; ``handler`` is None between calls."""

        def __init__(self, handler: CallHandler | None) -> None:
            super().__init__()
            self.handler = handler

        def onFrameReceived(self, frame: Any) -> None:  # noqa: N802
            handler = self.handler
            if handler is not None and frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO \
                    and frame.size:
                try:
                    handler.heard(bytes(frame.buf))
                except Exception:
                    log.exception("SIP: the caller's audio was not taken")

        def onFrameRequested(self, frame: Any) -> None:  # noqa: N802
            size = CLOCK_RATE * FRAME_MS // 1000 * 2
            handler = self.handler
            try:
                data = bytes(size) if handler is None else handler.speak(size)
            except Exception:
                log.exception("SIP: no audio for the caller")
                data = bytes(size)
            frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
            frame.buf = pj.ByteVector(data)
            frame.size = len(data)

    _classes["port"] = Port
    return Port


def _call_class(pj: Any) -> type:
    if "call" in _classes:
        return _classes["call"]

    class Call(pj.Call):
        def __init__(self, account: Any, call_id: int, owner: SipEndpoint) -> None:
            super().__init__(account, call_id)
            self.owner = owner
            self.handler: CallHandler | None = None
            self.port: Any = None  # our audio port, while the call has it
            self.audio: Any = None  # the call's audio in the bridge
            self.done = False

        def onCallState(self, prm: Any) -> None:  # noqa: N802
            info = self.getInfo()
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.done:
                self.done = True
                if self.port is not None:
                    self.port.handler = None
                if self.handler is not None:
                    self.handler.ended(f"{info.lastStatusCode} {info.lastReason}".strip())
                    self.handler = None
                self.owner.forget(info.id)

        def disconnect_audio(self) -> bool:
            """Stop the audio between the call and our port (once): True if it was on."""
            if self.audio is None or self.port is None:
                return False
            audio, self.audio = self.audio, None
            with contextlib.suppress(Exception):  # the call's media may already be gone
                audio.stopTransmit(self.port)
                self.port.stopTransmit(audio)
            return True

        def onCallMediaState(self, prm: Any) -> None:  # noqa: N802
            try:
                self._connect_media()
            except Exception:
                log.exception("SIP: the call's audio could not be connected")

        def _connect_media(self) -> None:
            if self.handler is None or self.port is not None:
                return
            info = self.getInfo()
            for index, media in enumerate(info.media):
                if (media.type == pj.PJMEDIA_TYPE_AUDIO
                        and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE):
                    audio = self.getAudioMedia(index)
                    port, new = self.owner.port_for(self.handler)
                    if new:
                        fmt = pj.MediaFormatAudio()
                        fmt.type = pj.PJMEDIA_TYPE_AUDIO
                        fmt.clockRate = CLOCK_RATE
                        fmt.channelCount = 1
                        fmt.bitsPerSample = 16
                        fmt.frameTimeUsec = FRAME_MS * 1000
                        port.createPort(f"call-audio{self.owner.port_count}", fmt)
                    self.port, self.audio = port, audio
                    audio.startTransmit(port)
                    port.startTransmit(audio)
                    codec = self.getStreamInfo(index).codecName
                    self.handler.answered(str(codec))
                    return

        def onDtmfEvent(self, prm: Any) -> None:  # noqa: N802
            # RFC 4733 events come again while the key is held and at its end: a key
            # press is the first event (so is a SIP INFO).
            if prm.flags & 3:  # PJMEDIA_STREAM_DTMF_IS_UPDATE, _IS_END (not exported)
                return
            if self.handler is not None:
                self.handler.dtmf(str(prm.digit))

        def onCallTransferStatus(self, prm: Any) -> None:  # noqa: N802
            if prm.finalNotify:
                log.info("SIP: transfer ended %d %s", prm.statusCode, prm.reason)
                prm.cont = False
                if 200 <= prm.statusCode < 300:
                    self.owner._hangup(self.getId(), 200)

    _classes["call"] = Call
    return Call
