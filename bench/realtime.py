"""The realtime service: voice-to-voice latency over WebSocket and WebRTC, partial
transcript lag, barge-in stop time, and the face track's CPU.

    python bench/realtime.py [--rounds 2] [--clips en|all] [--modes semantic_vad,server_vad]
        [--transports websocket,webrtc] [--brain echo|skills] [--baseline SETTINGS]

A real server on this machine (the reply read back, English Piper, Whisper base with the
fitted window, Silero VAD; turns ended by Smart Turn (``semantic_vad``, the default) or by
500 ms of silence (``server_vad``), side by side over WebSocket). Each clip is fed at real
time pace, and so is each phrase under 2 s of speech of the English clips with long inner
pauses, cut at those pauses (JFK's "And so, my fellow Americans", "one", a group of digits):
  - voice-to-voice: the wall clock when the last voiced audio of the clip was sent -> the
    first reply audio received (WebSocket: the first ``response.output_audio.delta``;
    WebRTC: the first frame of the reply track with sound in it as its packets are decoded, and
    again after aiortc's fixed 80 ms playout buffer), p50 and p95, by utterance length
    (under 2 s, 2-4 s, over 4 s of speech) and turn detection, with the server's split
    from the end of speech (turn end, final transcript, first reply text, first audio); a
    turn cut off before its speech ended, or one the server did not hear, has no time
    (their number is printed with the row's turns);
  - false ends of turn: each clip again with ``--pause-ms`` of silence spliced in after a
    function word near its middle (``bench/endofturn.py``'s choice, which counts them on
    every clip without a server), over WebSocket in each mode: a clip the server makes
    more turns of than as spoken was cut off;
  - partial lag: arrival of each partial -> when the last audio it heard was sent;
  - barge-in: a clip spoken over a long reply; from when its voiced audio reached the
    barge-in minimum -> the cancelled ``response.done`` (WebSocket) with the audio sent
    after that point; over WebRTC, the cancelled ``response.done`` on the data channel ->
    the last reply frame with sound on the track;
  - with ``--baseline``, a second server with other settings (the previous defaults, say)
    answers the same clips over WebSocket, alternating with the first, and the ratio of
    their medians is printed;
  - face track: render CPU seconds per second of call (25 fps, 320 px), from the track;
    and lip sync: the shift of the received audio against the received video (by arrival)
    that best lines the Face Landmarker's jawOpen up with the loudness (0: in sync).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import running_server  # noqa: E402
from tests.realtime.support import ask, clip, connect, feed, pcm16, silence, voiced  # noqa: E402

from secretary import audio  # noqa: E402
from secretary.avatar.landmarks import Landmarker  # noqa: E402
from secretary.catalog import ModelStore  # noqa: E402
from secretary.config import Settings  # noqa: E402
from secretary.realtime import webrtc  # noqa: E402
from secretary.realtime.app import create_app  # noqa: E402
from secretary.realtime.service import RealtimeService  # noqa: E402

CLIPS = ("en_cheetah_platforms.wav", "en_cmu_arctic_aew_a0003.wav",
         "en_cmu_arctic_axb_a0004.wav", "en_cmu_arctic_axb_a0006.wav",
         "en_librispeech_1272-128104-0000_quilter.wav")
RATE = 24000
CHUNK = 0.02
STAGES = ("final_started", "transcribed", "brain_first_delta", "first_audio")
ALL_CLIPS = tuple(sorted(p.name for p in (ROOT / "tests" / "data" / "speech").iterdir()
                         if p.suffix in (".wav", ".flac")))
# Short utterances for the English set: the phrases under 2 s of speech of the English clips
# with long inner pauses (JFK's speech, the spoken digits, "one two three"), each fed as a
# turn of its own. Two are mid-sentence ("ask not", a group of digits): a turn the model
# rightly holds for its continuation shows in the row's p95.
PHRASED = ("en_jfk_ask_not.flac", "en_sr_one_two_three.wav", "en_vosk_digits.wav")
# Utterance lengths (seconds of voiced audio) the latency is reported by.
LENGTHS = (("under 2 s", 0.0, 2.0), ("2-4 s", 2.0, 4.0), ("over 4 s", 4.0, 99.0))
PHRASE_PAUSE_MS = 500  # an inner pause at least this long ends a phrase
# A turn that ended this long before the speech did cut it off: it has no voice-to-voice
# time (what plays after the speech answers its first part).
CUT_BEFORE = 0.1
PHRASE_PAD = 0.25  # seconds of the clip kept around a phrase (less where the pause is shorter)


Spoken = tuple[str, np.ndarray, tuple[float, float]]  # name, 24 kHz samples, voiced span


def phrases(name: str) -> list[Spoken]:
    """The clip's phrases, named ``clip#1``, ``clip#2``...: where it has inner pauses of
    ``PHRASE_PAUSE_MS`` or more, each spoken run between them; else the whole clip. Each
    with the seconds into it where its speech begins and ends, found on the whole clip as
    ``voiced`` finds them (Silero on a phrase alone can miss its first word)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    samples = clip(name)
    at16 = audio.resample(samples, RATE, 16000)

    def stamps(pause_ms: int) -> list[tuple[float, float]]:
        return [(t["start"] / 16000, t["end"] / 16000) for t in get_speech_timestamps(
            at16, VadOptions(min_silence_duration_ms=pause_ms, speech_pad_ms=0))]

    spans, fine = stamps(PHRASE_PAUSE_MS), stamps(100)
    if len(spans) < 2:
        return [(name, samples, voiced(samples))]
    cuts = []
    for index, (start, end) in enumerate(spans):
        inside = [(a, b) for a, b in fine if a < end and b > start]
        start, end = inside[0][0], inside[-1][1]
        before = spans[index - 1][1] if index else 0.0
        after = spans[index + 1][0] if index + 1 < len(spans) else len(samples) / RATE
        first, last = max(before, start - PHRASE_PAD), min(after, end + PHRASE_PAD)
        cuts.append((f"{name}#{index + 1}", samples[int(first * RATE):int(last * RATE)],
                     (start - first, end - first)))
    return cuts


