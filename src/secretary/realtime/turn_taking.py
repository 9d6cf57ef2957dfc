"""Turn taking: when the user's turn starts and ends, and when speech over the reply stops it.

Silero VAD hears every frame (``TurnDetector``). With ``semantic_vad`` and its model loaded,
each pause is a ``paused`` event that waits for the end-of-turn model's verdict
(``EndOfTurnRule``): a turn it calls complete ends after a short silence, an unfinished one
after the long one, or after a middle one where its transcript reads as a finished sentence
(Smart Turn misjudges some complete sentences; their words end them sooner).
Narrowband input (8 kHz G.711: the ``audio/pcmu`` and ``audio/pcma`` formats, or a
telephone call's PCMU or PCMA track) is judged against the rule's narrowband threshold
(the model, trained on wideband speech, hears less "done" in it), or by its words alone.

What starts in the silence before the turn ends is in ``ahead.py``; speech over a playing
reply stops it as ``barge_in.py`` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from secretary.conversation.stages import StageError
from secretary.realtime.ahead import Utterance, speculate
from secretary.realtime.barge_in import barge_in_by_length
from secretary.realtime.partials import follow_partials
from secretary.realtime.protocol import new_id
from secretary.realtime.server_events import SpeechStarted, SpeechStopped
from secretary.realtime.vad import RATE, TurnDetector, VadConfig, end_of_turn_config
from secretary.turns.words import is_backchannel, reads_finished
from secretary.validation import has_speech

if TYPE_CHECKING:
    from secretary.realtime.session import RealtimeSession

log = logging.getLogger(__name__)

# Input formats that carry 8 kHz telephone audio (the beta's g711_ulaw and g711_alaw are
# these names in the session's config).
NARROWBAND_FORMATS = frozenset({"pcmu", "pcma"})


class TurnTaking:
    def __init__(self, session: RealtimeSession) -> None:
        self.session = session
        self.detector: TurnDetector | None = None
        self.utterance: Utterance | None = None
        # The media track carries 8 kHz telephone audio (a PCMU or PCMA call), whatever
        # the rate it arrives at: set by the telephone once the codec is negotiated.
        self.narrowband_track = False
        # Turns end by their words alone (a narrowband call's, where Smart Turn cannot tell
        # finished sentences from pauses): those that read finished after the rule's words
        # wait, others after server_vad's silence. The model is not asked.
        self.words_only = False
        self.reset_detector()

    @property
    def narrowband(self) -> bool:
        """Whether the input is 8 kHz telephone audio (G.711)."""
        return (self.narrowband_track
                or self.session.config.input_format in NARROWBAND_FORMATS)

    def reset_detector(self) -> None:
        """A detector for the session's ``turn_detection`` (None: the client commits)."""
        session = self.session
        turn = session.config.turn_detection
        if turn is None:
            self.detector = None
            return
        rule = session.end_of_turn if turn.type == "semantic_vad" else None
        if rule is None:  # server_vad, or semantic_vad without its model: silence alone
            self.detector = TurnDetector(VadConfig(
                turn.threshold, turn.prefix_padding_ms, turn.silence_duration_ms))
            return
        self.detector = TurnDetector(end_of_turn_config(
            rule, turn.threshold, turn.prefix_padding_ms, eagerness=turn.eagerness,
            narrowband=self.narrowband, words_only=self.words_only))

    def user_speaking(self) -> bool:
        """An utterance is in progress (the server's detector hears speech)."""
        return self.utterance is not None and not self.utterance.ignored

    def drop_utterance(self) -> None:
        """The utterance in progress is forgotten (its audio was cleared)."""
        utterance = self.utterance
        if utterance and utterance.partial_task:
            utterance.partial_task.cancel()
        if utterance:
            utterance.drop_reply()
        self.utterance = None

    def _padding_ms(self) -> int:
        turn = self.session.config.turn_detection
        return turn.prefix_padding_ms if turn else 0

    # ------------------------------------------------------------------ the detector
    async def hear(self, samples: np.ndarray) -> None:
        """Audio just added to the input buffer."""
        session, detector = self.session, self.detector
        if detector is None:
            return
        events = detector.feed(samples)
        while events:
            vad = events.pop(0)
            if vad.kind == "started":
                await self._speech_started(vad.at_ms)
            elif vad.kind == "paused":
                # The final transcript (and the reply made ahead) start at the pause, beside
                # the model, not after it.
                if self.utterance is not None:
                    speculate(self, self.utterance, self._padding_ms())
                # The frames after the pause wait for the verdict, so the rule is judged on
                # the audio alone, whatever the machine's speed.
                complete = await self._judge_pause(vad.at_ms)
                if self.detector is not None:  # (a session.update may have replaced it)
                    self._follow_band()
                    events += self.detector.decide(complete)
            elif vad.kind == "words":
                finished = await self._words_finished()
                if self.detector is not None:
                    events += self.detector.decide_words(finished)
            else:
                await self._speech_stopped(vad.at_ms)
        buffer = session.input
        if self.utterance is None:
            buffer.trim(self._padding_ms())
        else:
            speculate(self, self.utterance, self._padding_ms())
            barge_in_by_length(self)
            if buffer.held > session.limits.max_buffer_seconds * RATE:
                await self._speech_stopped(buffer.now_ms)  # a very long turn

    def _follow_band(self) -> None:
        """The detector's threshold for the input's band as it is now (the format may
        change with a session.update, and a call's codec is known once it is answered)."""
        rule, detector = self.session.end_of_turn, self.detector
        if rule and detector and detector.config.semantic and not self.words_only:
            detector.config.complete_threshold = rule.threshold_for(self.narrowband)

    async def _judge_pause(self, at_ms: int) -> float:
        """The end-of-turn model's probability that the utterance paused at ``at_ms`` is
        complete (0 where it cannot tell: the turn then waits the long silence)."""
        session = self.session
        rule, utterance = session.end_of_turn, self.utterance
        if rule is None or utterance is None or self.words_only:
            return 0.0
        audio = session.input.take(utterance.start_ms, at_ms)
        began = time.perf_counter()
        try:
            complete = await asyncio.to_thread(rule.model.complete, audio)
        except Exception:
            log.exception("realtime session %s: the end-of-turn model failed", session.id)
            return 0.0
        threshold = rule.threshold_for(self.narrowband)
        log.debug("realtime session %s: end of turn %.3f against %.2f (%s) after %d ms",
                  session.id, complete, threshold,
                  "narrowband" if self.narrowband else "wideband", at_ms - utterance.start_ms)
        if session.metrics is not None:
            session.metrics.end_of_turn_seconds.observe(time.perf_counter() - began)
            session.metrics.end_of_turn.labels(
                "complete" if complete >= threshold else "unfinished").inc()
        return complete

    async def _words_finished(self) -> bool:
        """Whether the early transcript of the paused utterance reads as a finished
        sentence (in real time it is done by now: it started at the pause)."""
        utterance, metrics = self.utterance, self.session.metrics
        if utterance is None or utterance.early is None:
            return False
        try:
            finished = reads_finished((await asyncio.shield(utterance.early)).text)
        except StageError:
            return False
        if metrics is not None:
            metrics.end_of_turn.labels("words finished" if finished else "words unfinished").inc()
        return finished

    async def _speech_started(self, at_ms: int) -> None:
        session = self.session
        response = session.responses.current
        utterance = Utterance(new_id("item"), at_ms, time.perf_counter())
        if response is not None and response.speaking:
            utterance.over_reply = True
            heard_for = time.perf_counter() - (response.audio_started or 0)
            utterance.ignored = heard_for < session.limits.barge_in_grace
        self.utterance = utterance
        await session.emit(SpeechStarted(audio_start_ms=at_ms, item_id=utterance.item_id))
        if session.partials is not None and session.config.transcription is not None and (
                not utterance.ignored):
            utterance.partial_task = session.spawn(follow_partials(session, utterance))

    async def _speech_stopped(self, at_ms: int) -> None:
        session = self.session
        utterance = self.utterance
        if utterance is None:
            return
        self.utterance = None
        if utterance.partial_task is not None:
            utterance.partial_task.cancel()
        now = time.perf_counter()
        session.marks = {"speech_stopped": now,
                         "final_started": utterance.early_at if utterance.early else now}
        await session.emit(SpeechStopped(audio_end_ms=at_ms, item_id=utterance.item_id))
        turn = session.config.turn_detection
        audio = session.input.take(utterance.start_ms - self._padding_ms(), at_ms + 100)
        session.input.reset()
        if utterance.ignored and session.responses.current is not None:
            # The reply's first moments: most likely its own echo settling.
            utterance.drop_reply()
            return
        task = await session.conversation.add_user_audio(utterance.item_id, audio,
                                                         utterance.early)
        if session.config.kind == "transcription" or turn is None:
            return
        session.spawn(self._after_utterance(utterance, task))

    async def _after_utterance(self, utterance: Utterance, transcript: asyncio.Task[str]
                               ) -> None:
        """Once the turn's transcript is known: stop the reply it was spoken over (not for
        a backchannel), then answer it."""
        session = self.session
        responses, turn = session.responses, session.config.turn_detection
        stream, utterance.reply = utterance.reply, None
        try:
            text = await transcript
            response = responses.current
            if response is not None and utterance.over_reply and not response.cancel:
                if is_backchannel(text) or not has_speech(text):
                    return  # "mhm" over the reply: it goes on
                if turn is not None and turn.interrupt_response:
                    responses.stop("turn_detected")
            if not has_speech(text) or turn is None or not turn.create_response:
                return
            if responses.current is not None and responses.current.task is not None:
                with contextlib.suppress(BaseException):
                    await responses.current.task
            if responses.current is None and not session.closed:
                responses.start("audio" in session.config.output_modalities, stream)
                stream = None  # the response owns it now
        finally:
            if stream is not None:
                stream.drop()
