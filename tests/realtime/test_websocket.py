"""The OpenAI Realtime API over WebSocket, driven by the ``openai`` package's own realtime
client against a real server: real clips fed as 24 kHz pcm16, Silero VAD on the server,
Whisper base, the read-back reply spoken by Piper."""

from __future__ import annotations

import asyncio

import numpy as np

from secretary import audio
from secretary.conversation.stages import Cancel
from secretary.realtime.service import RealtimeService
from secretary.stt.engine import TranscriptionOptions, collect
from secretary.stt.whisper import WhisperEngine
from tests.helpers import SPEECH, reference_text, wer
from tests.realtime.support import (
    ask,
    clip,
    connect,
    feed,
    of_type,
    reply_audio,
    silence,
)
from tests.realtime.support import (
    collect as events_until,
)
from tests.stt.test_accuracy import WER_CEILING

# Piper's reading of the reply heard back by Whisper base (float32): measured 0.0 on
# cheetah_platforms (3 runs); one wrong word in ten is allowed.
READ_BACK_CEILING = 0.1
CLIP = "en_cheetah_platforms.wav"


async def test_server_vad_turn_transcribes_and_replies_in_speech(
        url: str, judge: WhisperEngine) -> None:
    async with connect(url) as connection:
        created = await events_until(connection, "session.created")
        assert created[-1].session.type == "realtime"
        await connection.session.update(session={
            "type": "realtime", "instructions": "Be brief.",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                                "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                                   "prefix_padding_ms": 300,
                                                   "silence_duration_ms": 500}}}})
        updated = await events_until(connection, "session.updated")
        turn = updated[-1].session.audio.input.turn_detection
        assert turn.silence_duration_ms == 500 and turn.type == "server_vad"

        speech = clip(CLIP)
        events: list = []
        sender = asyncio.create_task(feed(connection, speech, speed=2.0))
        await events_until(connection, "input_audio_buffer.speech_started", events=events)
        await sender
        await feed(connection, silence(1.2), speed=2.0)
        await events_until(connection, "response.done", events=events)

        kinds = [e.type for e in events]
        for kind in ("input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                     "conversation.item.input_audio_transcription.completed",
                     "response.created", "response.output_audio.delta",
                     "response.output_audio_transcript.delta"):
            assert kind in kinds, kinds
        assert kinds.index("input_audio_buffer.speech_stopped") < kinds.index(
            "response.created")
        started = of_type(events, "input_audio_buffer.speech_started")[0]
        stopped = of_type(events, "input_audio_buffer.speech_stopped")[0]
        assert 0 <= started.audio_start_ms < stopped.audio_end_ms
        assert stopped.audio_end_ms / 1000 <= len(speech) / 24000 + 0.2

        transcript = of_type(
            events, "conversation.item.input_audio_transcription.completed")[0].transcript
        assert wer(reference_text(SPEECH / CLIP), transcript, "en") <= WER_CEILING[CLIP]

        done = of_type(events, "response.done")[0].response
        assert done.status == "completed"
        said = of_type(events, "response.output_audio_transcript.done")[0].transcript
        deltas = "".join(e.delta for e in of_type(
            events, "response.output_audio_transcript.delta"))
        assert said == deltas and said
        spoken = reply_audio(events)
        assert len(spoken) > 24000  # more than a second of speech
        # Half a second of silence around it, as a listener would hear it.
        padded = np.concatenate([np.zeros(12000, np.float32), spoken,
                                 np.zeros(12000, np.float32)])
        heard = collect(judge.transcribe(audio.resample(padded, 24000, 16000),
                                         TranscriptionOptions(language="en", temperature=0.0)))
        assert wer(said, heard.text, "en") <= READ_BACK_CEILING, (said, heard.text)


async def test_manual_turns_commit_typed_input_and_response_cancel(url: str) -> None:
    async with connect(url) as connection:
        await events_until(connection, "session.created")
        await connection.session.update(session={
            "type": "realtime", "audio": {"input": {"turn_detection": None}}})
        updated = await events_until(connection, "session.updated")
        assert updated[-1].session.audio.input.turn_detection is None

        # Manual: audio is only committed when the client says so; no VAD events, no reply.
        name = "en_cmu_arctic_aew_a0003.wav"
        await feed(connection, clip(name), speed=20.0)
        await connection.input_audio_buffer.commit()
        events = await events_until(
            connection, "conversation.item.input_audio_transcription.completed")
        kinds = [e.type for e in events]
        assert "input_audio_buffer.committed" in kinds
        assert "input_audio_buffer.speech_started" not in kinds
        assert wer(reference_text(SPEECH / name), events[-1].transcript, "en") <= WER_CEILING[
            name]
        await connection.response.create()
        events = await events_until(connection, "response.done")
        assert events[-1].response.status == "completed"
        assert "men shook hands" in of_type(
            events, "response.output_audio_transcript.done")[0].transcript

        # Typed input, then a cancel once the reply is speaking: it ends cancelled, and the
        # item keeps only what had begun playing.
        text = ("This is the first sentence of a long reply. Here is the second one. "
                "And a third sentence follows it. Then a fourth to be sure.")
        await ask(connection, text)
        events = await events_until(connection, "response.output_audio.delta")
        await connection.response.cancel()
        events = await events_until(connection, "response.done", events=events)
        done = events[-1].response
        assert done.status == "cancelled"
        assert done.status_details.reason == "client_cancelled"
        kept = of_type(events, "response.output_audio_transcript.done")[0].transcript
        assert kept and kept.startswith("This is the first sentence") and len(kept) < len(text)
        assert len(reply_audio(events)) / 24000 < 4.0  # stopped, not the whole reply

        # A cancel with nothing in progress is an error event; the session goes on.
        await connection.response.cancel()
        events = await events_until(connection, "error")
        assert events[-1].error.code == "response_cancel_not_active"