def utterances(which: str) -> list[Spoken]:
    """The turns a round speaks: ``en``, the five English clips and the English phrases under
    2 s; ``all``, every phrase of every clip."""
    if which == "all":
        return [cut for name in ALL_CLIPS for cut in phrases(name)]
    short = [cut for name in PHRASED for cut in phrases(name) if cut[2][1] - cut[2][0] < 2.0]
    return [(name, clip(name), voiced(clip(name))) for name in CLIPS] + short


def _split(turn: dict[str, Any]) -> str:
    """The server's stage times of one turn, from its turn's end."""
    return " ".join(f"{k} {turn['timings'].get(k, float('nan')):+.3f}" for k in STAGES)


def _median_split(turns: list[dict[str, Any]]) -> str:
    """The table cells of the turns' median stage times, from their turns' ends."""
    return " | ".join(
        f"{statistics.median(t['timings'].get(k, float('nan')) for t in turns):+.3f} s"
        if turns else "-" for k in STAGES)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def session_with(connection: Any, turn_detection: str | None) -> None:
    """Waits for the new session, then sets its turn detection (None: the default)."""
    async for event in connection:
        if event.type == "session.created":
            break
    if turn_detection is not None:
        await connection.session.update(session={"type": "realtime", "audio": {
            "input": {"turn_detection": {"type": turn_detection}}}})
        async for event in connection:
            if event.type == "session.updated":
                break


