"""Barge-in: speech over a playing reply stops it once it has lasted ``barge_in_min``
seconds, or sooner when its early transcript shows it is no backchannel ("Stop!"); "mhm" is
not one, and neither is speech in the reply's first moments (its own echo settling)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from secretary.conversation.stages import Heard, StageError
from secretary.turns.words import is_backchannel
from secretary.validation import has_speech

if TYPE_CHECKING:
    from secretary.realtime.ahead import Utterance
    from secretary.realtime.response import Response
    from secretary.realtime.session import RealtimeSession
    from secretary.realtime.turn_taking import TurnTaking


def barge_in_by_length(turns: TurnTaking) -> None:
    """Stop the reply under the utterance in progress once it has been voiced long enough."""
    session, utterance = turns.session, turns.utterance
    response, turn = session.responses.current, session.config.turn_detection
    if (utterance is None or response is None or not utterance.over_reply
            or utterance.ignored or turn is None or not turn.interrupt_response):
        return
    voiced = (turns.detector.voiced_ms if turns.detector else 0) / 1000
    if voiced >= session.limits.barge_in_min:
        session.responses.stop("turn_detected")


async def early_barge_in(session: RealtimeSession, utterance: Utterance,
                         early: asyncio.Task[Heard], response: Response) -> None:
    """Speech over the reply too short to stop it by its length ("Stop!") stops it as soon
    as the transcript made in its first pause shows it is no backchannel, without waiting
    for the turn to end."""
    with contextlib.suppress(StageError):
        heard = await early
        turn = session.config.turn_detection
        if (utterance.early is not early or session.responses.current is not response
                or response.cancel or turn is None or not turn.interrupt_response):
            return
        if has_speech(heard.text) and not is_backchannel(heard.text):
            session.responses.stop("turn_detected")
