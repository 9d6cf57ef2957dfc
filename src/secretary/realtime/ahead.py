"""Ahead of the turn's end: in the silence that may end the turn the final transcript starts
early (it is the same audio if the turn does end), and the reply to it is made ahead, so its
first audio is ready when the turn ends; if the user goes on, both are dropped unheard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from secretary.conversation.reply import ReplyStream
from secretary.conversation.stages import Cancel, Heard, StageError
from secretary.realtime.barge_in import early_barge_in
from secretary.validation import has_speech

if TYPE_CHECKING:
    from secretary.realtime.turn_taking import TurnTaking


@dataclass
class Utterance:
    item_id: str
    start_ms: int
    started_wall: float
    over_reply: bool = False  # began while a reply was playing
    ignored: bool = False  # began in the reply's first moments (echo settling)
    partial_task: asyncio.Task[None] | None = None
    # The final transcript started early, in the silence that may end the turn.
    early: asyncio.Task[Heard] | None = None
    early_at: float = 0.0
    early_voice_ms: int = 0  # the detector's last voiced moment when it started
    # The reply to that transcript, being made while the silence runs.
    reply: ReplyStream | None = None

    def drop_reply(self) -> None:
        if self.reply is not None:
            self.reply.drop()
            self.reply = None


def speculate(turns: TurnTaking, utterance: Utterance, padding_ms: int) -> None:
    """Start the final transcript (from ``padding_ms`` before the speech) once the silence
    has lasted the early-final wait, and drop it if the user goes on."""
    session, detector = turns.session, turns.detector
    if detector is None or not detector.speaking:
        return
    if utterance.early is not None and detector.last_voice_ms > utterance.early_voice_ms:
        # Speech again (even inside one appended chunk): that transcript would be short.
        utterance.early = None
        utterance.drop_reply()
    if (detector.silence_ms >= session.limits.early_final_ms and utterance.early is None
            and session.config.kind in ("realtime", "transcription")):
        audio = session.input.take(utterance.start_ms - padding_ms)
        utterance.early = session.spawn(session.stages.transcriber.transcribe(
            audio, session.config.language, Cancel()))
        utterance.early_at = time.perf_counter()
        utterance.early_voice_ms = detector.last_voice_ms
        if session.limits.reply_ahead:
            session.spawn(_reply_ahead(turns, utterance, utterance.early))
        response = session.responses.current
        if utterance.over_reply and not utterance.ignored and response is not None:
            session.spawn(early_barge_in(session, utterance, utterance.early, response))


async def _reply_ahead(turns: TurnTaking, utterance: Utterance,
                       early: asyncio.Task[Heard]) -> None:
    """Start the reply to the early transcript while the silence runs: if the turn ends, its
    first audio is ready then; if the user goes on, it is dropped unheard."""
    session = turns.session
    with contextlib.suppress(StageError):
        heard = await early
        turn = session.config.turn_detection
        if (turns.utterance is not utterance or utterance.early is not early
                or utterance.over_reply or session.responses.current is not None
                or session.config.kind != "realtime" or turn is None
                or session.config.tools
                or not turn.create_response or not has_speech(heard.text)):
            return  # the turn ended first, or no response (or the client's tools) follows
        audio, responses = "audio" in session.config.output_modalities, session.responses
        utterance.reply = responses.reply_stream(
            responses.heard(heard.text.strip(), heard.language), audio).start()
        if session.metrics is not None:
            session.metrics.replies_ahead.labels("started").inc()
