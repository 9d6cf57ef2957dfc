"""When a pause ends the turn: the end-of-turn model's verdict and the waits it sets."""

from __future__ import annotations

from dataclasses import dataclass

from secretary.turns.smartturn import EndOfTurnModel

# semantic_vad's eagerness: how long an unfinished sentence is waited for, against the
# configured wait (auto and medium).
_EAGERNESS = {"low": 2.0, "medium": 1.0, "auto": 1.0, "high": 0.5}


@dataclass(frozen=True)
class EndOfTurnRule:
    model: EndOfTurnModel
    threshold: float = 0.5  # the probability from which the model's "complete" counts
    complete_ms: int = 200  # silence that ends a turn the model calls complete
    incomplete_ms: int = 1200  # silence that ends one it calls unfinished

    def incomplete_wait(self, eagerness: str) -> int:
        return max(self.complete_ms, round(self.incomplete_ms * _EAGERNESS.get(eagerness, 1)))