async def ws_speech_turn(url: str, speech: np.ndarray, turn_detection: str | None = None,
                         span: tuple[float, float] | None = None) -> dict[str, Any]:
    """One spoken turn over WebSocket at real-time pace (24 kHz ``speech``, voiced over
    ``span``, found where not given): the voice-to-voice ``latency``, partial lags and the
    server's split."""
    begin, end = span or voiced(speech)
    samples = np.concatenate([silence(0.3), speech, silence(2.0)])
    voiced_end = 0.3 + end
    sent: list[tuple[float, float]] = []  # (input seconds, wall clock when sent)
    out: dict[str, Any] = {"partials": [], "length": end - begin}
    async with connect(url) as connection:
        await session_with(connection, turn_detection)

        async def read() -> None:
            async for event in connection:
                now = time.perf_counter()
                if event.type == "conversation.item.input_audio_transcription.delta":
                    covered = (getattr(event, "audio_end_ms", None) or 0) / 1000
                    when = next((w for t, w in sent if t >= covered), None)
                    if when is not None:
                        out["partials"].append(now - when)
                elif event.type == "input_audio_buffer.speech_stopped":
                    out.setdefault("stopped", now)  # the first turn's end
                elif event.type == "response.output_audio.delta" and "first_audio" not in out:
                    out["first_audio"] = now
                elif event.type == "response.done":
                    out["timings"] = getattr(event.response, "timings", None) or {}
                    return

        reader = asyncio.create_task(read())
        began = time.perf_counter()
        step = int(CHUNK * RATE)
        for index, start in enumerate(range(0, len(samples), step)):
            await asyncio.sleep(max(0.0, began + index * CHUNK - time.perf_counter()))
            await connection.input_audio_buffer.append(audio=pcm16(samples[start:start + step]))
            sent.append(((start + step) / RATE, time.perf_counter()))
            if reader.done():
                break
        if "stopped" in out or reader.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader, 60)
        reader.cancel()  # no turn was heard (Silero found no speech), or no reply came
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    voiced_sent = next((w for t, w in sent if t >= voiced_end), None)
    if (voiced_sent is None or "first_audio" not in out
            or out["stopped"] < voiced_sent - CUT_BEFORE):
        # A turn ended (and was answered) before the speech did, or it made no turn.
        out["latency"] = out["stopped"] = None
        out.setdefault("timings", {})
        return out
    out["latency"] = out["first_audio"] - voiced_sent
    out["stopped"] -= voiced_sent
    return out


async def ws_count_turns(url: str, speech: np.ndarray, turn_detection: str) -> int:
    """How many turns the server makes of ``speech`` (24 kHz) fed at real-time pace."""
    turns = 0
    async with connect(url) as connection:
        await session_with(connection, turn_detection)

        async def read() -> None:
            nonlocal turns
            async for event in connection:
                if event.type == "input_audio_buffer.speech_stopped":
                    turns += 1

        reader = asyncio.create_task(read())
        await feed(connection, np.concatenate([silence(0.3), speech, silence(2.0)]),
                   chunk=CHUNK)
        await asyncio.sleep(0.5)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return turns


async def cut_offs(url: str, clips: tuple[str, ...], modes: list[str],
                   pause: float) -> dict[str, list[bool]]:
    """Each clip with ``pause`` seconds of silence spliced in after a function word near
    its middle (bench/endofturn.py's choice), over WebSocket: a false end of turn where the
    server makes more turns of it than of the clip as spoken."""
    from faster_whisper import WhisperModel

    sys.path.insert(0, str(ROOT / "bench"))
    from endofturn import pause_point
    from secretary.stt.models import WhisperModels

    whisper = WhisperModel(str(WhisperModels(Settings(_env_file=None).models_dir)
                               .whisper_path("base")), compute_type="int8", cpu_threads=1)
    found: dict[str, list[bool]] = {mode: [] for mode in modes}
    for name in clips:
        speech = clip(name)
        at16, _ = pause_point(audio.resample(speech, RATE, 16000), name[:2], whisper)
        cut = at16 * RATE // 16000
        spliced = np.concatenate([speech[:cut], silence(pause), speech[cut:]])
        for mode in modes:
            whole = await ws_count_turns(url, speech, mode)
            found[mode].append(await ws_count_turns(url, spliced, mode) > max(1, whole))
    return found


def lip_sync(sound: list[tuple[float, float]], video: list[tuple[float, np.ndarray]],
             landmarker: Landmarker) -> float | None:
    """Seconds to shift the received audio (arrival, loudness) by to line it up best with
    the jaw in the received video (arrival, image); None where no face or no sound."""
    jaw_t, jaw = [], []
    for t, image in video:
        found = landmarker.detect(image)
        if found is not None:
            jaw_t.append(t)
            jaw.append(found.blendshapes["jawOpen"])
    if len(jaw) < 25 or len(sound) < 25:
        return None
    times = np.array([t for t, _ in sound])
    level = np.array([v for _, v in sound])
    at = np.array(jaw_t)
    lags = np.arange(-0.2, 0.2001, 0.01)
    scores = [np.corrcoef(np.interp(at + lag, times, level), jaw)[0, 1] for lag in lags]
    if np.all(np.isnan(scores)):
        return None  # a jaw that never moved (or a level that never changed): no shift fits
    return float(lags[int(np.nanargmax(scores))])


