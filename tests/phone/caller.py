"""A SIP caller for the tests: a second PJSUA2 endpoint, in a process of its own (one
endpoint per process), that calls the secretary over loopback.

It offers one codec, plays a WAV file as its microphone once ``--play-after`` seconds of
the call have passed, records what it hears to a WAV file, presses DTMF digits, and hangs
up after ``--hangup-after`` seconds (or when the other side does). Each thing that happens
is one JSON line on stdout: {"event": "state", ...}, {"event": "transfer", "to": ...},
{"event": "playing", "at": seconds into the recording}, {"event": "end", "code": ...,
"reason": ..., "by": "us"|"them"}. ``bench/phone.py`` times answers with it.
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
    args = parser.parse_args()

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
            if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
                state["done"] = True
                state["end"] = (info.lastStatusCode, info.lastReason)

        def onCallMediaState(self, prm: object) -> None:  # noqa: N802
            info = self.getInfo()
            for index, media in enumerate(info.media):
                if media.type == pj.PJMEDIA_TYPE_AUDIO and \
                        media.status == pj.PJSUA_CALL_MEDIA_ACTIVE and "media" not in state:
                    state["media"] = self.getAudioMedia(index)
                    say(event="media", codec=self.getStreamInfo(index).codecName)
                    if args.record:
                        recorder = pj.AudioMediaRecorder()
                        recorder.createRecorder(args.record)
                        state["media"].startTransmit(recorder)
                        state["recorder"] = recorder
                        state["recording"] = time.monotonic()

        def onCallTransferRequest(self, prm: object) -> None:  # noqa: N802
            say(event="transfer", to=prm.dstUri)
            prm.statusCode = 603  # declined: the test only checks it was asked

    account = pj.Account()
    account_config = pj.AccountConfig()
    account_config.idUri = (f'"{args.name}" <{args.from_uri}>' if args.name
                            else args.from_uri)
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