async def test_barge_in_cancels_the_reply_and_keeps_what_was_heard(url: str) -> None:
    async with connect(url) as connection:
        await events_until(connection, "session.created")
        await connection.session.update(session={"type": "realtime", "audio": {"input": {
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 400}}}})
        await events_until(connection, "session.updated")
        text = ("Let me tell you a long story about the railway. It starts early in the "
                "morning at the station. The first train leaves at six. The second one leaves "
                "at seven. Nobody knows when the last one leaves.")
        await ask(connection, text)
        events = await events_until(connection, "response.output_audio.delta")
        # Silence past the reply's first moments, then the user talks over it.
        await feed(connection, silence(1.0))
        talking = asyncio.create_task(feed(connection, clip("en_cheetah_platforms.wav")))
        events = await events_until(connection, "response.done", events=events)
        await talking
        done = events[-1].response
        assert done.status == "cancelled" and done.status_details.reason == "turn_detected"
        started = of_type(events, "input_audio_buffer.speech_started")
        assert started
        # The reply's audio stopped soon after the user began (1 s of silence, half a second
        # of speech, the VAD's frame and the send-ahead), not at its end (over ten seconds).
        assert len(reply_audio(events)) / 24000 < 3.5
        kept = of_type(events, "response.output_audio_transcript.done")[0].transcript
        assert kept.startswith("Let me tell you") and "last one" not in kept
        # The user's words become the next turn.
        await feed(connection, silence(1.0), speed=4.0)
        events = await events_until(connection, "response.done")
        heard = of_type(events, "conversation.item.input_audio_transcription.completed")
        assert heard and "platforms" in heard[-1].transcript.lower()
        assert events[-1].response.status == "completed"


async def test_backchannel_over_the_reply_does_not_stop_it(url: str,
                                                         service: RealtimeService) -> None:
    # "Yeah." as Piper says it: a short acknowledgement, not a turn.
    pieces = [samples async for samples, _ in service.pipeline.speaker.speak(
        "Yeah.", "en", None, Cancel())]
    rate = service.pipeline.speaker.service.engine("piper").sample_rate
    yeah = audio.resample(np.concatenate(pieces), rate, 24000)
    async with connect(url) as connection:
        await events_until(connection, "session.created")
        text = ("The first train leaves at six in the morning. The second one leaves at seven "
                "in the morning. The third one leaves at eight.")
        await ask(connection, text)
        events = await events_until(connection, "response.output_audio.delta")
        await feed(connection, silence(1.0))
        await feed(connection, yeah)
        await feed(connection, silence(0.8))
        events = await events_until(connection, "response.done", events=events)
        assert of_type(events, "input_audio_buffer.speech_started")  # it was heard
        assert events[-1].response.status == "completed"
        assert "eight" in of_type(
            events, "response.output_audio_transcript.done")[0].transcript


async def test_partial_transcripts_arrive_while_the_user_speaks(url: str) -> None:
    async with connect(url) as connection:
        await events_until(connection, "session.created")
        speech = clip("en_librispeech_1272-128104-0000_quilter.wav")
        events: list = []
        # Read while sending, so what had arrived by the end of the speech is known.
        reader = asyncio.create_task(events_until(
            connection, "conversation.item.input_audio_transcription.completed", events=events))
        await feed(connection, speech)
        while_speaking = len(events)  # what had come before the last of the speech was sent
        await feed(connection, silence(1.0), speed=4.0)
        await reader
        delta = "conversation.item.input_audio_transcription.delta"
        deltas = of_type(events, delta)
        assert len(deltas) >= 2
        # Partials come while the audio is still being sent, not after.
        assert of_type(events[:while_speaking], delta), [e.type for e in events]
        partial = "".join(d.delta for d in deltas)
        final = events[-1].transcript
        assert wer(final, partial, "en") < 0.5, (partial, final)