async def rtc_turn(url: str, speech: np.ndarray, span: tuple[float, float], *,
                   playout_buffer: bool = False,
                   landmarker: Landmarker | None = None) -> dict[str, Any]:
    """One spoken turn on a WebRTC call (24 kHz ``speech``, voiced over ``span``)."""
    from aiortc import RTCPeerConnection
    from tests.realtime.rtc import ClipTrack, frames, offer, record_events

    voiced_end = 1.0 + span[1]
    pc = RTCPeerConnection()
    mic = ClipTrack(speech, delay=1.0)
    pc.addTrack(mic)
    pc.addTransceiver("video", direction="recvonly")
    events: list[dict[str, Any]] = []
    answered = record_events(pc.createDataChannel("oai-events"), events)
    first_sound: list[float] = []
    heard = asyncio.Event()
    received = {"video": 0}
    # For lip sync: every frame's arrival, with its loudness or its image.
    sound: list[tuple[float, float]] = []
    video: list[tuple[float, np.ndarray]] = []

    async def read(track: Any) -> None:
        async for frame in frames(track):
            if track.kind == "video":
                received["video"] += 1
                if landmarker is not None:
                    video.append((time.perf_counter(), frame.to_ndarray(format="bgr24")))
                continue
            data = audio.from_pcm16(frame.to_ndarray().reshape(-1))
            if landmarker is not None:
                sound.append((time.perf_counter(), float(np.sqrt(np.mean(np.square(data))))))
            # The first frame with reply audio in it: over the -50 dB the reply's lead-in
            # is trimmed at (a silent frame decodes to exact zeros).
            if not first_sound and float(np.abs(data).max()) > 0.003 and (
                    mic.start and time.perf_counter() - mic.start > voiced_end):
                first_sound.append(time.perf_counter())
                heard.set()

    readers: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: readers.append(asyncio.create_task(read(track))))
    await offer(pc, f"{url}/v1/realtime")
    if not playout_buffer:
        # "Received" as over WebSocket: the first reply packet decoded, not after a
        # player's jitter buffer (aiortc's holds 80 ms; a browser's adapts to the network).
        for transceiver in pc.getTransceivers():
            if transceiver.kind == "audio":
                webrtc.prompt_audio_input(transceiver.receiver)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(heard.wait(), 1.0 + len(speech) / RATE + 3.0)
    if any(e["type"] == "input_audio_buffer.speech_stopped" for e in events):
        with contextlib.suppress(TimeoutError):  # a turn was heard: its reply may be slow
            await asyncio.wait_for(heard.wait(), 40)
    if first_sound:
        with contextlib.suppress(TimeoutError):  # its stage times come with its end
            await asyncio.wait_for(answered.wait(), 30)
    await asyncio.sleep(1.0)
    calls = list(webrtc._pcs.values())
    face_cpu = sum(c.face.cpu for c in calls if c.face is not None)
    seconds = time.perf_counter() - mic.start
    await pc.close()
    for reader in readers:
        reader.cancel()
    stopped = next((e["_at"] - (mic.start + voiced_end) for e in events
                    if e["type"] == "input_audio_buffer.speech_stopped"), None)
    if stopped is not None and stopped < -CUT_BEFORE:
        first_sound.clear()  # a turn ended before the speech did: what played answers it
    done = next((e for e in events if e["type"] == "response.done"), None)
    return {"latency": first_sound[0] - (mic.start + voiced_end) if first_sound else None,
            "stopped": stopped,
            "timings": (done or {}).get("response", {}).get("timings") or {},
            "face_cpu": face_cpu / seconds, "video_fps": received["video"] / seconds,
            "lip_sync": lip_sync(sound, video, landmarker) if landmarker else None}


