"""Telephone audio in the Realtime API: G.711 mu-law and A-law at 8 kHz in and out, by the
GA names (``audio/pcmu``, ``audio/pcma``) and the beta ones (``g711_ulaw``,
``g711_alaw``), driven by the ``openai`` package's realtime client: a real clip sent as a
phone line would carry it, and the reply heard back from the codes the server sent."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from secretary import audio, g711
from secretary.stt.engine import TranscriptionOptions, collect
from secretary.stt.whisper import WhisperEngine
from tests.helpers import SPEECH, reference_text, wer
from tests.realtime.support import clip, connect, of_type
from tests.realtime.support import collect as events_until
from tests.stt.test_accuracy import WER_CEILING

CLIP = "en_cheetah_platforms.wav"
# Over 8 kHz G.711 both ways, Whisper base heard 0.0 WER for the transcript of the clip and
# for the read-back (both laws, both name sets, 3 runs): a word in ten is allowed.
PHONE_CEILING = 0.1


def _phone_line(law: str) -> list[str]:
    """The clip as 8 kHz G.711, in 20 ms base64 appends (what a media stream sends)."""
    at8k = audio.resample(clip(CLIP), 24000, 8000)
    at8k = np.concatenate([np.zeros(4000, np.float32), at8k, np.zeros(8000, np.float32)])
    codes = g711.encode(law, at8k)
    return [base64.b64encode(codes[i:i + 160]).decode() for i in range(0, len(codes), 160)]


@pytest.mark.parametrize(("law", "ga", "beta"), [
    ("pcmu", {"type": "audio/pcmu"}, "g711_ulaw"),
    ("pcma", {"type": "audio/pcma"}, "g711_alaw"),
])
@pytest.mark.parametrize("names", ["ga", "beta"])
async def test_a_turn_in_telephone_audio_is_heard_and_answered_in_kind(
        url: str, judge: WhisperEngine, law: str, ga: dict, beta: str, names: str) -> None:
    # The beta shape is chosen by the session.update's own field names.
    async with connect(url) as connection:
        await events_until(connection, "session.created")
        if names == "ga":
            session = {"type": "realtime", "audio": {"input": {"format": ga,
                                                               "turn_detection": None},
                                                     "output": {"format": ga}}}
        else:
            session = {"input_audio_format": beta, "output_audio_format": beta,
                       "turn_detection": None}
        await connection.session.update(session=session)
        updated = (await events_until(connection, "session.updated"))[-1]
        shown = updated.model_dump()["session"]
        if names == "ga":
            assert shown["audio"]["input"]["format"]["type"] == ga["type"]
            assert shown["audio"]["output"]["format"]["type"] == ga["type"]
        else:
            assert shown["input_audio_format"] == beta == shown["output_audio_format"]

        for piece in _phone_line(law):
            await connection.input_audio_buffer.append(audio=piece)
        await connection.input_audio_buffer.commit()
        await connection.response.create()
        events = await events_until(connection, "response.done")

    transcript = of_type(
        events, "conversation.item.input_audio_transcription.completed")[0].transcript
    assert wer(reference_text(SPEECH / CLIP), transcript, "en") <= max(
        WER_CEILING[CLIP], PHONE_CEILING), transcript
    audio_event, transcript_event = (
        ("response.output_audio.delta", "response.output_audio_transcript.done")
        if names == "ga" else ("response.audio.delta", "response.audio_transcript.done"))
    codes = b"".join(base64.b64decode(e.delta) for e in of_type(events, audio_event))
    assert len(codes) > 8000  # more than a second at one byte per 8 kHz sample
    said = of_type(events, transcript_event)[0].transcript
    heard_8k = g711.decode(law, codes)
    padded = np.concatenate([np.zeros(4000, np.float32), heard_8k, np.zeros(4000, np.float32)])
    heard = collect(judge.transcribe(audio.resample(padded, 8000, 16000),
                                     TranscriptionOptions(language="en", temperature=0.0)))
    assert wer(said, heard.text, "en") <= PHONE_CEILING, (said, heard.text)


async def test_an_unknown_or_mis_rated_format_is_an_error_and_changes_nothing(url: str) -> None:
    async with connect(url) as connection:
        await events_until(connection, "session.created")
        await connection.session.update(session={
            "type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu",
                                                                "rate": 16000}}}})
        [error] = of_type(await events_until(connection, "error"), "error")
        assert error.error.code == "unsupported_audio_format"
        assert "8000 Hz" in error.error.message
        await connection.session.update(session={"input_audio_format": "g729"})
        [error] = of_type(await events_until(connection, "error"), "error")
        assert "g729" in error.error.message
        # Still 24 kHz PCM: a 16-bit append of odd length is refused as PCM.
        await connection.input_audio_buffer.append(audio=base64.b64encode(b"abc").decode())
        [error] = of_type(await events_until(connection, "error"), "error")
        assert "even number of bytes" in error.error.message
