"""The OpenAI Realtime API over WebSocket, driven by the ``openai`` package's own realtime
client against a real server: real clips fed as 24 kHz pcm16, Silero VAD on the server,
Whisper base, the read-back reply spoken by Piper."""

from __future__ import annotations

import asyncio

import numpy as np

from secretary.stt.engine import TranscriptionOptions, collect
from secretary.stt.whisper import WhisperEngine
from tests.helpers import SPEECH, reference_text, wer
from tests.realtime.support import (
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
        from secretary import audio
        # Half a second of silence around it, as a listener would hear it.
        padded = np.concatenate([np.zeros(12000, np.float32), spoken,
                                 np.zeros(12000, np.float32)])
        heard = collect(judge.transcribe(audio.resample(padded, 24000, 16000),
                                         TranscriptionOptions(language="en", temperature=0.0)))
        assert wer(said, heard.text, "en") <= READ_BACK_CEILING, (said, heard.text)