async def rtc_barge_in(url: str) -> float | None:
    """A clip spoken over a long typed reply on a WebRTC call: seconds from the cancelled
    ``response.done`` on the data channel to the last reply frame with sound on the track
    (negative: the sound stopped before the event came)."""
    from aiortc import RTCPeerConnection
    from tests.realtime.rtc import CueTrack, frames, offer, record_events

    text = ("Let me tell you a long story about the railway. It starts early in the morning "
            "at the station. The first train leaves at six. The second one leaves at seven.")
    pc = RTCPeerConnection()
    cue = asyncio.Event()
    events: list[dict[str, Any]] = []
    loud: list[float] = []
    channel = pc.createDataChannel("oai-events")
    done = record_events(channel, events)

    @channel.on("open")
    def on_open() -> None:
        channel.send(json.dumps({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": text}]}}))
        channel.send(json.dumps({"type": "response.create"}))

    async def read(track: Any) -> None:
        async for frame in frames(track):
            if track.kind != "audio":
                continue
            data = audio.from_pcm16(frame.to_ndarray().reshape(-1))
            if float(np.sqrt(np.mean(data ** 2))) > 0.01:
                loud.append(time.perf_counter())
                if len(loud) == 75:  # 1.5 s into the reply: the user talks over it
                    cue.set()

    readers: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: readers.append(asyncio.create_task(read(track))))
    pc.addTrack(CueTrack(clip("en_cheetah_platforms.wav"), cue))
    await offer(pc, f"{url}/v1/realtime/calls")
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 60)
        await asyncio.sleep(1.0)
    finally:
        await pc.close()
        for reader in readers:
            reader.cancel()
    ended = next((e for e in events if e["type"] == "response.done"), None)
    if ended is None or ended["response"]["status"] != "cancelled":
        return None
    # Within a second: the reply to the user's words comes later than that.
    heard = [t for t in loud if t < ended["_at"] + 1.0]
    return max(heard) - ended["_at"] if heard else None


async def barge_in(url: str, service_min: float) -> dict[str, float]:
    text = ("Let me tell you a long story about the railway. It starts early in the morning "
            "at the station. The first train leaves at six. The second one leaves at seven.")
    speech = clip("en_cheetah_platforms.wav")
    async with connect(url) as connection:
        async for event in connection:
            if event.type == "session.created":
                break
        await ask(connection, text)
        async for event in connection:
            if event.type == "response.output_audio.delta":
                break
        onset: list[float] = []
        after: list[float] = []

        async def read() -> float:
            async for event in connection:
                if event.type == "response.output_audio.delta" and onset:
                    after.append(len(base64.b64decode(event.delta)) / 2 / RATE)
                if event.type == "response.done":
                    return time.perf_counter()
            return time.perf_counter()

        reader = asyncio.create_task(read())
        samples = np.concatenate([silence(1.0), speech])
        began = time.perf_counter()
        step = int(CHUNK * RATE)
        speech_start = 1.0 + voiced(speech)[0] + service_min
        for index, start in enumerate(range(0, len(samples), step)):
            await asyncio.sleep(max(0.0, began + index * CHUNK - time.perf_counter()))
            await connection.input_audio_buffer.append(audio=pcm16(samples[start:start + step]))
            if not onset and start / RATE >= speech_start:
                onset.append(time.perf_counter())
            if reader.done():
                break
        done = await asyncio.wait_for(reader, 30)
    return {"stop": done - onset[0], "audio_after": sum(after)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--detail", action="store_true", help="print every turn")
    parser.add_argument("--clips", choices=("en", "all"), default="en",
                        help="the five English clips and the English phrases under 2 s, or "
                        "every phrase of every clip of tests/data/speech (en, de, fr, es)")
    parser.add_argument("--modes", default="semantic_vad,server_vad",
                        help="turn detection over WebSocket, side by side (WebRTC runs the "
                        "default, the first)")
    parser.add_argument("--transports", default="websocket,webrtc",
                        help="websocket, webrtc or both (WebRTC adds its turns, barge-in, "
                        "the face track and lip sync)")
    parser.add_argument("--brain", default="echo", choices=("echo", "skills"),
                        help="the reply: the words read back (the latency targets' case), or "
                        "the secretary's skills (bench/skills.py compares the two)")
    parser.add_argument("--pause-ms", type=int, default=700,
                        help="false ends of turn: each clip with this much silence spliced "
                        "in after a function word, over WebSocket in each mode (0: skip)")
    parser.add_argument("--baseline", default="", metavar="SETTINGS",
                        help="a second server with these settings changed "
                        "(group.name=value,...; e.g. conversation.beam_size=5), run over "
                        "WebSocket beside the first on every clip (the first mode)")
    args = parser.parse_args()
    with_rtc = "webrtc" in args.transports.split(",")
    clips = CLIPS if args.clips == "en" else ALL_CLIPS
    spoken = utterances(args.clips)
    modes = args.modes.split(",")
    settings = Settings(_env_file=None)
    settings.conversation.avatar = False
    settings.conversation.brain = args.brain
    # Every reply synthesized: the clips come again each round, and so would their replies.
    settings.conversation.speech_cache = 0
    service = RealtimeService(settings)
    service.load()
    baseline: RealtimeService | None = None
    if args.baseline:
        changed = Settings(_env_file=None)
        changed.conversation.avatar = False
        changed.conversation.brain = args.brain
        changed.conversation.speech_cache = 0
        for assignment in args.baseline.split(","):
            key, value = assignment.split("=", 1)
            group, name = key.strip().split(".")
            section = getattr(changed, group)
            kind = type(getattr(section, name))
            setattr(section, name, value.lower() in ("1", "true", "yes")
                    if kind is bool else kind(value))
        baseline = RealtimeService(changed)
        baseline.load()
        by_mode_label = f"{modes[0]}, baseline ({args.baseline})"
    ws: list[dict[str, Any]] = []
    by_mode: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    if baseline is not None:
        by_mode[by_mode_label] = []
    rtc: list[dict[str, Any]] = []
    rtc_buffered: list[dict[str, Any]] = []
    bargein: list[dict[str, float]] = []
    rtc_bargein: list[float | None] = []
    landmarker = Landmarker(ModelStore(settings.models_dir).face_landmarker_path())
    landmarker.load()
    with contextlib.ExitStack() as servers:
        url = servers.enter_context(running_server(create_app(service=service)))
        if baseline is not None:
            baseline_url = servers.enter_context(running_server(create_app(service=baseline)))
        for _ in range(args.rounds):
            for name, speech, span in spoken:
                for mode in modes:
                    by_mode[mode].append(await ws_speech_turn(url, speech, mode, span))
                if baseline is not None:
                    by_mode[by_mode_label].append(
                        await ws_speech_turn(baseline_url, speech, modes[0], span))
                ws.append(by_mode[modes[0]][-1])
                if with_rtc:
                    rtc.append(await rtc_turn(url, speech, span, landmarker=landmarker))
                    rtc[-1]["length"] = ws[-1]["length"]
                    rtc_buffered.append(await rtc_turn(url, speech, span, playout_buffer=True))
                if args.detail:
                    late = [t[-1]["latency"] for t in (rtc, rtc_buffered)] + [
                        rtc[-1]["stopped"]] if with_rtc else []
                    print(f"{name}: WebSocket {ws[-1]['latency'] or float('nan'):.3f} s "
                          f"(VAD stop {ws[-1]['stopped'] or float('nan'):.3f} s; "
                          f"{_split(ws[-1])})"
                          + (", WebRTC " + ", ".join(
                              '-' if v is None else f'{v:.3f} s' for v in late)
                             + f" (the last: VAD stop; {_split(rtc[-1])})" if with_rtc else ""),
                          flush=True)
            bargein.append(await barge_in(url, settings.realtime.barge_in_min_ms / 1000))
            if with_rtc:
                rtc_bargein.append(await rtc_barge_in(url))
        false_ends = (await cut_offs(url, clips, modes, args.pause_ms / 1000)
                      if args.pause_ms else {})
    landmarker.close()
    print(f"{len(ws)} turns per transport ({len(spoken)} utterances x {args.rounds} rounds)\n")
    print("Voice-to-voice by utterance length (end of the user's voiced audio sent -> first "
          "reply audio received):\n")
    print("| transport | turn detection | speech | turns | p50 | p95 | end of speech -> "
          "turn end |")
    print("|---|---|---|---|---|---|---|")
    rows = [("WebSocket", mode, turns) for mode, turns in by_mode.items()]
    if with_rtc:
        rows.append(("WebRTC", modes[0], rtc))
    for transport, mode, turns in rows:
        for label, low, high in LENGTHS:
            spoken_here = [t for t in turns if low <= t["length"] < high]
            chosen = [t for t in spoken_here if t["latency"] is not None]
            if not chosen:
                continue
            unanswered = len(spoken_here) - len(chosen)
            lat = [t["latency"] for t in chosen]
            stops = [t["stopped"] for t in chosen if t["stopped"] is not None]
            turns_cell = f"{len(chosen)}" + (
                f" (+{unanswered} cut off or not heard)" if unanswered else "")
            print(f"| {transport} | {mode} | {label} | {turns_cell} | "
                  f"{statistics.median(lat):.3f} s | {pct(lat, 0.95):.3f} s | "
                  f"{f'{statistics.median(stops):.3f} s' if stops else '-'} |")
    if false_ends:
        print(f"\nfalse ends of turn, each clip with {args.pause_ms} ms of silence spliced in "
              "after a function word near its middle (over WebSocket): "
              + ", ".join(f"{mode} {sum(cut)} of {len(cut)}"
                          for mode, cut in false_ends.items()))
    if baseline is not None:
        ratios = []
        for label, low, high in LENGTHS:
            ours = [t["latency"] for t in by_mode[modes[0]]
                    if low <= t["length"] < high and t["latency"] is not None]
            theirs = [t["latency"] for t in by_mode[by_mode_label]
                      if low <= t["length"] < high and t["latency"] is not None]
            if ours and theirs:
                ratios.append(f"{label} {statistics.median(ours) / statistics.median(theirs):.2f}x")
        print(f"\nvoice-to-voice p50 against the baseline (same clips, alternating): "
              f"{', '.join(ratios)}")
    print()
    print("| transport | p50 | p95 | end of speech -> VAD stop | final started | "
          "final transcript | first reply text | first audio (server) |")
    print("|---|---|---|---|---|---|---|---|")
    answered = [t for t in ws if t["latency"] is not None]
    lat = [t["latency"] for t in answered]
    stopped = statistics.median(t["stopped"] for t in answered)
    print(f"| WebSocket | {statistics.median(lat):.3f} s | {pct(lat, 0.95):.3f} s | "
          f"{stopped:.3f} s | {_median_split(answered)} |")
    for label, turns in (("WebRTC", rtc), ("WebRTC, after aiortc's playout buffer",
                                           rtc_buffered)) if with_rtc else ():
        answered = [t for t in turns if t["latency"] is not None]
        lat = [t["latency"] for t in answered]
        missed = len(turns) - len(lat)
        stops = [t["stopped"] for t in answered if t["stopped"] is not None]
        # The server's split from the data channel's response.done, as over WebSocket.
        print(f"| {label} | {statistics.median(lat):.3f} s | {pct(lat, 0.95):.3f} s | "
              f"{statistics.median(stops):.3f} s (data channel)"
              f"{f'; {missed} turns heard no reply' if missed else ''} | "
              f"{_median_split(answered)} |")
    partials = [p for t in ws for p in t["partials"]]
    print(f"\npartial transcript lag: median {statistics.median(partials):.3f} s, "
          f"p95 {pct(partials, 0.95):.3f} s ({len(partials)} partials)")
    print(f"barge-in: user speech past the minimum -> response.done cancelled: median "
          f"{statistics.median(b['stop'] for b in bargein):.3f} s; reply audio sent after "
          f"that point {statistics.median(b['audio_after'] for b in bargein):.3f} s")
    stops = [b for b in rtc_bargein if b is not None]
    if with_rtc:
        print(f"WebRTC barge-in: the cancelled response.done -> the last reply sound on the "
              f"track: median {statistics.median(stops) if stops else float('nan'):+.3f} s, "
              f"max {max(stops) if stops else float('nan'):+.3f} s ({len(stops)} of "
              f"{len(rtc_bargein)} calls cancelled)")
    ahead = {o: service.metrics.registry.get_sample_value(
        "secretary_realtime_replies_ahead_total", {"outcome": o}) or 0 for o in ("started", "used")}
    print(f"replies made in the silence before the turn ended: {ahead['started']:.0f}, of "
          f"which played {ahead['used']:.0f} (the rest dropped when the speaker went on)")
    if not with_rtc:
        return
    face = [t["face_cpu"] for t in rtc]
    fps = [t["video_fps"] for t in rtc]
    print(f"face track: render CPU {100 * statistics.median(face):.1f}% of one core at "
          f"{statistics.median(fps):.1f} fps received")
    sync = [t["lip_sync"] for t in rtc if t["lip_sync"] is not None]
    if sync:
        print(f"lip sync: the audio shift that best lines the jaw up with the sound: median "
              f"{1000 * statistics.median(sync):+.0f} ms, largest "
              f"{1000 * max(sync, key=abs):+.0f} ms ({len(sync)} calls; the target is "
              f"within 40 ms)")


if __name__ == "__main__":
    asyncio.run(main())
