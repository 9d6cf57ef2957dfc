"""A SIP caller for the tests: a second PJSUA2 endpoint, in a process of its own (one
endpoint per process), that calls the secretary over loopback.

It offers one codec, plays a WAV file as its microphone once ``--play-after`` seconds of
the call have passed, records what it hears to a WAV file, presses DTMF digits, and hangs
up after ``--hangup-after`` seconds (or when the other side does). Each thing that happens
is one JSON line on stdout: {"event": "state", ...}, {"event": "transfer", "to": ...},
{"event": "playing", "at": seconds into the recording}, {"event": "end", "code": ...,
"reason": ..., "by": "us"|"them"}. ``bench/phone.py`` times answers with it.

Over UDP with plain RTP unless told otherwise: ``--transport tls`` (or ``tcp``) adds that
transport (``--ca`` verifies the other side's certificate against a PEM file; without it any
certificate is taken), and ``--srtp optional|mandatory`` offers SRTP (SDES keys; mandatory
SRTP asks for a TLS hop, as the secretary's does). It then also says {"event": "stream",
"proto": ..., "srtp": bool} for the audio stream, {"event": "answer", "message": ...} with
the 2xx that answered the INVITE (its SDP included), and {"event": "connected",
"remote_contact": ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import pjsua2 as pj

CODECS = {"PCMU": "PCMU/8000", "PCMA": "PCMA/8000", "G722": "G722/16000"}


def say(**event: object) -> None:
    print(json.dumps(event), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--to", required=True)
    parser.add_argument("--codec", default="PCMU")
    parser.add_argument("--play")
    parser.add_argument("--play-after", type=float, default=3.0)
    parser.add_argument("--record")
    parser.add_argument("--dtmf", default="")
    parser.add_argument("--dtmf-after", type=float, default=1.0)
    parser.add_argument("--hangup-after", type=float, default=10.0)
    parser.add_argument("--from-uri", default="sip:caller@127.0.0.1")
    parser.add_argument("--name", default="")
    parser.add_argument("--transport", choices=["udp", "tcp", "tls"], default="udp")
    parser.add_argument("--ca", help="PEM file the other side's TLS certificate is verified "
                        "against")
    parser.add_argument("--srtp", choices=["off", "optional", "mandatory"], default="off")
    args = parser.parse_args()
    secure = args.transport != "udp" or args.srtp != "off"  # say more than the defaults

    ep = pj.Endpoint()
    ep.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = False
    config.logConfig.level = 0
    config.logConfig.consoleLevel = 0
    config.medConfig.clockRate = 16000
    config.medConfig.noVad = True
    ep.libInit(config)
    transport = pj.TransportConfig()
    transport.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    if args.transport == "tcp":
        ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, transport)
    elif args.transport == "tls":
        tls = pj.TransportConfig()
        tls.boundAddress = "127.0.0.1"
        tls.tlsConfig.verifyServer = args.ca is not None
        if args.ca:
            tls.tlsConfig.CaListFile = args.ca
        ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls)
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        ep.codecSetPriority(codec.codecId, 255 if codec.codecId.startswith(
            CODECS[args.codec]) else 0)
    ep.libStart()

    state: dict[str, object] = {"connected": None, "done": False}

    class Call(pj.Call):
        def onCallState(self, prm: object) -> None:  # noqa: N802
            info = self.getInfo()
            say(event="state", state=info.stateText, code=info.lastStatusCode)
            if info.state == pj.PJSIP_INV_STATE_CONFIRMED and state["connected"] is None:
                state["connected"] = time.monotonic()
                if secure:
                    say(event="connected", remote_contact=info.remoteContact)
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                state["done"] = True
                state["end"] = (info.lastStatusCode, info.lastReason)

        def onCallMediaState(self, prm: object) -> None:  # noqa: N802
            info = self.getInfo()
            for index, media in enumerate(info.media):
                if media.type == pj.PJMEDIA_TYPE_AUDIO and \
                        media.status == pj.PJSUA_CALL_MEDIA_ACTIVE and "media" not in state:
                    state["media"] = self.getAudioMedia(index)
                    stream = self.getStreamInfo(index)
                    say(event="media", codec=stream.codecName)
                    if secure:
                        say(event="stream", proto=int(stream.proto),
                            srtp=bool(stream.proto & pj.PJMEDIA_TP_PROFILE_SRTP))
                    if args.record:
                        recorder = pj.AudioMediaRecorder()
                        recorder.createRecorder(args.record)
                        state["media"].startTransmit(recorder)
                        state["recorder"] = recorder
                        state["recording"] = time.monotonic()

        def onCallTsxState(self, prm: object) -> None:  # noqa: N802
            event = prm.e  # type: ignore[attr-defined]
            if not secure or "answer" in state or event.type != pj.PJSIP_EVENT_TSX_STATE \
                    or event.body.tsxState.type != pj.PJSIP_EVENT_RX_MSG:
                return
            message = str(event.body.tsxState.src.rdata.wholeMsg)
            if message.startswith("SIP/2.0 2") and "application/sdp" in message.lower():
                state["answer"] = True
                say(event="answer", message=message)

        def onCallTransferRequest(self, prm: object) -> None:  # noqa: N802
            say(event="transfer", to=prm.dstUri)
            prm.statusCode = 603  # declined: the test only checks it was asked

    account = pj.Account()
    account_config = pj.AccountConfig()
    account_config.idUri = (f'"{args.name}" <{args.from_uri}>' if args.name
                            else args.from_uri)
    account_config.mediaConfig.srtpUse = {
        "off": pj.PJMEDIA_SRTP_DISABLED, "optional": pj.PJMEDIA_SRTP_OPTIONAL,
        "mandatory": pj.PJMEDIA_SRTP_MANDATORY}[args.srtp]
    account_config.mediaConfig.srtpSecureSignaling = 1 if args.srtp == "mandatory" else 0
    account.create(account_config)
    call = Call(account)
    call.makeCall(args.to, pj.CallOpParam(True))
    started = time.monotonic()
    played = dtmf_sent = hung_up = False
    player = None
    while not state["done"] and time.monotonic() - started < args.hangup_after + 30:
        ep.libHandleEvents(10)
        connected = state["connected"]
        if connected is None:
            continue
        since = time.monotonic() - connected  # type: ignore[operator]
        if args.play and not played and since >= args.play_after and "media" in state:
            player = pj.AudioMediaPlayer()
            player.createPlayer(args.play, pj.PJMEDIA_FILE_NO_LOOP)
            player.startTransmit(state["media"])
            played = True
            # Seconds into the recording the clip starts at (for bench/phone.py's clock).
            recording = state.get("recording")
            say(event="playing", at=None if recording is None else round(
                time.monotonic() - recording, 4))  # type: ignore[operator]
        if args.dtmf and not dtmf_sent and since >= args.dtmf_after:
            for digit in args.dtmf:  # RFC 4733 events in the RTP stream
                param = pj.CallSendDtmfParam()
                param.method = pj.PJSUA_DTMF_METHOD_RFC2833
                param.digits = digit
                param.duration = 160
                call.sendDtmf(param)
            dtmf_sent = True
            say(event="dtmf", digits=args.dtmf)
        if not hung_up and since >= args.hangup_after:
            hung_up = True
            call.hangup(pj.CallOpParam())
    by = "us" if hung_up else "them"
    code, reason = state.get("end", (0, "timeout"))  # type: ignore[misc]
    say(event="end", code=code, reason=reason, by=by)
    if not state["done"]:
        call.hangup(pj.CallOpParam())
        for _ in range(50):
            ep.libHandleEvents(10)
    state.pop("recorder", None)
    state.pop("media", None)
    del player, call
    ep.libDestroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
