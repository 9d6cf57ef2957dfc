"""When a pause ends the turn: the end-of-turn model's verdict and the waits it sets."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from secretary.config import Settings
from secretary.errors import ModelUnavailableError
from secretary.turns.models import SmartTurnModels
from secretary.turns.smartturn import EndOfTurnModel, SmartTurn

log = logging.getLogger(__name__)

# semantic_vad's eagerness: how long an unfinished sentence is waited for, against the
# configured wait (auto and medium).
_EAGERNESS = {"low": 2.0, "medium": 1.0, "auto": 1.0, "high": 0.5}


@dataclass(frozen=True)
class EndOfTurnRule:
    model: EndOfTurnModel
    threshold: float = 0.5  # the probability from which the model's "complete" counts
    complete_ms: int = 200  # silence that ends a turn the model calls complete
    incomplete_ms: int = 1200  # silence that ends one it calls unfinished
    # ... unless its transcript reads as a finished sentence: then this (0: never)
    words_ms: int = 250
    # The threshold for 8 kHz telephone audio (G.711): the model, trained on wideband
    # speech, calls narrowband sentences unfinished more often (None: ``threshold``).
    narrowband_threshold: float | None = None
    ask_ms: int = 64  # silence after which the model is asked

    def threshold_for(self, narrowband: bool) -> float:
        """The threshold for input of that band."""
        if narrowband and self.narrowband_threshold is not None:
            return self.narrowband_threshold
        return self.threshold

    def incomplete_wait(self, eagerness: str) -> int:
        return max(self.complete_ms, round(self.incomplete_ms * _EAGERNESS.get(eagerness, 1)))


def load_rule(settings: Settings, who: str) -> EndOfTurnRule | None:
    """Smart Turn from the model cache with the configured waits (blocking), or None where
    it is switched off or not there: turns then end on silence alone, said once in the log
    by ``who``."""
    o = settings.realtime
    if not o.end_of_turn:
        return None
    try:
        path = SmartTurnModels(settings.models_dir).smart_turn_path(download=False)
    except ModelUnavailableError as exc:
        log.warning("%s: turns end on silence alone: %s", who, exc)
        return None
    model = SmartTurn(path)
    model.load()
    return EndOfTurnRule(model, o.end_of_turn_threshold, o.end_of_turn_complete_ms,
                         o.end_of_turn_incomplete_ms, o.end_of_turn_words_ms,
                         narrowband_threshold=o.end_of_turn_threshold_narrowband,
                         ask_ms=o.end_of_turn_ask_ms)
